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
  // Both sides sorted the same way (code unit order, as aliveMembers sorts);
  // compared in place: joining n views into strings cost O(n²) bytes per check.
  const expected = alive.map((n) => n.peerId).sort()
  const violations: string[] = []
  for (const node of alive) {
    const seen = node.core.membership.aliveMembers()
    if (seen.length === expected.length && seen.every((peerId, i) => peerId === expected[i])) continue
    violations.push(`node ${node.index} sees a different set of alive members: ${viewDifference(node, seen, expected)}`)
  }
  return violations.slice(0, 10)
}

/** Which members a node's alive list lacks or holds beyond the alive nodes, with its view of each (a few named). */
function viewDifference(node: SimNode, seen: readonly string[], expected: readonly string[]): string {
  const seenSet = new Set(seen)
  const expectedSet = new Set(expected)
  const lacks = expected.filter((peerId) => !seenSet.has(peerId))
  const extra = seen.filter((peerId) => !expectedSet.has(peerId))
  const named = (peerIds: string[]): string =>
    peerIds
      .slice(0, VIEW_DIFFERENCES_NAMED)
      .map((peerId) => {
        const member = node.core.membership.member(peerId)
        return `${peerId.slice(-6)} (${member === undefined ? 'unknown' : `${member.state}@${member.incarnation}`} here)`
      })
      .join(', ')
  const parts: string[] = []
  if (lacks.length > 0) parts.push(`lacks ${lacks.length} alive node(s): ${named(lacks)}`)
  if (extra.length > 0) parts.push(`holds ${extra.length} other(s) as alive: ${named(extra)}`)
  return parts.join('; ')
}

/** Members named per differing view in a violation message. */
const VIEW_DIFFERENCES_NAMED = 3

export interface ContainerCensus {
  /** Running containers on alive nodes, with the node that runs them. */
  running: Array<{ node: SimNode; container: ContainerInfo }>
}

export async function takeCensus(alive: readonly SimNode[]): Promise<ContainerCensus> {
  const running: ContainerCensus['running'] = []
  for (const node of alive) {
    for (const container of node.runtime.listNow()) if (container.state === 'running') running.push({ node, container })
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

// ---- safety checkers: they must hold at every moment of the faults

/**
 * No accepted deployment is lost, while faults go on: each accepted id is
 * held by at least one node that may come back (running, crashed, paused —
 * a crashed node's store keeps what it accepted), not only by alive ones.
 */
export function checkAcceptedDeploymentsDurable(nodes: readonly SimNode[], acceptedIds: readonly string[]): string[] {
  const holders = nodes.filter((n) => !n.left)
  const missing = acceptedIds.filter((id) => !holders.some((n) => n.core.state.deployment(id) !== undefined))
  return missing.length === 0 ? [] : [`${missing.length} accepted deployment(s) held by no node at all, e.g. ${missing[0]}`]
}

export interface UnwonRun {
  node: SimNode
  container: ContainerInfo
}

/**
 * Containers whose generation their node did not win according to its own
 * document: neither the current round nor one in the record's history lists
 * the node among the winners of that generation.
 */
export function findUnwonRuns(census: ContainerCensus): UnwonRun[] {
  const out: UnwonRun[] = []
  for (const entry of census.running) {
    const { node, container } = entry
    const record = node.core.state.placement(container.deploymentId, container.replica)
    const won =
      record !== undefined &&
      ((record.generation === container.generation && record.winners.includes(node.peerId)) ||
        record.history.some((h) => h.generation === container.generation && h.winners.includes(node.peerId)))
    if (!won) out.push(entry)
  }
  return out
}

/**
 * No node runs a replica of a generation it did not win — checked during the
 * faults. Two concurrent closes of one round converge in the CRDT to one
 * record, so a node may briefly run what it won in a record that lost the
 * merge; its reconciler must stop it within `graceMs` of running time (time
 * a node spends paused or crashed does not count). A container still
 * running against its node's own document after that is a violation.
 */
export class UnwonRunWatch {
  /** First time (virtual ms) each offending container was seen, by container id. */
  private readonly since = new Map<string, number>()
  private readonly reported = new Set<string>()

  constructor(readonly graceMs: number) {}

  /** Feeds one census (of running, unpaused nodes); returns new violations. */
  observe(nowMs: number, census: ContainerCensus): string[] {
    const offending = findUnwonRuns(census)
    const seen = new Set<string>()
    const violations: string[] = []
    for (const { node, container } of offending) {
      const key = `${node.peerId}/${container.id}`
      seen.add(key)
      const first = this.since.get(key) ?? nowMs
      this.since.set(key, first)
      if (nowMs - first > this.graceMs && !this.reported.has(key)) {
        this.reported.add(key)
        const record = node.core.state.placement(container.deploymentId, container.replica)
        violations.push(`node ${node.index} runs ${container.deploymentId}/${container.replica} generation ${container.generation}, which it did not win (its record: generation ${record?.generation ?? 'none'}, winners ${record?.winners.length ?? 0}), for over ${this.graceMs} ms`)
      }
    }
    for (const key of [...this.since.keys()]) if (!seen.has(key)) this.since.delete(key)
    return violations
  }
}

export interface DeathDeclaration {
  atMs: number
  observer: number
  /** The node declared dead, as the cluster holds it when declared (undefined: not a node of the run). */
  subject: SimNode | undefined
  /** Whether the subject was paused when declared. */
  subjectPaused: boolean
}

/**
 * When only message loss, delay and duplication were injected, no healthy
 * node may be declared dead: a declaration about a node that runs and is not
 * paused is a false death.
 */
export function checkNoHealthyNodeDeclaredDead(declarations: readonly DeathDeclaration[]): string[] {
  return declarations
    .filter((d) => d.subject !== undefined && d.subject.running && !d.subject.left && !d.subjectPaused)
    .map((d) => `node ${d.observer} declared healthy node ${d.subject?.index} dead at ${d.atMs} ms with only loss/jitter injected`)
}
