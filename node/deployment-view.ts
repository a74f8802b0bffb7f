/**
 * The API's view of a deployment (CONTRACTS.md `Deployment`), derived from the
 * document: its entry, its placement records and the status each node
 * reported. `phase` summarises the replicas in one word.
 */
import type { ReplicaState } from '../core/index.ts'
import type { ClusterState, DeploymentEntry, PlacementEntry, StatusEntry } from '../crdt/index.ts'

export interface ReplicaView {
  index: number
  generation: number
  nodeId: string | null
  state: ReplicaState
  hostPorts: Record<string, number>
  containerId: string | null
  error: string | null
  restarts: number
  startedAtMs: number | null
  updatedAtMs: number | null
}

export type Phase = 'pending' | 'deploying' | 'running' | 'degraded' | 'stopped' | 'failed' | 'deleted' | 'unschedulable'

export interface DeploymentView {
  id: string
  name: string
  spec: DeploymentEntry['spec']
  desired: DeploymentEntry['desired']
  phase: Phase
  replicas: ReplicaView[]
  placement: Record<string, PlacementEntry>
  owner: string
  epoch: number
  createdAtMs: number
  updatedAtMs: number
}

export function replicaViews(deployment: DeploymentEntry, placements: ReadonlyMap<number, PlacementEntry>, statuses: StatusEntry[]): ReplicaView[] {
  const views: ReplicaView[] = []
  for (let index = 0; index < deployment.replicas; index++) {
    const placement = placements.get(index)
    const winner = placement?.winners[0]
    // The winner's own report at the current generation is the truth; older reports are history.
    const status = statuses
      .filter((s) => s.replica === index && (placement === undefined || (placement.winners.includes(s.peerId) && s.generation === placement.generation)))
      .sort((a, b) => b.updatedAtMs - a.updatedAtMs)[0]
    if (placement !== undefined && placement.winners.length === 0) {
      views.push({ index, generation: placement.generation, nodeId: null, state: 'unschedulable', hostPorts: {}, containerId: null, error: placement.unschedulableReason ?? 'no node fits', restarts: 0, startedAtMs: null, updatedAtMs: placement.closedAtMs })
      continue
    }
    const state: ReplicaState = status?.state ?? (placement === undefined ? 'placing' : 'pending')
    views.push({
      index,
      generation: placement?.generation ?? 0,
      nodeId: status?.peerId ?? winner ?? null,
      state: deployment.desired === 'stopped' && status === undefined ? 'stopped' : state,
      hostPorts: status?.hostPorts ?? {},
      containerId: status?.containerId ?? null,
      error: status?.error ?? null,
      restarts: status?.restarts ?? 0,
      startedAtMs: status?.startedAtMs ?? null,
      updatedAtMs: status?.updatedAtMs ?? null,
    })
  }
  return views
}

export function phaseOf(desired: DeploymentEntry['desired'], replicas: ReplicaView[]): Phase {
  if (desired === 'deleted') return 'deleted'
  if (desired === 'stopped') return replicas.every((r) => r.state === 'stopped' || r.state === 'failed') ? 'stopped' : 'deploying'
  if (replicas.length === 0) return 'running'
  const states = replicas.map((r) => r.state)
  if (states.every((s) => s === 'running')) return 'running'
  if (states.some((s) => s === 'unschedulable')) return 'unschedulable'
  if (states.some((s) => s === 'running')) return 'degraded'
  if (states.every((s) => s === 'failed')) return 'failed'
  if (states.every((s) => s === 'pending' || s === 'placing')) return 'pending'
  return 'deploying'
}

export function deploymentView(state: ClusterState, deployment: DeploymentEntry): DeploymentView {
  const placements = state.placements(deployment.id)
  const replicas = deployment.desired === 'deleted' ? [] : replicaViews(deployment, placements, state.statuses(deployment.id))
  const placement: Record<string, PlacementEntry> = {}
  for (const [index, record] of placements) placement[String(index)] = record
  return {
    id: deployment.id,
    name: deployment.name,
    spec: deployment.spec,
    desired: deployment.desired,
    phase: phaseOf(deployment.desired, replicas),
    replicas,
    placement,
    owner: deployment.owner,
    epoch: deployment.epoch,
    createdAtMs: deployment.createdAtMs,
    updatedAtMs: deployment.updatedAtMs,
  }
}
