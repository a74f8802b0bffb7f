/**
 * Real libp2p nodes on loopback, in one process: the full node composition
 * (fake runtime, LevelDB in temp dirs) joined through invites.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { eventually, startTestNode, type TestNode } from './helpers/test-node.ts'

const nodes: TestNode[] = []
afterAll(async () => {
  await Promise.all(nodes.map((n) => n.cleanup()))
})

const aliveSeen = async (node: TestNode): Promise<string[]> =>
  (await node.node.api.inject({ method: 'GET', url: '/v1/nodes', headers: node.auth })).json<{ nodes: Array<{ peerId: string; state: string; capacity: { cpu: number } }> }>()
    .nodes.filter((n) => n.state === 'alive' && n.capacity.cpu > 0).map((n) => n.peerId)

const stateOf = async (observer: TestNode, peerId: string): Promise<string | undefined> =>
  (await observer.node.api.inject({ method: 'GET', url: '/v1/nodes', headers: observer.auth })).json<{ nodes: Array<{ peerId: string; state: string }> }>()
    .nodes.find((n) => n.peerId === peerId)?.state

describe('a mesh of real nodes on loopback', () => {
  it('five nodes form a mesh from one invite and all see five alive with capacity', async () => {
    const first = await startTestNode({ config: { name: 'n0' } })
    nodes.push(first)
    const invite = first.node.invite()
    expect(invite.startsWith('lattice1:')).toBe(true)
    for (let i = 1; i < 5; i++) nodes.push(await startTestNode({ join: invite, config: { name: `n${i}` } }))
    const ids = nodes.map((n) => n.node.peerId).sort()
    for (const node of nodes) {
      await eventually(async () => ((await aliveSeen(node)).sort().join() === ids.join() ? true : undefined), 20_000, `${node.node.name} sees all five alive`)
    }
  }, 60_000)

  it('a node started with a wrong mesh key never appears and cannot connect', async () => {
    const stranger = await startTestNode({ config: { name: 'stranger' } })
    try {
      const target = nodes[0]!.node.transport.addresses()[0]!
      await expect(stranger.node.transport.dial(target)).rejects.toThrow()
      await new Promise((resolve) => setTimeout(resolve, 1_000))
      for (const node of nodes) expect(await stateOf(node, stranger.node.peerId)).toBeUndefined()
      expect(stranger.node.transport.connectedPeers()).toHaveLength(0)
    } finally {
      await stranger.cleanup()
    }
  }, 30_000)

  it('a killed node is marked dead by all others; a gracefully stopped one is marked left', async () => {
    const killed = nodes[4]!
    await killed.node.stop({ graceful: false })
    for (const observer of nodes.slice(0, 4)) {
      await eventually(async () => ((await stateOf(observer, killed.node.peerId)) === 'dead' ? true : undefined), 20_000, `${observer.node.name} marks the killed node dead`)
    }
    const leaver = nodes[3]!
    await leaver.node.stop({ graceful: true })
    for (const observer of nodes.slice(0, 3)) {
      await eventually(async () => ((await stateOf(observer, leaver.node.peerId)) === 'left' ? true : undefined), 10_000, `${observer.node.name} marks the leaver left`)
    }
  }, 60_000)

  it('after the bootstrap node leaves, the rest stay connected and a newcomer joining through a remaining node sees everyone', async () => {
    const bootstrap = nodes[0]!
    await bootstrap.node.stop({ graceful: true })
    const remaining = nodes.slice(1, 3)
    const newcomer = await startTestNode({ join: remaining[0]!.node.invite(), config: { name: 'newcomer' } })
    nodes.push(newcomer)
    const expected = [...remaining.map((n) => n.node.peerId), newcomer.node.peerId].sort()
    for (const node of [...remaining, newcomer]) {
      await eventually(async () => ((await aliveSeen(node)).sort().join() === expected.join() ? true : undefined), 20_000, `${node.node.name} sees the remaining nodes and the newcomer`)
    }
  }, 60_000)
})
