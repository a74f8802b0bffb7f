/**
 * State sync: how every node comes to hold the same cluster-state document
 * (DESIGN.md §4). Three paths, one service:
 *
 * - dissemination (dissemination.ts): each local change is published on the
 *   state topic; receivers apply it, holding out-of-order changes until
 *   their dependencies arrive;
 * - anti-entropy (anti-entropy.ts): every antiEntropyIntervalMs (+ jitter)
 *   a session of the Automerge sync protocol with one random alive peer
 *   repairs whatever gossip lost, and heals partitions;
 * - initial sync: a joining or restarted node syncs fully with a peer before
 *   it starts placement (`ready`), which is also how a node whose store had
 *   damaged chunks gets their content back from its peers.
 *
 * Everything a peer sends is bounded, decoded without trust, and applied
 * through ClusterState, which validates and persists it before it counts.
 * Drops are counted per reason and reported per peer (onMisbehaviour) for
 * peer scoring. `waitForPeerAck` backs the API's `?ack=1`.
 */
import { LatticeError, type Clock, type Logger, type Rng, type TimerHandle } from '../core/index.ts'
import { AntiEntropy } from './anti-entropy.ts'
import type { ClusterState } from './cluster-state.ts'
import { Dissemination } from './dissemination.ts'
import { LruMap } from './lru.ts'
import { resolveStateSyncConfig, type StateSyncConfig } from './sync-config.ts'
import {
  zeroStateSyncCounters,
  type InitialSyncResult,
  type MisbehavingPeer,
  type StateSync,
  type StateSyncComponents,
  type StateSyncCounters,
  type StateSyncInit,
  type SyncSessionResult,
} from './sync-types.ts'
import type { DropReason } from './sync-wire.ts'

/** Random draws tried on the shared alive list before filtering a copy of it. */
const PICK_ATTEMPTS = 8

export function createStateSync(init: StateSyncInit = {}): (components: StateSyncComponents) => StateSync {
  const config = resolveStateSyncConfig(init.preset ?? 'lan', init.config)
  return (components) => new StateSyncService(config, components)
}

class StateSyncService implements StateSync {
  readonly ready: Promise<InitialSyncResult>
  private resolveReady: (result: InitialSyncResult) => void = () => undefined
  private readyDone = false
  private readonly state: ClusterState
  private readonly clock: Clock
  private readonly rng: Rng
  private readonly log: Logger
  private readonly peers: () => readonly string[]
  private readonly selfId: string
  private readonly count: StateSyncCounters = zeroStateSyncCounters()
  private readonly dissemination: Dissemination
  private readonly antiEntropy: AntiEntropy
  private readonly misbehaving: LruMap<string, MisbehavingPeer>
  private readonly misbehaviourListeners = new Set<(peerId: string, reason: DropReason) => void>()
  private running = false
  private timer: TimerHandle | undefined
  private tickSession: Promise<SyncSessionResult> | undefined
  /** A session brought forward by a gap (gapFound), pending. */
  private gapTimer: TimerHandle | undefined
  private lastTickAtMs = Number.NEGATIVE_INFINITY
  private initial: Promise<InitialSyncResult> | undefined
  private stopController = new AbortController()
  /** The store had damaged chunks at start and no full session has completed since. */
  private needsRecovery = false
  private recovered = false
  private oversized = false

  constructor(
    readonly config: StateSyncConfig,
    components: StateSyncComponents,
  ) {
    this.state = components.state
    this.clock = components.clock
    this.rng = components.rng
    this.log = components.logger.child({ module: 'state-sync' })
    this.peers = components.peers
    this.selfId = components.transport.selfId
    this.misbehaving = new LruMap(config.misbehavingPeersMax)
    this.ready = new Promise((resolve) => {
      this.resolveReady = resolve
    })
    const misbehave = (peerId: string, reason: DropReason): void => this.misbehave(peerId, reason)
    this.dissemination = new Dissemination({
      config,
      state: this.state,
      transport: components.transport,
      clock: components.clock,
      logger: this.log,
      counters: this.count,
      misbehave,
      // Its sync session's first reply tells us its epoch's record (anti-entropy.ts), and we move there.
      peerAhead: (peerId) => this.antiEntropy.peerAhead(peerId),
      gapFound: () => this.gapFound(),
    })
    this.antiEntropy = new AntiEntropy({
      config,
      state: this.state,
      transport: components.transport,
      logger: this.log,
      counters: this.count,
      misbehave,
      onSessionOk: (peerId) => this.sessionOk(peerId),
    })
  }

  // ---- lifecycle ----

  async start(): Promise<void> {
    if (this.running) return
    this.running = true
    this.stopController = new AbortController()
    this.needsRecovery = this.state.stats().corruptChunks > 0
    if (this.needsRecovery) this.log.warn({ corruptChunks: this.state.stats().corruptChunks }, 'damaged chunks at start: recovering their content from peers')
    this.dissemination.start()
    this.antiEntropy.start()
    this.scheduleTick()
  }

  async stop(): Promise<void> {
    if (!this.running) return
    this.running = false
    this.timer?.cancel()
    this.timer = undefined
    this.gapTimer?.cancel()
    this.gapTimer = undefined
    this.stopController.abort(new Error('state sync stopped'))
    await Promise.allSettled([this.dissemination.stop(), this.antiEntropy.stop()])
    await this.initial?.catch(() => undefined)
    this.initial = undefined
    this.finishReady({ synced: false, outcome: 'stopped', recovered: this.recovered })
  }

  isReady(): boolean {
    return this.readyDone
  }

  // ---- anti-entropy loop ----

  private scheduleTick(): void {
    if (!this.running) return
    const jitterMs = this.config.antiEntropyJitterMs > 0 ? this.rng.int(Math.ceil(this.config.antiEntropyJitterMs)) : 0
    this.timer = this.clock.setTimer(this.config.antiEntropyIntervalMs + jitterMs, () => this.tick())
  }

  /**
   * A held change waits for a lost one: unless reordering fills the gap
   * within gapSyncDelayMs, the next session starts then (and the regular
   * loop counts from it), not up to an interval later. At 20 % loss nearly
   * every node misses one of a burst of changes, and until a session brings
   * it each node's document differs from every other's (the simulator's
   * replicas then apply each later change on their own).
   */
  private gapFound(): void {
    if (!this.running || this.gapTimer !== undefined || this.config.gapSyncDelayMs <= 0) return
    const atMs = Math.max(this.clock.nowMs() + this.config.gapSyncDelayMs, this.lastTickAtMs + this.config.gapSyncIntervalMinMs)
    this.gapTimer = this.clock.setTimer(atMs - this.clock.nowMs(), () => {
      this.gapTimer = undefined
      if (!this.running || this.dissemination.heldCount() === 0 || this.tickSession !== undefined) return
      this.count.gapSyncs++
      this.timer?.cancel()
      this.tick()
    })
  }

  private tick(): void {
    this.lastTickAtMs = this.clock.nowMs()
    this.scheduleTick()
    this.checkDocumentSize()
    if (this.tickSession !== undefined) return // the previous one is still running: no pile-up
    const peerId = this.pickPeer((peer) => !this.antiEntropy.isSyncing(peer))
    if (peerId === undefined) return
    this.tickSession = this.antiEntropy.sync(peerId).finally(() => {
      this.tickSession = undefined
    })
  }

  /**
   * A uniformly random alive peer other than self that `eligible` accepts.
   * Rejection sampling on the shared list first: copying 1,000 peers per
   * tick was 3 % of a quiet stretch at 1,000 nodes, and nearly every peer
   * is eligible.
   */
  private pickPeer(eligible: (peer: string) => boolean): string | undefined {
    const peers = this.peers()
    for (let attempt = 0; attempt < PICK_ATTEMPTS && peers.length > 0; attempt++) {
      const peer = peers[this.rng.int(peers.length)] as string
      if (peer !== this.selfId && eligible(peer)) return peer
    }
    return this.rng.pick(peers.filter((peer) => peer !== this.selfId && eligible(peer)))
  }

  private alivePeers(): string[] {
    // Distinct by contract (sync-types.ts): a Set of every peer to drop duplicates cost most of a tick at 1,000 nodes.
    return this.peers().filter((peer) => peer !== this.selfId)
  }

  private sessionOk(peerId: string): void {
    this.checkDocumentSize()
    if (!this.needsRecovery) return
    this.needsRecovery = false
    this.recovered = true
    this.log.info({ peerId }, 'recovered the content of damaged chunks from a peer')
    // A fresh snapshot drops the damaged chunks, so the next start is clean.
    this.state.compact().catch((err: unknown) => this.log.warn({ err }, 'compaction after recovery failed; the damaged chunks go with the next one'))
  }

  private checkDocumentSize(): void {
    const bytes = this.state.stats().sizeBytes
    if (bytes > this.config.documentBytesMax && !this.oversized) {
      this.oversized = true
      this.count.documentOversized++
      this.log.error({ bytes, documentBytesMax: this.config.documentBytesMax }, 'cluster-state document exceeds documentBytesMax: a joining node may not receive it whole')
    } else if (bytes <= this.config.documentBytesMax) {
      this.oversized = false
    }
  }

  // ---- initial sync ----

  initialSync(bootstrapPeers: readonly string[] = []): Promise<InitialSyncResult> {
    if (this.initial !== undefined) return this.initial
    if (!this.running) return Promise.resolve({ synced: false, outcome: 'stopped', recovered: this.recovered })
    this.initial = this.runInitialSync(bootstrapPeers).then((result) => {
      this.finishReady(result)
      if (result.synced) this.log.info({ peerId: result.peerId, recovered: result.recovered }, 'initial sync done')
      else this.log.warn({ outcome: result.outcome }, 'initial sync did not complete; anti-entropy catches up')
      return result
    })
    return this.initial
  }

  private finishReady(result: InitialSyncResult): void {
    if (this.readyDone) return
    this.readyDone = true
    this.resolveReady(result)
  }

  private async runInitialSync(bootstrapPeers: readonly string[]): Promise<InitialSyncResult> {
    const deadlineMs = this.clock.nowMs() + this.config.initialSyncTimeoutMs
    const bootstrap = bootstrapPeers.filter((peer) => peer !== this.selfId)
    const candidates = (): string[] => [...new Set([...bootstrap, ...this.shuffled(this.alivePeers())])]
    if (bootstrap.length === 0 && this.alivePeers().length === 0) {
      if (this.needsRecovery) this.log.warn({}, 'no peer to recover damaged chunks from yet; anti-entropy keeps trying')
      return { synced: false, outcome: 'alone', recovered: false }
    }
    while (this.running) {
      for (const peerId of candidates()) {
        if (this.clock.nowMs() >= deadlineMs || !this.running) break
        const result = await this.beforeDeadline(this.antiEntropy.sync(peerId), deadlineMs)
        if (result?.ok === true) return { synced: true, outcome: 'synced', peerId, recovered: this.recovered }
      }
      if (!this.running) break
      const leftMs = deadlineMs - this.clock.nowMs()
      if (leftMs <= 0) return { synced: false, outcome: 'timeout', recovered: this.recovered }
      try {
        await this.clock.sleep(Math.min(this.config.initialSyncRetryMs, leftMs), this.stopController.signal)
      } catch {
        break // stopped
      }
    }
    return { synced: false, outcome: 'stopped', recovered: this.recovered }
  }

  // ---- on demand ----

  syncNow(peerId: string): Promise<SyncSessionResult> {
    return this.antiEntropy.sync(peerId)
  }

  peersHolding(heads: readonly string[]): string[] {
    return this.antiEntropy.peersHolding(heads)
  }

  async waitForPeerAck(heads: readonly string[], timeoutMs: number): Promise<boolean> {
    if (heads.length === 0) return true
    if (!this.state.hasChanges(heads)) throw new LatticeError('VALIDATION_FAILED', 'waitForPeerAck: heads not in this replica’s history')
    const deadlineMs = this.clock.nowMs() + timeoutMs
    const held = (): boolean => this.antiEntropy.peersHolding(heads, 1).length > 0
    const tried = new Set<string>()
    while (this.running && !held() && this.clock.nowMs() < deadlineMs) {
      const peerId = this.pickPeer((peer) => !tried.has(peer))
      if (peerId === undefined) {
        // Everyone tried (or nobody known yet): wait a little, then go round again.
        tried.clear()
        await this.beforeDeadline(this.clock.sleep(this.config.ackRetryMs, this.stopController.signal).catch(() => undefined), deadlineMs)
        continue
      }
      tried.add(peerId)
      await this.beforeDeadline(this.antiEntropy.sync(peerId), deadlineMs)
    }
    return held()
  }

  /** The promise's value, or undefined once the clock passes `deadlineMs` (or on stop); the promise runs on. */
  private beforeDeadline<T>(promise: Promise<T>, deadlineMs: number): Promise<T | undefined> {
    return new Promise<T | undefined>((resolve) => {
      const signal = this.stopController.signal
      const finish = (value: T | undefined): void => {
        timer.cancel()
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      }
      const onAbort = (): void => finish(undefined)
      const timer = this.clock.setTimer(Math.max(0, deadlineMs - this.clock.nowMs()), () => finish(undefined))
      signal.addEventListener('abort', onAbort, { once: true })
      promise.then(finish, () => finish(undefined))
    })
  }

  private shuffled(peers: string[]): string[] {
    const out = [...peers]
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.rng.int(i + 1)
      ;[out[i], out[j]] = [out[j]!, out[i]!]
    }
    return out
  }

  // ---- misbehaviour and counters ----

  private misbehave(peerId: string, reason: DropReason): void {
    this.count.misbehaviourReports++
    const entry = this.misbehaving.get(peerId)
    this.misbehaving.set(peerId, { peerId, count: (entry?.count ?? 0) + 1, lastReason: reason, lastAtMs: this.clock.nowMs() })
    for (const listener of [...this.misbehaviourListeners]) {
      try {
        listener(peerId, reason)
      } catch (err) {
        this.log.error({ err }, 'misbehaviour listener failed')
      }
    }
  }

  onMisbehaviour(listener: (peerId: string, reason: DropReason) => void): () => void {
    this.misbehaviourListeners.add(listener)
    return () => this.misbehaviourListeners.delete(listener)
  }

  misbehavingPeers(): MisbehavingPeer[] {
    return [...this.misbehaving].map(([, entry]) => ({ ...entry })).reverse()
  }

  counters(): StateSyncCounters {
    const stats = this.state.stats()
    return {
      ...this.count,
      changesDropped: { ...this.count.changesDropped },
      syncSessionFailures: { ...this.count.syncSessionFailures },
      syncDropped: { ...this.count.syncDropped },
      syncStatesEvicted: this.antiEntropy.statesEvicted,
      documentBytes: stats.sizeBytes,
      documentHeads: stats.headsCount,
    }
  }

  idle(): Promise<void> {
    return this.dissemination.idle()
  }
}
