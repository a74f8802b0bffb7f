/** Public types of state sync (crdt/state-sync.ts): init, components, the service, its counters. */
import type { Clock, Logger, Rng, Startable, Transport } from '../core/index.ts'
import type { ClusterState } from './cluster-state.ts'
import type { StateSyncConfig, StateSyncPreset } from './sync-config.ts'
import { DROP_REASONS, type DropReason } from './sync-wire.ts'

export interface StateSyncInit {
  preset?: StateSyncPreset
  config?: Partial<StateSyncConfig>
}

export interface StateSyncComponents {
  state: ClusterState
  transport: Transport
  clock: Clock
  rng: Rng
  logger: Logger
  /** Alive peers, each once, possibly with self (membership's alive list, not copied): anti-entropy picks among them. */
  peers: () => readonly string[]
}

/** Why a sync session ended without converging. */
export type SyncFailure =
  /** A round trip took longer than syncRequestTimeoutMs (or the peer is across a partition). */
  | 'timeout'
  /** The peer is not running or cannot be dialled. */
  | 'unreachable'
  /** The peer serves syncInboundMax sessions already. */
  | 'busy'
  /** The peer refused our request (its reason is logged). */
  | 'refused'
  /** The peer's reply was not our wire format or not a valid sync message. */
  | 'malformed'
  /** A message (ours or the peer's) exceeded syncMessageBytesMax, and so did the whole document. */
  | 'oversized'
  /** syncRoundsMax round trips without both sides saying they have nothing more. */
  | 'roundsExceeded'
  /** This node stopped during the session. */
  | 'stopped'
  /** The peer is in another epoch: the one behind learns the other's (anti-entropy.ts), and the next session syncs. */
  | 'otherEpoch'
  /** Anything else: our store write failed, the peer's handler failed. */
  | 'failed'

export const SYNC_FAILURES: readonly SyncFailure[] = ['timeout', 'unreachable', 'busy', 'refused', 'malformed', 'oversized', 'roundsExceeded', 'stopped', 'otherEpoch', 'failed']

export type SyncSessionResult =
  | { ok: true; peerId: string; rounds: number }
  | { ok: false; peerId: string; rounds: number; reason: SyncFailure }

export interface InitialSyncResult {
  /** A full session with a peer completed: this node holds everything that peer held. */
  synced: boolean
  /** `alone`: no peer to sync with (the first node of a mesh); `timeout`: none answered within initialSyncTimeoutMs. */
  outcome: 'synced' | 'alone' | 'timeout' | 'stopped'
  peerId?: string
  /** The store had damaged chunks at start and a full sync has since brought their content back. */
  recovered: boolean
}

export interface MisbehavingPeer {
  peerId: string
  count: number
  lastReason: DropReason
  lastAtMs: number
}

export interface StateSyncCounters {
  // ---- dissemination (state topic) ----
  /** Local changes published on the state topic. */
  changesPublished: number
  changesPublishFailed: number
  /** Local changes above changeBytesMax: not gossiped, anti-entropy carries them. */
  changesNotPublished: number
  /** Messages received on the state topic. */
  changesReceived: number
  /** Received changes that were new and got applied (and persisted). */
  changesApplied: number
  /** Received changes this node already had (or already held). */
  changesDuplicate: number
  /** Received changes held now, waiting for their dependencies (a gauge). */
  changesPending: number
  changesDropped: Record<DropReason, number>
  // ---- anti-entropy (sync protocol) ----
  syncSessionsStarted: number
  /** Sessions brought forward because a gossiped change waited for a lost one (gapSyncDelayMs). */
  gapSyncs: number
  syncSessionsOk: number
  syncSessionsFailed: number
  syncSessionFailures: Record<SyncFailure, number>
  /** Sessions other peers started with this node. */
  syncSessionsServed: number
  /** Round trips this node initiated / answered. */
  syncRoundsOut: number
  syncRoundsIn: number
  /** All sync-protocol bytes received / sent: requests and responses, both roles. */
  syncBytesIn: number
  syncBytesOut: number
  /** Whole documents sent / merged because a sync message would exceed syncMessageBytesMax. */
  syncSnapshotsSent: number
  syncSnapshotsReceived: number
  /** Moves to a later epoch learned from a peer ahead: built from a cut held here / adopted from the peer's document. */
  epochsEntered: number
  epochsAdopted: number
  /** Adoptions from further behind than the peer's kept geneses reach: this node's changes since its last cut were dropped. */
  epochCarriesLost: number
  /** Inbound sync requests or replies dropped, by reason. */
  syncDropped: Record<DropReason, number>
  syncStatesEvicted: number
  // ---- document ----
  /** Bytes the document occupies in the store, and its heads, at the time of the call. */
  documentBytes: number
  documentHeads: number
  /** Times the document grew past documentBytesMax. */
  documentOversized: number
  /** Reports of peers' misbehaviour (decode failures, invalid entries on the topic, bad sync replies). */
  misbehaviourReports: number
}

export interface StateSync extends Startable {
  readonly config: Readonly<StateSyncConfig>
  /**
   * Resolves once the first initialSync has finished, synced or not (never
   * rejects): the node awaits it before it starts placement.
   */
  readonly ready: Promise<InitialSyncResult>
  isReady(): boolean
  /**
   * Syncs fully with one peer before anything else: the bootstrap peers
   * first, then alive peers, retried until initialSyncTimeoutMs. Resolves
   * `alone` at once when there is no peer at all. A node that found damaged
   * chunks at start keeps trying in the background past the timeout (every
   * anti-entropy session counts) until it has recovered.
   */
  initialSync(bootstrapPeers?: readonly string[]): Promise<InitialSyncResult>
  /** One full anti-entropy session with `peerId` now (joins the one in flight with that peer). */
  syncNow(peerId: string): Promise<SyncSessionResult>
  /**
   * True once at least one other peer is known to hold `heads` durably (its
   * sync reply said so, after its persist); syncs with alive peers to find
   * out. False after `timeoutMs` or on stop.
   */
  waitForPeerAck(heads: readonly string[], timeoutMs: number): Promise<boolean>
  /** Peers whose last sync reply showed they hold `heads`. */
  peersHolding(heads: readonly string[]): string[]
  /** Fired for each drop a peer caused (for peer scoring); returns unsubscribe. */
  onMisbehaviour(listener: (peerId: string, reason: DropReason) => void): () => void
  /** Most recent misbehaving peers first. */
  misbehavingPeers(): MisbehavingPeer[]
  counters(): StateSyncCounters
  /** Resolves once every gossiped change received so far whose dependencies are present is applied (tests, orderly shutdown). */
  idle(): Promise<void>
}

export function zeroDrops(): Record<DropReason, number> {
  const drops = {} as Record<DropReason, number>
  for (const reason of DROP_REASONS) drops[reason] = 0
  return drops
}

export function zeroStateSyncCounters(): StateSyncCounters {
  const failures = {} as Record<SyncFailure, number>
  for (const reason of SYNC_FAILURES) failures[reason] = 0
  return {
    changesPublished: 0,
    changesPublishFailed: 0,
    changesNotPublished: 0,
    changesReceived: 0,
    changesApplied: 0,
    changesDuplicate: 0,
    changesPending: 0,
    changesDropped: zeroDrops(),
    syncSessionsStarted: 0,
    gapSyncs: 0,
    syncSessionsOk: 0,
    syncSessionsFailed: 0,
    syncSessionFailures: failures,
    syncSessionsServed: 0,
    syncRoundsOut: 0,
    syncRoundsIn: 0,
    syncBytesIn: 0,
    syncBytesOut: 0,
    syncSnapshotsSent: 0,
    syncSnapshotsReceived: 0,
    epochsEntered: 0,
    epochsAdopted: 0,
    epochCarriesLost: 0,
    syncDropped: zeroDrops(),
    syncStatesEvicted: 0,
    documentBytes: 0,
    documentHeads: 0,
    documentOversized: 0,
    misbehaviourReports: 0,
  }
}
