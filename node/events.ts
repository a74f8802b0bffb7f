/**
 * Cluster events as this node sees them: replica state changes, deployment
 * lifecycle, placement decisions, node membership. A bounded ring buffer
 * (late subscribers get recent history) plus live listeners for SSE.
 */
import type { Clock } from '../core/index.ts'

export type ClusterEventBody =
  | { type: 'deployment.created'; deploymentId: string; name: string }
  | { type: 'deployment.desired'; deploymentId: string; desired: string }
  | { type: 'deployment.scaled'; deploymentId: string; replicas: number }
  | { type: 'placement.closed'; deploymentId: string; replica: number; generation: number; winners: string[] }
  | { type: 'replica.state'; deploymentId: string; replica: number; nodeId: string; state: string; error?: string }
  | { type: 'runtime.availability'; available: boolean; reason?: string }
  | { type: 'state.failed'; reason: string }
  | { type: 'node.joined' | 'node.suspect' | 'node.dead' | 'node.left' | 'node.alive'; peerId: string }

export type ClusterEvent = ClusterEventBody & { seq: number; atMs: number }

export interface EventBus {
  emit(event: ClusterEventBody): void
  /** Events with seq > afterSeq still in the buffer. */
  recent(afterSeq?: number): ClusterEvent[]
  subscribe(listener: (event: ClusterEvent) => void): () => void
}

export function createEventBus(init: { bufferMax: number }, components: { clock: Clock }): EventBus {
  // A ring: every membership change of every peer is an event, so at a
  // thousand simulated nodes emit is hot; dropping the oldest costs nothing.
  const capacity = Math.max(0, init.bufferMax)
  const ring: Array<ClusterEvent | undefined> = new Array<ClusterEvent | undefined>(capacity)
  let next = 0
  const listeners = new Set<(event: ClusterEvent) => void>()
  let seq = 0
  return {
    emit(body) {
      const event = Object.assign({}, body, { seq: ++seq, atMs: components.clock.nowMs() }) as ClusterEvent
      if (capacity > 0) {
        ring[next] = event
        next = (next + 1) % capacity
      }
      for (const listener of listeners) listener(event)
    },
    recent(afterSeq = 0) {
      const out: ClusterEvent[] = []
      for (let i = 0; i < capacity; i++) {
        const event = ring[(next + i) % capacity]
        if (event !== undefined && event.seq > afterSeq) out.push(event)
      }
      return out
    },
    subscribe(listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
  }
}
