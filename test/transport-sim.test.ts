import { describe, expect, it } from 'vitest'
import { createRng, TransportError, type PeerEvent, type Transport } from '../core/index.ts'
import { createSimNetwork, type SimNetwork, type SimNetworkInit } from '../sim/sim-network.ts'
import { createVirtualClock, type VirtualClock } from '../sim/virtual-clock.ts'
import { runTransportSuite } from './suites/transport-suite.ts'

const CALM: SimNetworkInit = { latencyMs: { min: 5, max: 20 }, lossRate: 0, duplicateRate: 0 }

interface World {
  clock: VirtualClock
  network: SimNetwork
  peers: Transport[]
}

async function world(n: number, init: SimNetworkInit = CALM, seed = 1): Promise<World> {
  const clock = createVirtualClock()
  const network = createSimNetwork(init, { clock, rng: createRng(seed) })
  const peers = Array.from({ length: n }, (_, i) => network.transport(`p${i}`))
  for (const peer of peers) await peer.start()
  return { clock, network, peers }
}

async function dialAll({ clock, peers }: World): Promise<void> {
  for (let i = 1; i < peers.length; i++) {
    for (let j = 0; j < i; j++) {
      const dialled = peers[i]!.dial(peers[j]!.addresses()[0]!)
      await clock.advance(100)
      await dialled
    }
  }
}

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)
const text = (data: Uint8Array): string => new TextDecoder().decode(data)

runTransportSuite('simulated network', async (n) => {
  const clock = createVirtualClock()
  const network = createSimNetwork(CALM, { clock, rng: createRng(7) })
  const transports = Array.from({ length: n }, (_, i) => network.transport(`peer-${i}`))
  return {
    transports,
    settle: (ms) => clock.advance(ms),
    cleanup: async () => {
      for (const transport of transports) await transport.stop()
    },
  }
})

describe('simulated network faults', () => {
  it('a partition blocks messages between its sides both ways, and heal restores them', async () => {
    const w = await world(4)
    const [p0, p1, p2, p3] = w.peers as [Transport, Transport, Transport, Transport]
    const inbox = new Map<string, string[]>()
    for (const peer of w.peers) {
      inbox.set(peer.selfId, [])
      peer.subscribe('t', (m) => inbox.get(peer.selfId)!.push(`${m.from}:${text(m.data)}`))
    }
    w.network.partition([['p0', 'p1'], ['p2']]) // p3 is unlisted: it joins no island of the others
    await p0.publish('t', bytes('a'))
    await p2.publish('t', bytes('b'))
    await p3.publish('t', bytes('c'))
    await w.clock.advance(100)
    expect(inbox.get('p1')).toEqual(['p0:a'])
    expect(inbox.get('p0')).toEqual([])
    expect(inbox.get('p2')).toEqual([])
    expect(inbox.get('p3')).toEqual([])
    expect(w.network.reachable('p0', 'p2')).toBe(false)
    expect(w.network.reachable('p2', 'p0')).toBe(false)

    w.network.heal()
    await p2.publish('t', bytes('d'))
    await w.clock.advance(100)
    for (const id of ['p0', 'p1', 'p3']) expect(inbox.get(id)).toContain('p2:d')
    void p1
  })

  it('messages in flight when a partition starts are dropped on arrival', async () => {
    const w = await world(2, { latencyMs: { min: 50, max: 50 }, lossRate: 0, duplicateRate: 0 })
    const [p0, p1] = w.peers as [Transport, Transport]
    const got: string[] = []
    p1.subscribe('t', (m) => got.push(text(m.data)))
    await p0.publish('t', bytes('x'))
    await w.clock.advance(10)
    w.network.partition([['p0'], ['p1']])
    await w.clock.advance(100)
    expect(got).toEqual([])
    expect(w.network.counters().byPeer['p0']!.messagesBlocked).toBe(1)
  })

  it('a block drops one direction only', async () => {
    const w = await world(2)
    const [p0, p1] = w.peers as [Transport, Transport]
    const got = { p0: [] as string[], p1: [] as string[] }
    p0.subscribe('t', (m) => got.p0.push(text(m.data)))
    p1.subscribe('t', (m) => got.p1.push(text(m.data)))
    w.network.block('p0', 'p1')
    await p0.publish('t', bytes('to p1'))
    await p1.publish('t', bytes('to p0'))
    await w.clock.advance(100)
    expect(got).toEqual({ p0: ['to p0'], p1: [] })
    // A request over the blocked direction is lost and times out.
    p1.handle('/echo/1', async (r) => r.data, { requestBytesMax: 16 })
    const pending = p0.request('p1', '/echo/1', bytes('?'), { timeoutMs: 500, responseBytesMax: 16 })
    pending.catch(() => {})
    await w.clock.advance(600)
    await expect(pending).rejects.toMatchObject({ code: 'TIMEOUT' })
  })

  it('a partition takes links down and heal brings them back, with peer events', async () => {
    const w = await world(3)
    await dialAll(w)
    const [p0, p1, p2] = w.peers as [Transport, Transport, Transport]
    const events: PeerEvent[] = []
    p0.onPeerEvent((e) => events.push(e))
    expect(p0.connectedPeers()).toEqual(['p1', 'p2'])
    w.network.partition([['p0', 'p1'], ['p2']])
    await w.clock.advance(1)
    expect(p0.connectedPeers()).toEqual(['p1'])
    expect(p2.connectedPeers()).toEqual([])
    expect(events).toEqual([{ type: 'disconnect', peerId: 'p2' }])
    w.network.heal()
    await w.clock.advance(1)
    expect(p0.connectedPeers()).toEqual(['p1', 'p2'])
    expect(events.at(-1)).toEqual({ type: 'connect', peerId: 'p2' })
    expect(p1.connectedPeers()).toEqual(['p0', 'p2'])
  })

  it('a dial into a partition fails UNREACHABLE after the dial timeout', async () => {
    const w = await world(2, { ...CALM, dialTimeoutMs: 2_000 })
    const [p0, p1] = w.peers as [Transport, Transport]
    w.network.partition([['p0'], ['p1']])
    const dialled = p0.dial(p1.addresses()[0]!)
    dialled.catch(() => {})
    await w.clock.advance(1_900)
    let settled = false
    dialled.then(() => (settled = true), () => (settled = true))
    await w.clock.advance(0)
    expect(settled).toBe(false)
    await w.clock.advance(200)
    await expect(dialled).rejects.toMatchObject({ code: 'UNREACHABLE' })
  })

  it('a restarted peer gets a fresh transport and its links come back', async () => {
    const w = await world(2)
    await dialAll(w)
    const [p0, p1] = w.peers as [Transport, Transport]
    expect(() => w.network.transport('p1')).toThrow(/already has a running transport/)
    await p1.stop()
    expect(p0.connectedPeers()).toEqual([])
    const reborn = w.network.transport('p1')
    await expect(p1.start()).rejects.toThrow(/replaced/)
    const got: string[] = []
    reborn.subscribe('t', (m) => got.push(text(m.data)))
    await reborn.start()
    expect(p0.connectedPeers()).toEqual(['p1'])
    await p0.publish('t', bytes('welcome back'))
    await w.clock.advance(100)
    expect(got).toEqual(['welcome back'])
  })

  it('a stopped transport may start again and keeps its subscriptions and handlers', async () => {
    const w = await world(2)
    await dialAll(w)
    const [p0, p1] = w.peers as [Transport, Transport]
    const got: string[] = []
    p1.subscribe('t', (m) => got.push(text(m.data)))
    p1.handle('/echo/1', async (r) => r.data, { requestBytesMax: 16 })
    await p1.stop()
    await p0.publish('t', bytes('missed'))
    await w.clock.advance(100)
    await p1.start()
    await p0.publish('t', bytes('seen'))
    const answer = p0.request('p1', '/echo/1', bytes('ok'), { timeoutMs: 1_000, responseBytesMax: 16 })
    await w.clock.advance(100)
    expect(got).toEqual(['seen'])
    expect(text(await answer)).toBe('ok')
  })

  it('pending requests of a transport that stops fail with STOPPED', async () => {
    const w = await world(2)
    const [p0, p1] = w.peers as [Transport, Transport]
    p1.handle('/silent/1', () => new Promise<Uint8Array>(() => {}), { requestBytesMax: 16 })
    const pending = p0.request('p1', '/silent/1', bytes('?'), { timeoutMs: 5_000, responseBytesMax: 16 })
    pending.catch(() => {})
    await w.clock.advance(50)
    await p0.stop()
    await expect(pending).rejects.toMatchObject({ code: 'STOPPED' })
  })

  it('loss and duplication follow their rates, and counters add up per peer', async () => {
    const w = await world(2, { latencyMs: { min: 1, max: 10 }, lossRate: 0.3, duplicateRate: 0.2 })
    const [p0, p1] = w.peers as [Transport, Transport]
    let received = 0
    p1.subscribe('t', () => received++)
    const sent = 2_000
    for (let i = 0; i < sent; i++) await p0.publish('t', new Uint8Array(10))
    await w.clock.advance(100)
    const { byPeer, total } = w.network.counters()
    const sender = byPeer['p0']!
    expect(sender.messagesSent).toBe(sent)
    expect(sender.bytesSent).toBe(sent * 10)
    expect(sender.messagesLost / sent).toBeGreaterThan(0.25)
    expect(sender.messagesLost / sent).toBeLessThan(0.35)
    const kept = sent - sender.messagesLost
    expect(sender.messagesDuplicated / kept).toBeGreaterThan(0.15)
    expect(sender.messagesDuplicated / kept).toBeLessThan(0.25)
    expect(received).toBe(kept + sender.messagesDuplicated)
    expect(byPeer['p1']!.messagesReceived).toBe(received)
    expect(byPeer['p1']!.bytesReceived).toBe(received * 10)
    expect(total.messagesSent).toBe(sent)
  })

  it('setLoss, setDuplicate and setLatency change the network for later messages', async () => {
    const w = await world(2)
    const [p0, p1] = w.peers as [Transport, Transport]
    const arrivals: number[] = []
    p1.subscribe('t', () => arrivals.push(w.clock.nowMs()))
    w.network.setLatency({ min: 500, max: 500 })
    const sentAt = w.clock.nowMs()
    await p0.publish('t', bytes('slow'))
    await w.clock.advance(499)
    expect(arrivals).toEqual([])
    await w.clock.advance(1)
    expect(arrivals).toEqual([sentAt + 500])
    w.network.setLoss(1)
    await p0.publish('t', bytes('lost'))
    await w.clock.advance(600)
    expect(arrivals).toHaveLength(1)
    w.network.setLoss(0)
    w.network.setDuplicate(1)
    w.network.setLatency(() => 7)
    await p0.publish('t', bytes('twice'))
    await w.clock.advance(10)
    expect(arrivals).toHaveLength(3)
    expect(() => w.network.setLoss(1.5)).toThrow(RangeError)
    expect(() => w.network.setLatency({ min: 5, max: 1 })).toThrow(RangeError)
  })

  it('publish refuses a message above messageBytesMax with TOO_LARGE', async () => {
    const w = await world(1, { ...CALM, messageBytesMax: 100 })
    await expect(w.peers[0]!.publish('t', new Uint8Array(101))).rejects.toBeInstanceOf(TransportError)
    await expect(w.peers[0]!.publish('t', new Uint8Array(101))).rejects.toMatchObject({ code: 'TOO_LARGE' })
    await w.peers[0]!.publish('t', new Uint8Array(100))
  })
})

describe('simulated network determinism', () => {
  /** Five peers each publish 20 messages at once; returns who got what, in order. */
  async function deliveryTrace(seed: number): Promise<string[]> {
    const w = await world(5, { latencyMs: { min: 1, max: 200 }, lossRate: 0.1, duplicateRate: 0.1 }, seed)
    const trace: string[] = []
    for (const peer of w.peers) peer.subscribe('t', (m) => trace.push(`${w.clock.nowMs()} ${peer.selfId}<-${m.from}:${text(m.data)}`))
    for (let round = 0; round < 20; round++) {
      for (const peer of w.peers) await peer.publish('t', bytes(`${peer.selfId}#${round}`))
    }
    await w.clock.advance(1_000)
    return trace
  }

  it('the same seed gives the same delivery order, a different seed a different one', async () => {
    const first = await deliveryTrace(1234)
    const again = await deliveryTrace(1234)
    const other = await deliveryTrace(4321)
    expect(first.length).toBeGreaterThan(300)
    expect(again).toEqual(first)
    expect(other).not.toEqual(first)
  })
})
