/**
 * Helpers for the state-sync tests (not part of crdt's public surface): a
 * Transport whose topic messages wait in an outbox until the test delivers
 * them (in any order, twice, or never), with direct request/response; and a
 * comparable view of a replica. The clock is passed in, so crdt/ never
 * imports sim/.
 */
import type { HandlerOptions, PeerEvent, RequestContext, RequestOptions, TopicMessage, Transport } from '../core/index.ts'
import { TransportError } from '../core/index.ts'
import * as A from '@automerge/automerge'
import type { ClusterState, SyncState } from './cluster-state.ts'

export interface ManualNetwork {
  transport(peerId: string): Transport
  /** Topic messages published since the last call, in publish order (one entry per publish, not per receiver). */
  take(): TopicMessage[]
  /** Hands `message` to `to`'s subscribers now. */
  deliver(to: string, message: TopicMessage): void
}

type Handler = (request: RequestContext) => Promise<Uint8Array>

export function createManualNetwork(): ManualNetwork {
  const peers = new Map<string, ManualTransport>()
  let outbox: TopicMessage[] = []

  class ManualTransport implements Transport {
    started = false
    readonly topics = new Map<string, Set<(message: TopicMessage) => void>>()
    readonly handlers = new Map<string, { handler: Handler; options: HandlerOptions }>()

    constructor(readonly selfId: string) {}

    async start(): Promise<void> {
      this.started = true
    }

    async stop(): Promise<void> {
      this.started = false
    }

    addresses(): string[] {
      return [`/manual/${this.selfId}`]
    }

    subscribe(topic: string, handler: (message: TopicMessage) => void): () => void {
      const set = this.topics.get(topic) ?? new Set()
      this.topics.set(topic, set)
      set.add(handler)
      return () => set.delete(handler)
    }

    async publish(topic: string, data: Uint8Array): Promise<void> {
      if (this.started) outbox.push({ topic, from: this.selfId, data: data.slice() })
    }

    handle(protocol: string, handler: Handler, options: HandlerOptions): void {
      this.handlers.set(protocol, { handler, options })
    }

    async request(peerId: string, protocol: string, data: Uint8Array, options: RequestOptions): Promise<Uint8Array> {
      const target = peers.get(peerId)
      if (!this.started) throw new TransportError('STOPPED', 'stopped')
      if (target === undefined || !target.started) throw new TransportError('UNREACHABLE', `${peerId} is not running`)
      const entry = target.handlers.get(protocol)
      if (entry === undefined) throw new TransportError('NO_HANDLER', `no handler for ${protocol}`)
      if (data.byteLength > entry.options.requestBytesMax) throw new TransportError('TOO_LARGE', 'request too large')
      let response: Uint8Array
      try {
        response = await entry.handler({ from: this.selfId, protocol, data: data.slice() })
      } catch (err) {
        throw new TransportError('HANDLER_FAILED', 'handler failed', { cause: err })
      }
      if (response.byteLength > options.responseBytesMax) throw new TransportError('TOO_LARGE', 'response too large')
      return response.slice()
    }

    async dial(): Promise<void> {}

    connectedPeers(): string[] {
      return [...peers.keys()].filter((peer) => peer !== this.selfId && peers.get(peer)?.started === true)
    }

    connectionCount(): number {
      return this.connectedPeers().length
    }

    readonly penalties = new Map<string, number>()

    penalize(peerId: string): void {
      this.penalties.set(peerId, (this.penalties.get(peerId) ?? 0) + 1)
    }

    penaltyOf(peerId: string): number {
      return this.penalties.get(peerId) ?? 0
    }

    onPeerEvent(_handler: (event: PeerEvent) => void): () => void {
      return () => undefined
    }
  }

  return {
    transport(peerId) {
      const created = new ManualTransport(peerId)
      peers.set(peerId, created)
      return created
    },
    take() {
      const taken = outbox
      outbox = []
      return taken
    },
    deliver(to, message) {
      const target = peers.get(to)
      if (target === undefined || !target.started) return
      for (const handler of [...(target.topics.get(message.topic) ?? [])]) handler({ ...message, data: message.data.slice() })
    },
  }
}

/** Everything a reader of a replica can see, in a form `toEqual` compares (never JSON of raw documents). */
export function replicaView(state: ClusterState): unknown {
  return {
    heads: [...state.heads()].sort(),
    nodes: state.nodes(),
    deployments: state.deployments(),
    placements: state.deployments().map((d) => [d.id, [...state.placements(d.id)]]),
    statuses: state.deployments().map((d) => [d.id, state.statuses(d.id)]),
  }
}

/** Runs the sync protocol between two replicas until neither has anything to send; returns the messages exchanged. `observeToB` sees each message `a` sends. */
export async function syncPair(a: ClusterState, b: ClusterState, observeToB?: (message: Uint8Array) => void): Promise<number> {
  let stateA: SyncState = A.initSyncState()
  let stateB: SyncState = A.initSyncState()
  let messages = 0
  for (let round = 0; round < 10; round++) {
    const [nextA, toB] = a.generateSyncMessage(stateA)
    stateA = nextA
    if (toB !== null) {
      observeToB?.(toB)
      stateB = (await b.receiveSyncMessage(stateB, toB)).syncState
    }
    const [nextB, toA] = b.generateSyncMessage(stateB)
    stateB = nextB
    if (toA !== null) stateA = (await a.receiveSyncMessage(stateA, toA)).syncState
    messages += Number(toB !== null) + Number(toA !== null)
    if (toA === null && toB === null) return messages
  }
  throw new Error('sync did not finish in 10 rounds')
}
