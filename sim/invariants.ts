/**
 * The simulator's invariant checkers (DESIGN.md §8). Each takes the cluster's
 * state and returns the violations it finds (empty: the invariant holds).
 * Every checker has a test that plants a violation and sees it caught.
 */
import type { ContainerInfo } from '../core/index.ts'
import type { SimNode } from './sim-cluster.ts'

/** No deployment accepted by an API is lost: every alive node holds every accepted id. */
export function checkNoAcceptedDeploymentLost(alive: readonly SimNode[], acceptedIds: readonly string[]): string[] {
  const violations: string[] = []
  for (const node of alive) {
    const missing = acceptedIds.filter((id) => node.core.state.deployment(id) === undefined)
    if (missing.length > 0) violations.push(`node ${node.index} lacks ${missing.length} accepted deployment(s), e.g. ${missing[0]}`)
  }
  return violations
}

/** All alive nodes hold the same document heads. */
export function checkEqualHeads(alive: readonly SimNode[]): string[] {
  const byHeads = new Map<string, number[]>()
  for (const node of alive) {
    const key = [...node.core.state.heads()].sort().join(',')
    byHeads.set(key, [...(byHeads.get(key) ?? []), node.index])
  }
  if (byHeads.size <= 1) return []
  return [`alive nodes hold ${byHeads.size} different document heads (groups of ${[...byHeads.values()].map((g) => g.length).join(', ')} nodes)`]
}

/** Every alive node sees exactly the alive nodes as alive (and no other). */
export function checkEqualMembershipViews(alive: readonly SimNode[]): string[] {
  const expected = alive.map((n) => n.peerId).sort().join(',')
  const violations: string[] = []
  for (const node of alive) {
    const seen = node.core.membership.members().filter((m) => m.state === 'alive').map((m) => m.peerId).sort().join(',')
    if (seen !== expected) violations.push(`node ${node.index} sees a different set of alive members`)
  }
  return violations.slice(0, 10)
}

export interface ContainerCensus {
  /** Running containers on alive nodes, with the node that runs them. */
  running: Array<{ node: SimNode; container: ContainerInfo }>
}

export async function takeCensus(alive: readonly SimNode[]): Promise<ContainerCensus> {
  const running: ContainerCensus['running'] = []
  for (const node of alive) {
    for (const container of await node.runtime.list()) if (container.state === 'running') running.push({ node, container })
  }
  return { running }
}

/**
 * Every desired replica runs on exactly one alive node, which won it at the
 * current generation; replicas of one deployment run on distinct nodes while
 * there are enough alive nodes; no alive node runs a replica of a generation
 * it did not win. Judged against `reference`'s document (converged by then).
 */
export function checkReplicaPlacement(reference: SimNode, alive: readonly SimNode[], census: ContainerCensus): string[] {
  const violations: string[] = []
  const state = reference.core.state
  const copies = new Map<string, Array<{ node: SimNode; container: ContainerInfo }>>()
  for (const entry of census.running) {
    const key = `${entry.container.deploymentId}/${entry.container.replica}`
    copies.set(key, [...(copies.get(key) ?? []), entry])
  }
  const aliveIds = new Set(alive.map((n) => n.peerId))
  for (const deployment of state.deployments()) {
    const placements = state.placements(deployment.id)
    const hosts = new Set<string>()
    for (let replica = 0; replica < deployment.replicas; replica++) {
      const key = `${deployment.id}/${replica}`
      const running = copies.get(key) ?? []
      copies.delete(key)
      const record = placements.get(replica)
      if (deployment.desired !== 'running') {
        if (running.length > 0) violations.push(`${key}: ${running.length} running cop(ies) of a deployment that is ${deployment.desired}`)
        continue
      }
      if (record === undefined) {
        violations.push(`${key}: desired but never placed`)
        continue
      }
      if (record.winners.length === 0) continue // unschedulable, reported as such
      const current = running.filter((r) => r.container.generation === record.generation && record.winners.includes(r.node.peerId))
      const stale = running.filter((r) => !current.includes(r))
      for (const s of stale) violations.push(`${key}: node ${s.node.index} runs generation ${s.container.generation}, which it did not win (record: generation ${record.generation})`)
      if (!record.winners.some((w) => aliveIds.has(w))) violations.push(`${key}: its winner is not alive and no new round closed`)
      else if (current.length !== 1) violations.push(`${key}: runs ${current.length} times on alive nodes (want exactly 1)`)
      for (const r of current) {
        if (hosts.has(r.node.peerId) && alive.length >= deployment.replicas) violations.push(`${deployment.id}: two replicas on node ${r.node.index}`)
        hosts.add(r.node.peerId)
      }
    }
  }
  for (const [key, extra] of copies) {
    violations.push(`${key}: ${extra.length} running cop(ies) of a replica no deployment wants`)
  }
  return violations
}
