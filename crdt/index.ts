/**
 * crdt/ — the cluster's durable state: one Automerge document every node
 * holds (DESIGN.md §4), with nodes, deployments, placements and replica
 * statuses. `createClusterState` (js-libp2p factory style) persists it in a
 * Store (incremental chunks compacted into a snapshot, each checksummed),
 * validates every entry with the zod schemas of schema.ts on read, writes
 * each operation as one Automerge change durable before it resolves, and
 * exposes the change feed and sync surface (heads, changesSince,
 * applyChanges, onLocalChange) that gossip and anti-entropy build on. The
 * Store adapters over level and memory-level live here too.
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
} from './cluster-state.ts'
export type { ClusterStateTx } from './mutations.ts'
export { createLevelStore, createMemoryStore, type LevelStoreInit } from './level-store.ts'
export * from './schema.ts'
