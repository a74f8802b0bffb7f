/**
 * Automerge's WebAssembly memory for a simulated cluster: grown up front for
 * the cluster's size, and again, by a factor, as soon as the allocator had
 * to grow it on its own (the cluster checks after every driver step) —
 * every growth of a WebAssembly memory makes V8 account the whole memory as
 * new external memory and react as to memory pressure (crdt/wasm-reserve.ts
 * says why that matters: it was over half the CPU of a 150-node run, and a
 * GC storm at a 1,000-node heal). Memory management
 * only: nothing here changes what a simulated node does, so traces are
 * unaffected.
 *
 * A cluster whose documents need more than one engine's memory is planned
 * onto several Automerge engines (crdt/automerge-engine.ts), node i on
 * engine 1 + (i mod k): one wasm32 memory ends at 4 GiB, and a 1,000-node run of
 * the whole node core aborted inside Automerge with one.
 */
import { automergeEngine, type AutomergeEngine } from '../crdt/automerge-engine.ts'
import { reserveAutomergeMemory } from '../crdt/wasm-reserve.ts'

/**
 * Automerge memory a simulated node needs, measured on chaos runs (30
 * deployments, 70–80 virtual s): ~0.9 MB per node at 150 nodes, ~1.3 MB at
 * 300. Every node's document holds every node's registry entry and the
 * change that wrote it, so the need per node grows with the cluster:
 * base + perPeer × nodes.
 */
export const AUTOMERGE_BYTES_PER_NODE_BASE = 512 * 1024
export const AUTOMERGE_BYTES_PER_NODE_PER_PEER = 3 * 1024
/**
 * Then every deployment: measured on a 200-node × 200-deployment placement
 * run, each document grew ~5.7 KB per change after the registry (WebAssembly
 * memory, fragmentation included: a fresh load of the same document takes
 * 2.2 MB, the grown one ~5.8 MB), and a placement run makes ~4 changes per
 * deployment; the cost of a change grows with the actors a document knows
 * (synthetic changes: 1.3 KB at 100 actors, 2.9 KB at 500).
 */
export const AUTOMERGE_CHANGES_PER_DEPLOYMENT = 5
export const AUTOMERGE_BYTES_PER_CHANGE_BASE = 4 * 1024
export const AUTOMERGE_BYTES_PER_CHANGE_PER_PEER = 8
/** wasm32 memory ends at 4 GiB; what is left above this is for growth the estimate missed. */
export const AUTOMERGE_RESERVE_BYTES_MAX = 3 * 1024 ** 3
/**
 * The estimate one engine is planned for, well below its 4 GiB: the estimate
 * is of measured runs, and a run with more faults (restarts, re-placements)
 * makes more changes per deployment than it plans for.
 */
export const AUTOMERGE_PLANNED_BYTES_PER_ENGINE = 1.5 * 1024 ** 3
/**
 * The simulator's documents live on engines 1…k, never on the default engine
 * 0: the process can reach the allocator of an engine it made but not of the
 * default one (crdt/automerge-engine.ts), so only these reserve without
 * making the reserve resident — six engines' reserves written out were
 * ~9.6 GB of RAM on a 1,000-node run that needed far less.
 */
export const FIRST_SIMULATED_ENGINE = 1
/** Each top-up grows an engine's memory to this factor of its size: a few top-ups, not one per page. */
export const TOP_UP_FACTOR = 1.5

/** Estimated Automerge memory of a whole cluster of `nodes` simulated nodes running `deployments` deployments. */
export function automergeBytesFor(nodes: number, deployments = 0): number {
  const perChange = AUTOMERGE_BYTES_PER_CHANGE_BASE + AUTOMERGE_BYTES_PER_CHANGE_PER_PEER * nodes
  return nodes * (AUTOMERGE_BYTES_PER_NODE_BASE + AUTOMERGE_BYTES_PER_NODE_PER_PEER * nodes + deployments * AUTOMERGE_CHANGES_PER_DEPLOYMENT * perChange)
}

/** How many engines such a cluster is spread over. */
export function automergeEnginesFor(nodes: number, deployments = 0): number {
  return Math.max(1, Math.ceil(automergeBytesFor(nodes, deployments) / AUTOMERGE_PLANNED_BYTES_PER_ENGINE))
}

export interface AutomergeMemoryGuard {
  /** The engine that holds node `index`'s document (the same one across its restarts). */
  engineFor(index: number): AutomergeEngine
  engines(): number
  /** Tops up the memory of each engine whose allocator grew it since the last reserve; cheap, call often. */
  check(): void
  /** Reserved over all engines. */
  reservedBytes(): number
  /** The engines' memory now, in all (an engine whose size is out of reach counts its reserve). */
  memoryBytes(): number
  topUps(): number
}

export function guardAutomergeMemory(nodes: number, deployments = 0): AutomergeMemoryGuard {
  const engines = Array.from({ length: automergeEnginesFor(nodes, deployments) }, (_, index) => automergeEngine(FIRST_SIMULATED_ENGINE + index))
  const perEngine = Math.min(AUTOMERGE_RESERVE_BYTES_MAX, Math.ceil(automergeBytesFor(nodes, deployments) / engines.length))
  const reserved = engines.map((engine) => reserveAutomergeMemory(perEngine, engine))
  // Each engine's memory size after its last reserve: a larger one means the allocator ran out of reserve and grew it
  // page by page (undefined where the allocator is out of reach: that engine's reserve was written, and cannot be topped up).
  const grownTo = engines.map((engine) => engine.memoryBytes())
  let topUps = 0
  return {
    engineFor: (index) => engines[index % engines.length]!,
    engines: () => engines.length,
    check() {
      engines.forEach((engine, i) => {
        const size = engine.memoryBytes()
        const last = grownTo[i]
        if (size === undefined || last === undefined || size <= last || size >= AUTOMERGE_RESERVE_BYTES_MAX) return
        topUps++
        reserved[i] = reserveAutomergeMemory(Math.min(AUTOMERGE_RESERVE_BYTES_MAX, Math.ceil(size * TOP_UP_FACTOR)), engine)
        grownTo[i] = engine.memoryBytes()
      })
    },
    reservedBytes: () => reserved.reduce((sum, bytes) => sum + bytes, 0),
    memoryBytes: () => engines.reduce((sum, engine, i) => sum + (engine.memoryBytes() ?? reserved[i]!), 0),
    topUps: () => topUps,
  }
}
