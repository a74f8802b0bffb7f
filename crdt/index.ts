/**
 * crdt/ — the cluster's durable state: one Automerge document every node
 * holds (DESIGN.md §4), with nodes, deployments, placements and replica
 * statuses. `createClusterState` (js-libp2p factory style) persists it in a
 * Store (incremental chunks compacted into a snapshot, each checksummed;
 * at a stop, the validated index too, for a faster next start),
 * validates every entry with the zod schemas of schema.ts on read, writes
 * each operation as one Automerge change durable before it resolves, and
 * exposes the change feed and sync surface (heads, changesSince,
 * applyChanges, onLocalChange, the Automerge sync protocol) that state
 * sync builds on. `createStateSync` keeps every node's copy converged:
 * gossip of each change on the state topic, anti-entropy sessions of the
 * Automerge sync protocol with one random peer per interval, a full initial
 * sync (and recovery of damaged chunks) at start, `waitForPeerAck` for
 * `?ack=1`. The history is bounded by epochs: `createEpochAgreement`
 * (Paxos on the cut) and `createEpochKeeper` (when to cut, entering what is
 * decided); a node moves its document with enterEpoch / adoptEpoch, and
 * state sync tells a node behind the epoch it missed. The Store adapters
 * over level and memory-level live here too.
 */
export {
  createClusterState,
  CLUSTER_STATE_DEFAULTS,
  type ClusterState,
  type ClusterStateInit,
  type ClusterStateComponents,
  type ClusterStateReader,
  type ClusterStateStats,
  type ClusterChangeEvent,
  type ApplyResult,
  type EpochSwitch,
  type SyncState,
} from './cluster-state.ts'
export { EPOCH_ZERO, EpochRecordSchema, type EpochRecord } from './persistence.ts'
export { createEpochAgreement, EPOCH_AGREEMENT_DEFAULTS, EPOCH_PAXOS_PROTOCOL, EPOCH_TOPIC, type EpochAgreement, type EpochAgreementConfig } from './epoch-agreement.ts'
export { createEpochKeeper, EPOCH_KEEPER_DEFAULTS, foundersOf, type EpochKeeper, type EpochKeeperConfig, type EpochKeeperCounters } from './epoch-keeper.ts'
export type { EpochCut } from './epoch.ts'
export type { ClusterStateTx } from './mutations.ts'
export { jsonEqual } from './doc-codec.ts'
export { automergeEngine, defaultEngine, type AutomergeEngine } from './automerge-engine.ts'
export { createDocPool, createDocPoolShared, type DocPool, type DocPoolShared, type DocPoolStats } from './doc-pool.ts'
export { createLevelStore, createMemoryStore, type LevelStoreInit } from './level-store.ts'
export * from './schema.ts'
export { createStateSync } from './state-sync.ts'
export {
  STATE_SYNC_PRESETS,
  STATE_SYNC_PROTOCOL,
  STATE_TOPIC,
  resolveStateSyncConfig,
  type StateSyncConfig,
  type StateSyncPreset,
} from './sync-config.ts'
export {
  SYNC_FAILURES,
  zeroStateSyncCounters,
  type InitialSyncResult,
  type MisbehavingPeer,
  type StateSync,
  type StateSyncComponents,
  type StateSyncCounters,
  type StateSyncInit,
  type SyncFailure,
  type SyncSessionResult,
} from './sync-types.ts'
export { DROP_REASONS, type DropReason } from './sync-wire.ts'
