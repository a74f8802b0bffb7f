/**
 * Membership: who is in the mesh, who is alive, and what each member offers.
 * SWIM-style failure detection with Lifeguard's refinements, over the
 * Transport port only (so the simulator runs this very code):
 *
 * - every probeIntervalMs a node probes the next member of a shuffled
 *   round-robin list (ping → ack over a request); no ack in probeTimeoutMs →
 *   indirectChecks helpers ping it for us, plus one direct retry; nothing by
 *   the end of the round → suspect;
 * - a suspicion is broadcast on the membership topic, piggybacked on probes
 *   (λ·log n retransmits), verified by a few random receivers, and turns into
 *   death after a timeout that shrinks with independent confirmations;
 * - a live node that hears it is suspected (or dead, or left) raises its
 *   incarnation and broadcasts `alive`; it also tells the suspector directly;
 * - only a node with its own failed probe of the suspect declares it dead;
 *   one that merely heard the suspicion probes the suspect itself before it
 *   does, so a lost refutation cannot make a false death;
 * - local health (Lifeguard): late timers and failed probes without helpers'
 *   nacks raise a score that stretches this node's timeouts.
 *
 * Metadata (capacity, free, load, labels, version, addresses) is the member's
 * record, versioned by `seq`, announced at a rate that fits the traffic budget
 * (metaIntervalMs) and pulled on demand when a peer's seq moves past ours.
 * A joining node push-pull syncs the full state with a seed; a periodic sync
 * with a random member is the anti-entropy backstop. docs/membership.md has
 * the protocol, the messages and the timings.
 */
import type { Clock, Logger, RequestContext, Rng, TimerHandle, TopicMessage, Transport } from '../core/index.ts'
import { TransportError } from '../core/index.ts'
import {
  MEMBERSHIP_TOPIC,
  PROBE_PROTOCOL,
  SYNC_PROTOCOL,
  metaIntervalMs,
  pushPullIntervalMs,
  resolveMembershipConfig,
  retransmitLimit,
  suspicionMaxMs,
  suspicionMinMs,
  suspicionTimeoutMs,
  verifierProbability,
  type MembershipConfig,
} from './membership-config.ts'
import { IndexedSet, PiggybackQueue, SortedStrings } from './membership-queues.ts'
import { freezeMeta, metaEqual, shareMeta } from './meta-sharing.ts'
import { RoundTripEstimator } from './round-trip.ts'
import type {
  MemberMeta,
  MemberState,
  MemberView,
  Membership,
  MembershipComponents,
  MembershipCounterName,
  MembershipCounters,
  MembershipEvent,
  MembershipEventType,
  MembershipHealth,
  MembershipInit,
  MembershipMetrics,
  Resources,
} from './membership-types.ts'
import { zeroMembershipCounters } from './membership-types.ts'
import {
  MetaSchema,
  ProbeRequestSchema,
  ProbeResponseSchema,
  SyncMessageSchema,
  decodeTopicMessage,
  decodeWire,
  encodeSyncWire,
  encodeWire,
  recordText,
  type DropReason,
  type ProbeRequestWire,
  type ProbeResponseWire,
  type TopicWire,
  type WireMeta,
  type WireRecord,
  type WireState,
  type WireUpdate,
} from './membership-wire.ts'

/** Suspectors told directly of one confirmation (the first few are enough to shrink a timeout). */
const CONFIRMATION_NOTICES_MAX = 3

const ZERO_RESOURCES: Resources = { cpu: 0, memoryMB: 0, diskMB: 0, gpus: 0 }

const STATE_TO_WIRE: Record<MemberState, WireState> = { alive: 'a', suspect: 's', dead: 'd', left: 'l' }

/** Fills and validates a node's metadata; throws RangeError on our own bad input (not on peers'). */
export function normalizeMeta(meta: Partial<MemberMeta> = {}, base?: MemberMeta, bytesMax = Infinity): MemberMeta {
  const merged: MemberMeta = {
    capacity: { ...(meta.capacity ?? base?.capacity ?? ZERO_RESOURCES) },
    free: { ...(meta.free ?? base?.free ?? ZERO_RESOURCES) },
    load: meta.load ?? base?.load ?? 0,
    labels: { ...(meta.labels ?? base?.labels ?? {}) },
    version: meta.version ?? base?.version ?? '',
    addresses: [...(meta.addresses ?? base?.addresses ?? [])],
  }
  const parsed = MetaSchema.safeParse(merged)
  if (!parsed.success) throw new RangeError(`invalid member metadata: ${parsed.error.message}`)
  const bytes = encodeWire(merged).byteLength
  if (bytes > bytesMax) throw new RangeError(`member metadata of ${bytes} bytes exceeds metaBytesMax ${bytesMax}`)
  return freezeMeta(merged)
}

export function createMembership(init: MembershipInit = {}): (components: MembershipComponents) => Membership {
  const config = resolveMembershipConfig(init.preset ?? 'lan', init.config)
  const meta = normalizeMeta(init.meta, undefined, config.metaBytesMax)
  const seeds = [...(init.seeds ?? [])]
  return (components) => new MembershipService(config, seeds, meta, components)
}

/** Events counted in a window that opens with the first one after the previous window closed. */
class BurstCount {
  private openedAtMs = Number.NEGATIVE_INFINITY
  private count = 0

  /** Counts one event at `nowMs`; answers the events in its window. */
  add(nowMs: number, windowMs: number): number {
    if (nowMs - this.openedAtMs > windowMs) {
      this.openedAtMs = nowMs
      this.count = 0
    }
    return ++this.count
  }
}

interface Suspicion {
  incarnation: number
  startedAtMs: number
  /** Distinct suspectors (Lifeguard's independent confirmations). */
  confirmers: Set<string>
  /** This node's own probe of the suspect failed: it may declare death. */
  originator: boolean
  timer: TimerHandle | undefined
  /** When `timer` fires: a re-arm to the same moment (an observer's timeout does not count confirmations) keeps it. */
  timerAtMs: number
  reprobe: TimerHandle | undefined
}

interface Member {
  peerId: string
  state: MemberState
  incarnation: number
  /** Highest seq heard of (headers, updates); may run ahead of metaSeq. */
  seq: number
  metaSeq: number
  /** Static seq of the metadata held (see WireRecord.b). */
  staticSeq: number
  /** Times others re-announced the death we declared (ends our retransmits). */
  echoes: number
  meta: WireMeta | undefined
  lastSeenAtMs: number
  stateChangedAtMs: number
  suspicion: Suspicion | undefined
  metaPullAtMs: number
}

type ProbeKind = 'regular' | 'verify' | 'final'

interface AckHeader {
  i: number
  q: number
}

/** An ack, or why not: `refused` when the peer is known not to run (connection refused), not merely silent. */
type PingResult = { ack: AckHeader; refused: false } | { ack: undefined; refused: boolean; unaddressable?: boolean }

/** A response, or whether the failure was a refusal (UNREACHABLE / NO_HANDLER) rather than silence. */
type RequestResult = { data: Uint8Array; refused: false; dialled?: boolean } | { data: undefined; refused: boolean; unaddressable?: boolean }

class MembershipService implements Membership {
  readonly selfId: string
  private readonly transport: Transport
  private readonly clock: Clock
  private readonly rng: Rng
  private readonly log: Logger
  private readonly metrics: MembershipMetrics | undefined

  private running = false
  private leaving = false
  private joined = false
  private joining = false
  private joinRetryMs: number
  private handlersInstalled = false
  private unsubscribe: (() => void) | undefined
  private offPeerEvent: (() => void) | undefined

  private selfIncarnation = 0
  private selfSeq = 1
  /**
   * The seq peers are told about (headers, updates): the last one announced.
   * Advertising every local change would make everyone pull it at once and
   * defeat the announcement rate limit.
   */
  private announcedSeq = 1
  /** Seq of the last change to the static part of our metadata. */
  private staticSeq = 1
  /** Static seq of our last full announcement: a delta suffices while it holds. */
  private announcedStaticSeq = 0
  private deltaBytes = 0
  private selfMeta: MemberMeta
  private selfRecordBytes = 0
  private lastMetaAnnounceAtMs = Number.NEGATIVE_INFINITY
  private metaTimer: { handle: TimerHandle; atMs: number } | undefined

  private readonly table = new Map<string, Member>()
  private readonly aliveIds = new IndexedSet()
  private readonly suspectIds = new IndexedSet()
  private readonly deadIds = new IndexedSet()
  /** Sorted peerIds of the table (members() order); undefined after the table's keys changed. */
  private sortedIds: string[] | undefined
  /** Sorted peerIds of the members alive in this view, self included (aliveMembers()); undefined after a change. */
  private aliveSorted: readonly string[] | undefined
  /** aliveIds in peerId order, kept as members come and go (aliveMembers copies it instead of sorting). */
  private readonly aliveInOrder = new SortedStrings()
  private probeOrder: string[] = []
  private probeIndex = 0
  private readonly probing = new Set<string>()
  private readonly piggyback: PiggybackQueue
  private due: WireUpdate[] = []
  private flushArmed = false
  private readonly metaWanted = new IndexedSet()
  private metaPullsInFlight = 0
  private pumpArmed = false

  private lastSyncAtMs = Number.NEGATIVE_INFINITY
  private lastRecoverySyncAtMs = Number.NEGATIVE_INFINITY
  /** When a dead member last came back (deadProbeFastForMs), and the pending dead-probe timer, to hurry it then. */
  private lastComebackAtMs = Number.NEGATIVE_INFINITY
  /** Deaths (noteDeath) and comebacks from dead (noteComeback) seen lately. */
  private readonly deaths = new BurstCount()
  private lastMassDeathSyncAtMs = Number.NEGATIVE_INFINITY
  private readonly comebacks = new BurstCount()
  private deadProbeTimer: { handle: TimerHandle; atMs: number } | undefined
  private pushPullJitter = 1
  private readonly timers = new Set<TimerHandle>()
  /** Round trips of direct pings: the probe timeout follows them (round-trip.ts). */
  private readonly roundTrip = new RoundTripEstimator()
  private listenerList: ReadonlyArray<(event: MembershipEvent) => void> = []
  private readonly count: MembershipCounters = zeroMembershipCounters()
  private awareness = 0
  /** neighbours > 0: dials in progress, by peer (a dial outlives the request that started it). */
  private readonly dialing = new Map<string, Promise<'ok' | 'refused' | 'timeout'>>()
  private lastDialFailedAtMs = Number.NEGATIVE_INFINITY
  private lagMsMax = 0
  private lastLagAtMs = Number.NEGATIVE_INFINITY

  constructor(
    readonly config: MembershipConfig,
    private readonly seeds: string[],
    meta: MemberMeta,
    components: MembershipComponents,
  ) {
    this.transport = components.transport
    this.clock = components.clock
    this.rng = components.rng
    this.log = components.logger.child({ module: 'membership' })
    this.metrics = components.metrics
    this.selfId = this.transport.selfId
    this.selfMeta = meta
    this.selfRecordBytes = encodeWire(this.selfRecord()).byteLength
    this.deltaBytes = encodeWire(this.selfDelta()).byteLength
    this.piggyback = new PiggybackQueue(config.piggybackQueueMax)
    this.joinRetryMs = config.joinRetryMs
  }

  // ---------------------------------------------------------------- lifecycle

  async start(): Promise<void> {
    if (this.running) return
    this.running = true
    this.leaving = false
    this.aliveSorted = undefined
    this.joined = false
    this.joinRetryMs = this.config.joinRetryMs
    this.lastSyncAtMs = this.now()
    this.pushPullJitter = 0.5 + this.rng.next()
    this.unsubscribe = this.transport.subscribe(MEMBERSHIP_TOPIC, (message) => this.onTopic(message))
    if (!this.handlersInstalled) {
      // Transport has no "unhandle": the handlers stay and answer `stopped` while we are not running.
      this.transport.handle(PROBE_PROTOCOL, (request) => this.onProbeRequest(request), { requestBytesMax: this.config.probeBytesMax })
      this.transport.handle(SYNC_PROTOCOL, (request) => this.onSyncRequest(request), { requestBytesMax: this.config.syncBytesMax })
      this.handlersInstalled = true
    }
    this.offPeerEvent = this.transport.onPeerEvent((event) => {
      if (event.type === 'connect' && !this.joined) void this.join()
      if (event.type === 'disconnect') this.onDisconnect(event.peerId)
    })
    // A random phase, so nodes started together do not probe in lockstep.
    this.scheduleProbe(this.rng.int(Math.max(1, this.config.probeIntervalMs)))
    this.scheduleDeadProbe()
    this.schedulePushPull()
    this.scheduleReap()
    // Suspicions held from before a stop get their timers back.
    for (const member of this.table.values()) {
      if (member.suspicion === undefined) continue
      this.armSuspicion(member)
      if (member.suspicion.originator) this.scheduleReprobe(member)
    }
    this.startLife()
    this.announceMeta(this.config.aliveBroadcastCopies)
    void this.join()
  }

  /**
   * A new life's seq starts at the clock's whole seconds (Cassandra's gossip
   * generation): above every seq its previous life announced, which made
   * fewer metadata changes than it lived seconds. A peer's echo of our
   * current seq is then this life's own record, not an older one to jump
   * past; taking it for one re-announced our record to every member after
   * each full sync (~1,600 announcements per wave of recovery syncs at
   * 1,000 nodes). A peer holding a higher seq (a clock set back) still makes
   * us jump.
   */
  private startLife(): void {
    const lifeSeq = Math.max(1, Math.floor(this.now() / 1000))
    if (lifeSeq <= this.selfSeq) return
    this.selfSeq = lifeSeq
    this.staticSeq = lifeSeq
    this.selfRecordBytes = encodeWire(this.selfRecord()).byteLength
    this.deltaBytes = encodeWire(this.selfDelta()).byteLength
  }

  async stop(): Promise<void> {
    if (!this.running) return
    this.running = false
    for (const timer of this.timers) timer.cancel()
    this.timers.clear()
    this.unsubscribe?.()
    this.offPeerEvent?.()
    this.unsubscribe = undefined
    this.offPeerEvent = undefined
    this.due = []
    this.flushArmed = false
    this.pumpArmed = false
    this.metaTimer = undefined
    this.piggyback.clear()
    for (const member of this.table.values()) {
      if (member.suspicion !== undefined) member.suspicion = { ...member.suspicion, timer: undefined, reprobe: undefined }
    }
  }

  async leave(): Promise<void> {
    if (!this.running) return
    this.leaving = true
    this.aliveSorted = undefined
    const update: WireUpdate = { p: this.selfId, s: 'l', i: this.selfIncarnation, q: this.announcedSeq }
    this.piggyback.push(update, retransmitLimit(this.config, this.liveCount()))
    this.broadcast(update, this.config.leftBroadcastCopies)
    await this.clock.sleep(this.config.leftBroadcastCopies * this.config.broadcastCopyIntervalMs + 1)
    await this.stop()
  }

  // ------------------------------------------------------------------ queries

  members(): MemberView[] {
    // Sorted once per change of the table's keys, not per call: placement and
    // the simulator's checks ask for every member often, and at 1,000 members
    // a sort per call was most of what a membership event cost.
    this.sortedIds ??= [...this.table.keys(), this.selfId].sort(byPeerId)
    const views: MemberView[] = []
    for (const peerId of this.sortedIds) {
      const member = this.table.get(peerId)
      if (member !== undefined) views.push(this.view(member))
      else if (peerId === this.selfId) views.push(this.selfView())
    }
    return views
  }

  aliveCount(): number {
    return this.aliveIds.size + (this.leaving ? 0 : 1)
  }

  aliveMembers(): readonly string[] {
    this.aliveSorted ??= Object.freeze(this.aliveInOrder.copy(this.leaving ? undefined : this.selfId))
    return this.aliveSorted
  }

  member(peerId: string): MemberView | undefined {
    if (peerId === this.selfId) return this.selfView()
    const member = this.table.get(peerId)
    return member === undefined ? undefined : this.view(member)
  }

  onEvent(listener: (event: MembershipEvent) => void): () => void {
    const entry = (event: MembershipEvent): void => listener(event)
    // Copied on change, not per event: a listener added or removed during an emit takes effect from the next one.
    this.listenerList = [...this.listenerList, entry]
    return () => {
      this.listenerList = this.listenerList.filter((held) => held !== entry)
    }
  }

  counters(): MembershipCounters {
    return { ...this.count, dropped: { ...this.count.dropped } }
  }

  health(): MembershipHealth {
    return {
      awareness: this.awareness,
      probeTimeoutMs: this.probeTimeoutMs(),
      probeRoundMs: this.probeRoundBudgetMs(),
      roundTripMs: this.roundTrip.smoothed(),
      suspicionMinMs: suspicionMinMs(this.config, this.liveCount()) * this.suspicionScale(),
      lagMsMax: this.lagMsMax,
      liveMembers: this.liveCount(),
    }
  }

  setLocalMeta(meta: Partial<MemberMeta>): void {
    const next = normalizeMeta(meta, this.selfMeta, this.config.metaBytesMax)
    if (JSON.stringify(next) === JSON.stringify(this.selfMeta)) return
    const significant =
      JSON.stringify([next.capacity, next.labels, next.version, next.addresses]) !==
      JSON.stringify([this.selfMeta.capacity, this.selfMeta.labels, this.selfMeta.version, this.selfMeta.addresses])
    this.selfMeta = next
    this.selfSeq++
    if (significant) this.staticSeq = this.selfSeq
    this.selfRecordBytes = encodeWire(this.selfRecord()).byteLength
    this.deltaBytes = encodeWire(this.selfDelta()).byteLength
    if (this.running && !this.leaving) this.scheduleMetaAnnounce(significant)
  }

  // ------------------------------------------------------------------ helpers

  private now(): number {
    return this.clock.nowMs()
  }

  /** Members not dead or left, self included: the n of every formula. */
  private liveCount(): number {
    return this.aliveIds.size + this.suspectIds.size + 1
  }

  /** Probe timeouts and rounds: stretched by the local health score (Lifeguard's LHA-probe). */
  private scale(): number {
    return this.awareness + 1
  }

  /** The probe timeout on the network as measured (at least probeTimeoutMs), before awareness. */
  private adaptedProbeTimeoutMs(): number {
    return this.roundTrip.timeoutMs(this.config.probeTimeoutMs, this.config.probeTimeoutMaxMs)
  }

  /** Wait for a direct ack: the adapted timeout, stretched by local health. */
  private probeTimeoutMs(): number {
    return this.adaptedProbeTimeoutMs() * this.scale()
  }

  /** One probe round's budget: probeRoundMs stretched as the timeout was, so the indirect path keeps its two round trips. */
  private probeRoundBudgetMs(): number {
    const stretch = this.config.probeTimeoutMs > 0 ? this.adaptedProbeTimeoutMs() / this.config.probeTimeoutMs : 1
    return this.config.probeRoundMs * stretch * this.scale()
  }

  /**
   * Suspicion timeouts: stretched only while our own timers run late. A
   * score raised by missed nacks says our network path is lossy — probes get
   * longer to succeed — but the suspicion itself already waits for
   * independent confirmations (Lifeguard's LHA-suspicion); stretching it too
   * would only delay true deaths.
   */
  private suspicionScale(): number {
    return this.now() - this.lastLagAtMs < this.config.lagHoldMs ? this.awareness + 1 : 1
  }

  private bump(counter: Exclude<keyof MembershipCounters, 'dropped'>, delta = 1): void {
    this.count[counter] += delta
    this.metrics?.increment(counter as MembershipCounterName, delta)
  }

  private drop(reason: DropReason, delta = 1): void {
    this.count.dropped[reason] += delta
    this.metrics?.increment(`dropped.${reason}`, delta)
  }

  /** A message that failed to decode: counted, and its sender's gossip score lowered. */
  private dropFrom(sender: string, reason: DropReason): void {
    this.drop(reason)
    this.transport.penalize(sender, `membership:${reason}`)
  }

  private after(delayMs: number, fn: () => void): TimerHandle {
    const handle = this.clock.setTimer(Math.max(0, delayMs), () => {
      this.timers.delete(handle)
      if (this.running) fn()
    })
    this.timers.add(handle)
    return {
      cancel: () => {
        handle.cancel()
        this.timers.delete(handle)
      },
    }
  }

  /** A successful probe lowers the score, except within lagHoldMs of a late timer: a loaded node stays cautious. */
  private healthy(): void {
    if (this.awareness > 0 && this.now() - this.lastLagAtMs >= this.config.lagHoldMs) this.awareness--
  }

  private unhealthy(reason: string): void {
    if (this.awareness < this.config.awarenessMax - 1) {
      this.awareness++
      this.log.debug({ awareness: this.awareness, reason }, 'local health degraded')
    }
  }

  private measureLag(lagMs: number): void {
    if (lagMs > this.lagMsMax) this.lagMsMax = lagMs
    if (lagMs > this.config.lagThresholdMs) {
      this.lastLagAtMs = this.now()
      this.bump('lagEvents')
      this.unhealthy('timer lag')
    }
  }

  private selfRecord(): WireRecord {
    return { p: this.selfId, s: this.leaving ? 'l' : 'a', i: this.selfIncarnation, q: this.selfSeq, b: this.staticSeq, m: this.selfMeta }
  }

  private selfDelta(): TopicWire {
    return { v: 1, t: 'f', i: this.selfIncarnation, q: this.selfSeq, b: this.staticSeq, f: this.selfMeta.free, l: this.selfMeta.load }
  }

  private selfView(): MemberView {
    return viewOf(this.selfId, this.leaving ? 'left' : 'alive', this.selfIncarnation, this.selfSeq, this.selfMeta, this.now())
  }

  /** Shares the member's metadata, which is frozen (freezeMeta): a view costs one object, not a deep copy. */
  private view(member: Member): MemberView {
    return viewOf(member.peerId, member.state, member.incarnation, member.metaSeq, member.meta ?? EMPTY_META, member.lastSeenAtMs)
  }

  private emit(type: MembershipEventType, member: Member): void {
    const listeners = this.listenerList
    if (listeners.length === 0) return
    // The member's view is built when a listener reads it: in a partition every node sees half the others change state
    // (twice or three times each), and most listeners read the type and peerId alone.
    const event = new LazyMembershipEvent(type, member, this.now())
    for (const listener of listeners) {
      try {
        listener(event)
      } catch (err) {
        this.log.warn({ err: String(err) }, 'membership listener failed')
      }
    }
  }

  // ------------------------------------------------------------ member table

  private addMember(peerId: string, incarnation: number, seq: number): Member | undefined {
    if (this.table.size >= this.config.membersMax) {
      this.drop('tableFull')
      return undefined
    }
    const now = this.now()
    const member: Member = {
      peerId,
      state: 'alive',
      incarnation,
      seq,
      metaSeq: 0,
      staticSeq: 0,
      echoes: 0,
      meta: undefined,
      lastSeenAtMs: now,
      stateChangedAtMs: now,
      suspicion: undefined,
      metaPullAtMs: Number.NEGATIVE_INFINITY,
    }
    this.table.set(peerId, member)
    this.sortedIds = undefined
    this.aliveIds.add(peerId)
    this.aliveInOrder.add(peerId)
    this.aliveSorted = undefined
    this.insertIntoProbeOrder(peerId)
    this.bump('updatesApplied')
    this.emit('joined', member)
    if (seq > 0) this.wantMeta(member)
    return member
  }

  /**
   * Into the rest of this round-robin cycle at a random place (SWIM's
   * randomized round-robin), for a new member or one back from dead or left
   * (a reshuffle drops those; waiting for the next one would take n intervals).
   * A duplicate in the cycle only means one extra probe.
   */
  private insertIntoProbeOrder(peerId: string): void {
    const at = this.probeIndex + this.rng.int(this.probeOrder.length - this.probeIndex + 1)
    this.probeOrder.push(peerId)
    const last = this.probeOrder.length - 1
    ;[this.probeOrder[at], this.probeOrder[last]] = [this.probeOrder[last] as string, this.probeOrder[at] as string]
  }

  private transition(member: Member, state: MemberState, incarnation: number): void {
    const previous = member.state
    member.incarnation = incarnation
    if (state !== 'suspect') this.clearSuspicion(member)
    if (previous === state) return
    member.state = state
    member.stateChangedAtMs = this.now()
    // Each id is in the set of its state alone (left: none).
    if (previous === 'alive') {
      this.aliveIds.delete(member.peerId)
      this.aliveInOrder.delete(member.peerId)
    } else if (previous === 'suspect') this.suspectIds.delete(member.peerId)
    else if (previous === 'dead') this.deadIds.delete(member.peerId)
    this.aliveSorted = undefined
    if (state === 'alive') {
      this.aliveIds.add(member.peerId)
      this.aliveInOrder.add(member.peerId)
      if (previous === 'dead' || previous === 'left') this.insertIntoProbeOrder(member.peerId)
      if (previous === 'dead') {
        this.noteComeback()
        this.hurryDeadProbes()
      }
    } else if (state === 'suspect') this.suspectIds.add(member.peerId)
    else if (state === 'dead') {
      this.deadIds.add(member.peerId)
      if (previous === 'alive' || previous === 'suspect') this.noteDeath()
    }
    this.emit(state === 'alive' ? 'alive' : state, member)
  }

  private clearSuspicion(member: Member): void {
    member.suspicion?.timer?.cancel()
    member.suspicion?.reprobe?.cancel()
    member.suspicion = undefined
  }

  private isCurrent(update: WireUpdate): boolean {
    if (update.p === this.selfId) {
      return update.i === this.selfIncarnation && (this.leaving ? update.s === 'l' : update.s === 'a')
    }
    const member = this.table.get(update.p)
    return member !== undefined && member.incarnation === update.i && STATE_TO_WIRE[member.state] === update.s
  }

  private updateFor(member: Member, by?: string): WireUpdate {
    const update: WireUpdate = { p: member.peerId, s: STATE_TO_WIRE[member.state], i: member.incarnation, q: member.seq }
    if (by !== undefined) update.b = by
    return update
  }

  private spread(update: WireUpdate): void {
    this.bump('updatesApplied')
    if (!this.piggyback.push(update, retransmitLimit(this.config, this.liveCount()))) this.bump('piggybackEvicted')
  }

  /**
   * A message the peer itself sent us (authenticated by the transport), with
   * its own incarnation and seq: proof of life. Answers the member, or
   * undefined when it could not be added.
   */
  private observeDirect(peerId: string, incarnation: number, seq: number): Member | undefined {
    if (peerId === this.selfId) {
      this.drop('selfLoop')
      return undefined
    }
    let member = this.table.get(peerId)
    if (member === undefined) {
      member = this.addMember(peerId, incarnation, seq)
      if (member !== undefined) this.spread(this.updateFor(member))
      return member
    }
    member.lastSeenAtMs = this.now()
    if (incarnation > member.incarnation) {
      // Refuted, or (from dead or left) back with a higher incarnation.
      this.transition(member, 'alive', incarnation)
      this.spread(this.updateFor(member))
    } else if (member.state === 'suspect' && member.suspicion !== undefined && incarnation === member.incarnation) {
      // Alive but not refuted yet (the refutation is on its way): hold off the verdict.
      member.suspicion.startedAtMs = this.now()
      this.armSuspicion(member)
    }
    if (seq > member.seq) {
      member.seq = seq
      this.wantMeta(member)
    }
    return member
  }

  /** Applies one update heard from `sender` (gossip, broadcast or sync); true when it changed our view. */
  private applyUpdate(update: WireUpdate, sender: string, via: 'gossip' | 'sync'): boolean {
    if (update.p === this.selfId) {
      this.onSelfUpdate(update)
      return false
    }
    const member = this.table.get(update.p)
    if (member === undefined) {
      if (update.s === 'a' || (via === 'sync' && update.s === 's')) {
        const added = this.addMember(update.p, update.i, update.q)
        if (added !== undefined && via === 'gossip') this.spread(this.updateFor(added))
        return added !== undefined
      }
      this.drop('unknownSubject')
      return false
    }
    if (update.q > member.seq) {
      member.seq = update.q
      this.wantMeta(member)
    }
    const by = update.b ?? sender
    switch (update.s) {
      case 'a':
        if (update.i > member.incarnation) {
          this.transition(member, 'alive', update.i)
          this.spread(this.updateFor(member))
          return true
        }
        break
      case 's':
        if (member.state === 'alive' ? update.i >= member.incarnation : update.i > member.incarnation) {
          this.startSuspicion(member, update.i, by, false)
          this.spread(this.updateFor(member, by))
          if (via === 'gossip' && this.rng.next() < verifierProbability(this.config, this.liveCount())) void this.probeRound(member.peerId, 'verify')
          return true
        }
        if (member.state === 'suspect' && update.i === member.incarnation && member.suspicion !== undefined) {
          if (member.suspicion.confirmers.has(by)) break
          member.suspicion.confirmers.add(by)
          this.armSuspicion(member)
          this.spread(this.updateFor(member, by))
          return true
        }
        break
      case 'd':
        if (via === 'sync' && (member.state === 'alive' || member.state === 'suspect')) {
          // Old news from a full state: give the member a chance to refute (memberlist does the same).
          if (member.state === 'alive' && update.i >= member.incarnation) {
            this.startSuspicion(member, update.i, by, false)
            return true
          }
          break
        }
        if (member.state === 'left' ? update.i > member.incarnation : member.state === 'dead' ? update.i > member.incarnation : update.i >= member.incarnation) {
          const wasDead = member.state === 'dead'
          this.transition(member, 'dead', update.i)
          if (!wasDead) this.spread(this.updateFor(member, by))
          return true
        }
        if (member.state === 'dead' && update.i === member.incarnation && by !== this.selfId) member.echoes++
        break
      case 'l':
        if (member.state === 'left' ? update.i > member.incarnation : update.i >= member.incarnation) {
          this.transition(member, 'left', update.i)
          this.spread(this.updateFor(member))
          return true
        }
        break
    }
    // News we already hold (it came by broadcast and by piggyback) is normal; older news is a replay or a laggard.
    if (update.i === member.incarnation && (STATE_TO_WIRE[member.state] === update.s || (update.s === 's' && member.state === 'suspect'))) this.bump('updatesDuplicate')
    else this.drop('stale')
    return false
  }

  /**
   * Something said about this node. Refute anything but alive at >= our
   * incarnation. `meta`: the metadata the peer holds at `update.q` (a full
   * sync's record), which tells an older life's record at our own seq from
   * the echo of ours.
   */
  private onSelfUpdate(update: WireUpdate, meta?: MemberMeta): void {
    if (this.leaving) return
    if (update.q > this.selfSeq || (update.q === this.selfSeq && meta !== undefined && !metaEqual(meta, this.selfMeta))) {
      // A peer holds a newer record of us than we do (a previous life's): jump past it, with a
      // whole record, since the older life's static part may carry the very base seq our deltas name.
      this.selfSeq = update.q + 1
      this.staticSeq = this.selfSeq
      this.selfRecordBytes = encodeWire(this.selfRecord()).byteLength
      this.scheduleMetaAnnounce(true)
    }
    if (update.s === 'a') {
      if (update.i > this.selfIncarnation) this.selfIncarnation = update.i
      return
    }
    if (update.i < this.selfIncarnation) {
      this.drop('stale')
      return
    }
    this.selfIncarnation = update.i + 1
    this.bump('refutations')
    if (update.s !== 'l') this.unhealthy('refuting a suspicion of self')
    const alive: WireUpdate = { p: this.selfId, s: 'a', i: this.selfIncarnation, q: this.announcedSeq }
    this.broadcast(alive, this.config.aliveBroadcastCopies)
    this.spread(alive)
    if (update.b !== undefined && update.b !== this.selfId) void this.notice(update.b, [alive], 2)
    // Declared dead: we were cut off for longer than a suspicion, and news that spread meanwhile is not repeated
    // (a newcomer's join). One full sync fetches it: a node isolated alone buries and sees come back too few members
    // for the mass triggers (at 1,000 members, the two dozen it probed), and a newcomer may not probe it for minutes.
    if (update.s === 'd') this.recoverySync()
  }

  private applyMeta(record: WireRecord): boolean {
    const member = this.table.get(record.p)
    if (member === undefined || record.m === undefined || record.q <= member.metaSeq) return false
    member.meta = shareMeta(record.p, record.q, record.m)
    member.metaSeq = record.q
    member.staticSeq = record.b ?? record.q
    if (record.q > member.seq) member.seq = record.q
    this.metaWanted.delete(member.peerId)
    return true
  }

  // --------------------------------------------------------------- suspicion

  private startSuspicion(member: Member, incarnation: number, by: string, originator: boolean): void {
    this.transition(member, 'suspect', incarnation)
    this.clearSuspicion(member)
    member.suspicion = { incarnation, startedAtMs: this.now(), confirmers: new Set([by]), originator, timer: undefined, timerAtMs: Number.NaN, reprobe: undefined }
    this.bump('suspicionsStarted')
    this.armSuspicion(member)
    if (originator) this.scheduleReprobe(member)
  }

  private armSuspicion(member: Member): void {
    const suspicion = member.suspicion
    if (suspicion === undefined || !this.running) return
    const n = this.liveCount()
    const scale = this.suspicionScale()
    const timeoutMs = suspicion.originator
      ? suspicionTimeoutMs(this.config, n, suspicion.confirmers.size - 1) * scale
      : suspicionMaxMs(this.config, n) * scale + this.config.suspicionObserverGraceMs
    const atMs = suspicion.startedAtMs + timeoutMs
    if (suspicion.timer !== undefined && suspicion.timerAtMs === atMs) return
    suspicion.timer?.cancel()
    const incarnation = suspicion.incarnation
    suspicion.timerAtMs = atMs
    suspicion.timer = this.after(atMs - this.now(), () => {
      suspicion.timer = undefined
      this.onSuspicionExpired(member.peerId, incarnation)
    })
  }

  private scheduleReprobe(member: Member): void {
    const suspicion = member.suspicion
    if (suspicion === undefined) return
    suspicion.reprobe?.cancel()
    suspicion.reprobe = this.after(this.config.probeIntervalMs * this.scale(), () => {
      const current = this.table.get(member.peerId)
      if (current?.suspicion !== suspicion || current.state !== 'suspect') return
      // The ping carries "you are suspect": a live target refutes before it acks.
      if (!this.probing.has(member.peerId)) void this.ping(member.peerId, this.probeTimeoutMs(), undefined, true)
      this.scheduleReprobe(current)
    })
  }

  private onSuspicionExpired(peerId: string, incarnation: number): void {
    const member = this.table.get(peerId)
    if (member === undefined || member.state !== 'suspect' || member.incarnation !== incarnation || member.suspicion === undefined) return
    if (member.suspicion.originator) this.declareDead(member)
    else void this.probeRound(peerId, 'final')
  }

  private declareDead(member: Member): void {
    this.transition(member, 'dead', member.incarnation)
    this.bump('deathsDeclared')
    member.echoes = 0
    const update = this.updateFor(member, this.selfId)
    this.broadcast(update, this.config.deadBroadcastCopies, member)
    this.spread(update)
  }

  // ----------------------------------------------------------------- probing

  private scheduleProbe(delayMs: number): void {
    const expectedAtMs = this.now() + delayMs
    this.after(delayMs, () => {
      this.measureLag(this.now() - expectedAtMs)
      this.scheduleProbe(this.config.probeIntervalMs)
      if (this.leaving) return
      const connected = this.config.neighbours > 0 ? new Set(this.transport.connectedPeers()) : undefined
      if (connected !== undefined) this.keepNeighbours(connected)
      const target = this.nextProbeTarget(connected)
      if (target !== undefined) void this.probeRound(target, 'regular')
    })
  }

  /**
   * `connected` (neighbours > 0): only members this node is connected to are
   * probed in the round-robin; the others are skipped in this cycle. Suspects
   * are re-probed by their own timers (scheduleReprobe), and a member that
   * disconnects is probed at once (onDisconnect).
   */
  private nextProbeTarget(connected?: ReadonlySet<string>): string | undefined {
    for (let scanned = 0; scanned <= this.probeOrder.length; scanned++) {
      if (this.probeIndex >= this.probeOrder.length) {
        this.probeOrder = shuffle([...this.aliveIds.values(), ...this.suspectIds.values()], this.rng)
        this.probeIndex = 0
        if (this.probeOrder.length === 0) return undefined
      }
      const peerId = this.probeOrder[this.probeIndex++] as string
      const member = this.table.get(peerId)
      if (connected !== undefined && !connected.has(peerId)) continue
      if (member !== undefined && (member.state === 'alive' || member.state === 'suspect') && !this.probing.has(peerId)) return peerId
    }
    return undefined
  }

  /**
   * One SWIM probe round; true when the target answered by some path. A
   * direct ping first; if it fails, until the round's deadline: `indirectChecks`
   * helpers ping the target for us (each retrying within its budget) while we
   * keep retrying directly. A lost leg thus rarely decides anything.
   */
  private async probeRound(target: string, kind: ProbeKind): Promise<boolean> {
    if (this.probing.has(target) || !this.running) return true
    const member = this.table.get(target)
    if (member === undefined) return true
    const incarnationAtStart = member.incarnation
    const roundStartMs = this.now()
    this.probing.add(target)
    try {
      const probeTimeoutMs = this.probeTimeoutMs()
      const deadlineMs = this.now() + this.probeRoundBudgetMs()
      // Beyond neighboursMax connections only a member we must watch is dialled (see request()).
      const mayDial = kind === 'regular'
      const first = await this.ping(target, probeTimeoutMs, undefined, mayDial)
      if (first.ack !== undefined) {
        this.healthy()
        return true
      }
      if (!this.running) return true
      // Not reachable without a connection we may not open: no evidence. A verifier just stands
      // aside; a final check asks helpers, and then only a helper's nack counts against the target.
      const unreached = first.unaddressable === true
      if (unreached && kind !== 'final') return true
      const remainingMs = deadlineMs - this.now()
      const helpers = remainingMs > 0 ? this.pickHelpers(target) : []
      let nacks = 0
      let acked = false
      // A refused direct ping plus a helper's nack is conclusive: the round ends there, without
      // waiting out helpers whose answers were lost (a refusal is "connection refused", not silence).
      let settle: (() => void) | undefined
      const conclusive = new Promise<void>((resolve) => (settle = resolve))
      let refused = first.refused
      const onRefused = (): void => {
        refused = true
        if (nacks > 0) settle?.()
      }
      const attempts: Promise<boolean>[] = refused || unreached ? [] : [this.retryPing(target, probeTimeoutMs, deadlineMs, () => acked, undefined, onRefused, mayDial).then((result) => result === 'ack')]
      for (const helper of helpers) {
        attempts.push(
          this.pingReq(helper, target, remainingMs).then((answer) => {
            if (answer === 'nack') {
              nacks++
              if (refused) settle?.()
            }
            return answer === 'ack'
          }),
        )
      }
      for (const attempt of attempts) void attempt.then((ok) => (acked ||= ok))
      await Promise.race([Promise.all(attempts), conclusive])
      if (!this.running) return true
      if (acked) {
        this.healthy()
        return true
      }
      if (unreached && nacks === 0) return true
      // Silence while our own timers ran late is no evidence against the target (Lifeguard's
      // point, taken strictly): the ack may have waited on us. A refusal still counts.
      if (!refused && this.lastLagAtMs >= roundStartMs) {
        this.bump('probeRoundsInconclusive')
        this.unhealthy('lag during a probe round')
        return true
      }
      this.bump('probeRoundsFailed')
      // Lifeguard: helpers that did not even nack suggest the problem is here (not when we ended early).
      if (helpers.length > 0 && nacks === 0) this.unhealthy('missed nacks')
      this.onProbeFailed(target, kind, incarnationAtStart)
      return false
    } finally {
      this.probing.delete(target)
    }
  }

  /**
   * Pings until an ack, a refusal (the peer does not run), `stop()`, or too
   * little time left before `deadlineMs`; attempts start at least `timeoutMs`
   * apart. Retries beat loss; a refusal is an answer, not a loss.
   */
  private async retryPing(
    target: string,
    timeoutMs: number,
    deadlineMs: number,
    stop: () => boolean,
    view?: { ts?: WireState; ti?: number },
    onRefused?: () => void,
    mayDial = false,
  ): Promise<'ack' | 'none' | 'unreached'> {
    for (;;) {
      const startedAtMs = this.now()
      const leftMs = deadlineMs - startedAtMs
      if (leftMs < timeoutMs / 2 || stop() || !this.running) return 'none'
      const result = await this.ping(target, Math.min(timeoutMs, leftMs), view, mayDial)
      if (result.ack !== undefined) return 'ack'
      if (result.refused) {
        onRefused?.()
        return 'none'
      }
      // Not reachable without a connection we may not open: retrying would learn nothing (and would not wait).
      if (result.unaddressable === true) return 'unreached'
      const waitMs = startedAtMs + timeoutMs - this.now()
      if (waitMs > 0 && deadlineMs - this.now() > waitMs + timeoutMs / 2) await this.clock.sleep(waitMs)
    }
  }

  private onProbeFailed(target: string, kind: ProbeKind, incarnationAtStart: number): void {
    const member = this.table.get(target)
    if (member === undefined || member.incarnation > incarnationAtStart || this.leaving) return
    if (member.state === 'alive') {
      this.startSuspicion(member, member.incarnation, this.selfId, true)
      const update = this.updateFor(member, this.selfId)
      this.broadcast(update, this.config.suspectBroadcastCopies)
      this.spread(update)
      return
    }
    if (member.state !== 'suspect' || member.suspicion === undefined) return
    if (!member.suspicion.confirmers.has(this.selfId) || !member.suspicion.originator) {
      // Our own probe failed too: an independent confirmation, and the right to declare.
      // After a final check the clock restarts: the suspect gets a full timeout to refute us.
      if (kind === 'final') member.suspicion.startedAtMs = this.now()
      const suspectors = [...member.suspicion.confirmers].filter((peerId) => peerId !== this.selfId)
      member.suspicion.confirmers.add(this.selfId)
      member.suspicion.originator = true
      this.armSuspicion(member)
      this.scheduleReprobe(member)
      const update = this.updateFor(member, this.selfId)
      // Only suspectors time a suspicion by its confirmations: tell them directly rather than
      // broadcast to everyone (piggyback still spreads it).
      for (const peerId of suspectors.slice(0, CONFIRMATION_NOTICES_MAX)) void this.notice(peerId, [update], 2)
      this.spread(update)
    }
  }

  /** Our view of a peer when it is not plainly alive, so the peer can refute at once. */
  private viewOf(peerId: string): { ts?: WireState; ti?: number } {
    const member = this.table.get(peerId)
    if (member === undefined || member.state === 'alive') return {}
    return { ts: STATE_TO_WIRE[member.state], ti: member.incarnation }
  }

  /** Updates to piggyback on a message to `peerId`: first what it should refute, then the queue. */
  private piggybackFor(peerId: string): WireUpdate[] {
    const out: WireUpdate[] = []
    const member = this.table.get(peerId)
    if (member !== undefined && member.state !== 'alive') out.push(this.updateFor(member))
    if (this.leaving) out.push({ p: this.selfId, s: 'l', i: this.selfIncarnation, q: this.announcedSeq })
    const room = this.config.piggybackEntriesMax - out.length
    if (room > 0) out.push(...this.piggyback.take(room, (update) => !this.isCurrent(update) && update.p !== this.selfId))
    return out
  }

  /**
   * A direct ping, answered within `timeoutMs` or not at all as far as the
   * probe is concerned. The request itself stays open up to the timeout's
   * ceiling: an ack that comes later is still applied (proof of life, its
   * piggyback) and measured, or a network slower than the timeout would
   * never be seen to be slow (round-trip.ts).
   */
  private async ping(target: string, timeoutMs: number, view?: { ts?: WireState; ti?: number }, mayDial = false): Promise<PingResult> {
    const request: ProbeRequestWire = { v: 1, t: 'ping', i: this.selfIncarnation, q: this.announcedSeq, ...(view ?? this.viewOf(target)), u: this.piggybackFor(target) }
    this.bump('pingsOut')
    const sentAtMs = this.now()
    let late = false
    const answered = this.request(target, PROBE_PROTOCOL, request, Math.max(timeoutMs, this.config.probeTimeoutMaxMs), this.config.probeBytesMax, mayDial).then(
      (response) => this.onPingAnswer(target, sentAtMs, response, late),
    )
    // After the probe gave up, nobody awaits the answer: a throw there must not go unhandled.
    answered.catch((err: unknown) => this.log.warn({ err: String(err) }, 'late ping answer failed'))
    let gaveUp: TimerHandle | undefined
    const timedOut = new Promise<undefined>(
      (resolve) =>
        (gaveUp = this.after(timeoutMs, () => {
          late = true
          resolve(undefined)
        })),
    )
    const result = await Promise.race([answered, timedOut])
    gaveUp?.cancel()
    if (result?.ack === undefined) this.bump('pingsFailed')
    return result ?? { ack: undefined, refused: false }
  }

  private onPingAnswer(target: string, sentAtMs: number, response: RequestResult, late: boolean): PingResult {
    const ack = response.data === undefined ? undefined : this.decodeResponse(response.data)
    if (ack === undefined || ack.t !== 'ack') return { ack: undefined, refused: response.refused, unaddressable: response.data === undefined && response.unaddressable === true }
    // A dial's handshake is not the network's round trip.
    if (response.data !== undefined && response.dialled !== true) this.roundTrip.sample(this.now() - sentAtMs)
    this.bump(late ? 'acksLate' : 'acksIn')
    if (this.running) {
      this.observeDirect(target, ack.i, ack.q)
      this.applyUpdates(ack.u, target)
    }
    return { ack: { i: ack.i, q: ack.q }, refused: false }
  }

  private async pingReq(helper: string, target: string, timeoutMs: number): Promise<'ack' | 'nack' | 'none'> {
    const request: ProbeRequestWire = {
      v: 1,
      t: 'preq',
      i: this.selfIncarnation,
      q: this.announcedSeq,
      tg: target,
      w: Math.max(1, Math.floor(timeoutMs)),
      ...this.viewOf(target),
      u: this.piggybackFor(helper),
    }
    this.bump('pingReqsOut')
    const response = await this.request(helper, PROBE_PROTOCOL, request, timeoutMs, this.config.probeBytesMax)
    const answer = response.data === undefined ? undefined : this.decodeResponse(response.data)
    if (answer === undefined || answer.t !== 'pres' || !this.running) return 'none'
    this.observeDirect(helper, answer.i, answer.q)
    this.applyUpdates(answer.u, helper)
    if (!answer.ok) {
      this.bump('nacksIn')
      return 'nack'
    }
    if (answer.ti !== undefined) {
      // The target answered the helper: its own claim, relayed.
      const member = this.table.get(target)
      if (member !== undefined) {
        if (answer.ti > member.incarnation) this.applyUpdate({ p: target, s: 'a', i: answer.ti, q: answer.tq ?? 0 }, helper, 'gossip')
        else if (member.state === 'suspect' && member.suspicion !== undefined && answer.ti === member.incarnation) {
          member.suspicion.startedAtMs = this.now()
          this.armSuspicion(member)
        }
      }
    }
    return 'ack'
  }

  /** Delivers updates directly; up to `attempts` tries while the peer stays silent (not when it refuses). */
  private async notice(peerId: string, updates: WireUpdate[], attempts = 1): Promise<void> {
    for (let attempt = 0; attempt < attempts && this.running; attempt++) {
      const request: ProbeRequestWire = { v: 1, t: 'note', i: this.selfIncarnation, q: this.announcedSeq, u: updates }
      this.bump('noticesOut')
      const response = await this.request(peerId, PROBE_PROTOCOL, request, this.config.noticeTimeoutMs, this.config.probeBytesMax)
      const ack = response.data === undefined ? undefined : this.decodeResponse(response.data)
      if (ack?.t === 'ack' && this.running) {
        this.observeDirect(peerId, ack.i, ack.q)
        this.applyUpdates(ack.u, peerId)
        return
      }
      if (response.refused) return
    }
  }

  private applyUpdates(updates: readonly WireUpdate[], sender: string): void {
    for (const update of updates) this.applyUpdate(update, sender, 'gossip')
  }

  private decodeResponse(data: Uint8Array): ProbeResponseWire | undefined {
    const decoded = decodeWire(ProbeResponseSchema, data, this.config.probeBytesMax)
    if (!decoded.ok) {
      this.drop(decoded.reason)
      return undefined
    }
    return decoded.value
  }

  /**
   * neighbours > 0: a request to a member we are not connected to first dials
   * it (reach). Beyond neighboursMax connections only `mayDial` requests do —
   * probes of a member whose connection just closed or that refused us, and a
   * suspector's re-probes of its suspect, without which a crash could go
   * unnoticed; verifications, final checks, helpers' pings, notices, pulls
   * and syncs then go without (no evidence either way). Otherwise every
   * suspicion would connect its suspect to every member that checks it, and
   * connections grew back towards n − 1 per node.
   */
  private async request(peerId: string, protocol: string, message: unknown, timeoutMs: number, responseBytesMax: number, mayDial = false): Promise<RequestResult> {
    const data = message instanceof Uint8Array ? message : encodeWire(message)
    let dialled = false
    const connected = this.config.neighbours > 0 && peerId !== this.selfId ? this.transport.connectedPeers() : undefined
    if (connected !== undefined && !connected.includes(peerId)) {
      if (!mayDial && connected.length >= this.config.neighboursMax) {
        this.bump('requestsUnaddressable')
        return { data: undefined, refused: false, unaddressable: true }
      }
      const startedAtMs = this.now()
      dialled = true
      const reached = await this.reach(peerId, timeoutMs)
      if (reached === 'refused') {
        this.onRefused(peerId)
        return { data: undefined, refused: true }
      }
      if (reached === 'unaddressable') return { data: undefined, refused: false, unaddressable: true }
      if (reached !== 'connected' || !this.running) return { data: undefined, refused: false }
      timeoutMs -= this.now() - startedAtMs
      if (timeoutMs < 1) return { data: undefined, refused: false }
    }
    this.bump('gossipBytesOut', data.byteLength)
    try {
      const response = await this.transport.request(peerId, protocol, data, { timeoutMs: Math.max(1, Math.round(timeoutMs)), responseBytesMax })
      this.bump('gossipBytesIn', response.byteLength)
      return { data: response, refused: false, dialled }
    } catch (err) {
      const refused = err instanceof TransportError && (err.code === 'UNREACHABLE' || err.code === 'NO_HANDLER')
      if (refused) this.onRefused(peerId)
      return { data: undefined, refused }
    }
  }

  // -------------------------------------------------------------- neighbours

  /** A dialable address of a member, from its record (neighbours > 0 only). */
  private addressOf(peerId: string): string | undefined {
    const address = this.table.get(peerId)?.meta?.addresses[0]
    if (address === undefined) return undefined
    return address.includes('/p2p/') ? address : `${address}/p2p/${peerId}`
  }

  /**
   * Connects to a member we are not connected to, by its advertised address,
   * within `timeoutMs`. The dial itself is not cut short by our deadline: it
   * runs on under the transport's own dial timeout, so a handshake slowed by
   * a busy CPU still completes and the next request finds the connection
   * (aborting it at the probe timeout made every later attempt start over).
   * Without an address we do not ask the transport at all (libp2p would fail
   * with "no valid addresses", or walk the DHT), and that is no evidence
   * against the member: `unaddressable`, not `refused`.
   */
  private async reach(peerId: string, timeoutMs: number): Promise<'connected' | 'refused' | 'timeout' | 'unaddressable'> {
    let dial = this.dialing.get(peerId)
    if (dial === undefined) {
      const address = this.addressOf(peerId)
      if (address === undefined) {
        this.bump('requestsUnaddressable')
        return 'unaddressable'
      }
      dial = this.dial(peerId, address)
    }
    let timer: TimerHandle | undefined
    const expired = new Promise<'timeout'>((resolve) => {
      timer = this.clock.setTimer(Math.max(1, Math.round(timeoutMs)), () => resolve('timeout'))
    })
    try {
      return await Promise.race([dial.then((outcome) => (outcome === 'ok' ? ('connected' as const) : outcome)), expired])
    } finally {
      timer?.cancel()
    }
  }

  /** 'refused': the host said nobody listens there (TransportError UNREACHABLE); 'timeout': the dial did not finish (silence). */
  private dial(peerId: string, address: string): Promise<'ok' | 'refused' | 'timeout'> {
    this.bump('dials')
    const dial = this.transport.dial(address).then(
      () => 'ok' as const,
      (err: unknown) => {
        this.bump('dialsFailed')
        this.lastDialFailedAtMs = this.now()
        this.log.debug({ peer: peerId, address, err: String(err) }, 'dial of a member failed')
        return err instanceof TransportError && err.code === 'UNREACHABLE' ? ('refused' as const) : ('timeout' as const)
      },
    )
    this.dialing.set(peerId, dial)
    void dial.finally(() => this.dialing.delete(peerId))
    return dial
  }

  /**
   * neighbours > 0, every probe tick: while fewer than k live members are
   * connected, dial one more (a random alive member with a known address;
   * one dial at a time, none for neighbourDialRetryMs after a failure).
   * Connections are symmetric, so each node also gains the neighbours that
   * dial it: ~2k on average. A node whose health score is raised (its timers
   * run late, its probes fail) adds no connections unless it has none: a
   * handshake is the most expensive thing it could do, and dials that time
   * out on a saturated CPU are work thrown away (on 2 cores, 100 nodes
   * dialling freely never finished a handshake).
   */
  private keepNeighbours(connected: ReadonlySet<string>): void {
    if (this.dialing.size > 0 || this.now() - this.lastDialFailedAtMs < this.config.neighbourDialRetryMs) return
    let live = 0
    for (const peerId of connected) if (this.aliveIds.has(peerId) || this.suspectIds.has(peerId)) live++
    if (live >= this.config.neighbours || (live > 0 && this.awareness > 0)) return
    const candidates = this.aliveIds.sample(this.rng, 4, connected).filter((peerId) => this.addressOf(peerId) !== undefined)
    const peerId = candidates[0]
    if (peerId !== undefined) void this.dial(peerId, this.addressOf(peerId) as string)
  }

  /** Helpers for an indirect probe: with neighbours > 0, connected ones first (no handshake on the critical path). */
  private pickHelpers(target: string): string[] {
    const exclude = new Set([target, this.selfId])
    if (this.config.neighbours <= 0) return this.aliveIds.sample(this.rng, this.config.indirectChecks, exclude)
    const connected = shuffle(this.transport.connectedPeers().filter((peerId) => !exclude.has(peerId) && this.aliveIds.has(peerId)), this.rng)
    const helpers = connected.slice(0, this.config.indirectChecks)
    if (helpers.length < this.config.indirectChecks) {
      for (const peerId of helpers) exclude.add(peerId)
      helpers.push(...this.aliveIds.sample(this.rng, this.config.indirectChecks - helpers.length, exclude))
    }
    return helpers
  }

  /** A random live member to sync with: with neighbours > 0, a connected one when there is one. */
  private syncPartner(): string | undefined {
    if (this.config.neighbours > 0) {
      const connected = this.transport.connectedPeers().filter((peerId) => this.aliveIds.has(peerId))
      if (connected.length > 0) return connected[this.rng.int(connected.length)]
    }
    return this.aliveIds.random(this.rng)
  }

  /**
   * neighbours > 0: a live member's connection closed. A crashed process's
   * connections reset, and the members connected to it are the ones that
   * probe it: probe it now (redialling its address) rather than never.
   */
  private onDisconnect(peerId: string): void {
    if (this.config.neighbours <= 0 || !this.running || this.leaving) return
    const member = this.table.get(peerId)
    if (member === undefined || member.state !== 'alive' || this.probing.has(peerId)) return
    this.bump('disconnectProbes')
    void this.probeRound(peerId, 'regular')
  }

  /**
   * A member we think alive refused a request (picked as a helper, sent a
   * notice, a pull, a sync): free evidence that it may have crashed. Probe it
   * now rather than wait for its turn in the round-robin.
   */
  private onRefused(peerId: string): void {
    const member = this.table.get(peerId)
    if (member === undefined || member.state !== 'alive' || this.probing.has(peerId) || this.leaving || !this.running) return
    this.bump('refusalProbes')
    void this.probeRound(peerId, 'regular')
  }

  // ---------------------------------------------------------- inbound: probe

  private reply(value: ProbeResponseWire): Uint8Array {
    const bytes = encodeWire(value)
    this.bump('gossipBytesOut', bytes.byteLength)
    return bytes
  }

  private ack(to: string): Uint8Array {
    this.bump('acksOut')
    return this.reply({ v: 1, t: 'ack', i: this.selfIncarnation, q: this.announcedSeq, u: this.piggybackFor(to) })
  }

  private async onProbeRequest(request: RequestContext): Promise<Uint8Array> {
    this.bump('gossipBytesIn', request.data.byteLength)
    if (!this.running) {
      this.drop('stopped')
      return this.reply({ v: 1, t: 'err', c: 'stopped' })
    }
    if (request.from === this.selfId) {
      this.drop('selfLoop')
      return this.reply({ v: 1, t: 'err', c: 'self' })
    }
    const decoded = decodeWire(ProbeRequestSchema, request.data, this.config.probeBytesMax)
    if (!decoded.ok) {
      this.dropFrom(request.from, decoded.reason)
      return this.reply({ v: 1, t: 'err', c: decoded.reason })
    }
    const message = decoded.value
    const from = request.from
    if (this.observeDirect(from, message.i, message.q) === undefined) return this.reply({ v: 1, t: 'err', c: 'refused' })
    switch (message.t) {
      case 'ping': {
        this.bump('pingsIn')
        if (message.ts !== undefined && message.ti !== undefined) this.onSelfUpdate({ p: this.selfId, s: message.ts, i: message.ti, q: 0, b: from })
        this.applyUpdates(message.u, from)
        return this.ack(from)
      }
      case 'note': {
        this.bump('noticesIn')
        this.applyUpdates(message.u, from)
        return this.ack(from)
      }
      case 'metaq': {
        this.bump('metaPullsIn')
        return this.reply({ v: 1, t: 'meta', r: this.selfRecord() })
      }
      case 'preq': {
        this.bump('pingReqsIn')
        this.applyUpdates(message.u, from)
        if (message.tg === this.selfId || message.tg === from) return this.reply({ v: 1, t: 'pres', ok: false, i: this.selfIncarnation, q: this.announcedSeq, u: [] })
        const view = message.ts !== undefined && message.ti !== undefined ? { ts: message.ts, ti: message.ti } : undefined
        // 70 % of the requester's wait is ours to retry in; the rest carries our answer back.
        const deadlineMs = this.now() + Math.max(1, 0.7 * (message.w ?? this.config.probeRoundMs))
        const result = await this.retryPing(message.tg, this.probeTimeoutMs(), deadlineMs, () => false, view)
        if (!this.running) return this.reply({ v: 1, t: 'err', c: 'stopped' })
        // We could not even try (no connection we may open): say nothing rather than nack.
        if (result === 'unreached') return this.reply({ v: 1, t: 'err', c: 'unreached' })
        const acked = result === 'ack'
        const answer: ProbeResponseWire = { v: 1, t: 'pres', ok: acked, i: this.selfIncarnation, q: this.announcedSeq, u: this.piggybackFor(from) }
        const target = this.table.get(message.tg)
        if (acked && target !== undefined) {
          answer.ti = target.incarnation
          answer.tq = target.seq
        }
        return this.reply(answer)
      }
    }
  }

  // ---------------------------------------------------------- inbound: topic

  private onTopic(message: TopicMessage): void {
    if (!this.running) return
    this.bump('broadcastsIn')
    this.bump('gossipBytesIn', message.data.byteLength)
    if (message.from === this.selfId) {
      this.drop('selfLoop')
      return
    }
    const decoded = decodeTopicMessage(message.data, this.config.broadcastBytesMax)
    if (!decoded.ok) {
      this.dropFrom(message.from, decoded.reason)
      return
    }
    const from = message.from
    const wire = decoded.value
    if (wire.t === 'f') {
      const member = this.observeDirect(from, wire.i, wire.q)
      if (member === undefined) return
      if (member.meta !== undefined && member.staticSeq === wire.b && wire.q > member.metaSeq) {
        member.meta = shareMeta(from, wire.q, { ...member.meta, free: wire.f, load: wire.l })
        member.metaSeq = wire.q
        this.metaWanted.delete(from)
      } else if (wire.q < member.metaSeq) {
        this.drop('stale')
      } else if (wire.q === member.metaSeq) {
        this.bump('updatesDuplicate')
      } else {
        this.wantMeta(member, true) // our static part is older than the delta's base
      }
      return
    }
    if (wire.t === 'm') {
      if (wire.r.p !== from) {
        this.drop('notSelf')
        return
      }
      const member = this.observeDirect(from, wire.r.i, wire.r.q)
      if (member === undefined) return
      if (wire.r.s === 'l') this.applyUpdate({ p: from, s: 'l', i: wire.r.i, q: wire.r.q }, from, 'gossip')
      if (!this.applyMeta(wire.r)) {
        if (wire.r.q === member.metaSeq) this.bump('updatesDuplicate')
        else this.drop('stale')
      }
      return
    }
    const senderKnown = this.table.has(from)
    for (const update of wire.u) {
      if (update.p === from) {
        if (update.s === 'a') {
          const member = this.table.get(from)
          const before = member?.incarnation
          const after = this.observeDirect(from, update.i, update.q)
          if (after !== undefined && member !== undefined && before !== undefined && update.i < before) this.drop('stale')
          else if (after !== undefined && before !== undefined && update.i === before) this.bump('updatesDuplicate')
        } else if (update.s === 'l') {
          if (this.observeDirect(from, update.i, update.q) !== undefined) this.applyUpdate(update, from, 'gossip')
        } else {
          this.drop('malformed') // a peer does not suspect or bury itself
        }
      } else if (!senderKnown) {
        this.drop('unknownSender')
      } else {
        this.applyUpdate(update, from, 'gossip')
      }
    }
    const sender = this.table.get(from)
    if (sender !== undefined) sender.lastSeenAtMs = this.now()
  }

  // -------------------------------------------------------------- broadcasts

  /**
   * Publishes `update` now and `copies − 1` more times, broadcastCopyIntervalMs
   * apart, while it still holds. With `echoOf`, a copy is skipped once another
   * node has broadcast the same news (several suspectors declaring one death
   * need not each send every copy).
   */
  private broadcast(update: WireUpdate, copies: number, echoOf?: Member): void {
    if (copies <= 0) return
    this.enqueueDue(update)
    for (let copy = 1; copy < copies; copy++) {
      this.after(copy * this.config.broadcastCopyIntervalMs, () => {
        if (this.isCurrent(update) && (echoOf === undefined || echoOf.echoes === 0)) this.enqueueDue(update)
      })
    }
  }

  private enqueueDue(update: WireUpdate): void {
    this.due = this.due.filter((queued) => queued.p !== update.p)
    this.due.push(update)
    if (this.flushArmed) return
    this.flushArmed = true
    // Zero delay: updates made in the same turn leave in one message.
    this.after(0, () => this.flush())
  }

  private flush(): void {
    this.flushArmed = false
    while (this.due.length > 0) {
      const batch = this.due.splice(0, this.config.broadcastEntriesMax)
      this.publish({ v: 1, t: 'u', u: batch })
    }
  }

  private publish(message: unknown): void {
    const data = encodeWire(message)
    if (data.byteLength > this.config.broadcastBytesMax) {
      this.log.warn({ bytes: data.byteLength }, 'membership broadcast over broadcastBytesMax not sent')
      return
    }
    this.bump('broadcastsOut')
    this.bump('gossipBytesOut', data.byteLength)
    this.transport.publish(MEMBERSHIP_TOPIC, data).catch((err: unknown) => this.log.debug({ err: String(err) }, 'membership publish failed'))
  }

  // ---------------------------------------------------------------- metadata

  /** Full record when the static part changed since the last one (or on join), else the small delta. */
  private announceMeta(copies: number): void {
    this.lastMetaAnnounceAtMs = this.now()
    this.metaTimer?.handle.cancel()
    this.metaTimer = undefined
    const seq = this.selfSeq
    this.announcedSeq = seq
    const full = this.announcedStaticSeq !== this.staticSeq || copies > 1
    this.announcedStaticSeq = this.staticSeq
    for (let copy = 0; copy < copies; copy++) {
      this.after(copy * this.config.broadcastCopyIntervalMs, () => {
        if (this.selfSeq !== seq && copy > 0) return
        this.bump('metaAnnouncements')
        this.publish(full ? { v: 1, t: 'm', r: this.selfRecord() } : this.selfDelta())
      })
    }
  }

  private scheduleMetaAnnounce(significant: boolean): void {
    if (!this.running) return
    const intervalMs = significant ? this.config.metaIntervalMinMs : metaIntervalMs(this.config, this.liveCount(), this.deltaBytes)
    const atMs = Math.max(this.now(), this.lastMetaAnnounceAtMs + intervalMs)
    if (this.metaTimer !== undefined && this.metaTimer.atMs <= atMs) return
    this.metaTimer?.handle.cancel()
    this.metaTimer = { atMs, handle: this.after(atMs - this.now(), () => this.announceMeta(1)) }
  }

  /**
   * Queues a pull of the member's record. A seq hint (header, update) pulls
   * only when we hold no metadata at all: a lost load delta is repaired by the
   * next one, so pulling on every gap would cost more than the deltas.
   * `force`: a delta arrived over a static part we do not hold.
   */
  private wantMeta(member: Member, force = false): void {
    if (member.seq <= member.metaSeq) return
    if (!force && member.metaSeq > 0) return
    this.metaWanted.add(member.peerId)
    if (this.pumpArmed || !this.running) return
    this.pumpArmed = true
    // Later in this turn's wake: a record arriving with the same message may satisfy it first.
    this.after(0, () => {
      this.pumpArmed = false
      this.pumpMetaPulls()
    })
  }

  private pumpMetaPulls(): void {
    const now = this.now()
    for (const peerId of [...this.metaWanted.values()]) {
      if (this.metaPullsInFlight >= this.config.metaPullsInFlightMax) return
      const member = this.table.get(peerId)
      if (member === undefined || member.seq <= member.metaSeq || member.state === 'dead' || member.state === 'left') {
        this.metaWanted.delete(peerId)
        continue
      }
      if (now - member.metaPullAtMs < this.config.metaPullRetryMs) continue
      member.metaPullAtMs = now
      this.metaWanted.delete(peerId)
      this.metaPullsInFlight++
      void this.pullMeta(peerId).finally(() => {
        this.metaPullsInFlight--
        if (this.running && this.metaWanted.size > 0) this.pumpMetaPulls()
      })
    }
  }

  private async pullMeta(peerId: string): Promise<void> {
    this.bump('metaPullsOut')
    const request: ProbeRequestWire = { v: 1, t: 'metaq', i: this.selfIncarnation, q: this.announcedSeq }
    const response = await this.request(peerId, PROBE_PROTOCOL, request, this.config.noticeTimeoutMs, this.config.probeBytesMax)
    const answer = response.data === undefined ? undefined : this.decodeResponse(response.data)
    if (answer?.t !== 'meta' || !this.running) return
    if (answer.r.p !== peerId) {
      this.drop('notSelf')
      return
    }
    this.observeDirect(peerId, answer.r.i, answer.r.q)
    this.applyMeta(answer.r)
  }

  // -------------------------------------------------------- push-pull, join

  /**
   * Our full state as one sync message, within syncBytesMax: self and the
   * live members first, then the dead and left, cut when the bound is hit.
   *
   * `asked`: the request this answers, already merged. A member the asker
   * listed as alive at the incarnation and metadata seq we hold (with our
   * metadata, if we have it) is left out: merging our record would change
   * nothing there. So two nodes that agree exchange one full state, not two
   * (at 1,000 members each is ~300 KB to write, read and check). Records
   * about us, about the asker, and every suspect, dead or left one still go
   * (merging them counts confirmations and echoes), as does every member
   * the asker did not list (its request was cut at the bound).
   */
  private encodeSync(join: boolean, asked?: { from: string; records: readonly WireRecord[] }): Uint8Array {
    let known: Map<string, WireRecord> | undefined
    if (asked !== undefined) {
      known = new Map()
      for (const record of asked.records) if (record.s === 'a') known.set(record.p, record)
    }
    const live: string[] = [recordText(this.selfRecord())]
    const gone: string[] = []
    for (const member of this.table.values()) {
      const record: WireRecord = { p: member.peerId, s: STATE_TO_WIRE[member.state], i: member.incarnation, q: member.metaSeq }
      if (member.meta !== undefined) {
        record.b = member.staticSeq
        // A request names the metadata it holds by seq (`b` says it holds some); the answer carries it.
        if (asked !== undefined) record.m = member.meta
      }
      if (member.state === 'alive' && member.peerId !== asked?.from && listedAsHeld(known?.get(member.peerId), record)) continue
      if (member.state === 'alive' || member.state === 'suspect') live.push(recordText(record))
      else gone.push(recordText(record))
    }
    const all = [...live, ...gone]
    const whole = encodeSyncWire(join, all)
    if (whole.byteLength <= this.config.syncBytesMax) return whole
    const budget = this.config.syncBytesMax - 64
    const out: string[] = []
    let bytes = 0
    for (const text of all) {
      const size = Buffer.byteLength(text, 'utf8') + 1
      if (bytes + size > budget) break
      bytes += size
      out.push(text)
    }
    return encodeSyncWire(join, out)
  }

  private mergeRecords(records: readonly WireRecord[], sender: string): void {
    for (const record of records) {
      if (record.p === sender) {
        if (this.observeDirect(sender, record.i, record.q) === undefined) continue
        if (record.s === 'l') this.applyUpdate({ p: sender, s: 'l', i: record.i, q: record.q }, sender, 'sync')
      } else if (record.p === this.selfId) {
        this.onSelfUpdate({ p: record.p, s: record.s, i: record.i, q: record.q }, record.m)
      } else {
        this.applyUpdate({ p: record.p, s: record.s, i: record.i, q: record.q }, sender, 'sync')
      }
      if (record.p !== this.selfId) this.applyMeta(record)
    }
  }

  private async syncWith(peerId: string, join: boolean): Promise<boolean> {
    this.bump('syncsOut')
    const response = await this.request(peerId, SYNC_PROTOCOL, this.encodeSync(join), this.config.syncTimeoutMs, this.config.syncBytesMax)
    if (response.data === undefined || !this.running) {
      this.bump('syncsFailed')
      return false
    }
    const decoded = decodeWire(SyncMessageSchema, response.data, this.config.syncBytesMax)
    if (!decoded.ok) {
      this.drop(decoded.reason)
      this.bump('syncsFailed')
      return false
    }
    this.mergeRecords(decoded.value.r, peerId)
    this.lastSyncAtMs = this.now()
    return true
  }

  private async onSyncRequest(request: RequestContext): Promise<Uint8Array> {
    this.bump('gossipBytesIn', request.data.byteLength)
    const refuse = (code: string): Uint8Array => {
      const bytes = encodeWire({ v: 1, t: 'err', c: code })
      this.bump('gossipBytesOut', bytes.byteLength)
      return bytes
    }
    if (!this.running) {
      this.drop('stopped')
      return refuse('stopped')
    }
    if (request.from === this.selfId) {
      this.drop('selfLoop')
      return refuse('self')
    }
    const decoded = decodeWire(SyncMessageSchema, request.data, this.config.syncBytesMax)
    if (!decoded.ok) {
      this.dropFrom(request.from, decoded.reason)
      return refuse(decoded.reason)
    }
    this.bump('syncsIn')
    this.mergeRecords(decoded.value.r, request.from)
    this.lastSyncAtMs = this.now()
    const bytes = this.encodeSync(false, { from: request.from, records: decoded.value.r })
    this.bump('gossipBytesOut', bytes.byteLength)
    return bytes
  }

  private async join(): Promise<void> {
    if (this.joining || this.joined || !this.running) return
    this.joining = true
    try {
      const candidates = [...new Set([...this.seeds, ...this.transport.connectedPeers(), ...this.aliveIds.sample(this.rng, 3, new Set())])].filter(
        (peerId) => peerId !== this.selfId,
      )
      for (const peerId of shuffle(candidates, this.rng)) {
        if (!this.running) return
        if (await this.syncWith(peerId, true)) {
          this.joined = true
          this.joinResync()
          this.log.debug({ via: peerId, members: this.table.size }, 'joined the mesh')
          return
        }
      }
      if (candidates.length > 0 && this.running) {
        const delayMs = this.joinRetryMs
        this.joinRetryMs = Math.min(this.config.joinRetryMaxMs, this.joinRetryMs * 2)
        this.after(delayMs, () => void this.join())
      }
    } finally {
      this.joining = false
    }
  }

  /**
   * Once per join, joinResyncDelayMs after it, our record goes out again and
   * we sync once more with another member. A member that lost both copies of
   * the first announcement (a loss burst, a short partition) and the
   * piggybacked news would otherwise learn of us only when we probe it, up
   * to n probe intervals later (200-node chaos: 62 virtual s for the last of
   * 10 such members to learn of a late joiner, under 10 s with it). And the member that answered
   * our join may have been joining itself, with a table of a few members
   * (100-node membership scenario: the last joiner learned 72 members over
   * 10 s); the second sync brings the members that joined while we did. On
   * gossipsub (neighbours > 0) the record announced at start also went out
   * before the mesh had formed.
   */
  private joinResync(): void {
    this.after(this.config.joinResyncDelayMs, () => {
      if (this.leaving) return
      // One copy, a load delta unless the static part changed: a member that knew us drops it, one that
      // did not adds us from it and pulls the record (two whole records per join doubled the gossip bytes of a 30 s, 200-node run).
      this.announceMeta(1)
      const peerId = this.syncPartner()
      if (peerId !== undefined) void this.syncWith(peerId, false)
    })
  }

  /** Counts a death; many at once (a partition) earn one recovery sync, for the notices lost in the storm. */
  private noteDeath(): void {
    const now = this.now()
    if (this.deaths.add(now, this.config.massDeathWindowMs) !== this.massCount(this.config.massDeathFraction)) return
    // Its own rate limit: a heal that follows soon after must still get its recovery sync.
    if (now - this.lastMassDeathSyncAtMs < this.config.recoverySyncMinIntervalMs || this.leaving) return
    this.lastMassDeathSyncAtMs = now
    this.syncLater()
  }

  /**
   * Counts a comeback from dead; many at once (a healed partition) earn one
   * recovery sync. A lone comeback (a restart, a pause that ended) leaves no
   * other stale death behind, and every member syncing for it cost n full
   * syncs (at 1,000 nodes, 1,000 of ~1,000 records each per comeback).
   */
  private noteComeback(): void {
    if (this.comebacks.add(this.now(), this.config.massComebackWindowMs) === this.massCount(this.config.massComebackFraction)) this.recoverySync()
  }

  /** How many deaths or comebacks at once mean a partition or a heal: this fraction of the live members, at least 3. */
  private massCount(fraction: number): number {
    return Math.max(3, Math.ceil(fraction * this.liveCount()))
  }

  /**
   * Many members came back from dead: our table may hold more stale deaths
   * (a healed partition, where a missed refutation would otherwise wait for
   * a random dead-probe). One full sync with a random member repairs them
   * all; at most once per recoverySyncMinIntervalMs, recoverySyncDelayMs
   * (×1–2) later, once the wave of refutations has spread.
   */
  private recoverySync(): void {
    if (this.now() - this.lastRecoverySyncAtMs < this.config.recoverySyncMinIntervalMs || this.leaving) return
    this.lastRecoverySyncAtMs = this.now()
    this.syncLater()
  }

  /** One full sync with a random member, recoverySyncDelayMs (×1–2) from now: once the wave of news has spread. */
  private syncLater(): void {
    this.after(this.config.recoverySyncDelayMs * (1 + this.rng.next()), () => {
      const peerId = this.syncPartner()
      if (peerId !== undefined) void this.syncWith(peerId, false)
    })
  }

  /**
   * Checks every pushPullIntervalMs whether a sync is due; the interval is
   * re-computed with the current n each time (a node that just joined knows
   * n = 1 at start), jittered ±50 % per sync so syncs do not bunch. A
   * successful sync of any kind (the join's included) resets the wait.
   */
  private schedulePushPull(): void {
    this.after(this.config.pushPullIntervalMs, () => {
      const dueMs = pushPullIntervalMs(this.config, this.liveCount(), this.selfRecordBytes) * this.pushPullJitter
      if (this.now() - this.lastSyncAtMs >= dueMs && !this.leaving) {
        const peerId = this.syncPartner()
        this.pushPullJitter = 0.5 + this.rng.next()
        if (peerId !== undefined) void this.syncWith(peerId, false)
      }
      this.schedulePushPull()
    })
  }

  private scheduleDeadProbe(): void {
    const fast = this.now() - this.lastComebackAtMs < this.config.deadProbeFastForMs
    const delayMs = fast ? Math.min(this.config.deadProbeFastIntervalMs, this.config.deadProbeIntervalMs) : this.config.deadProbeIntervalMs
    const handle = this.after(delayMs, () => {
      this.deadProbeTimer = undefined
      const peerId = this.deadIds.random(this.rng)
      // The ping says "you are dead": a live target refutes, and its ack brings it back.
      if (peerId !== undefined && !this.leaving && !this.probing.has(peerId)) void this.ping(peerId, this.probeTimeoutMs())
      this.scheduleDeadProbe()
    })
    this.deadProbeTimer = { handle, atMs: this.now() + delayMs }
  }

  /** A dead member came back: probe the other dead at the fast pace for a while (the pending probe moves up if it is further away). */
  private hurryDeadProbes(): void {
    this.lastComebackAtMs = this.now()
    const pending = this.deadProbeTimer
    if (pending === undefined || pending.atMs - this.now() <= this.config.deadProbeFastIntervalMs) return
    pending.handle.cancel()
    this.deadProbeTimer = undefined
    this.scheduleDeadProbe()
  }

  private scheduleReap(): void {
    const everyMs = Math.max(1_000, Math.min(this.config.deadRetentionMs, this.config.leftRetentionMs) / 10)
    this.after(everyMs, () => {
      const now = this.now()
      for (const member of [...this.table.values()]) {
        const retentionMs = member.state === 'dead' ? this.config.deadRetentionMs : member.state === 'left' ? this.config.leftRetentionMs : undefined
        if (retentionMs === undefined || now - member.stateChangedAtMs < retentionMs) continue
        this.table.delete(member.peerId)
        this.sortedIds = undefined
        this.deadIds.delete(member.peerId)
        this.metaWanted.delete(member.peerId)
      }
      this.scheduleReap()
    })
  }
}

const EMPTY_META: MemberMeta = freezeMeta({ capacity: ZERO_RESOURCES, free: ZERO_RESOURCES, load: 0, labels: {}, version: '', addresses: [] })

/**
 * The asker's alive record of a member tells it all ours would: the same
 * incarnation and metadata seq, and metadata held if ours has it (`b` is
 * sent exactly when the sender holds metadata; a request leaves the
 * metadata itself out).
 */
function listedAsHeld(theirs: WireRecord | undefined, ours: WireRecord): boolean {
  return theirs !== undefined && theirs.i === ours.i && theirs.q === ours.q && (ours.m === undefined || theirs.m !== undefined || theirs.b !== undefined)
}

function viewOf(peerId: string, state: MemberState, incarnation: number, seq: number, meta: MemberMeta | WireMeta, lastSeenAtMs: number): MemberView {
  return {
    peerId,
    state,
    incarnation,
    seq,
    capacity: meta.capacity,
    free: meta.free,
    load: meta.load,
    labels: meta.labels,
    version: meta.version,
    addresses: meta.addresses,
    lastSeenAtMs,
  }
}

/** A membership event whose member view is built on first read, from the member as it was at the event. */
class LazyMembershipEvent implements MembershipEvent {
  readonly peerId: string
  readonly incarnation: number
  private readonly state: MemberState
  private readonly seq: number
  private readonly meta: MemberMeta
  private readonly lastSeenAtMs: number
  private built: MemberView | undefined

  constructor(
    readonly type: MembershipEventType,
    member: Member,
    readonly atMs: number,
  ) {
    this.peerId = member.peerId
    this.incarnation = member.incarnation
    this.state = member.state
    this.seq = member.metaSeq
    this.meta = member.meta ?? EMPTY_META
    this.lastSeenAtMs = member.lastSeenAtMs
  }

  get member(): MemberView {
    this.built ??= viewOf(this.peerId, this.state, this.incarnation, this.seq, this.meta, this.lastSeenAtMs)
    return this.built
  }

  /** As a plain event would serialize (a getter is not an own property). */
  toJSON(): MembershipEvent {
    return { type: this.type, peerId: this.peerId, incarnation: this.incarnation, atMs: this.atMs, member: this.member }
  }
}

const byPeerId = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

function shuffle<T>(items: T[], rng: Rng): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.int(i + 1)
    ;[items[i], items[j]] = [items[j] as T, items[i] as T]
  }
  return items
}
