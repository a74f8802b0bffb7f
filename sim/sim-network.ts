/**
 * The simulated adapter of the Transport port: an in-memory network in
 * virtual time. All time comes from the Clock, all chance from the Rng, and
 * peers are visited in a fixed order, so one seed gives one delivery order.
 *
 * Model (what the libp2p adapter does, simplified):
 * - publish reaches every other started peer subscribed to the topic, each
 *   copy after a drawn latency, lost with `lossRate`, doubled with
 *   `duplicateRate`; unreachable peers (partition, block) get nothing, and
 *   copies in flight when a fault starts are dropped on arrival.
 * - request/response is a reliable stream: no loss or duplication, a drawn
 *   latency each way; across a partition it times out, to a stopped peer it
 *   fails UNREACHABLE after a round trip.
 * - bytes are handed over, not copied (a publish copies once for all its
 *   receivers): senders and receivers treat message, request and response
 *   bytes as read-only. Copying each delivery was a fifth of the CPU of a
 *   300-node run (every allocation of an ArrayBuffer costs more as the
 *   process holds more of them).
 * - connections: `dial` (or a first request) links two peers; a link is up
 *   while both are started and reach each other both ways, and comes back by
 *   itself after a restart or heal — as libp2p's bootstrap redial would.
 *   Peer events fire when a link goes up or down.
 * - a stopped transport neither sends nor receives; it may start again with
 *   its subscriptions and handlers (like the libp2p adapter), or a restarted
 *   node asks `transport(peerId)` for a fresh instance.
 * - a paused peer (`pause`) keeps its links but handles nothing: messages,
 *   requests, responses, request deadlines and peer events addressed to it
 *   wait and are handled in order on `resume` (a frozen process whose
 *   sockets keep buffering). Its peers' requests to it time out meanwhile.
 * - `partitionOneWay(from, to)` drops everything sent from a peer of `from`
 *   to a peer of `to` (an asymmetric partition: a broken route one way).
 */
import type {
  Clock,
  HandlerOptions,
  PeerEvent,
  RequestContext,
  RequestOptions,
  Rng,
  TopicMessage,
  Transport,
} from '../core/index.ts'
import { PeerPenalties, TransportError } from '../core/index.ts'

/** Uniform in [min, max] ms, or any distribution drawn from the network's Rng. */
export type LatencyModel = { min: number; max: number } | ((rng: Rng) => number)

export interface SimNetworkInit {
  latencyMs: LatencyModel
  /** Probability that one copy of a published message is lost. */
  lossRate: number
  /** Probability that one copy of a published message arrives twice. */
  duplicateRate: number
  /** Largest message publish accepts; same default as the libp2p adapter. */
  messageBytesMax?: number
  /** A dial into a partition fails after this long (libp2p's dial timeout). */
  dialTimeoutMs?: number
}

export interface SimNetworkComponents {
  clock: Clock
  rng: Rng
}

export interface SimPeerCounters {
  messagesSent: number
  bytesSent: number
  messagesReceived: number
  bytesReceived: number
  /** Copies dropped by the loss rate. */
  messagesLost: number
  /** Extra copies made by the duplicate rate. */
  messagesDuplicated: number
  /** Copies not delivered because of a partition or block. */
  messagesBlocked: number
  requestsSent: number
  requestsReceived: number
}

export interface SimNetworkCounters {
  total: SimPeerCounters
  byPeer: Record<string, SimPeerCounters>
}

export interface SimNetwork {
  /** A new Transport for `peerId` (a restarted node asks again after stop). */
  transport(peerId: string): Transport
  /** Splits the network into symmetric islands; unlisted peers form one more island. */
  partition(groups: string[][]): void
  /** Drops everything sent from `from` to `to` (one direction only). */
  block(from: string, to: string): void
  /** Drops every message from a peer in `from` to a peer in `to` (one direction; replaces the previous one-way cut). */
  partitionOneWay(from: readonly string[], to: readonly string[]): void
  /** Removes every partition, one-way cut and block. */
  heal(): void
  /** Freezes message handling of `peerId` (see the header); its links stay up. */
  pause(peerId: string): void
  /** Handles, in order, everything that arrived for `peerId` while paused. */
  resume(peerId: string): void
  isPaused(peerId: string): boolean
  setLoss(rate: number): void
  setDuplicate(rate: number): void
  setLatency(model: LatencyModel): void
  /** Whether a message sent now from `from` would reach `to` (ignoring loss). */
  reachable(from: string, to: string): boolean
  counters(): SimNetworkCounters
}

export const SIM_NETWORK_DEFAULTS = {
  messageBytesMax: 1024 * 1024,
  dialTimeoutMs: 10_000,
}

/** A simulated peer's one address: this prefix and its PeerId. */
export const SIM_ADDRESS_PREFIX = '/memory/'
const ADDRESS_PREFIX = SIM_ADDRESS_PREFIX

type TopicHandler = (message: TopicMessage) => void
type RequestHandler = (request: RequestContext) => Promise<Uint8Array>

interface HandlerEntry {
  handler: RequestHandler
  options: HandlerOptions
}

interface PendingRequest {
  reject(err: TransportError): void
}

function zeroCounters(): SimPeerCounters {
  return {
    messagesSent: 0,
    bytesSent: 0,
    messagesReceived: 0,
    bytesReceived: 0,
    messagesLost: 0,
    messagesDuplicated: 0,
    messagesBlocked: 0,
    requestsSent: 0,
    requestsReceived: 0,
  }
}

function assertRate(name: string, rate: number): void {
  if (!(rate >= 0 && rate <= 1)) throw new RangeError(`${name} must be in [0, 1], got ${rate}`)
}

function assertLatency(model: LatencyModel): void {
  if (typeof model === 'function') return
  if (!(model.min >= 0 && model.max >= model.min && Number.isFinite(model.max))) {
    throw new RangeError(`latencyMs needs 0 <= min <= max, got ${JSON.stringify(model)}`)
  }
}

export function createSimNetwork(init: SimNetworkInit, components: SimNetworkComponents): SimNetwork {
  const { clock, rng } = components
  const messageBytesMax = init.messageBytesMax ?? SIM_NETWORK_DEFAULTS.messageBytesMax
  const dialTimeoutMs = init.dialTimeoutMs ?? SIM_NETWORK_DEFAULTS.dialTimeoutMs
  assertLatency(init.latencyMs)
  assertRate('lossRate', init.lossRate)
  assertRate('duplicateRate', init.duplicateRate)
  let latency = init.latencyMs
  let lossRate = init.lossRate
  let duplicateRate = init.duplicateRate

  /** Current instance per peer; Map order (first creation) is the visiting order. */
  const instances = new Map<string, SimTransport>()
  const counters = new Map<string, SimPeerCounters>()
  /** Pairs that dialled each other: key "a\u0000b" with a < b. */
  const links = new Set<string>()
  /** Links currently up, per peer. */
  const up = new Map<string, Set<string>>()
  let islandOf = new Map<string, number>()
  const blocked = new Set<string>()
  let oneWayFrom = new Set<string>()
  let oneWayTo = new Set<string>()
  /** Work held for paused peers, in arrival order. */
  const pausedWork = new Map<string, Array<() => void>>()
  /** Runs `fn` now, or on `resume` if `peerId` is paused. */
  const gate = (peerId: string, fn: () => void): void => {
    const held = pausedWork.get(peerId)
    if (held !== undefined) held.push(fn)
    else fn()
  }

  const pairKey = (a: string, b: string): string => (a < b ? `${a}\u0000${b}` : `${b}\u0000${a}`)
  const countersOf = (peerId: string): SimPeerCounters => {
    let entry = counters.get(peerId)
    if (entry === undefined) {
      entry = zeroCounters()
      counters.set(peerId, entry)
    }
    return entry
  }
  const drawLatencyMs = (): number => {
    if (typeof latency === 'function') return Math.max(0, latency(rng))
    return latency.min + rng.int(Math.floor(latency.max - latency.min) + 1)
  }
  // Asked for every copy of every message: the pair key is built only while some link is blocked.
  const reachable = (from: string, to: string): boolean =>
    (islandOf.size === 0 || (islandOf.get(from) ?? -1) === (islandOf.get(to) ?? -1)) &&
    (blocked.size === 0 || !blocked.has(`${from}\u0000${to}`)) &&
    (oneWayFrom.size === 0 || !(oneWayFrom.has(from) && oneWayTo.has(to)))
  const isLive = (peerId: string): boolean => instances.get(peerId)?.started === true
  const linkShouldBeUp = (a: string, b: string): boolean =>
    links.has(pairKey(a, b)) && isLive(a) && isLive(b) && reachable(a, b) && reachable(b, a)
  const isUp = (a: string, b: string): boolean => up.get(a)?.has(b) === true

  /** Links per peer, in creation order (a subsequence of `links`), so a start or stop refreshes only its own. */
  const linksOf = new Map<string, Set<string>>()

  /** Brings one link in line with liveness and faults; emits events if it changed. */
  const refreshLink = (key: string): void => {
    const [a, b] = key.split('\u0000') as [string, string]
    const should = linkShouldBeUp(a, b)
    if (should === isUp(a, b)) return
    for (const [self, other] of [[a, b], [b, a]] as const) {
      let set = up.get(self)
      if (set === undefined) {
        set = new Set()
        up.set(self, set)
      }
      if (should) set.add(other)
      else set.delete(other)
      instances.get(self)?.queuePeerEvent({ type: should ? 'connect' : 'disconnect', peerId: other })
    }
  }

  /** Brings every link in line (partitions, blocks, heal change any pair). */
  const refreshLinks = (): void => {
    for (const key of links) refreshLink(key)
  }

  /**
   * Brings one peer's links in line: a start or stop changes no other pair,
   * and every other link is already consistent, so this emits exactly the
   * events (in the same order) a full refresh would — at O(degree), not
   * O(all links), which made a 1,000-node run quadratic in its link count.
   */
  const refreshPeer = (peerId: string): void => {
    for (const key of linksOf.get(peerId) ?? []) refreshLink(key)
  }

  const link = (a: string, b: string): void => {
    const key = pairKey(a, b)
    if (!links.has(key)) {
      links.add(key)
      for (const peer of [a, b]) {
        let set = linksOf.get(peer)
        if (set === undefined) {
          set = new Set()
          linksOf.set(peer, set)
        }
        set.add(key)
      }
    }
    refreshLink(key)
  }

  class SimTransport implements Transport {
    started = false
    private readonly topics = new Map<string, Set<TopicHandler>>()
    private readonly handlers = new Map<string, HandlerEntry>()
    private readonly peerListeners = new Set<(event: PeerEvent) => void>()
    private readonly pending = new Set<PendingRequest>()
    private readonly penalties = new PeerPenalties(() => clock.nowMs())

    constructor(readonly selfId: string) {}

    penalize(peerId: string, _reason: string): void {
      this.penalties.add(peerId)
    }

    penaltyOf(peerId: string): number {
      return this.penalties.of(peerId)
    }

    private get current(): boolean {
      return instances.get(this.selfId) === this
    }

    async start(): Promise<void> {
      if (this.started) return
      if (!this.current) throw new Error(`transport for ${this.selfId} was replaced by a newer one`)
      this.started = true
      refreshPeer(this.selfId)
    }

    async stop(): Promise<void> {
      if (!this.started) return
      this.started = false
      for (const request of [...this.pending]) request.reject(new TransportError('STOPPED', 'transport stopped'))
      refreshPeer(this.selfId)
    }

    addresses(): string[] {
      return this.started ? [ADDRESS_PREFIX + this.selfId] : []
    }

    subscribe(topic: string, handler: TopicHandler): () => void {
      let set = this.topics.get(topic)
      if (set === undefined) {
        set = new Set()
        this.topics.set(topic, set)
      }
      const entry: TopicHandler = (message) => handler(message)
      set.add(entry)
      return () => {
        const current = this.topics.get(topic)
        if (current?.delete(entry) === true && current.size === 0) this.topics.delete(topic)
      }
    }

    isSubscribed(topic: string): boolean {
      return this.topics.has(topic)
    }

    async publish(topic: string, data: Uint8Array): Promise<void> {
      if (data.byteLength > messageBytesMax) {
        throw new TransportError('TOO_LARGE', `message of ${data.byteLength} bytes exceeds messageBytesMax ${messageBytesMax}`)
      }
      if (!this.started) return
      const payload = data.slice()
      const sender = countersOf(this.selfId)
      const from = this.selfId
      // One timer per distinct latency, delivering to its receivers in the
      // order they were drawn: the copies due at one instant fire in the
      // order separate timers would (nothing else sets a timer during this
      // loop), without a timer and two closures per copy — a publish reaches
      // every node, and these were the most common timers of a large run.
      // One message object for every receiver (as gossipsub hands one message to all of a node's
      // listeners): receivers only read it, and decoders may memoize by its data.
      const message: TopicMessage = Object.freeze({ topic, from, data: payload })
      const arrivals = new Map<number, SimTransport[]>()
      for (const [peerId, target] of instances) {
        if (peerId === this.selfId || !target.started || !target.isSubscribed(topic)) continue
        sender.messagesSent++
        sender.bytesSent += payload.byteLength
        if (!reachable(this.selfId, peerId)) {
          sender.messagesBlocked++
          continue
        }
        if (rng.next() < lossRate) {
          sender.messagesLost++
          continue
        }
        const copies = rng.next() < duplicateRate ? 2 : 1
        if (copies === 2) sender.messagesDuplicated++
        for (let copy = 0; copy < copies; copy++) {
          const delayMs = Math.max(0, drawLatencyMs()) // as setTimer clamps it: one group per instant
          let due = arrivals.get(delayMs)
          if (due === undefined) {
            const group: SimTransport[] = []
            due = group
            arrivals.set(delayMs, group)
            clock.setTimer(delayMs, () => {
              for (const receiver of group) {
                // gate() without a closure per receiver unless the receiver is paused: a publish reaches every node.
                const held = pausedWork.get(receiver.selfId)
                if (held !== undefined) held.push(() => receiver.deliver(message))
                else receiver.deliver(message)
              }
            })
          }
          due.push(target)
        }
      }
    }

    deliver(message: TopicMessage): void {
      const { from, topic, data: payload } = message
      if (!this.started || !reachable(from, this.selfId)) {
        if (this.started) countersOf(from).messagesBlocked++
        return
      }
      const set = this.topics.get(topic)
      if (set === undefined) return
      const receiver = countersOf(this.selfId)
      receiver.messagesReceived++
      receiver.bytesReceived += payload.byteLength
      for (const handler of set.size === 1 ? set : [...set]) {
        try {
          handler(message)
        } catch {
          // A throwing subscriber must not stop delivery to the others.
        }
      }
    }

    handle(protocol: string, handler: RequestHandler, options: HandlerOptions): void {
      this.handlers.set(protocol, { handler, options: { ...options } })
    }

    request(peerId: string, protocol: string, data: Uint8Array, options: RequestOptions): Promise<Uint8Array> {
      if (!this.started) return Promise.reject(new TransportError('STOPPED', 'transport is stopped'))
      return new Promise<Uint8Array>((resolve, reject) => {
        let settled = false
        const finish = (err: TransportError | undefined, value?: Uint8Array): void => {
          if (settled) return
          settled = true
          timer.cancel()
          options.signal?.removeEventListener('abort', onAbort)
          this.pending.delete(pending)
          if (err !== undefined) reject(err)
          else resolve(value ?? new Uint8Array(0))
        }
        const pending: PendingRequest = { reject: (err) => finish(err) }
        const timer = clock.setTimer(options.timeoutMs, () =>
          gate(this.selfId, () => finish(new TransportError('TIMEOUT', `request ${protocol} to ${peerId} timed out after ${options.timeoutMs} ms`))),
        )
        const onAbort = (): void =>
          finish(new TransportError('TIMEOUT', `request ${protocol} to ${peerId} aborted by the caller`, { cause: options.signal?.reason }))
        if (options.signal?.aborted === true) {
          onAbort()
          return
        }
        options.signal?.addEventListener('abort', onAbort, { once: true })
        this.pending.add(pending)
        const respond = (status: TransportError | Uint8Array): void => {
          if (status instanceof TransportError) return finish(status)
          if (status.byteLength > options.responseBytesMax) {
            return finish(new TransportError('TOO_LARGE', `response of ${status.byteLength} bytes exceeds responseBytesMax ${options.responseBytesMax}`))
          }
          finish(undefined, status)
        }
        if (peerId === this.selfId) {
          void serve(this.handlers.get(protocol), { from: this.selfId, protocol, data }).then(respond)
          return
        }
        this.send(peerId, protocol, data, respond)
      })
    }

    /** The wire part of a request: latency there, the handler, latency back. */
    private send(peerId: string, protocol: string, payload: Uint8Array, respond: (result: TransportError | Uint8Array) => void): void {
      const stats = countersOf(this.selfId)
      stats.requestsSent++
      stats.bytesSent += payload.byteLength
      const target = instances.get(peerId)
      if (target === undefined || !target.started) {
        const roundTripMs = drawLatencyMs() + drawLatencyMs()
        clock.setTimer(roundTripMs, () => gate(this.selfId, () => respond(new TransportError('UNREACHABLE', `${peerId} is not running`))))
        return
      }
      if (!reachable(this.selfId, peerId)) return // lost in the partition: the deadline answers
      if (reachable(peerId, this.selfId) && !isUp(this.selfId, peerId)) link(this.selfId, peerId)
      clock.setTimer(drawLatencyMs(), () => gate(peerId, () => {
        if (!target.started || !reachable(this.selfId, peerId)) {
          if (!target.started) gate(this.selfId, () => respond(new TransportError('UNREACHABLE', `${peerId} stopped`)))
          return
        }
        const received = countersOf(peerId)
        received.requestsReceived++
        received.bytesReceived += payload.byteLength
        void serve(target.handlers.get(protocol), { from: this.selfId, protocol, data: payload }).then((result) => {
          if (!target.started || !reachable(peerId, this.selfId)) return
          if (!(result instanceof TransportError)) {
            const back = countersOf(peerId)
            back.bytesSent += result.byteLength
          }
          clock.setTimer(drawLatencyMs(), () => gate(this.selfId, () => {
            if (!this.started) return
            if (!(result instanceof TransportError)) countersOf(this.selfId).bytesReceived += result.byteLength
            respond(result)
          }))
        })
      }))
    }

    async dial(address: string): Promise<void> {
      if (!this.started) throw new TransportError('STOPPED', 'transport is stopped')
      if (!address.startsWith(ADDRESS_PREFIX)) throw new TransportError('UNREACHABLE', `not a simulated address: ${address}`)
      const peerId = address.slice(ADDRESS_PREFIX.length)
      if (peerId === this.selfId) throw new TransportError('UNREACHABLE', 'cannot dial self')
      if (isUp(this.selfId, peerId)) return
      const roundTripMs = drawLatencyMs() + drawLatencyMs()
      await this.sleep(roundTripMs)
      if (!this.started) throw new TransportError('STOPPED', 'transport stopped while dialling')
      if (!isLive(peerId)) throw new TransportError('UNREACHABLE', `dial ${address}: connection refused`)
      if (!reachable(this.selfId, peerId) || !reachable(peerId, this.selfId)) {
        await this.sleep(Math.max(0, dialTimeoutMs - roundTripMs))
        throw new TransportError('UNREACHABLE', `dial ${address} timed out`)
      }
      link(this.selfId, peerId)
    }

    /** A wait on the shared clock whose end this peer sees only when not paused. */
    private sleep(ms: number): Promise<void> {
      return new Promise((resolve) => {
        clock.setTimer(ms, () => gate(this.selfId, resolve))
      })
    }

    connectedPeers(): string[] {
      if (!this.started) return []
      return [...(up.get(this.selfId) ?? [])].sort()
    }

    connectionCount(): number {
      return this.started ? (up.get(this.selfId)?.size ?? 0) : 0
    }

    onPeerEvent(handler: (event: PeerEvent) => void): () => void {
      const entry = (event: PeerEvent): void => handler(event)
      this.peerListeners.add(entry)
      return () => {
        this.peerListeners.delete(entry)
      }
    }

    /** Peer events are delivered asynchronously (as libp2p's are), in order. */
    queuePeerEvent(event: PeerEvent): void {
      if (!this.started) return
      clock.setTimer(0, () => gate(this.selfId, () => {
        if (!this.started) return
        for (const listener of [...this.peerListeners]) {
          try {
            listener(event)
          } catch {
            // One listener's failure must not hide the event from the others.
          }
        }
      }))
    }
  }

  return {
    transport: (peerId) => {
      if (peerId.length === 0 || peerId.includes('\u0000')) throw new RangeError(`invalid peer id ${JSON.stringify(peerId)}`)
      const existing = instances.get(peerId)
      if (existing?.started === true) throw new Error(`peer ${peerId} already has a running transport`)
      const created = new SimTransport(peerId)
      instances.set(peerId, created)
      countersOf(peerId)
      return created
    },
    partition: (groups) => {
      const next = new Map<string, number>()
      groups.forEach((group, index) => {
        for (const peerId of group) {
          if (next.has(peerId)) throw new RangeError(`peer ${peerId} is in two partition groups`)
          next.set(peerId, index)
        }
      })
      islandOf = next
      refreshLinks()
    },
    block: (from, to) => {
      blocked.add(`${from}\u0000${to}`)
      refreshLinks()
    },
    partitionOneWay: (from, to) => {
      oneWayFrom = new Set(from)
      oneWayTo = new Set(to)
      refreshLinks()
    },
    heal: () => {
      islandOf = new Map()
      blocked.clear()
      oneWayFrom = new Set()
      oneWayTo = new Set()
      refreshLinks()
    },
    pause: (peerId) => {
      if (!pausedWork.has(peerId)) pausedWork.set(peerId, [])
    },
    resume: (peerId) => {
      const held = pausedWork.get(peerId)
      if (held === undefined) return
      pausedWork.delete(peerId)
      if (held.length === 0) return
      clock.setTimer(0, () => {
        for (const fn of held) gate(peerId, fn)
      })
    },
    isPaused: (peerId) => pausedWork.has(peerId),
    setLoss: (rate) => {
      assertRate('lossRate', rate)
      lossRate = rate
    },
    setDuplicate: (rate) => {
      assertRate('duplicateRate', rate)
      duplicateRate = rate
    },
    setLatency: (model) => {
      assertLatency(model)
      latency = model
    },
    reachable,
    counters: () => {
      const byPeer: Record<string, SimPeerCounters> = {}
      const total = zeroCounters()
      for (const [peerId, entry] of counters) {
        byPeer[peerId] = { ...entry }
        for (const key of Object.keys(total) as (keyof SimPeerCounters)[]) total[key] += entry[key]
      }
      return { total, byPeer }
    },
  }
}

/** Runs a handler with the same refusals as the libp2p adapter; never rejects. */
async function serve(entry: HandlerEntry | undefined, request: RequestContext): Promise<TransportError | Uint8Array> {
  if (entry === undefined) return new TransportError('NO_HANDLER', `no handler for ${request.protocol}`)
  if (request.data.byteLength > entry.options.requestBytesMax) {
    return new TransportError('TOO_LARGE', `request of ${request.data.byteLength} bytes exceeds requestBytesMax ${entry.options.requestBytesMax}`)
  }
  try {
    return await entry.handler(request)
  } catch (err) {
    return new TransportError('HANDLER_FAILED', `handler for ${request.protocol} failed`, { cause: err })
  }
}
