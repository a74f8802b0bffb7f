/**
 * `npm run bench -- cluster`: the whole node core in the simulator.
 *
 * - propagation (issue 4): on LATTICE_BENCH_SYNC_NODES nodes (default
 *   1,000), writes through random nodes, one every 2 virtual seconds; for
 *   each, the time until every alive node has applied it (p50/p99), and the
 *   state-sync traffic per node per second (gossiped change bytes as
 *   delivered to every other node, plus anti-entropy bytes received).
 * - placement (issue 5): the `placement` scenario on
 *   LATTICE_BENCH_PLACE_NODES × LATTICE_BENCH_PLACE_DEPLOYMENTS (default
 *   100 × 200), all submitted at once unless LATTICE_BENCH_PLACE_SPREAD_MS
 *   spreads them: placeLatencyMs, placementsPerSecond, bidsPerPlacement;
 *   and the `failover` scenario on LATTICE_BENCH_FAILOVER_NODES (default
 *   100): failoverMs. Targets (at 500 and 1,000 nodes) are printed beside
 *   the figures with the size they were measured at.
 *
 * Every part starts from a warm registry (sim/warm-registry.ts: the nodes
 * ran before, so each store already holds every node's registry entry;
 * membership still joins for real): the figures are about propagation,
 * placement and failover, and a cold start of 1,000 nodes alone costs
 * O(n³) Automerge work (about 20 wall minutes). LATTICE_BENCH_CLUSTER_WARM=0
 * starts cold.
 *
 * LATTICE_BENCH_CLUSTER_PARTS=sync,placement,failover picks parts.
 * Prints figures; asserts nothing.
 */
import type { DeploymentSpecInput } from '../../core/index.ts'
import { checkEqualMembershipViews } from '../invariants.ts'
import { runClusterScenario } from '../scenarios/cluster.ts'
import { createSimCluster } from '../sim-cluster.ts'
import { p50p99 } from './stats.ts'

export const CLUSTER_BENCH_TARGETS = {
  placeLatencyMsP50: 1_000,
  placementsPerSecond: 500,
  /** 2·K with the default shortlist of K = 5. */
  bidsPerPlacement: 10,
  failoverMsP50: 5_000,
  targetNodesPlacement: 500,
  targetNodesFailover: 1_000,
}

const env = (name: string, fallback: number): number => {
  const value = Number(process.env[name] ?? fallback)
  return Number.isFinite(value) && value > 0 ? value : fallback
}

const log = (line: string): void => {
  process.stderr.write(`${line}\n`)
}

const SPEC: DeploymentSpecInput = { name: 'probe', image: 'lattice-test/busybox:latest', replicas: 1, resources: { cpu: 0.05, memoryMB: 16 } }

const WARM_REGISTRY = process.env.LATTICE_BENCH_CLUSTER_WARM !== '0'

async function propagation(nodes: number, writes: number): Promise<Record<string, unknown>> {
  const wallStartedAt = performance.now()
  const cluster = createSimCluster({ nodes, seed: 1, warmRegistry: WARM_REGISTRY, plannedDeployments: writes })
  const { driver } = cluster
  await cluster.startAll(10)
  const joined = await driver.runUntil(() => checkEqualMembershipViews(cluster.alive()).length === 0, 300_000)
  log(`propagation: ${nodes} nodes joined (${joined ? 'converged' : 'NOT converged'}) at ${driver.elapsedMs()} virtual ms, ${((performance.now() - wallStartedAt) / 1000).toFixed(1)} s wall`)
  await driver.runFor(10_000) // initial syncs and registry writes settle

  // When each node first sees each written deployment.
  const seen = new Map<string, Map<number, number>>()
  const offs = cluster.alive().map((node) =>
    node.core.state.onChange((event) => {
      if (event.deployments === 'all') return
      for (const id of event.deployments) {
        const times = seen.get(id)
        if (times !== undefined && !times.has(node.index)) times.set(node.index, driver.elapsedMs()) // first sight only: later changes touch it too
      }
    }),
  )
  let gossipBytes = 0
  const offsLocal = cluster.alive().map((node) => node.core.state.onLocalChange((change) => (gossipBytes += change.byteLength * (cluster.alive().length - 1))))
  const syncBytes = (): number => cluster.alive().reduce((sum, node) => sum + node.core.stateSync.counters().syncBytesIn, 0)
  const syncBefore = syncBytes()
  const measuredFromMs = driver.elapsedMs()
  const written: Array<{ id: string; atMs: number; via: number }> = []
  const rng = cluster.rng.fork('bench')
  for (let i = 0; i < writes; i++) {
    const alive = cluster.alive()
    const via = alive[rng.int(alive.length)]!
    const atMs = driver.elapsedMs()
    const id = await cluster.deploy(via, { ...SPEC, name: `probe-${i}` })
    seen.set(id, new Map([[via.index, atMs]]))
    written.push({ id, atMs, via: via.index })
    await driver.runFor(2_000)
  }
  await driver.runFor(10_000)
  const seconds = (driver.elapsedMs() - measuredFromMs) / 1000
  const alive = cluster.alive().length
  const reachAll: number[] = []
  let incomplete = 0
  for (const { id, atMs } of written) {
    const times = seen.get(id)!
    if (times.size < alive) incomplete++
    else reachAll.push(Math.max(...times.values()) - atMs)
  }
  for (const off of [...offs, ...offsLocal]) off()
  const figures = {
    nodes,
    writes,
    changeReachesAllMs: reachAll.length > 0 ? p50p99(reachAll) : null,
    writesNotSeenEverywhere: incomplete,
    stateSyncBytesPerNodePerSecond: Math.round((gossipBytes + syncBytes() - syncBefore) / alive / seconds),
    antiEntropyBytesPerNodePerSecond: Math.round((syncBytes() - syncBefore) / alive / seconds),
    virtualSeconds: Math.round(driver.elapsedMs() / 1000),
    wallSeconds: Math.round((performance.now() - wallStartedAt) / 100) / 10,
  }
  await cluster.stopAll()
  return figures
}

export async function clusterBench(): Promise<Record<string, unknown>> {
  const parts = new Set((process.env.LATTICE_BENCH_CLUSTER_PARTS ?? 'sync,placement,failover').split(','))
  const out: Record<string, unknown> = { targets: CLUSTER_BENCH_TARGETS, warmRegistry: WARM_REGISTRY }
  if (parts.has('sync')) out.propagation = await propagation(env('LATTICE_BENCH_SYNC_NODES', 1_000), env('LATTICE_BENCH_SYNC_WRITES', 20))
  if (parts.has('placement')) {
    const nodes = env('LATTICE_BENCH_PLACE_NODES', 100)
    // All deployments at once by default: placementsPerSecond is then the mesh's throughput, not the arrival rate.
    const spread = Number(process.env.LATTICE_BENCH_PLACE_SPREAD_MS ?? 0)
    const deploySpreadMs = Number.isInteger(spread) && spread >= 0 ? spread : 0
    const report = await runClusterScenario({ scenario: 'placement', nodes, deployments: env('LATTICE_BENCH_PLACE_DEPLOYMENTS', 200), deploySpreadMs, seed: 1, kill: 0, loss: 0, durationS: 0, partition: false, log, warmRegistry: WARM_REGISTRY })
    out.placement = {
      nodes,
      deployments: report.details.accepted,
      placements: report.details.placements,
      ok: report.invariants.ok,
      placeLatencyMs: report.figures.placeLatencyMs,
      placementsPerSecond: report.figures.placementsPerSecond,
      bidsPerPlacement: report.figures.bidsPerPlacement,
      wallSeconds: report.wallSeconds,
    }
  }
  if (parts.has('failover')) {
    const nodes = env('LATTICE_BENCH_FAILOVER_NODES', 100)
    const report = await runClusterScenario({ scenario: 'failover', nodes, deployments: env('LATTICE_BENCH_FAILOVER_DEPLOYMENTS', 100), seed: 1, kill: 0.1, loss: 0, durationS: 0, partition: false, log, warmRegistry: WARM_REGISTRY })
    out.failover = { nodes, ok: report.invariants.ok, failoverMs: report.figures.failoverMs, deathDetectionMs: report.figures.deathDetectionMs, wallSeconds: report.wallSeconds }
  }
  return out
}
