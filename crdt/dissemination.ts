/**
 * Dissemination: every local change is published on the state topic, and
 * every change received there is applied — idempotently, persisted before it
 * counts, in dependency order. A change whose dependencies are missing is
 * held in a bounded buffer (not in Automerge's unbounded internal queue)
 * until they arrive by gossip or anti-entropy; past the bound the oldest
 * held change is dropped, and anti-entropy brings it later.
 *
 * Received changes are applied by one worker, batched per sender, so a burst
 * costs one store write per sender rather than one per change, and an entry
 * a change leaves invalid is attributed to the peer that published it (only
 * a change's author publishes it: gossip carries local changes only).
 */
import type { DecodedChange } from '@automerge/automerge'
import { LatticeError, type Clock, type Logger, type TimerHandle, type TopicMessage, type Transport } from '../core/index.ts'
import type { ClusterState } from './cluster-state.ts'
import { STATE_TOPIC, type StateSyncConfig } from './sync-config.ts'
import type { StateSyncCounters } from './sync-types.ts'
import { decodeTopicChange, encodeTopicChange, type DropReason } from './sync-wire.ts'

interface Held {
  from: string
  /** The epoch of the document the change belongs to. */
  epoch: number
  change: Uint8Array
  hash: string
  deps: string[]
  decoded: DecodedChange
}

export interface DisseminationDeps {
  config: StateSyncConfig
  state: ClusterState
  transport: Transport
  clock: Clock
  logger: Logger
  counters: StateSyncCounters
  misbehave(peerId: string, reason: DropReason): void
  /** A peer sent something of a later epoch than ours: a sync session with it moves us there. */
  peerAhead(peerId: string): void
  /** A change was held for a dependency not received: one was lost, and anti-entropy brings it. */
  gapFound(): void
}

const INVALID_PATHS_LOGGED_MAX = 5

export class Dissemination {
  private readonly config: StateSyncConfig
  private readonly state: ClusterState
  private readonly transport: Transport
  private readonly clock: Clock
  private readonly log: Logger
  private readonly count: StateSyncCounters
  private readonly misbehave: (peerId: string, reason: DropReason) => void
  private readonly peerAhead: (peerId: string) => void
  private readonly gapFound: () => void
  /** Changes waiting for dependencies, oldest first. */
  private readonly pending = new Map<string, Held>()
  private pendingBytes = 0
  /** Changes ready to apply (dependencies in the history), in arrival order. */
  private inbox: Held[] = []
  private readonly inboxHashes = new Set<string>()
  private draining: Promise<void> | undefined
  /** The applyDelayMs wait before the next drain, while it runs. */
  private delay: { timer: TimerHandle; done: Promise<void>; fire: () => void } | undefined
  private running = false
  private offs: (() => void)[] = []

  constructor(deps: DisseminationDeps) {
    this.config = deps.config
    this.state = deps.state
    this.transport = deps.transport
    this.clock = deps.clock
    this.log = deps.logger
    this.count = deps.counters
    this.misbehave = deps.misbehave
    this.peerAhead = deps.peerAhead
    this.gapFound = deps.gapFound
  }

  start(): void {
    if (this.running) return
    this.running = true
    this.offs = [
      this.transport.subscribe(STATE_TOPIC, (message) => this.receive(message)),
      this.state.onLocalChange((change) => this.publish(change)),
      // Sync (or a batch) may have brought what held changes were waiting for.
      this.state.onChange(() => this.promote()),
      // What waits here belongs to the old document; its holders carry it over themselves.
      this.state.onEpoch(() => this.forgetOtherEpochs()),
    ]
  }

  async stop(): Promise<void> {
    if (!this.running) return
    this.running = false
    for (const off of this.offs) off()
    this.offs = []
    if (this.delay !== undefined) {
      this.delay.timer.cancel()
      this.delay.fire()
    }
    await this.draining
    this.pending.clear()
    this.pendingBytes = 0
    this.inbox = []
    this.inboxHashes.clear()
    this.count.changesPending = 0
  }

  /** Drops held and queued changes of another epoch than the document's (counted). */
  private forgetOtherEpochs(): void {
    const epoch = this.state.epoch().epoch
    for (const held of [...this.pending.values()]) {
      if (held.epoch === epoch) continue
      this.unhold(held)
      this.drop(held.from, 'otherEpoch', false)
    }
    const kept = this.inbox.filter((held) => held.epoch === epoch)
    for (const held of this.inbox) {
      if (held.epoch === epoch) continue
      this.inboxHashes.delete(held.hash)
      this.drop(held.from, 'otherEpoch', false)
    }
    this.inbox = kept
  }

  /** Changes held for dependencies not received yet. */
  heldCount(): number {
    return this.pending.size
  }

  async idle(): Promise<void> {
    while (this.draining !== undefined) await this.draining
  }

  // ---- outbound ----

  private publish(change: Uint8Array): void {
    if (!this.running) return
    if (change.byteLength > this.config.changeBytesMax) {
      this.count.changesNotPublished++
      this.log.debug({ bytes: change.byteLength, changeBytesMax: this.config.changeBytesMax }, 'change too large to gossip; anti-entropy carries it')
      return
    }
    this.count.changesPublished++
    this.transport.publish(STATE_TOPIC, encodeTopicChange(change, this.state.epoch().epoch)).catch((err: unknown) => {
      this.count.changesPublishFailed++
      this.log.debug({ err: String(err) }, 'publishing a change failed; anti-entropy carries it')
    })
  }

  // ---- inbound ----

  private receive(message: TopicMessage): void {
    if (!this.running || message.from === this.transport.selfId) return
    this.count.changesReceived++
    const decoded = decodeTopicChange(message.data, this.config.changeBytesMax)
    if (!decoded.ok) {
      this.drop(message.from, decoded.reason, true)
      return
    }
    const held: Held = { from: message.from, ...decoded.value }
    const epoch = this.state.epoch().epoch
    if (held.epoch !== epoch) {
      // Not the sender's fault: one of us has not switched yet. A change of the old epoch is carried over by whoever
      // holds it at its own switch (its writer at least); a sender ahead tells us its epoch in a sync session.
      this.drop(message.from, 'otherEpoch', false)
      if (held.epoch > epoch) this.peerAhead(message.from)
      return
    }
    if (this.pending.has(held.hash) || this.inboxHashes.has(held.hash)) {
      this.count.changesDuplicate++
      return
    }
    // One question to the document: is the change in, and are its dependencies?
    const missing = this.state.missingAmong([held.hash, ...this.depsOutsideInbox(held)])
    if (!missing.has(held.hash)) this.count.changesDuplicate++
    else if (this.depsReady(held, missing)) this.enqueue(held)
    else {
      this.hold(held)
      this.gapFound()
    }
  }

  private drop(from: string, reason: DropReason, blame: boolean, n = 1): void {
    this.count.changesDropped[reason] += n
    if (blame) this.misbehave(from, reason)
  }

  private hold(held: Held): void {
    this.pending.set(held.hash, held)
    this.pendingBytes += held.change.byteLength
    while (this.pending.size > this.config.pendingChangesMax || this.pendingBytes > this.config.pendingBytesMax) {
      const oldest = this.pending.values().next()
      if (oldest.done === true) break
      this.unhold(oldest.value)
      this.drop(oldest.value.from, 'pendingFull', false)
    }
    this.count.changesPending = this.pending.size
  }

  private unhold(held: Held): void {
    this.pending.delete(held.hash)
    this.pendingBytes -= held.change.byteLength
    this.count.changesPending = this.pending.size
  }

  private depsOutsideInbox(held: Held): string[] {
    return held.deps.filter((dep) => !this.inboxHashes.has(dep))
  }

  /**
   * Dependencies in the history or ahead of it in the inbox (one apply takes
   * a change and its dependencies together); `missing` holds, of the
   * dependencies outside the inbox, those not in the history.
   */
  private depsReady(held: Held, missing: ReadonlySet<string>): boolean {
    return held.deps.every((dep) => this.inboxHashes.has(dep) || !missing.has(dep))
  }

  private enqueue(held: Held): void {
    this.inbox.push(held)
    this.inboxHashes.add(held.hash)
    this.schedule()
  }

  /**
   * Moves held changes whose dependencies are now in the history, or ahead
   * of them in the inbox, to the inbox, and drops those the history now
   * holds. A change is in the history only with all its dependencies, so a
   * held change is asked about only when nothing it waits for (through
   * other held changes) is known to be missing: the document is asked first
   * about the dependencies outside the held set and the inbox, then once
   * about the hashes of the held changes that could move. Asking about every
   * held change and dependency at each apply was ~8 % of a 200-node chaos
   * run's partition heal (hundreds held, and each apply a new document).
   */
  private promote(): void {
    if (this.pending.size === 0 || !this.running) return
    const roots = new Set<string>()
    for (const held of this.pending.values()) {
      for (const dep of held.deps) if (!this.inboxHashes.has(dep) && !this.pending.has(dep)) roots.add(dep)
    }
    const missing = this.state.missingAmong([...roots])
    const blocked = new Map<string, boolean>()
    // Held changes form chains (a hash names its dependencies), walked without recursion: one can be hundreds long.
    const isBlocked = (start: Held): boolean => {
      const stack: Held[] = [start]
      const onStack = new Set([start.hash])
      while (stack.length > 0) {
        const held = stack[stack.length - 1]!
        if (blocked.has(held.hash)) {
          stack.pop()
          continue
        }
        let isBlockedHere = false
        let unresolved: Held | undefined
        for (const dep of held.deps) {
          if (this.inboxHashes.has(dep)) continue
          const waiting = this.pending.get(dep)
          const depBlocked = waiting === undefined ? missing.has(dep) : blocked.get(dep)
          if (depBlocked === true) {
            isBlockedHere = true
            break
          }
          if (depBlocked === undefined) {
            // The stack is the path walked: a dependency on it is a cycle, which would need a hash collision and could never apply.
            if (onStack.has(dep)) {
              isBlockedHere = true
              break
            }
            unresolved ??= waiting
          }
        }
        if (!isBlockedHere && unresolved !== undefined) {
          onStack.add(unresolved.hash)
          stack.push(unresolved) // its verdict first, then this one is looked at again
          continue
        }
        blocked.set(held.hash, isBlockedHere)
        onStack.delete(held.hash)
        stack.pop()
      }
      return blocked.get(start.hash)!
    }
    const movable: string[] = []
    for (const held of this.pending.values()) {
      if (isBlocked(held)) missing.add(held.hash)
      else movable.push(held.hash)
    }
    for (const hash of this.state.missingAmong(movable)) missing.add(hash)
    // Until nothing moves: a held change may depend on one moved after it.
    for (let moved = true; moved && this.running; ) {
      moved = false
      for (const held of [...this.pending.values()]) {
        if (!missing.has(held.hash)) {
          this.unhold(held)
          this.count.changesDuplicate++
        } else if (this.depsReady(held, missing)) {
          this.unhold(held)
          this.enqueue(held)
          moved = true
        }
      }
    }
  }

  private schedule(): void {
    if (this.draining !== undefined || !this.running) return
    // Started at the next multiple of applyDelayMs (so what arrives meanwhile is applied with
    // it), or on a microtask: enqueue may run inside ClusterState's change
    // listeners, and an apply must not begin while they are being called.
    this.draining = this.wait()
      .then(() => this.drain())
      .catch((err: unknown) => this.log.error({ err }, 'applying gossiped changes failed unexpectedly'))
      .finally(() => {
        this.draining = undefined
        if (this.inbox.length > 0) this.schedule()
      })
  }

  private wait(): Promise<void> {
    if (this.config.applyDelayMs <= 0) return Promise.resolve()
    let fire = (): void => {}
    const done = new Promise<void>((resolve) => {
      fire = resolve
    })
    // At the next multiple of applyDelayMs on this node's clock, not applyDelayMs after the first arrival: nodes that
    // received the same changes apply the same batch, so the simulator's replicas share one result (doc-pool.ts).
    const period = this.config.applyDelayMs
    const timer = this.clock.setTimer(period - (((this.clock.nowMs() % period) + period) % period), () => fire())
    this.delay = { timer, done, fire }
    return done.finally(() => {
      this.delay = undefined
    })
  }

  private async drain(): Promise<void> {
    while (this.running && this.inbox.length > 0) {
      const batch = this.inbox.splice(0, this.config.applyBatchChangesMax)
      await this.applyBatch(batch)
      for (const held of batch) this.inboxHashes.delete(held.hash)
      this.promote()
    }
  }

  /**
   * Applies changes from any senders in one call. Invalid entries are
   * attributed to the senders whose changes touched them; a batch Automerge
   * refuses is retried per sender, to find the one to blame.
   */
  private async applyBatch(batch: Held[]): Promise<void> {
    const missing = this.state.missingAmong(batch.map((held) => held.hash))
    // Of the document's epoch, checked in the same turn as the apply: a batch taken before a switch is not applied after it.
    const epoch = this.state.epoch().epoch
    const fresh = batch.filter((held) => missing.has(held.hash) && held.epoch === epoch)
    const stale = batch.filter((held) => held.epoch !== epoch).length
    if (stale > 0) this.drop('', 'otherEpoch', false, stale)
    this.count.changesDuplicate += batch.length - fresh.length - stale
    if (fresh.length === 0) return
    const bySender = new Map<string, Held[]>()
    for (const held of fresh) {
      const group = bySender.get(held.from)
      if (group === undefined) bySender.set(held.from, [held])
      else group.push(held)
    }
    const only = bySender.size === 1 ? [...bySender][0] : undefined
    if (only !== undefined) {
      await this.applyGroup(only[0], only[1])
      return
    }
    try {
      const result = await this.state.applyChanges(
        fresh.map((held) => held.change),
        fresh.map((held) => held.decoded),
      )
      this.count.changesApplied += fresh.length
      if (result.invalidEntries.length > 0) this.blameInvalid(bySender, result.invalidEntries)
    } catch (err) {
      if (err instanceof LatticeError && err.code === 'VALIDATION_FAILED') {
        for (const [from, group] of bySender) await this.applyGroup(from, group)
      } else {
        this.drop('', 'applyFailed', false, fresh.length)
        this.log.warn({ err, changes: fresh.length }, 'applying gossiped changes failed; anti-entropy brings them again')
      }
    }
  }

  private blameInvalid(bySender: Map<string, Held[]>, invalid: string[][]): void {
    const broken = new Set(invalid.map((path) => JSON.stringify(path)))
    let attributed = 0
    for (const [from, group] of bySender) {
      const paths = this.state.entriesTouchedBy(group.map((held) => held.change)).filter((path) => broken.has(JSON.stringify(path)))
      if (paths.length === 0) continue
      attributed += paths.length
      this.drop(from, 'invalidEntry', true, paths.length)
      this.log.warn({ from, paths: paths.slice(0, INVALID_PATHS_LOGGED_MAX), invalidEntries: paths.length }, 'gossiped change left invalid entries; they are left out of reads')
    }
    if (attributed === 0) this.drop('', 'invalidEntry', false, invalid.length)
  }

  private async applyGroup(from: string, group: Held[]): Promise<void> {
    // Anti-entropy may have brought some meanwhile, or a switch made them another epoch's.
    const missing = this.state.missingAmong(group.map((held) => held.hash))
    const epoch = this.state.epoch().epoch
    const fresh = group.filter((held) => missing.has(held.hash) && held.epoch === epoch)
    const stale = group.filter((held) => held.epoch !== epoch).length
    if (stale > 0) this.drop(from, 'otherEpoch', false, stale)
    this.count.changesDuplicate += group.length - fresh.length - stale
    if (fresh.length === 0) return
    try {
      const result = await this.state.applyChanges(
        fresh.map((held) => held.change),
        fresh.map((held) => held.decoded),
      )
      this.count.changesApplied += fresh.length
      if (result.invalidEntries.length > 0) {
        this.drop(from, 'invalidEntry', true, result.invalidEntries.length)
        this.log.warn({ from, paths: result.invalidEntries.slice(0, INVALID_PATHS_LOGGED_MAX), invalidEntries: result.invalidEntries.length }, 'gossiped change left invalid entries; they are left out of reads')
      }
    } catch (err) {
      if (err instanceof LatticeError && err.code === 'VALIDATION_FAILED' && fresh.length > 1) {
        // Isolate the change Automerge refused; the others still apply.
        for (const held of fresh) await this.applyGroup(from, [held])
      } else if (err instanceof LatticeError && err.code === 'VALIDATION_FAILED') {
        this.drop(from, 'malformed', true)
      } else {
        this.drop(from, 'applyFailed', false, fresh.length)
        this.log.warn({ err, changes: fresh.length }, 'applying gossiped changes failed; anti-entropy brings them again')
      }
    }
  }
}
