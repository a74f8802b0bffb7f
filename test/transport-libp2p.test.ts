import { createServer } from 'node:net'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { afterAll, describe, expect, it } from 'vitest'
import { silentLogger, type Transport } from '../core/index.ts'
import { createLibp2pTransport, generateMeshKey, LIBP2P_TRANSPORT_PRESETS, type Libp2pTransport, type Libp2pTransportInit } from '../mesh/index.ts'
import { createSystemClock } from '../node/system-clock.ts'
import { runTransportSuite } from './suites/transport-suite.ts'

const clock = createSystemClock()
const meshKey = generateMeshKey()
/** Every transport made here, so afterAll can stop any a failed test left running. */
const created: Transport[] = []

async function makeTransport(init: Partial<Libp2pTransportInit> = {}): Promise<Libp2pTransport> {
  const transport = createLibp2pTransport({ ...LIBP2P_TRANSPORT_PRESETS.test, meshKey, topics: ['news'], ...init })({
    privateKey: await generateKeyPair('Ed25519'),
    logger: silentLogger,
    clock,
  })
  created.push(transport)
  return transport
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function eventually(condition: () => boolean, what: string, budgetMs = 10_000): Promise<void> {
  const deadline = Date.now() + budgetMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

afterAll(async () => {
  await Promise.all(created.map((transport) => transport.stop()))
})

runTransportSuite('libp2p', async (n) => {
  const transports = await Promise.all(Array.from({ length: n }, () => makeTransport()))
  return {
    transports,
    settle: sleep,
    cleanup: async () => {
      await Promise.all(transports.map((transport) => transport.stop()))
    },
  }
})

describe('libp2p transport', () => {
  it('a node with a different mesh key cannot connect, either way', async () => {
    // A wrong key is not refused outright: pnet's nonce exchange succeeds and the
    // upgrade then reads garbage until the dial times out (TIMEOUT: silence), unless
    // the other side gives up first and resets the connection (UNREACHABLE).
    const member = await makeTransport({ dialTimeoutMs: 1_000 })
    const outsider = await makeTransport({ meshKey: generateMeshKey(), dialTimeoutMs: 1_000 })
    await member.start()
    await outsider.start()
    try {
      const failed = { name: 'TransportError', code: expect.stringMatching(/^(TIMEOUT|UNREACHABLE)$/) }
      await expect(outsider.dial(member.addresses()[0]!)).rejects.toMatchObject(failed)
      await expect(member.dial(outsider.addresses()[0]!)).rejects.toMatchObject(failed)
      expect(member.connectedPeers()).not.toContain(outsider.selfId)
      expect(outsider.connectedPeers()).toEqual([])
    } finally {
      await Promise.all([member.stop(), outsider.stop()])
    }
  })

  it('addresses carry /p2p/<peerId> and the listen address', async () => {
    const transport = await makeTransport()
    expect(transport.addresses()).toEqual([])
    await transport.start()
    try {
      const [address] = transport.addresses()
      expect(address).toMatch(new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/\\d+/p2p/${transport.selfId}$`))
    } finally {
      await transport.stop()
    }
  })

  it("a penalized peer's gossipsub score falls below zero", async () => {
    const a = await makeTransport()
    await a.start()
    const b = await makeTransport({ bootstrap: a.addresses() })
    try {
      await b.start()
      a.subscribe('news', () => {})
      b.subscribe('news', () => {})
      await eventually(() => a.connectedPeers().includes(b.selfId), 'the connection')
      for (let i = 0; i < 5; i++) a.penalize(b.selfId, 'malformed')
      await eventually(() => a.gossipScoreOf(b.selfId) < 0, 'a negative score', 10_000)
      expect(a.gossipScoreOf(b.selfId)).toBeLessThan(0)
    } finally {
      await Promise.all([a.stop(), b.stop()])
    }
  })

  it('connects to its bootstrap peers at start and redials one that restarts', async () => {
    const port = await freePort()
    const hub = await makeTransport({ listen: [`/ip4/127.0.0.1/tcp/${port}`] })
    await hub.start()
    const joiner = await makeTransport({ bootstrap: hub.addresses() })
    try {
      await joiner.start()
      await eventually(() => joiner.connectedPeers().includes(hub.selfId), 'the bootstrap connection')
      await hub.stop()
      await eventually(() => !joiner.connectedPeers().includes(hub.selfId), 'the disconnect')
      await hub.start()
      await eventually(() => joiner.connectedPeers().includes(hub.selfId), 'the redial after the restart')
    } finally {
      await Promise.all([hub.stop(), joiner.stop()])
    }
  })

  it('a request to a bootstrap peer by its id right at start goes to its address, not to a peer-routing walk until the dial timeout', async () => {
    const hub = await makeTransport()
    hub.handle('/test/echo/1', async (request) => request.data, { requestBytesMax: 64 })
    await hub.start()
    // The dial timeout is the bound a lookup in an empty DHT would wait out (the bootstrap dial joins that dial).
    const joiner = await makeTransport({ bootstrap: hub.addresses(), dialTimeoutMs: 8_000 })
    try {
      await joiner.start()
      const startedAt = Date.now()
      const answer = await joiner.request(hub.selfId, '/test/echo/1', new Uint8Array([7]), { timeoutMs: 8_000, responseBytesMax: 64 })
      expect([...answer]).toEqual([7])
      expect(Date.now() - startedAt).toBeLessThan(4_000)
    } finally {
      await Promise.all([hub.stop(), joiner.stop()])
    }
  })

  it('counts publishes nobody heard instead of throwing, and refuses oversized ones', async () => {
    const transport = await makeTransport({ messageBytesMax: 1_000 })
    await transport.start()
    try {
      await transport.publish('news', new Uint8Array(10))
      expect(transport.counters().publishedToNoPeers).toBe(1)
      await expect(transport.publish('news', new Uint8Array(1_001))).rejects.toMatchObject({ code: 'TOO_LARGE' })
    } finally {
      await transport.stop()
    }
    await transport.publish('news', new Uint8Array(10))
    expect(transport.counters().publishedWhileStopped).toBe(1)
  })

  it('a stopped transport starts again with the same PeerId, subscriptions and handlers', async () => {
    const a = await makeTransport()
    const b = await makeTransport()
    const got: string[] = []
    b.subscribe('news', (m) => got.push(new TextDecoder().decode(m.data)))
    b.handle('/test/echo/1', async (r) => r.data, { requestBytesMax: 64 })
    try {
      await a.start()
      await b.start()
      const before = b.selfId
      await b.stop()
      await b.start()
      expect(b.selfId).toBe(before)
      await b.dial(a.addresses()[0]!)
      const echoed = await a.request(b.selfId, '/test/echo/1', new Uint8Array([9]), { timeoutMs: 5_000, responseBytesMax: 64 })
      expect([...echoed]).toEqual([9])
      await eventually(() => {
        void a.publish('news', new TextEncoder().encode('again'))
        return got.length > 0
      }, 'a delivery after the restart')
      expect(got[0]).toBe('again')
    } finally {
      await Promise.all([a.stop(), b.stop()])
    }
  })
})
