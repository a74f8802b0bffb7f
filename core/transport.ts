/**
 * The Transport port: how a node talks to its peers. Real adapter: libp2p
 * (gossipsub topics + request/response streams, mesh/libp2p-transport.ts);
 * simulated adapter: an in-memory network with seeded latency, loss,
 * duplication and partitions (sim/). Both pass the transport acceptance suite.
 *
 * Delivery is best-effort: a published message may be lost, duplicated or
 * reordered. Anything that must arrive has an anti-entropy path behind it.
 */
export interface TopicMessage {
  topic: string
  /** PeerId of the signer/sender. */
  from: string
  data: Uint8Array
}

export interface RequestContext {
  from: string
  protocol: string
  data: Uint8Array
}

export interface HandlerOptions {
  /** Requests larger than this are refused before the handler runs. */
  requestBytesMax: number
}

export interface RequestOptions {
  timeoutMs: number
  /** Responses larger than this fail the request. */
  responseBytesMax: number
  signal?: AbortSignal
}

export type PeerEvent = { type: 'connect' | 'disconnect'; peerId: string }

export interface Transport {
  readonly selfId: string
  start(): Promise<void>
  stop(): Promise<void>
  /** Listen addresses others can dial (multiaddrs for libp2p). */
  addresses(): string[]
  subscribe(topic: string, handler: (message: TopicMessage) => void): () => void
  /** Best effort; never throws because no peer listens yet. */
  publish(topic: string, data: Uint8Array): Promise<void>
  handle(protocol: string, handler: (request: RequestContext) => Promise<Uint8Array>, options: HandlerOptions): void
  request(peerId: string, protocol: string, data: Uint8Array, options: RequestOptions): Promise<Uint8Array>
  /** Dials an address (bootstrap, or one learned from a heartbeat). */
  dial(address: string): Promise<void>
  connectedPeers(): string[]
  onPeerEvent(handler: (event: PeerEvent) => void): () => void
}

export type TransportErrorCode = 'TIMEOUT' | 'TOO_LARGE' | 'UNREACHABLE' | 'NO_HANDLER' | 'HANDLER_FAILED' | 'STOPPED'

export class TransportError extends Error {
  override readonly name = 'TransportError'
  constructor(readonly code: TransportErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
  }
}
