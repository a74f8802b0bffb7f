/**
 * Placement for a mesh of one: every replica without a placement record is
 * won by this node at generation 1. The bidding round of DESIGN.md §5
 * replaces this module; the record it writes already has the same shape
 * (winners, bids, shortlist, closer), so the reconciler does not change.
 */
import type { Clock } from '../core/index.ts'
import type { ClusterState } from '../crdt/index.ts'
import type { EventBus } from './events.ts'

export interface LocalPlacement {
  /** Writes the missing placement records; returns how many it wrote. */
  placeMissing(): Promise<number>
}

export function createLocalPlacement(components: { state: ClusterState; clock: Clock; events: EventBus }): LocalPlacement {
  const { state, clock, events } = components
  return {
    async placeMissing() {
      let written = 0
      for (const deployment of state.deployments()) {
        if (deployment.desired === 'deleted') continue
        const placed = state.placements(deployment.id)
        for (let replica = 0; replica < deployment.replicas; replica++) {
          if (placed.has(replica)) continue
          const nowMs = clock.nowMs()
          const generation = 1
          await state.writePlacement(deployment.id, replica, {
            generation,
            winners: [state.selfId],
            bids: [{ peerId: state.selfId, score: 1, atMs: nowMs }],
            shortlist: [state.selfId],
            closedBy: state.selfId,
            openedAtMs: nowMs,
            closedAtMs: nowMs,
            history: [{ generation, winners: [state.selfId], closedBy: state.selfId, closedAtMs: nowMs, reason: 'initial' }],
          })
          events.emit({ type: 'placement.closed', deploymentId: deployment.id, replica, generation, winners: [state.selfId] })
          written++
        }
      }
      return written
    },
  }
}
