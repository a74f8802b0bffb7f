/**
 * Anti-entropy: the Automerge sync protocol over one request/response
 * protocol (`/lattice/state-sync/1`). A session is a loop run by the
 * initiator: it sends its next sync message, the responder applies it and
 * answers with its own, until the initiator has nothing more to say after
 * applying the responder's last answer — both replicas then hold the same
 * changes. Bounded by syncRoundsMax round trips of at most
 * syncMessageBytesMax each; a message that would exceed the bound is
 * replaced by the whole document (Automerge.save, far smaller than the
 * changes it holds) when that fits.
 *
 * Sync state is kept per peer and per role (initiator / responder, so two
 * peers syncing each other at once do not share one state), in LRU maps of
 * syncStatesMax peers. Automerge's protocol assumes a reliable in-order
 * stream, so every session starts from the state reduced to what survives a
 * lost message (Automerge.encodeSyncState keeps only the shared heads).
 *
 * The responder persists before it answers, so the heads in its answer are
 * durable: the initiator records them as proof that the peer holds them
 * (waitForPeerAck).
 *
 * Heads first: a session opens with one round of heads only. Equal heads end
 * it there (the usual case between two replicas of a quiet cluster); else
 * both sides seed their sync state's shared heads with the other's heads they
 * know (changes both hold), so the Bloom filters cover only what differs.
 * Without that, every session with a peer not synced lately (at n peers
 * picked at random, almost every session) filtered the whole history on both
 * sides: O(history) per session, and the history grows with the cluster.
 */
import * as A from '@automerge/automerge'
import { LatticeError, TransportError, parseJsonOrUndefined, type Logger, type RequestContext, type Transport } from '../core/index.ts'
import type { ApplyResult, ClusterState, SyncState } from './cluster-state.ts'
import { LruMap } from './lru.ts'
import { EpochRecordSchema, type EpochRecord } from './persistence.ts'
import { STATE_SYNC_PROTOCOL, type StateSyncConfig } from './sync-config.ts'
import type { StateSyncCounters, SyncFailure, SyncSessionResult } from './sync-types.ts'
import {
  decodeHeads,
  decodeSyncRequest,
  decodeSyncResponse,
  encodeHeads,
  encodeSyncError,
  encodeSyncRequest,
  encodeSyncResponse,
  syncFrameBytes,
  type DropReason,
  type ResponseKind,
} from './sync-wire.ts'

export interface AntiEntropyDeps {
  config: StateSyncConfig
  state: ClusterState
  transport: Transport
  logger: Logger
  counters: StateSyncCounters
  misbehave(peerId: string, reason: DropReason): void
  /** A session with `peerId` completed: both replicas held the same changes at its end. */
  onSessionOk(peerId: string): void
}

/** The EPOCH answer to a request of another epoch: our record, from which a node behind learns the cut it missed. */
function epochReply(record: EpochRecord): Uint8Array {
  return encodeSyncResponse(record.epoch, 'epoch', new TextEncoder().encode(JSON.stringify(record)))
}

/** A reply in another epoch than ours: what it said about the peer's epoch, for the session to act on. */
class OtherEpoch extends Error {
  constructor(readonly peerEpoch: number, readonly record: EpochRecord | undefined) {
    super(`peer is in epoch ${peerEpoch}`)
  }
}

const EMPTY = new Uint8Array(0)
const INVALID_PATHS_LOGGED_MAX = 5

/** What survives a lost message: the shared heads only (Automerge's own reset). */
export function resetSyncState(state: SyncState | undefined): SyncState {
  return state === undefined ? A.initSyncState() : A.decodeSyncState(A.encodeSyncState(state))
}

/** `state` with `shared` — changes both sides are known to hold — as its shared heads (none: unchanged). */
function seedSharedHeads(state: SyncState, shared: readonly string[]): SyncState {
  return shared.length === 0 ? state : { ...state, sharedHeads: [...shared] }
}

function sameHeadSet(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false
  const set = new Set(a)
  return b.every((head) => set.has(head))
}

function transportFailure(err: unknown): SyncFailure {
  if (!(err instanceof TransportError)) return 'failed'
  switch (err.code) {
    case 'TIMEOUT':
      return 'timeout'
    case 'UNREACHABLE':
      return 'unreachable'
    case 'TOO_LARGE':
      return 'oversized'
    case 'STOPPED':
      return 'stopped'
    case 'NO_HANDLER':
      return 'refused'
    default:
      return 'failed'
  }
}

class SessionFailure extends Error {
  constructor(readonly reason: SyncFailure) {
    super(reason)
  }
}

export class AntiEntropy {
  private readonly config: StateSyncConfig
  private readonly state: ClusterState
  private readonly transport: Transport
  private readonly log: Logger
  private readonly count: StateSyncCounters
  private readonly deps: AntiEntropyDeps
  private readonly outStates: LruMap<string, SyncState>
  private readonly inStates: LruMap<string, SyncState>
  /** Each peer's heads from its last sync reply: changes it holds durably. */
  private readonly peerHeads: LruMap<string, string[]>
  /** Heads an initiator sent in its heads round, until its session's first message (responder side). */
  private readonly heardHeads: LruMap<string, string[]>
  private readonly sessions = new Map<string, Promise<SyncSessionResult>>()
  /** Per-peer chain of requests being served, so one peer's rounds never interleave. */
  private readonly serving = new Map<string, Promise<unknown>>()
  private inboundInFlight = 0
  private abort = new AbortController()
  private running = false
  /** The move to a later epoch in progress (one at a time: two peers ahead tell the same epoch). */
  private learning: Promise<void> | undefined
  private offs: (() => void)[] = []

  constructor(deps: AntiEntropyDeps) {
    this.deps = deps
    this.config = deps.config
    this.state = deps.state
    this.transport = deps.transport
    this.log = deps.logger
    this.count = deps.counters
    this.outStates = new LruMap(deps.config.syncStatesMax)
    this.inStates = new LruMap(deps.config.syncStatesMax)
    this.peerHeads = new LruMap(deps.config.syncStatesMax)
    this.heardHeads = new LruMap(deps.config.syncStatesMax)
  }

  start(): void {
    if (this.running) return
    this.running = true
    this.abort = new AbortController()
    this.transport.handle(STATE_SYNC_PROTOCOL, (request) => this.serve(request), {
      requestBytesMax: syncFrameBytes(this.config.syncMessageBytesMax),
    })
    // Sync states and peers' heads name the old document's changes: a new epoch starts them over.
    this.offs.push(
      this.state.onEpoch(() => {
        this.outStates.clear()
        this.inStates.clear()
        this.peerHeads.clear()
        this.heardHeads.clear()
      }),
    )
  }

  async stop(): Promise<void> {
    if (!this.running) return
    this.running = false
    for (const off of this.offs) off()
    this.offs = []
    this.abort.abort(new Error('state sync stopped'))
    await Promise.allSettled([...this.sessions.values(), ...this.serving.values(), this.learning])
  }

  /** Sync states forgotten to stay within syncStatesMax. */
  get statesEvicted(): number {
    return this.outStates.evicted + this.inStates.evicted
  }

  isSyncing(peerId: string): boolean {
    return this.sessions.has(peerId)
  }

  /** One session with `peerId`; joins the one in flight, if any. */
  sync(peerId: string): Promise<SyncSessionResult> {
    const current = this.sessions.get(peerId)
    if (current !== undefined) return current
    const run = this.session(peerId).finally(() => this.sessions.delete(peerId))
    this.sessions.set(peerId, run)
    return run
  }

  /** Peers whose last reply showed heads that include `heads` (at most `limit`, newest first). */
  peersHolding(heads: readonly string[], limit = Number.POSITIVE_INFINITY): string[] {
    const holding: string[] = []
    for (const [peerId, theirs] of [...this.peerHeads].reverse()) {
      if (holding.length >= limit) break
      if (this.state.coveredBy(heads, theirs)) holding.push(peerId)
    }
    return holding
  }

  // ---- initiator ----

  private async session(peerId: string): Promise<SyncSessionResult> {
    this.count.syncSessionsStarted++
    let rounds = 0
    try {
      if (!this.running) throw new SessionFailure('stopped')
      let syncState = resetSyncState(this.outStates.get(peerId))
      const ours = this.state.heads()
      rounds++
      const theirs = await this.headsRound(peerId, ours)
      if (sameHeadSet(ours, theirs)) {
        this.outStates.set(peerId, seedSharedHeads(syncState, ours))
        this.count.syncSessionsOk++
        this.deps.onSessionOk(peerId)
        return { ok: true, peerId, rounds }
      }
      const unknown = this.state.missingAmong(theirs)
      syncState = seedSharedHeads(syncState, theirs.filter((head) => !unknown.has(head)))
      let messageRounds = 0
      for (;;) {
        if (!this.running) throw new SessionFailure('stopped')
        const [next, message] = this.state.generateSyncMessage(syncState)
        syncState = next
        // Nothing more to say after applying the peer's last answer: converged.
        if (message === null && messageRounds > 0) break
        if (rounds >= this.config.syncRoundsMax) throw new SessionFailure('roundsExceeded')
        const outgoing = this.fit(message ?? EMPTY)
        if (outgoing === undefined) throw new SessionFailure('oversized')
        const epoch = this.state.epoch().epoch
        const request = encodeSyncRequest({ epoch, start: messageRounds === 0, ...outgoing })
        rounds++
        messageRounds++
        const reply = await this.roundTrip(peerId, request)
        // Checked in the same turn as the apply below: a switch between them would take the peer's old-epoch changes into the new document.
        this.sameEpoch(reply, epoch)
        const { kind, payload } = reply
        if (payload.byteLength === 0) continue // the peer has nothing to send this round
        if (kind === 'snapshot') {
          this.count.syncSnapshotsReceived++
          this.noteApplied(peerId, await this.applyFrom(peerId, () => this.state.mergeSnapshot(payload)))
        } else {
          const received = await this.applyFrom(peerId, () => this.state.receiveSyncMessage(syncState, payload))
          syncState = received.syncState
          this.noteApplied(peerId, received.result)
          if (syncState.theirHeads !== null && syncState.theirHeads !== undefined) {
            this.peerHeads.set(peerId, [...syncState.theirHeads])
          }
        }
      }
      this.outStates.set(peerId, syncState)
    } catch (err) {
      if (err instanceof OtherEpoch) return this.otherEpoch(peerId, rounds, err)
      const reason = err instanceof SessionFailure ? err.reason : this.running ? 'failed' : 'stopped'
      if (!(err instanceof SessionFailure)) this.log.warn({ err, peerId }, 'sync session failed')
      else this.log.debug({ peerId, reason, rounds }, 'sync session failed')
      this.count.syncSessionsFailed++
      this.count.syncSessionFailures[reason]++
      return { ok: false, peerId, rounds, reason }
    }
    this.count.syncSessionsOk++
    this.deps.onSessionOk(peerId)
    return { ok: true, peerId, rounds }
  }

  /** Round 0 of a session: our heads for the peer's (durable) heads. */
  private async headsRound(peerId: string, ours: readonly string[]): Promise<string[]> {
    const epoch = this.state.epoch().epoch
    const reply = await this.roundTrip(peerId, encodeSyncRequest({ epoch, start: false, snapshot: false, heads: true, payload: encodeHeads(ours) }))
    this.sameEpoch(reply, epoch)
    const { kind, payload } = reply
    const theirs = kind === 'heads' ? decodeHeads(payload) : undefined
    if (theirs === undefined) {
      this.dropFrom(peerId, 'malformed', true)
      throw new SessionFailure('malformed')
    }
    this.peerHeads.set(peerId, theirs)
    return theirs
  }

  /**
   * Throws OtherEpoch when a reply is not of our epoch `epoch` (what we
   * sent in): an EPOCH reply, or any reply of a peer that switched in the
   * middle of the session. An EPOCH reply's record is read (a bad one is
   * the peer's fault).
   */
  private sameEpoch(reply: { epoch: number; kind: ResponseKind; payload: Uint8Array }, epoch: number): void {
    if (reply.kind !== 'epoch' && reply.epoch === epoch && this.state.epoch().epoch === epoch) return
    if (reply.kind !== 'epoch') throw new OtherEpoch(reply.epoch, undefined)
    const record = EpochRecordSchema.safeParse(parseJsonOrUndefined(new TextDecoder().decode(reply.payload)))
    if (!record.success || record.data.epoch !== reply.epoch) throw new SessionFailure('malformed')
    throw new OtherEpoch(reply.epoch, record.data)
  }

  /**
   * A session that met a peer in another epoch. A peer ahead told its
   * epoch's record: this node moves there (learnEpoch). A peer behind
   * learns ours from our requests' tag. Either way the session ends, and
   * the next one syncs within one epoch.
   */
  private async otherEpoch(peerId: string, rounds: number, met: OtherEpoch): Promise<SyncSessionResult> {
    this.count.syncDropped.otherEpoch++
    if (met.record !== undefined && met.record.epoch > this.state.epoch().epoch) {
      try {
        await this.learnEpoch(peerId, met.record)
      } catch (err) {
        this.log.warn({ err, peerId, epoch: met.record.epoch }, 'moving to the epoch a peer is in failed; a later session tries again')
      }
    }
    this.count.syncSessionsFailed++
    this.count.syncSessionFailures.otherEpoch++
    return { ok: false, peerId, rounds, reason: 'otherEpoch' }
  }

  /**
   * A peer showed a later epoch (its gossip): a session with it hands us its
   * epoch's record. Skipped while a move is under way: every peer ahead
   * gossips, and one move serves them all.
   */
  peerAhead(peerId: string): void {
    if (this.learning !== undefined || !this.running) return
    void this.sync(peerId)
  }

  /**
   * Moves this node to a later epoch a peer is in, one move at a time: from
   * the cut, when it is the next epoch and this node holds the cut (every
   * node that holds it builds the same genesis: nothing of the state
   * travels), else from the peer's whole document (adoptEpoch).
   */
  private learnEpoch(peerId: string, record: EpochRecord): Promise<void> {
    const run = (this.learning ?? Promise.resolve()).then(() => this.learnOnce(peerId, record))
    const tail = run.catch(() => undefined)
    this.learning = tail
    void tail.then(() => {
      if (this.learning === tail) this.learning = undefined
    })
    return run
  }

  private async learnOnce(peerId: string, record: EpochRecord): Promise<void> {
    const ours = this.state.epoch()
    if (!this.running || record.epoch <= ours.epoch) return
    if (record.epoch === ours.epoch + 1 && this.state.hasChanges(record.cut)) {
      const switched = await this.state.enterEpoch({ epoch: record.epoch, heads: record.cut, acceptors: record.acceptors })
      this.count.epochsEntered++
      if (switched.epoch.genesis !== record.genesis) {
        // Every node holding the cut builds the same genesis; a different one means diverging builds (a bug or another encoding).
        this.log.error({ peerId, epoch: record.epoch, ours: switched.epoch.genesis, theirs: record.genesis }, 'the genesis built from the cut differs from the peer\'s: the two documents will not merge')
      }
      return
    }
    // From further behind, our changes are carried through each epoch between: their geneses first, as far as the peer keeps them.
    const intermediate: Uint8Array[] = []
    for (let epoch = ours.epoch + 1; epoch < record.epoch; epoch++) {
      const kept = await this.fetchGenesis(peerId, ours.epoch, epoch)
      if (kept === undefined) break
      intermediate.push(kept)
    }
    const reply = await this.roundTrip(peerId, encodeSyncRequest({ epoch: ours.epoch, start: false, snapshot: false, epochDocument: true, payload: EMPTY }))
    if (reply.kind !== 'snapshot' || reply.epoch !== record.epoch) throw new SessionFailure(reply.kind === 'snapshot' || reply.kind === 'epoch' ? 'otherEpoch' : 'malformed')
    this.count.syncSnapshotsReceived++
    try {
      const adopted = await this.state.adoptEpoch(reply.payload, record, intermediate)
      if (!adopted.carriedOver) this.count.epochCarriesLost++
    } catch (err) {
      if (err instanceof LatticeError && err.code === 'BAD_REQUEST') {
        this.dropFrom(peerId, 'malformed', true)
        throw new SessionFailure('malformed')
      }
      throw err
    }
    this.count.epochsAdopted++
  }

  /** The genesis of `epoch` as `peerId` keeps it; undefined when it does not (it answers an error). */
  private async fetchGenesis(peerId: string, ours: number, epoch: number): Promise<Uint8Array | undefined> {
    try {
      const reply = await this.roundTrip(peerId, encodeSyncRequest({ epoch: ours, start: false, snapshot: false, genesisOf: epoch, payload: EMPTY }))
      return reply.kind === 'snapshot' ? reply.payload : undefined
    } catch (err) {
      if (err instanceof SessionFailure && err.reason === 'refused') return undefined
      throw err
    }
  }

  /**
   * One request and its decoded answer. A transport failure, an answer that
   * does not decode (blamed on the peer), `busy` and `error` end the session.
   */
  private async roundTrip(peerId: string, request: Uint8Array): Promise<{ epoch: number; kind: Exclude<ResponseKind, 'busy' | 'error'>; payload: Uint8Array }> {
    this.count.syncRoundsOut++
    this.count.syncBytesOut += request.byteLength
    let reply: Uint8Array
    try {
      reply = await this.transport.request(peerId, STATE_SYNC_PROTOCOL, request, {
        timeoutMs: this.config.syncRequestTimeoutMs,
        responseBytesMax: syncFrameBytes(this.config.syncMessageBytesMax),
        signal: this.abort.signal,
      })
    } catch (err) {
      throw new SessionFailure(this.running ? transportFailure(err) : 'stopped')
    }
    this.count.syncBytesIn += reply.byteLength
    const decoded = decodeSyncResponse(reply, this.config.syncMessageBytesMax)
    if (!decoded.ok) {
      this.dropFrom(peerId, decoded.reason, true)
      throw new SessionFailure(decoded.reason === 'oversized' ? 'oversized' : 'malformed')
    }
    const { epoch, kind, payload } = decoded.value
    if (kind === 'busy') throw new SessionFailure('busy')
    if (kind === 'error') {
      this.log.debug({ peerId, reason: new TextDecoder().decode(payload) }, 'peer refused a sync request')
      throw new SessionFailure('refused')
    }
    return { epoch, kind, payload }
  }

  /** Applies what a peer sent; bytes Automerge refuses end the session as `malformed`, blamed on the peer. */
  private async applyFrom<T>(peerId: string, apply: () => Promise<T>): Promise<T> {
    try {
      return await apply()
    } catch (err) {
      if (err instanceof LatticeError && err.code === 'VALIDATION_FAILED') {
        this.dropFrom(peerId, 'malformed', true)
        throw new SessionFailure('malformed')
      }
      if (err instanceof LatticeError && err.code === 'INTERNAL' && !this.running) throw new SessionFailure('stopped')
      throw err
    }
  }

  // ---- responder ----

  private async serve(request: RequestContext): Promise<Uint8Array> {
    const { from, data } = request
    this.count.syncRoundsIn++
    this.count.syncBytesIn += data.byteLength
    if (!this.running) return this.respond(this.busy())
    if (this.inboundInFlight >= this.config.syncInboundMax) {
      this.count.syncDropped.busy++
      return this.respond(this.busy())
    }
    this.inboundInFlight++
    try {
      const run = (this.serving.get(from) ?? Promise.resolve()).then(() => this.serveOne(from, data))
      const tail = run.catch(() => undefined)
      this.serving.set(from, tail)
      try {
        return this.respond(await run)
      } finally {
        if (this.serving.get(from) === tail) this.serving.delete(from)
      }
    } finally {
      this.inboundInFlight--
    }
  }

  private respond(response: Uint8Array): Uint8Array {
    this.count.syncBytesOut += response.byteLength
    return response
  }

  /** BUSY, tagged with our epoch when the document can tell it (not before a start, nor after a failure). */
  private busy(): Uint8Array {
    let epoch = 0
    try {
      epoch = this.state.epoch().epoch
    } catch {
      // not started: any tag serves, BUSY carries nothing of a document
    }
    return encodeSyncResponse(epoch, 'busy')
  }

  private async serveOne(from: string, data: Uint8Array): Promise<Uint8Array> {
    const ours = this.state.epoch()
    const decoded = decodeSyncRequest(data, this.config.syncMessageBytesMax)
    if (!decoded.ok) {
      this.dropFrom(from, decoded.reason, true)
      return encodeSyncError(ours.epoch, decoded.reason)
    }
    if (!this.running) return this.busy()
    const { start, snapshot, heads, epochDocument, genesisOf, payload } = decoded.value
    if (epochDocument) return this.serveEpochDocument(from, decoded.value.epoch)
    if (genesisOf !== undefined) return this.serveGenesis(genesisOf)
    // Checked in the same turn as the apply below: nothing of another epoch's document reaches ours.
    if (decoded.value.epoch !== ours.epoch) {
      this.count.syncDropped.otherEpoch++
      this.inStates.delete(from)
      this.heardHeads.delete(from)
      // A peer ahead: a session with it (our requests carry our epoch) answers us its record, and we move to its epoch.
      if (decoded.value.epoch > ours.epoch) void this.sync(from)
      return epochReply(ours)
    }
    if (heads) return this.serveHeads(from, payload)
    const heard = start ? this.heardHeads.get(from) : undefined
    if (heard !== undefined) this.heardHeads.delete(from)
    else if (start) this.count.syncSessionsServed++ // a session that did not open with a heads round
    let syncState = start ? resetSyncState(this.inStates.get(from)) : (this.inStates.get(from) ?? A.initSyncState())
    if (heard !== undefined) {
      const unknown = this.state.missingAmong(heard)
      syncState = seedSharedHeads(syncState, heard.filter((head) => !unknown.has(head)))
    }
    try {
      if (payload.byteLength > 0 && snapshot) {
        this.count.syncSnapshotsReceived++
        this.noteApplied(from, await this.state.mergeSnapshot(payload))
      } else if (payload.byteLength > 0) {
        const received = await this.state.receiveSyncMessage(syncState, payload)
        syncState = received.syncState
        this.noteApplied(from, received.result)
      }
      // A switch while the peer's message was applied: what we would answer belongs to the new document.
      const now = this.state.epoch()
      if (now.epoch !== ours.epoch) {
        this.inStates.delete(from)
        return epochReply(now)
      }
      const [next, message] = this.state.generateSyncMessage(syncState)
      const outgoing = this.fit(message ?? EMPTY)
      // Our heads in the answer must be durable before the peer counts them (waitForPeerAck).
      await this.state.flush()
      this.inStates.set(from, next)
      if (outgoing === undefined) return encodeSyncError(ours.epoch, 'oversized')
      // Tagged with the epoch the message was made in: a switch meanwhile shows the peer a mismatch, not old changes as new ones.
      return encodeSyncResponse(ours.epoch, outgoing.snapshot ? 'snapshot' : 'message', outgoing.payload)
    } catch (err) {
      if (err instanceof LatticeError && err.code === 'VALIDATION_FAILED') {
        this.inStates.delete(from)
        this.dropFrom(from, 'malformed', true)
        return encodeSyncError(ours.epoch, 'malformed')
      }
      if (err instanceof LatticeError && err.code === 'INTERNAL') return this.busy() // stopping
      throw err // our store failed: the peer sees HANDLER_FAILED
    }
  }

  /** A genesis we keep, for a peer more than one epoch behind (learnEpoch). */
  private async serveGenesis(epoch: number): Promise<Uint8Array> {
    const ours = this.state.epoch().epoch
    const kept = epoch >= 1 && epoch <= ours ? await this.state.keptGenesis(epoch) : undefined
    if (kept === undefined) return encodeSyncError(ours, 'genesis not kept')
    if (kept.byteLength > this.config.syncMessageBytesMax) return encodeSyncError(ours, 'oversized')
    return encodeSyncResponse(ours, 'snapshot', kept)
  }

  /** Our whole document, for a peer behind that adopts our epoch (learnEpoch); refused to a peer not behind. */
  private serveEpochDocument(from: string, theirs: number): Uint8Array {
    const ours = this.state.epoch().epoch
    if (theirs >= ours) return encodeSyncError(ours, 'not behind')
    const snapshot = this.state.saveSnapshot()
    if (snapshot.byteLength > this.config.syncMessageBytesMax) {
      this.log.warn({ from, snapshotBytes: snapshot.byteLength, syncMessageBytesMax: this.config.syncMessageBytesMax }, 'a peer behind asked for our document, which exceeds syncMessageBytesMax')
      return encodeSyncError(ours, 'oversized')
    }
    this.count.syncSnapshotsSent++
    return encodeSyncResponse(ours, 'snapshot', snapshot)
  }

  /** A session's heads round: our heads, durable before they are told (as every answer's). */
  private async serveHeads(from: string, payload: Uint8Array): Promise<Uint8Array> {
    this.count.syncSessionsServed++
    const theirs = decodeHeads(payload) ?? []
    const epoch = this.state.epoch().epoch
    const ours = this.state.heads()
    if (sameHeadSet(ours, theirs)) this.heardHeads.delete(from)
    else this.heardHeads.set(from, theirs)
    try {
      await this.state.flush()
    } catch (err) {
      if (err instanceof LatticeError && err.code === 'INTERNAL') return this.busy() // stopping
      throw err
    }
    return encodeSyncResponse(epoch, 'heads', encodeHeads(ours))
  }

  // ---- shared ----

  /** The message as it can be sent: itself, the whole document in its place, or undefined when neither fits. */
  private fit(message: Uint8Array): { snapshot: boolean; payload: Uint8Array } | undefined {
    if (message.byteLength <= this.config.syncMessageBytesMax) return { snapshot: false, payload: message }
    const snapshot = this.state.saveSnapshot()
    if (snapshot.byteLength > this.config.syncMessageBytesMax) {
      this.log.warn({ messageBytes: message.byteLength, snapshotBytes: snapshot.byteLength, syncMessageBytesMax: this.config.syncMessageBytesMax }, 'sync message and whole document both exceed syncMessageBytesMax')
      return undefined
    }
    this.count.syncSnapshotsSent++
    return { snapshot: true, payload: snapshot }
  }

  private noteApplied(from: string, result: ApplyResult): void {
    if (result.invalidEntries.length === 0) return
    // Counted, not blamed: the peer relays changes, it need not be their author.
    this.count.syncDropped.invalidEntry += result.invalidEntries.length
    this.log.warn({ from, paths: result.invalidEntries.slice(0, INVALID_PATHS_LOGGED_MAX), invalidEntries: result.invalidEntries.length }, 'synced changes left invalid entries; they are left out of reads')
  }

  private dropFrom(peerId: string, reason: DropReason, blame: boolean): void {
    this.count.syncDropped[reason]++
    if (blame) this.deps.misbehave(peerId, reason)
  }
}
