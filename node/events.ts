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
  | { type: 'node.joined' | 'node.suspect' | 'node.dead' | 'node.left' | 'node.alive'; peerId: string }

export type ClusterEvent = ClusterEventBody & { seq: number; atMs: number }

export interface EventBus {
  emit(event: ClusterEventBody): void
  /** Events with seq > afterSeq still in the buffer. */
  recent(afterSeq?: number): ClusterEvent[]
  subscribe(listener: (event: ClusterEvent) => void): () => void
}

export function createEventBus(init: { bufferMax: number }, components: { clock: Clock }): EventBus {
  const buffer: ClusterEvent[] = []
  const listeners = new Set<(event: ClusterEvent) => void>()
  let seq = 0
  return {
    emit(body) {
      const event = { ...body, seq: ++seq, atMs: components.clock.nowMs() } as ClusterEvent
      buffer.push(event)
      if (buffer.length > init.bufferMax) buffer.splice(0, buffer.length - init.bufferMax)
      for (const listener of listeners) listener(event)
    },
    recent(afterSeq = 0) {
      return buffer.filter((event) => event.seq > afterSeq)
    },
    subscribe(listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
  }
}
