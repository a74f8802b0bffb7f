/**
 * Epochs over the simulated network: nodes that missed a new epoch learn it
 * from their peers' sync replies (building the genesis from the cut when
 * they hold it, adopting a peer's document when they do not), nothing of
 * one epoch's document reaches another's, and no write is lost across the
 * switch.
 */
import { describe, expect, it } from 'vitest'
import { simCluster, type SimCluster, type SimNode } from '../test/helpers/sync-sim-cluster.ts'
import { STATE_SYNC_PROTOCOL } from './sync-config.ts'
import { replicaView } from './sync-test-support.ts'
import { decodeSyncResponse, encodeSyncRequest } from './sync-wire.ts'
import { sampleStatus } from './test-support.ts'

const deploy = (node: SimNode, id: string) => node.state.createDeployment({ id, spec: { name: `app-${id.toLowerCase()}`, image: 'nginx' }, owner: node.id })

function expectConverged(nodes: SimNode[]): void {
  const [first, ...rest] = nodes
  for (const node of rest) {
    expect(node.state.epoch()).toEqual(first!.state.epoch())
    expect(replicaView(node.state)).toEqual(replicaView(first!.state))
  }
}

async function until(cluster: SimCluster, done: () => boolean, budgetMs: number): Promise<void> {
  for (let elapsed = 0; !done(); elapsed += 100) {
    if (elapsed > budgetMs) throw new Error(`not done after ${budgetMs} ms of virtual time`)
    await cluster.run(100)
  }
}

describe('epochs over the simulated network', () => {
  it('nodes that missed the decision learn it from a sync reply and build the same genesis; writes during the switch are kept', async () => {
    const ids = ['n0', 'n1', 'n2', 'n3']
    const cluster = await simCluster(ids, { seed: 11 })
    try {
      for (const id of ids) await deploy(cluster.node(id), `d-${id}`)
      await cluster.converge(5_000)
      const cut = { epoch: 1, heads: cluster.node('n0').state.heads() }
      // Written after the cut, on a node that has not switched: carried over by whoever holds it.
      await cluster.node('n3').state.reportStatus('d-n3', 0, sampleStatus)
      // Only n0 hears the decision (as if the announcement were lost to the others).
      const entered = await cluster.node('n0').state.enterEpoch(cut)
      await deploy(cluster.node('n0'), 'after-switch')
      await until(cluster, () => ids.every((id) => cluster.node(id).state.epoch().epoch === 1), 30_000)
      await cluster.converge(10_000)
      const nodes = ids.map((id) => cluster.node(id))
      expectConverged(nodes)
      for (const node of nodes) expect(node.state.epoch().genesis).toBe(entered.epoch.genesis)
      const learned = nodes.reduce((sum, node) => sum + node.sync.counters().epochsEntered, 0)
      expect(learned).toBe(3) // each of the others built it from the cut
      expect(nodes.every((node) => node.sync.counters().epochsAdopted === 0)).toBe(true)
      const view = nodes[0]!.state
      expect(view.deployments().map((d) => d.id).sort()).toEqual(['after-switch', 'd-n0', 'd-n1', 'd-n2', 'd-n3'])
      expect(view.statuses('d-n3')).toHaveLength(1)
      // The history is the genesis plus what came after the cut.
      expect(view.stats().changeCount).toBeLessThanOrEqual(1 + 2 + ids.length)
    } finally {
      await cluster.stopAll()
    }
  })

  it('a node partitioned away while the others switched adopts their document after the heal, carrying its own writes over', async () => {
    const ids = ['n0', 'n1', 'n2']
    const cluster = await simCluster(ids, { seed: 5 })
    try {
      await deploy(cluster.node('n0'), 'shared')
      await cluster.converge(5_000)
      cluster.net.partition([['n0', 'n1'], ['n2']])
      await deploy(cluster.node('n2'), 'written-away')
      await deploy(cluster.node('n0'), 'written-during')
      await cluster.run(2_000)
      const cut = { epoch: 1, heads: cluster.node('n0').state.heads() }
      await cluster.node('n0').state.enterEpoch(cut)
      await cluster.node('n1').state.enterEpoch(cut)
      await cluster.run(3_000)
      expect(cluster.node('n2').state.epoch().epoch).toBe(0)
      cluster.net.heal()
      await until(cluster, () => cluster.node('n2').state.epoch().epoch === 1, 30_000)
      await cluster.converge(10_000)
      expectConverged(ids.map((id) => cluster.node(id)))
      expect(cluster.node('n2').sync.counters().epochsAdopted).toBe(1)
      expect(cluster.node('n0').state.deployments().map((d) => d.id).sort()).toEqual(['shared', 'written-away', 'written-during'])
    } finally {
      await cluster.stopAll()
    }
  })

  it('a sync request of another epoch is answered with the responder\'s epoch record, never with its document\'s changes', async () => {
    const cluster = await simCluster(['n0', 'n1'], { seed: 2 })
    try {
      await deploy(cluster.node('n0'), 'a')
      await cluster.converge(5_000)
      const n0 = cluster.node('n0')
      await n0.state.enterEpoch({ epoch: 1, heads: n0.state.heads() })
      const mallory = cluster.net.transport('mallory')
      await mallory.start()
      const ask = async (request: Uint8Array) => {
        let reply: Uint8Array | undefined
        void mallory.request('n0', STATE_SYNC_PROTOCOL, request, { timeoutMs: 1_000, responseBytesMax: 1 << 20 }).then((r) => (reply = r))
        await until(cluster, () => reply !== undefined, 2_000)
        const decoded = decodeSyncResponse(reply!, 1 << 20)
        if (!decoded.ok) throw new Error(decoded.reason)
        return decoded.value
      }
      const behind = await ask(encodeSyncRequest({ epoch: 0, start: true, snapshot: false, payload: new Uint8Array(0) }))
      expect(behind.kind).toBe('epoch')
      expect(behind.epoch).toBe(1)
      expect(JSON.parse(new TextDecoder().decode(behind.payload))).toEqual(n0.state.epoch())
      // The whole document goes only to a peer behind.
      expect((await ask(encodeSyncRequest({ epoch: 0, start: false, snapshot: false, epochDocument: true, payload: new Uint8Array(0) }))).kind).toBe('snapshot')
      expect((await ask(encodeSyncRequest({ epoch: 1, start: false, snapshot: false, epochDocument: true, payload: new Uint8Array(0) }))).kind).toBe('error')
      expect(n0.sync.counters().syncDropped.otherEpoch).toBeGreaterThan(0)
      expect(n0.state.epoch().epoch).toBe(1)
    } finally {
      await cluster.stopAll()
    }
  })
})
