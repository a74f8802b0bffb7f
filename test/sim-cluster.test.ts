/**
 * The whole node core in virtual time: the cluster scenarios hold their
 * invariants at a size CI affords, replay from their seed, and every
 * invariant checker catches a violation planted on purpose.
 */
import * as A from '@automerge/automerge'
import { describe, expect, it } from 'vitest'
import { checkEqualHeads, checkEqualMembershipViews, checkNoAcceptedDeploymentLost, checkReplicaPlacement, takeCensus } from '../sim/invariants.ts'
import { runClusterScenario, type ClusterScenarioName } from '../sim/scenarios/cluster.ts'
import { createSimCluster } from '../sim/sim-cluster.ts'

const base = { nodes: 12, seed: 7, deployments: 20, kill: 0.2, loss: 0.05, durationS: 20, partition: true }

describe('cluster scenarios on the real node core', () => {
  it.each<ClusterScenarioName>(['placement', 'failover', 'partition', 'state'])('%s: every invariant holds after the faults stop', async (scenario) => {
    const report = await runClusterScenario({ ...base, scenario })
    expect(report.invariants.violations).toEqual([])
    expect(report.invariants.ok).toBe(true)
    if (scenario === 'placement') {
      expect(report.figures.placeLatencyMs).not.toBeNull()
      expect(report.figures.bidsPerPlacement).toBeLessThanOrEqual(10)
    }
    if (scenario === 'failover') expect(report.figures.failoverMs?.p50).toBeGreaterThan(0)
  }, 120_000)

  it('the same seed gives the same traceHash; another seed gives another', async () => {
    const a = await runClusterScenario({ ...base, scenario: 'placement', nodes: 8, deployments: 8 })
    const b = await runClusterScenario({ ...base, scenario: 'placement', nodes: 8, deployments: 8 })
    const c = await runClusterScenario({ ...base, scenario: 'placement', nodes: 8, deployments: 8, seed: 8 })
    expect(a.traceHash).toBe(b.traceHash)
    expect(c.traceHash).not.toBe(a.traceHash)
  }, 120_000)
})

describe('the state scenario across epochs', () => {
  it('random writes, kills, restarts and a partition while the history is cut every 40 changes: nothing accepted is lost', async () => {
    const report = await runClusterScenario({ ...base, scenario: 'state', durationS: 30, epochChangesMin: 40 })
    expect(report.invariants.violations).toEqual([])
    expect(report.details['epochMinAlive']).toBeGreaterThanOrEqual(2)
    expect(report.details['epochCarriesLost']).toBe(0)
  }, 120_000)
})

describe('the first epoch', () => {
  it('is cut as soon as three registered nodes are alive, and hands the acceptor role from the founder to up to five nodes', async () => {
    const cluster = createSimCluster({ nodes: 7, seed: 4 })
    await cluster.startAll()
    const founder = cluster.nodes[0]!
    expect(founder.core.state.node(founder.peerId)?.founder).toBe(true)
    expect(await cluster.driver.runUntil(() => cluster.alive().every((n) => n.core.state.epoch().epoch === 1), 180_000)).toBe(true)
    const record = founder.core.state.epoch()
    expect(record.acceptors).toHaveLength(5)
    for (const node of cluster.alive()) expect(node.core.state.epoch()).toEqual(record)
    // The next agreement no longer needs the founder: it is one acceptor of five at most.
    expect(founder.core.epochs.acceptorsOf(2)).toEqual(record.acceptors)
    expect(checkEqualHeads(cluster.alive())).toEqual([])
    await cluster.stopAll()
  }, 120_000)
})

describe('a warm registry', () => {
  it('nodes start with every initial node registered, write no registry change of their own, and converge', async () => {
    const cluster = createSimCluster({ nodes: 8, seed: 5, warmRegistry: true })
    await cluster.startAll()
    expect(await cluster.driver.runUntil(() => checkEqualMembershipViews(cluster.alive()).length === 0, 30_000)).toBe(true)
    const alive = cluster.alive()
    for (const node of alive) {
      expect(node.core.state.nodes().map((n) => n.peerId)).toEqual(alive.map((n) => n.peerId).sort())
      // The registry entries plus the shared genesis: nobody wrote its entry again at start.
      expect(node.core.state.stats().changeCount).toBe(alive.length + 1)
    }
    expect(checkEqualHeads(alive)).toEqual([])
    const id = await cluster.deploy(alive[0]!, { name: 'warm', image: 'lattice-test/busybox:latest', command: ['/bin/httpd', '-f', '-p', '80', '-h', '/www'], resources: { cpu: 0.1, memoryMB: 16 } })
    await cluster.driver.runFor(10_000)
    expect(checkNoAcceptedDeploymentLost(cluster.alive(), [id])).toEqual([])
    expect(checkReplicaPlacement(alive[0]!, cluster.alive(), await takeCensus(cluster.alive()))).toEqual([])
    await cluster.stopAll()
  }, 60_000)
})

describe('each invariant checker catches a planted violation', () => {
  it('a lost deployment, unequal heads, a wrong membership view, a duplicate and a stale copy are all caught', async () => {
    const cluster = createSimCluster({ nodes: 4, seed: 3 })
    await cluster.startAll()
    await cluster.driver.runUntil(() => checkEqualMembershipViews(cluster.alive()).length === 0, 30_000)
    const [a, b] = cluster.alive()
    const id = await cluster.deploy(a!, { name: 'planted', image: 'lattice-test/busybox:latest', command: ['/bin/httpd', '-f', '-p', '80', '-h', '/www'], resources: { cpu: 0.1, memoryMB: 16 } })
    await cluster.driver.runFor(10_000)
    const alive = cluster.alive()
    expect(checkNoAcceptedDeploymentLost(alive, [id])).toEqual([])
    expect(checkEqualHeads(alive)).toEqual([])
    expect(checkReplicaPlacement(a!, alive, await takeCensus(alive))).toEqual([])

    // A deployment nobody holds was "lost".
    expect(checkNoAcceptedDeploymentLost(alive, [id, 'd-neverwritten'])).not.toEqual([])
    // A partition and a write on one side: heads differ.
    cluster.network.partition([[a!.peerId], alive.slice(1).map((n) => n.peerId)])
    await a!.core.state.setReplicas(id, 1)
    await cluster.deploy(a!, { name: 'one-side', image: 'lattice-test/busybox:latest', resources: { cpu: 0.1, memoryMB: 16 } })
    expect(checkEqualHeads(alive)).not.toEqual([])
    // A node that is down but still counted alive: views differ.
    const ghostViews = checkEqualMembershipViews([...alive, { ...b!, peerId: 'ghost-node' }])
    expect(ghostViews).not.toEqual([])
    // Each differing view names what it lacks, with its own view of it.
    expect(ghostViews.join()).toContain('lacks 1 alive node(s): t-node (unknown here)')
    // A second copy of the replica on its winner: a duplicate (a broken adapter would do this).
    const census = await takeCensus(alive)
    const copy = census.running.find((r) => r.container.deploymentId === id)!
    const other = alive.find((n) => n !== copy.node)!
    expect(checkReplicaPlacement(a!, alive, { running: [...census.running, { node: copy.node, container: { ...copy.container, id: 'dup' } }] }).join()).toContain('runs 2 times')
    // A copy of an older generation: a node running what it did not win.
    expect(checkReplicaPlacement(a!, alive, { running: [...census.running, { node: other, container: { ...copy.container, id: 'old', generation: 0 } }] }).join()).toContain('did not win')
    await cluster.stopAll()
  }, 60_000)
})

describe('status reports of a container start', () => {
  /** The states written for `deploymentId`'s statuses, in the order of the document's changes. */
  const statesWritten = (node: { core: { state: { changesSince(heads: readonly string[]): Uint8Array[] } } }, deploymentId: string): string[] =>
    node.core.state.changesSince([]).flatMap((change) =>
      (A.decodeChange(change).ops as Array<{ action: string; key?: unknown; value?: unknown }>)
        .filter((op) => op.action === 'set' && typeof op.key === 'string' && op.key.startsWith(`${deploymentId}/`) && typeof op.value === 'string' && op.value.includes('"state"'))
        .map((op) => (JSON.parse(op.value as string) as { state: string }).state),
    )

  it.each([
    { startMs: 300, written: ['running'] },
    { startMs: 3_000, written: ['starting', 'running'] },
  ])('a start taking $startMs virtual ms writes $written', async ({ startMs, written }) => {
    const cluster = createSimCluster({ nodes: 3, seed: 11, containerStartMs: startMs })
    await cluster.startAll()
    await cluster.driver.runFor(5_000)
    const id = await cluster.deploy(cluster.alive()[0]!, { name: 'web', image: 'lattice-test/busybox:latest', command: ['/bin/httpd', '-f', '-p', '80', '-h', '/www'], resources: { cpu: 0.1, memoryMB: 16 } })
    await cluster.driver.runFor(15_000)
    expect(statesWritten(cluster.alive()[0]!, id)).toEqual(written)
    const events = cluster.alive().flatMap((node) => node.events.recent()).filter((event) => event.type === 'replica.state' && event.deploymentId === id)
    expect(events.map((event) => (event as { state: string }).state)).toEqual(['starting', 'running']) // the event stream still tells both
    await cluster.stopAll()
  }, 60_000)
})
