/**
 * The acceptance suite of the Transport port, run once per adapter (libp2p,
 * simulated network). An adapter that passes is interchangeable with the
 * other; a bug found in one becomes a case here.
 *
 * `makeCluster(n)` returns n transports that are NOT started yet, a `settle`
 * that lets `ms` of the adapter's time pass (real sleep, or advancing a
 * virtual clock), and a `cleanup` that stops them all (also those the suite
 * already stopped). The suite starts and connects them through the port
 * itself, and waits only by settling, so it never depends on wall time.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { PeerEvent, TopicMessage, Transport } from '../../core/index.ts'
import { TransportError } from '../../core/index.ts'

export interface TransportCluster {
  transports: Transport[]
  settle(ms: number): Promise<void>
  cleanup(): Promise<void>
}

export type MakeTransportCluster = (n: number) => Promise<TransportCluster>

/** Time for subscriptions to reach connected peers (gossipsub: ~40 ms; heartbeats 1 s). */
const SUBSCRIPTION_WARMUP_MS = 1_000
/** How long the suite waits for something that should happen. */
const WAIT_BUDGET_MS = 10_000
/** How long the suite watches for something that should NOT happen. */
const QUIET_MS = 300
const STEP_MS = 20

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)
const text = (data: Uint8Array): string => new TextDecoder().decode(data)

async function waitFor(cluster: TransportCluster, condition: () => boolean, what: string): Promise<void> {
  for (let spentMs = 0; !condition(); spentMs += STEP_MS) {
    if (spentMs >= WAIT_BUDGET_MS) throw new Error(`timed out waiting for ${what}`)
    await cluster.settle(STEP_MS)
  }
}

/** Settles until `promise` settles (a simulated adapter only moves when time does). */
async function drive<T>(cluster: TransportCluster, promise: Promise<T>, what: string): Promise<T> {
  let done = false
  promise.then(
    () => (done = true),
    () => (done = true),
  )
  await cluster.settle(0)
  await waitFor(cluster, () => done, what)
  return promise
}

async function rejection(cluster: TransportCluster, promise: Promise<unknown>, what: string): Promise<TransportError> {
  try {
    await drive(cluster, promise, what)
  } catch (err) {
    expect(err).toBeInstanceOf(TransportError)
    return err as TransportError
  }
  throw new Error(`${what} resolved, expected a TransportError`)
}

async function startAll(cluster: TransportCluster): Promise<void> {
  for (const transport of cluster.transports) await drive(cluster, transport.start(), 'start')
}

/** Starts every transport and dials each to every earlier one (a full mesh). */
async function connectAll(cluster: TransportCluster): Promise<void> {
  await startAll(cluster)
  const { transports } = cluster
  for (let i = 1; i < transports.length; i++) {
    for (let j = 0; j < i; j++) {
      const address = transports[j]!.addresses()[0]
      expect(address, 'a started transport has an address').toBeDefined()
      await drive(cluster, transports[i]!.dial(address!), `dial ${i} -> ${j}`)
    }
  }
  await waitFor(cluster, () => transports.every((t) => t.connectedPeers().length === transports.length - 1), 'a full mesh')
}

function collect(transport: Transport, topic: string): TopicMessage[] {
  const received: TopicMessage[] = []
  transport.subscribe(topic, (message) => received.push(message))
  return received
}

export function runTransportSuite(name: string, makeCluster: MakeTransportCluster): void {
  describe(`Transport acceptance: ${name}`, () => {
    let cluster: TransportCluster | undefined
    const setup = async (n: number): Promise<TransportCluster> => {
      cluster = await makeCluster(n)
      return cluster
    }
    afterEach(async () => {
      await cluster?.cleanup()
      cluster = undefined
    })

    it('a published message reaches every other subscriber and not its sender', async () => {
      const c = await setup(3)
      await connectAll(c)
      const [a, b, d] = c.transports as [Transport, Transport, Transport]
      const inboxes = [collect(a, 'news'), collect(b, 'news'), collect(d, 'news')]
      await c.settle(SUBSCRIPTION_WARMUP_MS)
      await drive(c, a.publish('news', bytes('hello')), 'publish')
      await waitFor(c, () => inboxes[1]!.length > 0 && inboxes[2]!.length > 0, 'delivery to both subscribers')
      await c.settle(QUIET_MS)
      expect(inboxes[0]).toEqual([])
      for (const inbox of inboxes.slice(1)) {
        expect(inbox).toHaveLength(1)
        expect(inbox[0]!.topic).toBe('news')
        expect(inbox[0]!.from).toBe(a.selfId)
        expect(text(inbox[0]!.data)).toBe('hello')
      }
    })

    it('a peer subscribed to another topic receives nothing', async () => {
      const c = await setup(2)
      await connectAll(c)
      const [a, b] = c.transports as [Transport, Transport]
      const wanted = collect(b, 'wanted')
      const other = collect(b, 'other')
      collect(a, 'wanted')
      await c.settle(SUBSCRIPTION_WARMUP_MS)
      await drive(c, a.publish('wanted', bytes('x')), 'publish')
      await waitFor(c, () => wanted.length === 1, 'delivery')
      await c.settle(QUIET_MS)
      expect(other).toEqual([])
    })

    it('after unsubscribing a handler receives nothing more, while others still do', async () => {
      const c = await setup(3)
      await connectAll(c)
      const [a, b, d] = c.transports as [Transport, Transport, Transport]
      const leaving: string[] = []
      const unsubscribe = b.subscribe('room', (message) => leaving.push(text(message.data)))
      const staying = collect(d, 'room')
      await c.settle(SUBSCRIPTION_WARMUP_MS)
      await drive(c, a.publish('room', bytes('first')), 'publish first')
      await waitFor(c, () => leaving.length === 1 && staying.length === 1, 'first delivery')
      unsubscribe()
      unsubscribe() // harmless twice
      await c.settle(SUBSCRIPTION_WARMUP_MS)
      await drive(c, a.publish('room', bytes('second')), 'publish second')
      await waitFor(c, () => staying.length === 2, 'second delivery to the staying subscriber')
      await c.settle(QUIET_MS)
      expect(leaving).toEqual(['first'])
    })

    it('a request gets the handler\'s response, and the handler sees who asked', async () => {
      const c = await setup(2)
      await connectAll(c)
      const [a, b] = c.transports as [Transport, Transport]
      const seen: string[] = []
      b.handle('/test/reverse/1', async (request) => {
        seen.push(`${request.from} ${request.protocol}`)
        return request.data.slice().reverse()
      }, { requestBytesMax: 1024 })
      const response = await drive(c, a.request(b.selfId, '/test/reverse/1', new Uint8Array([1, 2, 3]), { timeoutMs: 5_000, responseBytesMax: 1024 }), 'request')
      expect([...response]).toEqual([3, 2, 1])
      expect(seen).toEqual([`${a.selfId} /test/reverse/1`])
      const empty = await drive(c, a.request(b.selfId, '/test/reverse/1', new Uint8Array(0), { timeoutMs: 5_000, responseBytesMax: 0 }), 'empty request')
      expect(empty.byteLength).toBe(0)
    })

    it('a request to itself is served by its own handler', async () => {
      const c = await setup(1)
      await startAll(c)
      const [a] = c.transports as [Transport]
      a.handle('/test/self/1', async (request) => bytes(`${request.from === a.selfId} ${text(request.data)}`), { requestBytesMax: 64 })
      const response = await drive(c, a.request(a.selfId, '/test/self/1', bytes('hi'), { timeoutMs: 5_000, responseBytesMax: 64 }), 'self request')
      expect(text(response)).toBe('true hi')
    })

    it('a request for a protocol the peer does not serve fails with a TransportError', async () => {
      const c = await setup(2)
      await connectAll(c)
      const [a, b] = c.transports as [Transport, Transport]
      const err = await rejection(c, a.request(b.selfId, '/test/missing/1', bytes('?'), { timeoutMs: 5_000, responseBytesMax: 64 }), 'request')
      expect(['NO_HANDLER', 'UNREACHABLE']).toContain(err.code)
    })

    it('a request larger than the handler\'s requestBytesMax is refused with TOO_LARGE, unseen by the handler', async () => {
      const c = await setup(2)
      await connectAll(c)
      const [a, b] = c.transports as [Transport, Transport]
      let calls = 0
      b.handle('/test/small/1', async () => {
        calls++
        return bytes('ok')
      }, { requestBytesMax: 1_024 })
      const err = await rejection(c, a.request(b.selfId, '/test/small/1', new Uint8Array(300_000), { timeoutMs: 5_000, responseBytesMax: 64 }), 'request')
      expect(err.code).toBe('TOO_LARGE')
      expect(calls).toBe(0)
      // The limit is inclusive: exactly requestBytesMax is served.
      const fits = await drive(c, a.request(b.selfId, '/test/small/1', new Uint8Array(1_024), { timeoutMs: 5_000, responseBytesMax: 64 }), 'request')
      expect(text(fits)).toBe('ok')
    })

    it('a response larger than responseBytesMax fails the request with TOO_LARGE', async () => {
      const c = await setup(2)
      await connectAll(c)
      const [a, b] = c.transports as [Transport, Transport]
      b.handle('/test/big-answer/1', async () => new Uint8Array(10_000), { requestBytesMax: 64 })
      const err = await rejection(c, a.request(b.selfId, '/test/big-answer/1', bytes('?'), { timeoutMs: 5_000, responseBytesMax: 9_999 }), 'request')
      expect(err.code).toBe('TOO_LARGE')
    })

    it('a handler that throws fails the request with HANDLER_FAILED', async () => {
      const c = await setup(2)
      await connectAll(c)
      const [a, b] = c.transports as [Transport, Transport]
      b.handle('/test/throws/1', async () => {
        throw new Error('boom')
      }, { requestBytesMax: 64 })
      const err = await rejection(c, a.request(b.selfId, '/test/throws/1', bytes('?'), { timeoutMs: 5_000, responseBytesMax: 64 }), 'request')
      expect(err.code).toBe('HANDLER_FAILED')
    })

    it('a handler that never answers makes the request time out with TIMEOUT', async () => {
      const c = await setup(2)
      await connectAll(c)
      const [a, b] = c.transports as [Transport, Transport]
      b.handle('/test/silent/1', () => new Promise<Uint8Array>(() => {}), { requestBytesMax: 64 })
      const err = await rejection(c, a.request(b.selfId, '/test/silent/1', bytes('?'), { timeoutMs: 300, responseBytesMax: 64 }), 'request')
      expect(err.code).toBe('TIMEOUT')
    })

    it('an aborted signal ends a request with a TransportError', async () => {
      const c = await setup(2)
      await connectAll(c)
      const [a, b] = c.transports as [Transport, Transport]
      b.handle('/test/silent/1', () => new Promise<Uint8Array>(() => {}), { requestBytesMax: 64 })
      const controller = new AbortController()
      const pending = a.request(b.selfId, '/test/silent/1', bytes('?'), { timeoutMs: 60_000, responseBytesMax: 64, signal: controller.signal })
      await c.settle(50)
      controller.abort(new Error('caller gave up'))
      const err = await rejection(c, pending, 'aborted request')
      expect(err.code).toBe('TIMEOUT')
    })

    it('peers see a connect event when they connect and a disconnect when one stops', async () => {
      const c = await setup(2)
      await startAll(c)
      const [a, b] = c.transports as [Transport, Transport]
      const eventsA: PeerEvent[] = []
      const eventsB: PeerEvent[] = []
      const removed: PeerEvent[] = []
      a.onPeerEvent((event) => eventsA.push(event))
      b.onPeerEvent((event) => eventsB.push(event))
      const off = a.onPeerEvent((event) => removed.push(event))
      await drive(c, b.dial(a.addresses()[0]!), 'dial')
      await waitFor(c, () => eventsA.length > 0 && eventsB.length > 0, 'connect events')
      expect(eventsA[0]).toEqual({ type: 'connect', peerId: b.selfId })
      expect(eventsB[0]).toEqual({ type: 'connect', peerId: a.selfId })
      expect(a.connectedPeers()).toEqual([b.selfId])
      expect(b.connectedPeers()).toEqual([a.selfId])
      expect([a.connectionCount(), b.connectionCount()]).toEqual([1, 1])
      off()
      await drive(c, b.stop(), 'stop')
      await waitFor(c, () => eventsA.some((e) => e.type === 'disconnect'), 'a disconnect event')
      expect(eventsA.at(-1)).toEqual({ type: 'disconnect', peerId: b.selfId })
      expect(a.connectedPeers()).toEqual([])
      expect(a.connectionCount()).toBe(0)
      // A removed listener hears nothing more; a stopped transport emits nothing.
      expect(removed).toEqual([{ type: 'connect', peerId: b.selfId }])
      expect(eventsB.filter((e) => e.type === 'disconnect')).toEqual([])
    })

    it('a stopped peer receives nothing, cannot request, and cannot be reached', async () => {
      const c = await setup(3)
      await connectAll(c)
      const [a, b, d] = c.transports as [Transport, Transport, Transport]
      const live = collect(b, 'news')
      const stopped = collect(d, 'news')
      d.handle('/test/echo/1', async (request) => request.data, { requestBytesMax: 64 })
      await c.settle(SUBSCRIPTION_WARMUP_MS)
      await drive(c, d.stop(), 'stop')
      await drive(c, a.publish('news', bytes('after stop')), 'publish')
      await waitFor(c, () => live.length === 1, 'delivery to the live peer')
      await c.settle(QUIET_MS)
      expect(stopped).toEqual([])
      expect(d.connectedPeers()).toEqual([])
      expect(d.connectionCount()).toBe(0)
      await drive(c, d.publish('news', bytes('from a stopped peer')), 'publish while stopped')
      const own = await rejection(c, d.request(a.selfId, '/test/echo/1', bytes('?'), { timeoutMs: 1_000, responseBytesMax: 64 }), 'request from a stopped peer')
      expect(own.code).toBe('STOPPED')
      const toStopped = await rejection(c, a.request(d.selfId, '/test/echo/1', bytes('?'), { timeoutMs: 1_000, responseBytesMax: 64 }), 'request to a stopped peer')
      expect(['UNREACHABLE', 'TIMEOUT']).toContain(toStopped.code)
      await c.settle(QUIET_MS)
      expect(live.map((m) => text(m.data))).toEqual(['after stop'])
    })

    it('publishing with no peers, or with no subscribers but oneself, resolves without delivering', async () => {
      const c = await setup(1)
      await startAll(c)
      const [a] = c.transports as [Transport]
      const own = collect(a, 'lonely')
      await drive(c, a.publish('lonely', bytes('anyone?')), 'publish')
      await drive(c, a.publish('nobody-listens', bytes('anyone?')), 'publish')
      await c.settle(QUIET_MS)
      expect(own).toEqual([])
    })

    it('a penalized peer carries a penalty that grows with each report and never throws', async () => {
      const c = await setup(2)
      await startAll(c)
      const [a, b] = c.transports as [Transport, Transport]
      expect(a.penaltyOf(b.selfId)).toBe(0)
      a.penalize(b.selfId, 'malformed')
      a.penalize(b.selfId, 'malformed')
      expect(a.penaltyOf(b.selfId)).toBeGreaterThan(1)
      expect(a.penaltyOf(b.selfId)).toBeLessThanOrEqual(2)
      a.penalize('12D3KooWunknownpeer', 'malformed')
      expect(b.penaltyOf(a.selfId)).toBe(0)
    })
  })
}
