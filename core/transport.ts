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
  /** Read-only: one copy may be handed to every subscriber (and, in the simulator, to every peer). */
  data: Uint8Array
}

export interface RequestContext {
  from: string
  protocol: string
  /** Read-only (an in-process adapter may hand over the sender's bytes). Requests, responses and topic data are never modified after they are sent. */
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
  /** How many peers are connected now (connectedPeers().length, without building the list). */
  connectionCount(): number
  onPeerEvent(handler: (event: PeerEvent) => void): () => void
  /**
   * Reports a peer that sent input which failed validation. The libp2p
   * adapter lowers its gossipsub score (application-specific score, decaying);
   * the simulated network counts it. Never throws.
   */
  penalize(peerId: string, reason: string): void
  /** This node's current penalty of a peer (0: none); decays over time. */
  penaltyOf(peerId: string): number
}

/** Penalty points of misbehaving peers, halving every halfLifeMs; bounded in size. */
export class PeerPenalties {
  private readonly points = new Map<string, { value: number; atMs: number }>()
  constructor(private readonly nowMs: () => number, private readonly halfLifeMs = 60_000, private readonly peersMax = 4_096) {}

  add(peerId: string, amount = 1): void {
    const value = this.of(peerId) + amount
    this.points.delete(peerId)
    if (this.points.size >= this.peersMax) this.points.delete(this.points.keys().next().value as string)
    this.points.set(peerId, { value, atMs: this.nowMs() })
  }

  of(peerId: string): number {
    const entry = this.points.get(peerId)
    if (entry === undefined) return 0
    return entry.value * 0.5 ** ((this.nowMs() - entry.atMs) / this.halfLifeMs)
  }
}

export type TransportErrorCode = 'TIMEOUT' | 'TOO_LARGE' | 'UNREACHABLE' | 'NO_HANDLER' | 'HANDLER_FAILED' | 'STOPPED'

/** Error.stackTraceLimit while a TransportError is being built (see withoutStack). */
let stackTraceLimitOutside = Error.stackTraceLimit

/** Turns stack capture off for the Error constructor about to run; the TransportError constructor turns it back on. */
function withoutStack<T>(options: T): T {
  stackTraceLimitOutside = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  return options
}

export class TransportError extends Error {
  override readonly name = 'TransportError'
  constructor(readonly code: TransportErrorCode, message: string, options?: { cause?: unknown }) {
    // No stack: these are expected outcomes (timeouts, unreachable peers), thousands a second in a
    // large simulated run, where capturing the stack was 2 % of the CPU; the code and message say it all.
    super(message, withoutStack(options))
    Error.stackTraceLimit = stackTraceLimitOutside
  }
}
