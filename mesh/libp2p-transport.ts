/**
 * The Transport port on libp2p: gossipsub topics for publish/subscribe,
 * one-stream-per-request for request/response (mesh/libp2p-rpc.ts), libp2p's
 * peer:connect / peer:disconnect for peer events, and a bootstrap dialer that
 * keeps the node attached to the mesh. Each start() builds a fresh libp2p
 * node from the same private key (same PeerId), so a transport can be
 * stopped and started again; subscriptions and handlers survive restarts.
 */
import type { Message } from '@libp2p/gossipsub'
import type { Connection, PeerId, PrivateKey, Stream } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Clock, HandlerOptions, Logger, PeerEvent, RequestContext, RequestOptions, TopicMessage, Transport } from '../core/index.ts'
import { PeerPenalties, TransportError } from '../core/index.ts'
import { createBootstrapDialer, peerIdOf, type BootstrapDialer } from './bootstrap-dialer.ts'
import { assertMeshKey } from './identity.ts'
import { createLibp2pHost, type Libp2pHost, type Libp2pHostConfig } from './libp2p-host.ts'
import { createDeadline, createRpcCounters, sendRequest, serveLocally, serveStream, type HandlerEntry, type RpcCounters } from './libp2p-rpc.ts'

export interface Libp2pTransportInit {
  /** Multiaddrs to listen on. Default loopback only: joining a LAN is an explicit choice. */
  listen?: string[]
  /** The mesh's pnet swarm key; peers without it cannot complete a connection. */
  meshKey: Uint8Array
  /** Topics this node uses, so gossipsub's peer scoring applies to them. */
  topics?: string[]
  /** Multiaddrs dialled at start and redialled with backoff when lost. */
  bootstrap?: string[]
  /** Parallel dials; ~32 fit 2 cores, hundreds at once time out (STACK-NOTES). */
  dialConcurrencyMax?: number
  /** One dial: TCP + pnet + noise + yamux; libp2p's default covers a slow LAN. */
  dialTimeoutMs?: number
  /** libp2p prunes connections beyond this many (its default). */
  connectionsMax?: number
  /** Exempts 127.0.0.1 from the ~5 inbound connections/s/IP limit; for many nodes on one host. */
  allowLoopback?: boolean
  /** Gossipsub P6 weight (<= 0): penalises many peers on one IP; 0 when they share one by design. */
  ipColocationFactorWeight?: number
  /** Run the Kademlia DHT (peer routing and discovery beyond the bootstrap list). */
  dht?: boolean
  /** Private DHT protocol, so Lattice never joins a public DHT. */
  dhtProtocol?: string
  /** First bootstrap retry, and the wait before redialling a lost bootstrap peer. */
  reconnectInitialDelayMs?: number
  /** Cap of the bootstrap backoff: how stale a returning bootstrap peer may be noticed. */
  reconnectDelayMaxMs?: number
  /** Bootstrap backoff multiplier per consecutive failure. */
  reconnectBackoffFactor?: number
  /** Per-node jitter (fraction of the delay) so lost peers are not redialled in lockstep. */
  reconnectJitterRatio?: number
  /** Bounds one inbound request (read, handler, reply) so a stuck handler frees its stream. */
  handlerTimeoutMs?: number
  /** Concurrent inbound requests per protocol per connection (libp2p's default). */
  inboundStreamsMax?: number
  /** Largest gossip message published or delivered; larger inbound ones are dropped and counted. */
  messageBytesMax?: number
  /** Largest inbound gossipsub RPC; one RPC may batch several messages (IWANT replies). */
  rpcBytesMax?: number
  /** libp2p's connection monitor pings each connection this often; membership probes test liveness already, so it only needs to find dead TCP sessions. */
  connectionPingIntervalMs?: number
  /** …and aborts a connection whose ping takes longer (at least this): well above an event-loop stall, so a busy node keeps its connections. */
  connectionPingTimeoutMs?: number
}

export type Libp2pTransportConfig = Required<Libp2pTransportInit>

/** The multicodec of a multiaddr's `/p2p/<peer id>` component. */
const P2P_PROTOCOL_CODE = 421

export const LIBP2P_TRANSPORT_DEFAULTS: Omit<Libp2pTransportConfig, 'meshKey'> = {
  listen: ['/ip4/127.0.0.1/tcp/0'],
  topics: [],
  bootstrap: [],
  dialConcurrencyMax: 32,
  dialTimeoutMs: 10_000,
  connectionsMax: 300,
  allowLoopback: false,
  ipColocationFactorWeight: -5,
  dht: true,
  dhtProtocol: '/lattice/kad/1.0.0',
  reconnectInitialDelayMs: 1_000,
  reconnectDelayMaxMs: 30_000,
  reconnectBackoffFactor: 2,
  reconnectJitterRatio: 0.2,
  handlerTimeoutMs: 30_000,
  inboundStreamsMax: 32,
  messageBytesMax: 1024 * 1024,
  rpcBytesMax: 4 * 1024 * 1024,
  connectionPingIntervalMs: 30_000,
  connectionPingTimeoutMs: 30_000,
}

/** Named presets, merged over the defaults (and under explicit options). */
export const LIBP2P_TRANSPORT_PRESETS = {
  /** Machines on a LAN, one node per IP: the defaults. */
  lan: {},
  /**
   * Many nodes in one process on loopback: no per-IP limits. Dials keep the
   * lan timeout and retries back off to 5 s: with a hundred nodes sharing one
   * CPU, hundreds of handshakes in flight each take seconds, and a 3 s dial
   * timeout with 100 ms–1 s retries aborted them all and started them again
   * (the mesh benchmark never connected).
   */
  test: {
    allowLoopback: true,
    ipColocationFactorWeight: 0,
    reconnectInitialDelayMs: 500,
    reconnectDelayMaxMs: 5_000,
    handlerTimeoutMs: 5_000,
  },
} satisfies Record<string, Partial<Libp2pTransportInit>>

export interface Libp2pTransportComponents {
  privateKey: PrivateKey
  logger: Logger
  /** Timers for request deadlines and bootstrap backoff (mesh/ never uses setTimeout). */
  clock: Clock
}

export interface Libp2pTransportCounters extends RpcCounters {
  published: number
  /** Publishes that reached no peer (nobody subscribed yet): swallowed, not thrown. */
  publishedToNoPeers: number
  publishFailed: number
  /** Publishes while stopped: dropped. */
  publishedWhileStopped: number
  messagesReceived: number
  messagesDroppedTooLarge: number
  subscriberFailures: number
  dialsFailed: number
}

/** Gossip score lost per penalty point: a few bad messages push a peer below gossipsub's gossip threshold (-10). */
const PENALTY_SCORE_PER_POINT = 5

export interface Libp2pTransport extends Transport {
  gossipScoreOf(peerId: string): number
  counters(): Readonly<Libp2pTransportCounters>
}

export function resolveLibp2pTransportConfig(init: Libp2pTransportInit): Libp2pTransportConfig {
  const config: Libp2pTransportConfig = { ...LIBP2P_TRANSPORT_DEFAULTS, ...withoutUndefined(init), meshKey: init.meshKey }
  assertMeshKey(config.meshKey)
  if (config.listen.length === 0) throw new RangeError('listen: at least one multiaddr is needed')
  if (config.ipColocationFactorWeight > 0) throw new RangeError('ipColocationFactorWeight must be <= 0')
  for (const key of ['dialConcurrencyMax', 'dialTimeoutMs', 'connectionsMax', 'reconnectInitialDelayMs', 'reconnectDelayMaxMs', 'handlerTimeoutMs', 'inboundStreamsMax', 'messageBytesMax', 'rpcBytesMax', 'connectionPingIntervalMs', 'connectionPingTimeoutMs'] as const) {
    if (!(config[key] > 0)) throw new RangeError(`${key} must be > 0`)
  }
  if (config.reconnectBackoffFactor < 1) throw new RangeError('reconnectBackoffFactor must be >= 1')
  if (config.reconnectJitterRatio < 0 || config.reconnectJitterRatio > 1) throw new RangeError('reconnectJitterRatio must be in [0, 1]')
  return config
}

export function createLibp2pTransport(init: Libp2pTransportInit): (components: Libp2pTransportComponents) => Libp2pTransport {
  const config = resolveLibp2pTransportConfig(init)
  return (components) => new Libp2pTransportImpl(config, components)
}

type TopicHandler = (message: TopicMessage) => void

class Libp2pTransportImpl implements Libp2pTransport {
  readonly selfId: string
  private node: Libp2pHost | undefined
  private bootstrap: BootstrapDialer | undefined
  private readonly topicHandlers = new Map<string, Set<TopicHandler>>()
  private readonly handlers = new Map<string, HandlerEntry>()
  private readonly peerListeners = new Set<(event: PeerEvent) => void>()
  /**
   * Connected peers as strings, kept from peer:connect / peer:disconnect:
   * membership asks before every request, and stringifying libp2p's PeerIds
   * (base58) each time was 3 % of the CPU of 100 nodes.
   */
  private readonly connected = new Set<string>()
  private readonly count: Libp2pTransportCounters = {
    ...createRpcCounters(),
    published: 0,
    publishedToNoPeers: 0,
    publishFailed: 0,
    publishedWhileStopped: 0,
    messagesReceived: 0,
    messagesDroppedTooLarge: 0,
    subscriberFailures: 0,
    dialsFailed: 0,
  }
  private readonly log: Logger
  private readonly penalties = new PeerPenalties(() => this.components.clock.nowMs())

  constructor(
    private readonly config: Libp2pTransportConfig,
    private readonly components: Libp2pTransportComponents,
  ) {
    this.selfId = peerIdFromPrivateKey(components.privateKey).toString()
    this.log = components.logger.child({ component: 'libp2p-transport', peerId: this.selfId })
  }

  async start(): Promise<void> {
    if (this.node !== undefined) return
    const node = await createLibp2pHost(this.hostConfig(), this.components.privateKey)
    node.addEventListener('peer:connect', this.onPeerConnect)
    node.addEventListener('peer:disconnect', this.onPeerDisconnect)
    node.services.pubsub.addEventListener('message', this.onGossip)
    await node.start()
    this.node = node
    for (const protocol of this.handlers.keys()) this.register(node, protocol)
    for (const topic of this.topicHandlers.keys()) node.services.pubsub.subscribe(topic)
    await this.rememberBootstrapAddresses(node)
    this.bootstrap = createBootstrapDialer(
      {
        addresses: this.config.bootstrap,
        selfId: this.selfId,
        backoff: {
          initialDelayMs: this.config.reconnectInitialDelayMs,
          delayMaxMs: this.config.reconnectDelayMaxMs,
          factor: this.config.reconnectBackoffFactor,
          jitterRatio: this.config.reconnectJitterRatio,
        },
      },
      {
        clock: this.components.clock,
        logger: this.log,
        dial: (address) => this.dialAddress(address),
        isConnected: (peerId) => this.node !== undefined && this.connected.has(peerId),
      },
    )
    await this.bootstrap.start()
    this.log.info({ addresses: this.addresses() }, 'libp2p transport started')
  }

  async stop(): Promise<void> {
    const node = this.node
    if (node === undefined) return
    this.node = undefined
    await this.bootstrap?.stop()
    this.bootstrap = undefined
    node.removeEventListener('peer:connect', this.onPeerConnect)
    node.removeEventListener('peer:disconnect', this.onPeerDisconnect)
    node.services.pubsub.removeEventListener('message', this.onGossip)
    this.connected.clear()
    await node.stop()
    this.log.info({}, 'libp2p transport stopped')
  }

  addresses(): string[] {
    if (this.node === undefined) return []
    const suffix = `/p2p/${this.selfId}`
    return this.node.getMultiaddrs().map((address) => {
      const text = address.toString()
      return text.endsWith(suffix) ? text : text + suffix
    })
  }

  subscribe(topic: string, handler: TopicHandler): () => void {
    let handlers = this.topicHandlers.get(topic)
    if (handlers === undefined) {
      handlers = new Set()
      this.topicHandlers.set(topic, handlers)
      this.node?.services.pubsub.subscribe(topic)
    }
    // Wrapped so the same function may subscribe twice and unsubscribe each once.
    const entry: TopicHandler = (message) => handler(message)
    handlers.add(entry)
    return () => {
      const current = this.topicHandlers.get(topic)
      if (current === undefined || !current.delete(entry) || current.size > 0) return
      this.topicHandlers.delete(topic)
      this.node?.services.pubsub.unsubscribe(topic)
    }
  }

  async publish(topic: string, data: Uint8Array): Promise<void> {
    if (data.byteLength > this.config.messageBytesMax) {
      throw new TransportError('TOO_LARGE', `message of ${data.byteLength} bytes exceeds messageBytesMax ${this.config.messageBytesMax}`)
    }
    const node = this.node
    if (node === undefined) {
      this.count.publishedWhileStopped++
      return
    }
    try {
      const result = await node.services.pubsub.publish(topic, data)
      this.count.published++
      if (result.recipients.length === 0) this.count.publishedToNoPeers++
    } catch (err) {
      // Best effort by contract: NoPeersSubscribedToTopic (should allowPublishToZeroTopicPeers
      // ever be off) and any other publish error is counted, never thrown.
      if (String(err).includes('NoPeersSubscribedToTopic')) this.count.publishedToNoPeers++
      else this.count.publishFailed++
      this.log.debug({ topic, err: String(err) }, 'publish failed')
    }
  }

  handle(protocol: string, handler: (request: RequestContext) => Promise<Uint8Array>, options: HandlerOptions): void {
    if (!(options.requestBytesMax >= 0)) throw new RangeError('requestBytesMax must be >= 0')
    const isNew = !this.handlers.has(protocol)
    this.handlers.set(protocol, { handler, options: { ...options } })
    if (isNew && this.node !== undefined) this.register(this.node, protocol)
  }

  async request(peerId: string, protocol: string, data: Uint8Array, options: RequestOptions): Promise<Uint8Array> {
    const node = this.node
    if (node === undefined) throw new TransportError('STOPPED', 'transport is stopped')
    if (peerId === this.selfId) {
      return serveLocally(this.handlers.get(protocol), { from: this.selfId, protocol, data }, this.components.clock, options)
    }
    this.count.requestsSent++
    try {
      return await sendRequest(node, this.components.clock, peerId, protocol, data, options)
    } catch (err) {
      this.count.requestsFailed++
      throw err
    }
  }

  async dial(address: string): Promise<void> {
    await this.dialAddress(address)
  }

  connectedPeers(): string[] {
    return this.node === undefined ? [] : [...this.connected]
  }

  connectionCount(): number {
    return this.node === undefined ? 0 : this.connected.size
  }

  onPeerEvent(handler: (event: PeerEvent) => void): () => void {
    const entry = (event: PeerEvent): void => handler(event)
    this.peerListeners.add(entry)
    return () => {
      this.peerListeners.delete(entry)
    }
  }

  counters(): Readonly<Libp2pTransportCounters> {
    return { ...this.count }
  }

  private hostConfig(): Libp2pHostConfig {
    const { listen, meshKey, topics, dialConcurrencyMax, dialTimeoutMs, connectionsMax, allowLoopback, ipColocationFactorWeight, dht, dhtProtocol, rpcBytesMax, connectionPingIntervalMs, connectionPingTimeoutMs } =
      this.config
    return { listen, meshKey, topics, dialConcurrencyMax, dialTimeoutMs, connectionsMax, allowLoopback, ipColocationFactorWeight, dht, dhtProtocol, rpcBytesMax, connectionPingIntervalMs, connectionPingTimeoutMs, appSpecificScore: (peerId) => -PENALTY_SCORE_PER_POINT * this.penalties.of(peerId) }
  }

  penalize(peerId: string, reason: string): void {
    this.penalties.add(peerId)
    this.log.debug({ peer: peerId, reason }, 'peer penalized')
  }

  penaltyOf(peerId: string): number {
    return this.penalties.of(peerId)
  }

  /** Gossipsub's score of a peer as this node sees it (0 when stopped). */
  gossipScoreOf(peerId: string): number {
    // The GossipSub interface type omits getScore; the instance has it.
    return (this.node?.services.pubsub as unknown as { getScore?: (id: string) => number } | undefined)?.getScore?.(peerId) ?? 0
  }

  /** Registers a dispatcher that looks the handler up per stream, so handle() can replace it. */
  private register(node: Libp2pHost, protocol: string): void {
    const onStream = (stream: Stream, connection: Connection): void => {
      const entry = this.handlers.get(protocol)
      if (entry === undefined) {
        stream.abort(new Error(`no handler for ${protocol}`))
        return
      }
      void serveStream(stream, connection, entry, {
        clock: this.components.clock,
        logger: this.log,
        counters: this.count,
        handlerTimeoutMs: this.config.handlerTimeoutMs,
      })
    }
    node
      .handle(protocol, onStream, { force: true, maxInboundStreams: this.config.inboundStreamsMax })
      .catch((err: unknown) => this.log.error({ protocol, err: String(err) }, 'registering a protocol handler failed'))
  }

  /**
   * Puts each bootstrap peer's address in the peer store before anything
   * dials. A request to a bootstrap peer by its id (the initial state sync,
   * the membership join) would otherwise look the peer up in peer routing,
   * a walk of a DHT that knows nobody yet, which ends only at the dial
   * timeout; and the bootstrap dial by address joins that dial (libp2p dials
   * a peer once at a time). Five nodes joining through one invite on
   * loopback then took ~12 s instead of ~2 whenever a request came first.
   */
  private async rememberBootstrapAddresses(node: Libp2pHost): Promise<void> {
    for (const address of this.config.bootstrap) {
      const peerId = peerIdOf(address)
      if (peerId === undefined || peerId === this.selfId) continue
      try {
        await node.peerStore.merge(peerIdFromString(peerId), { multiaddrs: [multiaddr(address).decapsulateCode(P2P_PROTOCOL_CODE)] })
      } catch (err) {
        // A malformed entry is the bootstrap dialer's to report (it fails to dial it); nothing is learned from it here.
        this.log.debug({ address, err: String(err) }, 'bootstrap address not put in the peer store')
      }
    }
  }

  private async dialAddress(address: string): Promise<string> {
    const node = this.node
    if (node === undefined) throw new TransportError('STOPPED', 'transport is stopped')
    let target
    try {
      target = multiaddr(address)
    } catch (err) {
      throw new TransportError('UNREACHABLE', `not a multiaddr: ${address}`, { cause: err })
    }
    const deadline = createDeadline(this.components.clock, this.config.dialTimeoutMs, `dial ${address}`)
    try {
      const connection = await node.dial(target, { signal: deadline.signal })
      return connection.remotePeer.toString()
    } catch (err) {
      this.count.dialsFailed++
      if (deadline.signal.aborted) throw new TransportError('TIMEOUT', `dial ${address} timed out`, { cause: err })
      throw new TransportError(dialErrorCode(err), `cannot dial ${address}: ${String(err)}`, { cause: err })
    } finally {
      deadline.dispose()
    }
  }

  private readonly onPeerConnect = (event: CustomEvent<PeerId>): void => {
    const peerId = event.detail.toString()
    this.connected.add(peerId)
    this.emitPeerEvent({ type: 'connect', peerId })
  }

  private readonly onPeerDisconnect = (event: CustomEvent<PeerId>): void => {
    const peerId = event.detail.toString()
    this.connected.delete(peerId)
    this.emitPeerEvent({ type: 'disconnect', peerId })
    this.bootstrap?.peerDisconnected(peerId)
  }

  private emitPeerEvent(event: PeerEvent): void {
    if (this.node === undefined) return
    for (const listener of [...this.peerListeners]) {
      try {
        listener(event)
      } catch (err) {
        this.log.warn({ event, err: String(err) }, 'peer event listener threw')
      }
    }
  }

  private readonly onGossip = (event: CustomEvent<Message>): void => {
    const message = event.detail
    // StrictSign: gossipsub already rejected unsigned messages; this narrows the type.
    if (message.type !== 'signed') return
    if (message.data.byteLength > this.config.messageBytesMax) {
      this.count.messagesDroppedTooLarge++
      return
    }
    const handlers = this.topicHandlers.get(message.topic)
    if (handlers === undefined) return
    this.count.messagesReceived++
    const delivered: TopicMessage = { topic: message.topic, from: message.from.toString(), data: message.data }
    for (const handler of [...handlers]) {
      try {
        handler(delivered)
      } catch (err) {
        this.count.subscriberFailures++
        this.log.warn({ topic: message.topic, err: String(err) }, 'topic subscriber threw')
      }
    }
  }
}

/**
 * UNREACHABLE only when the host answered "nobody here" (connection refused
 * or reset, no route, no address): membership takes that as evidence that a
 * peer's process is gone. A dial that merely did not finish in time — a
 * handshake starved of CPU, a timeout or abort deep in libp2p — is silence
 * (TIMEOUT), as a lost packet would be.
 */
export function dialErrorCode(err: unknown): 'UNREACHABLE' | 'TIMEOUT' {
  let text = ''
  for (let cause: unknown = err, depth = 0; cause !== undefined && depth < 5; depth++) {
    text += ` ${cause instanceof Error ? cause.name : ''} ${String(cause)}`
    cause = cause instanceof Error ? cause.cause : undefined
  }
  if (/ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|NoValidAddresses|InvalidMultiaddr/.test(text)) return 'UNREACHABLE'
  if (/TimeoutError|AbortError|aborted|timed out/i.test(text)) return 'TIMEOUT'
  return 'UNREACHABLE'
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>
}
