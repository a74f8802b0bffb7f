/**
 * Epochs on real nodes (libp2p on loopback, LevelDB, the fake runtime): the
 * founder accepts the first agreement, the history is cut once it passes
 * epochChangesMin, every node moves to the new epoch, nothing accepted is
 * lost, and a restarted node comes back in its epoch.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DeploymentView } from '../node/index.ts'
import { createFakeEngine } from '../runtime/index.ts'
import { eventually, startTestNode, type TestNode } from './helpers/test-node.ts'

const engine = createFakeEngine()
const nodes: TestNode[] = []
const epochs = { epochChangesMin: 40, epochCheckIntervalMs: 300, epochCutSettleMs: 300 }

const api = (node: TestNode, method: 'GET' | 'POST', url: string, body?: unknown) =>
  node.node.api.inject({ method, url, headers: node.auth, ...(body !== undefined ? { payload: body as object } : {}) })
const list = async (node: TestNode): Promise<DeploymentView[]> => (await api(node, 'GET', '/v1/deployments')).json<{ deployments: DeploymentView[] }>().deployments
const epochOf = async (node: TestNode): Promise<number> => (await api(node, 'GET', '/v1/health')).json<{ document: { epoch: number } }>().document.epoch
const spec = (name: string) => ({ name, image: 'lattice-test/busybox:latest', command: ['/bin/httpd', '-f', '-p', '80', '-h', '/www'], resources: { cpu: 0.1, memoryMB: 16 } })

beforeAll(async () => {
  const first = await startTestNode({ engine, config: { name: 'a', ...epochs } })
  nodes.push(first)
  for (const name of ['b', 'c']) nodes.push(await startTestNode({ engine, join: first.node.invite(), config: { name, ...epochs } }))
  for (const node of nodes) {
    await eventually(async () => ((await api(node, 'GET', '/v1/nodes')).json<{ nodes: Array<{ state: string }> }>().nodes.filter((n) => n.state === 'alive').length === 3 ? true : undefined), 20_000, 'three alive')
  }
}, 60_000)

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.cleanup()))
})

describe('epochs on three real nodes', () => {
  it('the node that made the mesh is its founder; the others joined it', async () => {
    const [a] = nodes
    await eventually(() => (nodes.every((n) => n.node.state.node(a!.node.peerId)?.founder === true) ? true : undefined), 10_000, 'founder flag everywhere')
    for (const node of nodes.slice(1)) expect(a!.node.state.node(node.node.peerId)?.founder).toBeUndefined()
  })

  it('past epochChangesMin the history is cut: every node moves to the new epoch and keeps every deployment', async () => {
    const ids: string[] = []
    for (let i = 0; i < 24; i++) {
      const answer = await api(nodes[i % 3]!, 'POST', '/v1/deployments', spec(`e-${i}`))
      expect(answer.statusCode).toBe(201)
      ids.push(answer.json<{ id: string }>().id)
    }
    for (const node of nodes) await eventually(async () => ((await epochOf(node)) >= 1 ? true : undefined), 30_000, `${node.node.name} in epoch 1`)
    // Written after the switch: the new epoch takes writes as the old one did.
    const after = await api(nodes[1]!, 'POST', '/v1/deployments', spec('after-the-cut'))
    ids.push(after.json<{ id: string }>().id)
    for (const node of nodes) {
      await eventually(async () => {
        const seen = new Set((await list(node)).map((d) => d.id))
        return ids.every((id) => seen.has(id)) ? true : undefined
      }, 20_000, `${node.node.name} holds every deployment`)
    }
    await eventually(() => {
      const heads = nodes.map((n) => [...n.node.state.heads()].sort().join())
      return heads.every((h) => h === heads[0]) && nodes.every((n) => n.node.state.epoch().epoch === nodes[0]!.node.state.epoch().epoch) ? true : undefined
    }, 20_000, 'equal heads in one epoch')
    const epoch = nodes[0]!.node.state.epoch()
    expect(epoch.epoch).toBeGreaterThanOrEqual(1)
    expect(epoch.acceptors.length).toBeGreaterThanOrEqual(1)
    // The history was dropped: far fewer changes than the writes made.
    expect(nodes[0]!.node.state.stats().changeCount).toBeLessThan(epochs.epochChangesMin * 3)
  }, 90_000)

  it('a node that joins after the cut starts in the cluster\'s epoch with every deployment', async () => {
    const joiner = await startTestNode({ engine, join: nodes[0]!.node.invite(), config: { name: 'd', ...epochs } })
    nodes.push(joiner)
    const epoch = nodes[0]!.node.state.epoch().epoch
    expect(epoch).toBeGreaterThanOrEqual(1)
    await eventually(async () => ((await epochOf(joiner)) >= epoch ? true : undefined), 20_000, 'joiner in the epoch')
    const expected = (await list(nodes[0]!)).map((d) => d.id).sort()
    await eventually(async () => {
      const seen = new Set((await list(joiner)).map((d) => d.id))
      return expected.every((id) => seen.has(id)) ? true : undefined
    }, 20_000, 'joiner holds every deployment')
    expect(joiner.node.state.node(joiner.node.peerId)?.name).toBe('d')
  }, 60_000)

  it('a restarted node comes back in its epoch and catches up', async () => {
    const victim = nodes[2]!
    const before = victim.node.state.epoch().epoch
    await victim.stop()
    await api(nodes[0]!, 'POST', '/v1/deployments', spec('while-away'))
    const back = await victim.restart()
    nodes[2] = back
    expect(back.node.state.epoch().epoch).toBeGreaterThanOrEqual(before)
    await eventually(async () => ((await list(back)).some((d) => d.name === 'while-away') ? true : undefined), 20_000, 'caught up')
  }, 60_000)
})
