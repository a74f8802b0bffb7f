/**
 * Loss on request/response, layered over any Transport (the simulated
 * network models requests as reliable streams, as TCP is). Under
 * `requestLossRate` the request leg or the response leg is lost with that
 * probability each; the caller sees what a stalled stream gives: TIMEOUT at
 * its deadline. A lost response still ran the handler (the target saw the
 * ping, the prober never saw the ack). Harsher than TCP, on purpose: the
 * failure detector must survive it without false deaths.
 */
import type { Clock, HandlerOptions, PeerEvent, RequestContext, RequestOptions, Rng, TopicMessage, Transport } from '../core/index.ts'
import { TransportError } from '../core/index.ts'

export interface RequestFaults {
  /** Probability that one leg (request or response) is lost; read at each request. */
  requestLossRate(): number
  /** Sees every request this transport sends (the scenario measures when a crashed node is first contacted). */
  onRequest?(to: string, protocol: string): void
}

export interface RequestFaultCounters {
  requestsLost: number
  responsesLost: number
}

export class FaultyTransport implements Transport {
  readonly faultCounters: RequestFaultCounters = { requestsLost: 0, responsesLost: 0 }

  constructor(
    readonly inner: Transport,
    private readonly clock: Clock,
    private readonly rng: Rng,
    private readonly faults: RequestFaults,
  ) {}

  get selfId(): string {
    return this.inner.selfId
  }

  start(): Promise<void> {
    return this.inner.start()
  }

  stop(): Promise<void> {
    return this.inner.stop()
  }

  addresses(): string[] {
    return this.inner.addresses()
  }

  subscribe(topic: string, handler: (message: TopicMessage) => void): () => void {
    return this.inner.subscribe(topic, handler)
  }

  publish(topic: string, data: Uint8Array): Promise<void> {
    return this.inner.publish(topic, data)
  }

  handle(protocol: string, handler: (request: RequestContext) => Promise<Uint8Array>, options: HandlerOptions): void {
    this.inner.handle(protocol, handler, options)
  }

  request(peerId: string, protocol: string, data: Uint8Array, options: RequestOptions): Promise<Uint8Array> {
    this.faults.onRequest?.(peerId, protocol)
    const loss = this.faults.requestLossRate()
    if (loss <= 0) return this.inner.request(peerId, protocol, data, options)
    const deadlineMs = this.clock.nowMs() + options.timeoutMs
    const timeout = (): Promise<Uint8Array> =>
      new Promise((_, reject) => {
        this.clock.setTimer(Math.max(0, deadlineMs - this.clock.nowMs()), () =>
          reject(new TransportError('TIMEOUT', `request ${protocol} to ${peerId} timed out after ${options.timeoutMs} ms (lost)`)),
        )
      })
    if (this.rng.next() < loss) {
      this.faultCounters.requestsLost++
      return timeout()
    }
    return this.inner.request(peerId, protocol, data, options).then((response) => {
      if (this.rng.next() < loss) {
        this.faultCounters.responsesLost++
        return timeout()
      }
      return response
    })
  }

  dial(address: string): Promise<void> {
    return this.inner.dial(address)
  }

  connectedPeers(): string[] {
    return this.inner.connectedPeers()
  }

  connectionCount(): number {
    return this.inner.connectionCount()
  }

  penalize(peerId: string, reason: string): void {
    this.inner.penalize(peerId, reason)
  }

  penaltyOf(peerId: string): number {
    return this.inner.penaltyOf(peerId)
  }

  onPeerEvent(handler: (event: PeerEvent) => void): () => void {
    return this.inner.onPeerEvent(handler)
  }
}
