/**
 * A warm start for simulated clusters: every node's store already holds the
 * cluster-state document with every initial node's registry entry, as a
 * cluster that ran before and restarts would. Membership still starts from
 * nothing and joins for real; only the registry is not rebuilt change by
 * change.
 *
 * Why: a cold start of n nodes makes every node apply every other node's
 * registry change, and in Automerge each new writer re-indexes the actor
 * columns of the whole document (insert_actor) and each change's objects are
 * located by a walk of the document (objInfo) — O(n) per change per node,
 * O(n³) for the join: ~50 s of CPU at 300 nodes, ~200 s at 500, ~20 min
 * extrapolated at 1,000. A warm start costs one bulk load per node.
 *
 * Each entry is written by its own node's ClusterState (its own actor, the
 * entry the node core writes at start, so the node's own upsert at start
 * changes nothing); the changes are merged once, the merged document is
 * written once into a store through the public ClusterState API, and that
 * store's entries are copied into every node's store.
 */
import { silentLogger, type Clock, type Store } from '../core/index.ts'
import { createClusterState, createMemoryStore } from '../crdt/index.ts'

export interface RegistryEntry {
  peerId: string
  name: string
  addresses: string[]
  labels: Record<string, string>
  capacity: { cpu: number; memoryMB: number; diskMB: number; gpus: number }
  version: string
  founder?: true
}

/** Writes every entry's registry change and returns the merged document (Automerge.save). */
export async function buildRegistrySnapshot(entries: readonly RegistryEntry[], clock: Clock): Promise<Uint8Array> {
  const changes: Uint8Array[] = []
  for (const entry of entries) {
    const state = createClusterState({ selfId: entry.peerId })({ store: createMemoryStore(), clock, logger: silentLogger })
    await state.start()
    const off = state.onLocalChange((change) => changes.push(change))
    await state.upsertSelfNode({ name: entry.name, addresses: entry.addresses, labels: entry.labels, capacity: entry.capacity, version: entry.version, draining: false, ...(entry.founder === true ? { founder: true as const } : {}) })
    off()
    await state.stop()
  }
  const merged = createClusterState({ selfId: entries[0]?.peerId ?? 'registry' })({ store: createMemoryStore(), clock, logger: silentLogger })
  await merged.start()
  await merged.applyChanges(changes)
  const snapshot = merged.saveSnapshot()
  await merged.stop()
  return snapshot
}

/**
 * A store holding the document as a node's cluster state would after a sync
 * and a compaction (written once through the public ClusterState API); copy
 * its entries into each node's store with copyStore.
 */
export async function registryStore(snapshot: Uint8Array, selfId: string, clock: Clock): Promise<Store> {
  const store = createMemoryStore()
  const state = createClusterState({ selfId })({ store, clock, logger: silentLogger })
  await state.start()
  await state.mergeSnapshot(snapshot)
  await state.compact()
  await state.stop()
  return store
}

/** Copies every entry of `from` (opened and closed here) into `to` (same). */
export async function copyStore(from: Store, to: Store): Promise<void> {
  await from.open()
  const entries = await from.list('')
  await from.close()
  await to.open()
  await to.batch(entries.map((entry) => ({ type: 'put' as const, key: entry.key, value: entry.value })))
  await to.close()
}
