/**
 * A node stopped and restarted on its store catches up on what was written
 * while it was away, in its document and in its read index alike (the
 * scenario of test/cluster-real.test.ts › "a stopped node catches up", over
 * the simulated network). Variants: a plain restart, three nodes creating the
 * same deployment id concurrently beforehand (what the real test's shared
 * PRNG seed does), and a burst of writes while the node is away.
 */
import { describe, expect, it } from 'vitest'
import { simCluster, type SimNode } from '../test/helpers/sync-sim-cluster.ts'
import { replicaView } from './sync-test-support.ts'
import { sampleNode, sampleStatus } from './test-support.ts'

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
