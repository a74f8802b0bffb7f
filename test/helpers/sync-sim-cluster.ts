/**
 * A cluster of cluster-state replicas with state sync over the simulated
 * network, in virtual time: the harness of the crdt/ state-sync tests.
 */
import { createRng, silentLogger, type Store, type Transport } from '../../core/index.ts'
import { createClusterState, createMemoryStore, createStateSync, type ClusterState, type StateSync, type StateSyncConfig } from '../../crdt/index.ts'
import { createSimNetwork, type SimNetwork } from '../../sim/sim-network.ts'
import { createVirtualClock, type VirtualClock } from '../../sim/virtual-clock.ts'

export interface SimNode {
  id: string
  store: Store
  state: ClusterState
  transport: Transport
  sync: StateSync
}

export interface SimCluster {
  clock: VirtualClock
  net: SimNetwork
  nodes: Map<string, SimNode>
  node(id: string): SimNode
  /** Starts (or restarts, on its old store) a node. */
  start(id: string, options?: { store?: Store; compactAfterChunks?: number }): Promise<SimNode>
  stop(id: string): Promise<void>
  /** Advances virtual time in small steps so store writes and timers interleave as on a real clock. */
  run(ms: number): Promise<void>
  /** Runs until every running node has the same heads, or fails after `budgetMs`; returns the time it took. */
  converge(budgetMs: number): Promise<number>
  stopAll(): Promise<void>
}

export async function simCluster(ids: string[], options: { seed?: number; lossRate?: number; duplicateRate?: number; config?: Partial<StateSyncConfig> } = {}): Promise<SimCluster> {
  const clock = createVirtualClock()
  const rng = createRng(options.seed ?? 1)
  const net = createSimNetwork(
    { latencyMs: { min: 1, max: 10 }, lossRate: options.lossRate ?? 0, duplicateRate: options.duplicateRate ?? 0 },
    { clock, rng: rng.fork('network') },
  )
  const nodes = new Map<string, SimNode>()
  let restarts = 0
  const cluster: SimCluster = {
    clock,
    net,
    nodes,
    node: (id) => {
      const found = nodes.get(id)
      if (found === undefined) throw new Error(`no running node ${id}`)
      return found
    },
    async start(id, startOptions = {}) {
      const store = startOptions.store ?? createMemoryStore()
      const state = createClusterState({ selfId: id, compactAfterChunks: startOptions.compactAfterChunks ?? 1_000 })({ store, clock, logger: silentLogger })
      await state.start()
      const transport = net.transport(id)
      await transport.start()
      const sync = createStateSync({ preset: 'test', config: options.config })({
        state,
        transport,
        clock,
        rng: rng.fork(`${id}/${restarts++}`),
        logger: silentLogger,
        // What membership would say: the running peers this node can reach, itself included (its alive list does).
        peers: () => [...nodes.keys()].filter((peer) => peer === id || net.reachable(id, peer)),
      })
      await sync.start()
      const node = { id, store, state, transport, sync }
      nodes.set(id, node)
      return node
    },
    async stop(id) {
      const node = cluster.node(id)
      nodes.delete(id)
      await node.sync.stop()
      await node.transport.stop()
      await node.state.stop()
    },
    async run(ms) {
      for (let elapsed = 0; elapsed < ms; elapsed += 25) await clock.advance(Math.min(25, ms - elapsed))
    },
    async converge(budgetMs) {
      const startedAtMs = clock.nowMs()
      while (!sameHeads([...nodes.values()])) {
        if (clock.nowMs() - startedAtMs > budgetMs) throw new Error(`no convergence within ${budgetMs} ms of virtual time`)
        await cluster.run(100)
      }
      return clock.nowMs() - startedAtMs
    },
    async stopAll() {
      for (const id of [...nodes.keys()]) await cluster.stop(id)
    },
  }
  for (const id of ids) await cluster.start(id)
  return cluster
}

export function sameHeads(nodes: SimNode[]): boolean {
  const [first, ...rest] = nodes.map((node) => [...node.state.heads()].sort().join())
  return rest.every((heads) => heads === first)
}

