/**
 * A node stopped and restarted on its store catches up on what was written
 * while it was away, in its document and in its read index alike (the
 * scenario of test/cluster-real.test.ts › "a stopped node catches up", over
 * the simulated network). Variants: a plain restart, three nodes creating the
 * same deployment id concurrently beforehand (what the real test's shared
 * PRNG seed does), and a burst of writes while the node is away.
 */
import { describe, expect, it } from 'vitest'
import { createRng, silentLogger, type Store, type Transport } from '../core/index.ts'
import { createSimNetwork, type SimNetwork } from '../sim/sim-network.ts'
import { createVirtualClock, type VirtualClock } from '../sim/virtual-clock.ts'
import { createClusterState, type ClusterState } from './cluster-state.ts'
import { createMemoryStore } from './level-store.ts'
import { createStateSync } from './state-sync.ts'
import type { StateSyncConfig } from './sync-config.ts'
import { replicaView } from './sync-test-support.ts'
import type { StateSync } from './sync-types.ts'
import { sampleNode, sampleStatus } from './test-support.ts'

interface SimNode {
  id: string
  store: Store
  state: ClusterState
  transport: Transport
  sync: StateSync
}

interface SimCluster {
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

async function simCluster(ids: string[], options: { seed?: number; lossRate?: number; duplicateRate?: number; config?: Partial<StateSyncConfig> } = {}): Promise<SimCluster> {
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
        // What membership would say: the running peers this node can reach.
        peers: () => [...nodes.keys()].filter((peer) => peer !== id && net.reachable(id, peer)),
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

function sameHeads(nodes: SimNode[]): boolean {
  const [first, ...rest] = nodes.map((node) => [...node.state.heads()].sort().join())
  return rest.every((heads) => heads === first)
}

const deploy = (node: SimNode, id: string, extra: { env?: Record<string, string> } = {}) =>
  node.state.createDeployment({ id, spec: { name: `app-${id.toLowerCase()}`, image: 'nginx', ...extra }, owner: node.id })


describe('a restarted node catches up', () => {
  for (const seed of [1, 2, 3]) {
    for (const variant of ['plain', 'same-id', 'busy'] as const) {
      it(`seed ${seed} ${variant}`, async () => {
        const cluster = await simCluster(['a', 'b', 'c'], { seed })
        for (const id of ['a', 'b', 'c']) await cluster.node(id).state.upsertSelfNode({ ...sampleNode, name: id })
        if (variant === 'same-id') await Promise.all(['a', 'b', 'c'].map((id) => deploy(cluster.node(id), 'd1')))
        else await deploy(cluster.node('a'), 'd1')
        await cluster.converge(30_000)
        for (const id of ['a', 'b', 'c']) await cluster.node(id).state.reportStatus('d1', 0, { ...sampleStatus })
        await cluster.converge(30_000)
        const store = cluster.node('c').store
        await cluster.stop('c')
        await deploy(cluster.node('a'), 'away')
        if (variant === 'busy') for (let i = 0; i < 20; i++) await cluster.node('b').state.reportStatus('d1', 0, { ...sampleStatus, restarts: i })
        await cluster.run(200)
        const back = await cluster.start('c', { store })
        await back.state.upsertSelfNode({ ...sampleNode, name: 'c' })
        await cluster.run(1000)
        await cluster.converge(30_000)
        await cluster.run(2000)
        expect(back.state.heads().sort()).toEqual(cluster.node('a').state.heads().sort())
        expect(back.state.deployment('away')).toBeDefined()
        expect(replicaView(back.state)).toEqual(replicaView(cluster.node('a').state))
        await cluster.stopAll()
      })
    }
  }
})
