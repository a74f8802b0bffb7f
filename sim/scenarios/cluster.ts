/**
 * Scenarios on the whole node core (membership + document + state sync +
 * placement + reconciler) in virtual time:
 *
 * - `state`: random writes (deploy, scale, stop/start, delete) through random
 *   nodes under message loss, with node restarts and (with --partition) a
 *   50/50 partition that heals; then every alive node must hold equal heads
 *   and every accepted deployment.
 * - `placement`: M deployments of 1–3 replicas accepted through random
 *   nodes; every replica must run on exactly one alive node, replicas of one
 *   deployment on distinct nodes. Figures: placeLatencyMs (accepted →
 *   record closed), placementsPerSecond, bidsPerPlacement.
 * - `failover`: placement, then --kill of the nodes crash; every replica they
 *   held must run again on a survivor (failoverMs: kill → replacement
 *   running); then they return and must drop their stale copies.
 * - `partition`: placement, then a 50/50 partition with deploys on both
 *   sides, then heal: duplicates removed, exactly one copy of each replica,
 *   equal heads.
 *
 * Each run has a safety phase (faults on) and a liveness phase: faults off,
 * and within a budget of virtual time every invariant must hold.
 */
import type { DeploymentSpecInput } from '../../core/index.ts'
import { p50p99 } from '../bench/stats.ts'
import { checkEqualHeads, checkEqualMembershipViews, checkNoAcceptedDeploymentLost, checkReplicaPlacement, takeCensus } from '../invariants.ts'
import { createSimCluster, type SimCluster, type SimNode } from '../sim-cluster.ts'
import { SeriesRecorder, type SimSeries } from '../report/series.ts'
import { Trace, type TraceSink } from '../trace.ts'

export type ClusterScenarioName = 'state' | 'placement' | 'failover' | 'partition'

export interface ClusterScenarioOptions {
  scenario: ClusterScenarioName
  nodes: number
  seed: number
  deployments: number
  /** Virtual ms over which the deployments are submitted (0: all at once); default 5 ms each, at most 10 s. */
  deploySpreadMs?: number
  /** Fraction of nodes crashed (failover). */
  kill: number
  /** Message loss during the safety phase. */
  loss: number
  /** Length of the safety phase (state scenario), virtual seconds. */
  durationS: number
  partition: boolean
  /** Virtual time allowed for convergence after faults stop. */
  livenessBudgetMs?: number
  log?: (line: string) => void
  /** Every advance of virtual time (the progress line). */
  onProgress?: (sample: { virtualMs: number; events: number; violations: number }) => void
  /** Writes every trace line (--trace FILE). */
  traceSink?: TraceSink
  /** The nodes start with the registry already in their stores (sim/warm-registry.ts); default false. */
  warmRegistry?: boolean
  /**
   * A new epoch is proposed once the document holds this many changes
   * (the node's epochChangesMin, 50,000 by default, which a short run never
   * reaches): low values make runs cross epochs under the faults.
   */
  epochChangesMin?: number
}

/** How often a simulated acceptor checks the change count when a run sets epochChangesMin: a few times per epoch at the rates the scenarios write. */
export const SIM_EPOCH_CHECK_INTERVAL_MS = 2_000

/** Epoch figures of a run's nodes: the highest epoch reached, the lowest one alive nodes are in, and the moves made (decided, learned, adopted). */
export function epochFigures(nodes: readonly SimNode[], alive: readonly SimNode[]): { epochMax: number; epochMinAlive: number; epochMoves: number; epochsAdopted: number; epochCarriesLost: number } {
  const epochOf = (node: SimNode): number => node.core.state.stats().epoch
  return {
    epochMax: Math.max(0, ...nodes.map(epochOf)),
    epochMinAlive: alive.length === 0 ? 0 : Math.min(...alive.map(epochOf)),
    epochMoves: nodes.reduce((sum, n) => sum + n.core.epochs.counters().epochsEntered + n.core.stateSync.counters().epochsEntered + n.core.stateSync.counters().epochsAdopted, 0),
    epochsAdopted: nodes.reduce((sum, n) => sum + n.core.stateSync.counters().epochsAdopted, 0),
    epochCarriesLost: nodes.reduce((sum, n) => sum + n.core.stateSync.counters().epochCarriesLost, 0),
  }
}

export interface ClusterScenarioReport {
  seed: number
  nodes: number
  scenario: ClusterScenarioName
  virtualSeconds: number
  wallSeconds: number
  invariants: { ok: boolean; violations: string[] }
  traceHash: string
  figures: {
    joinConvergenceMs: { p50: number; p99: number }
    deathDetectionMs: { p50: number; p99: number } | null
    falsePositiveDeaths: number
    placeLatencyMs: { p50: number; p99: number } | null
    failoverMs: { p50: number; p99: number } | null
    placementsPerSecond: number | null
    bidsPerPlacement: number | null
    gossipBytesPerNodePerSecond: number
    heapBytesPerNode: number
  }
  details: Record<string, unknown>
  series: SimSeries
}

const LIVENESS_BUDGET_MS = 120_000
const CHECK_EVERY_MS = 500

function smallSpec(index: number, rngInt: (n: number) => number): DeploymentSpecInput {
  return {
    name: `app-${index}`,
    image: 'lattice-test/busybox:latest',
    command: ['/bin/httpd', '-f', '-p', '80', '-h', '/www'],
    replicas: 1 + rngInt(3),
    resources: { cpu: [0.1, 0.25, 0.5][rngInt(3)]!, memoryMB: [32, 64, 128, 256][rngInt(4)]! },
    strategy: rngInt(2) === 0 ? 'spread' : 'binpack',
  }
}


export async function runClusterScenario(options: ClusterScenarioOptions): Promise<ClusterScenarioReport> {
  const log = options.log ?? (() => {})
  const wallStartedAt = performance.now()
  const heapBefore = process.memoryUsage().heapUsed
  const cluster = createSimCluster({
    nodes: options.nodes,
    seed: options.seed,
    warmRegistry: options.warmRegistry === true,
    plannedDeployments: options.deployments,
    driverHooks: { onAdvance: (virtualMs, events) => options.onProgress?.({ virtualMs, events, violations: violations.length }) },
    ...(options.epochChangesMin === undefined ? {} : { core: { epochs: { changesMin: options.epochChangesMin, checkIntervalMs: SIM_EPOCH_CHECK_INTERVAL_MS } } }),
  })
  const { driver } = cluster
  const rng = cluster.rng.fork('scenario')
  const trace = new Trace(options.traceSink)
  const recorder = new SeriesRecorder()
  let lastSampleMs = -1_000
  let lastGossipBytes = 0
  const totalGossipBytes = (): number => cluster.nodes.reduce((sum, n) => sum + n.core.membership.counters().gossipBytesIn + n.core.stateSync.counters().syncBytesIn, 0)
  /** About once a virtual second: alive counts seen by a few observers, distinct heads, gossip bytes. */
  const sample = (): void => {
    const t = driver.elapsedMs()
    if (t - lastSampleMs < 1_000) return
    const alive = cluster.alive()
    for (const observer of alive.slice(0, 4)) recorder.aliveCount(t, observer.index, observer.core.membership.aliveMembers().length)
    recorder.heads(t, new Set(alive.map((n) => [...n.core.state.heads()].sort().join())).size)
    const bytes = totalGossipBytes()
    recorder.gossipBytes(t, Math.round(((bytes - lastGossipBytes) / Math.max(1, cluster.nodes.length)) / ((t - lastSampleMs) / 1000)))
    lastGossipBytes = bytes
    lastSampleMs = t
  }
  const violations: string[] = []
  const accepted: string[] = []
  const deleted = new Set<string>()
  const budgetMs = options.livenessBudgetMs ?? LIVENESS_BUDGET_MS

  // ---- join
  const joinStartedMs = driver.elapsedMs()
  await cluster.startAll()
  for (const node of cluster.nodes) {
    node.events.subscribe((event) => {
      if (event.type === 'placement.closed') trace.record(driver.elapsedMs(), node.index, 0, `${event.type} ${event.deploymentId}/${event.replica}@${event.generation}`)
      else if (event.type.startsWith('node.') && 'peerId' in event) trace.record(driver.elapsedMs(), node.index, 0, `${event.type} ${event.peerId.slice(-6)}`)
    })
  }
  const joined = await driver.runUntil(() => checkEqualMembershipViews(cluster.alive()).length === 0, budgetMs)
  const joinConvergenceMs = driver.elapsedMs() - joinStartedMs
  if (!joined) violations.push(`join: membership did not converge within ${budgetMs} ms`)
  log(`joined ${options.nodes} nodes in ${joinConvergenceMs} virtual ms (${((performance.now() - wallStartedAt) / 1000).toFixed(1)} s wall)`)

  const randomAlive = (): SimNode => {
    const alive = cluster.alive()
    return alive[rng.int(alive.length)]!
  }
  const deployMany = async (count: number, spreadMs: number, via: () => SimNode = randomAlive): Promise<string[]> => {
    const ids: string[] = []
    for (let i = 0; i < count; i++) {
      const id = await cluster.deploy(via(), smallSpec(accepted.length, (n) => rng.int(n)))
      accepted.push(id)
      ids.push(id)
      if (spreadMs > 0) await driver.runFor(spreadMs / count)
    }
    return ids
  }

  const checkAll = async (): Promise<string[]> => {
    const alive = cluster.alive()
    const reference = alive[0]
    if (reference === undefined) return ['no alive node']
    const live = accepted.filter((id) => !deleted.has(id))
    return [
      ...checkNoAcceptedDeploymentLost(alive, live),
      ...checkEqualHeads(alive),
      ...checkEqualMembershipViews(alive),
      ...checkReplicaPlacement(reference, alive, await takeCensus(alive)),
    ]
  }
  /** Liveness: faults off, every invariant must hold within the budget. */
  const converge = async (phase: string): Promise<void> => {
    cluster.network.setLoss(0)
    cluster.network.heal()
    let last: string[] = []
    const endMs = driver.elapsedMs() + budgetMs
    while (driver.elapsedMs() < endMs) {
      await driver.runFor(CHECK_EVERY_MS)
      sample()
      last = await checkAll()
      if (last.length === 0) {
        log(`${phase}: converged at ${driver.elapsedMs()} virtual ms`)
        return
      }
    }
    violations.push(...last.slice(0, 20).map((v) => `${phase}: ${v}`))
    log(`${phase}: NOT converged: ${last.slice(0, 3).join('; ')}`)
  }

  let placeLatencies: number[] = []
  let placementsPerSecond: number | null = null
  let bidsPerPlacement: number | null = null
  const failovers: number[] = []
  const detections: number[] = []

  const bidsSent = (): number => cluster.nodes.reduce((sum, n) => sum + n.core.placer.counters().bidsSent, 0)
  const measurePlacement = (ids: string[]): void => {
    const reference = cluster.alive()[0]!.core.state
    const latencies: number[] = []
    let firstCreated = Number.POSITIVE_INFINITY
    let lastClosed = 0
    for (const id of ids) {
      const deployment = reference.deployment(id)
      if (deployment === undefined) continue
      firstCreated = Math.min(firstCreated, deployment.createdAtMs)
      for (const [, record] of reference.placements(id)) {
        const initial = record.history[0]
        const closedAt = initial?.closedAtMs ?? record.closedAtMs
        latencies.push(closedAt - deployment.createdAtMs)
        lastClosed = Math.max(lastClosed, closedAt)
      }
    }
    placeLatencies = latencies
    for (const latency of latencies) recorder.placeLatency(latency)
    placementsPerSecond = latencies.length > 0 && lastClosed > firstCreated ? Math.round((latencies.length / ((lastClosed - firstCreated) / 1000)) * 10) / 10 : null
  }

  if (options.scenario === 'state') {
    const endMs = driver.elapsedMs() + options.durationS * 1000
    cluster.network.setLoss(options.loss)
    let partitioned = false
    while (driver.elapsedMs() < endMs) {
      const roll = rng.next()
      const node = randomAlive()
      const live = accepted.filter((id) => !deleted.has(id))
      const target = live[rng.int(Math.max(1, live.length))]
      try {
        if (roll < 0.5 || target === undefined) await deployMany(1, 0, () => node)
        else if (roll < 0.65) await node.core.state.setReplicas(target, rng.int(3))
        else if (roll < 0.8) await node.core.state.setDesired(target, rng.next() < 0.5 ? 'stopped' : 'running')
        else if (roll < 0.85) {
          await node.core.state.setDesired(target, 'deleted')
          deleted.add(target)
        } else if (roll < 0.9 && cluster.alive().length > 2) {
          const victim = randomAlive()
          await cluster.kill(victim)
          await driver.runFor(2_000)
          await cluster.restart(victim)
        } else if (options.partition && !partitioned && roll < 0.95) {
          const half = cluster.nodes.slice(0, Math.floor(cluster.nodes.length / 2)).map((n) => n.peerId)
          cluster.network.partition([half, cluster.nodes.slice(half.length).map((n) => n.peerId)])
          partitioned = true
          log(`partitioned at ${driver.elapsedMs()} virtual ms`)
        }
      } catch {
        // Concurrent deletes and the like: the document refuses, the scenario moves on.
      }
      await driver.runFor(200 + rng.int(600))
      sample()
    }
    log(`state: ${accepted.length} deployments accepted, ${deleted.size} deleted; converging`)
    await converge('state liveness')
  } else {
    const startMs = driver.elapsedMs()
    const bidsBefore = bidsSent()
    const ids = await deployMany(options.deployments, options.deploySpreadMs ?? Math.min(10_000, options.deployments * 5))
    await converge('placement liveness')
    measurePlacement(ids)
    const placements = placeLatencies.length
    bidsPerPlacement = placements > 0 ? Math.round(((bidsSent() - bidsBefore) / placements) * 100) / 100 : null
    log(`placed ${placements} replicas of ${ids.length} deployments by ${driver.elapsedMs() - startMs} virtual ms`)

    if (options.scenario === 'failover') {
      const victims = [...cluster.alive()].sort(() => rng.next() - 0.5).slice(0, Math.max(1, Math.floor(options.nodes * options.kill)))
      const reference = cluster.alive().find((n) => !victims.includes(n))!
      const held: Array<{ id: string; replica: number; generation: number }> = []
      for (const deployment of reference.core.state.deployments()) {
        for (const [replica, record] of reference.core.state.placements(deployment.id)) {
          if (replica < deployment.replicas && record.winners.some((w) => victims.some((v) => v.peerId === w))) held.push({ id: deployment.id, replica, generation: record.generation })
        }
      }
      const killedAt = driver.elapsedMs()
      for (const victim of victims) await cluster.kill(victim)
      log(`killed ${victims.length} nodes holding ${held.length} replicas`)
      const pending = new Set(held.map((h) => `${h.id}/${h.replica}`))
      const detectedBy = new Set<number>()
      const endMs = killedAt + budgetMs
      while (pending.size > 0 && driver.elapsedMs() < endMs) {
        await driver.runFor(100)
        sample()
        const census = await takeCensus(cluster.alive())
        for (const h of held) {
          const key = `${h.id}/${h.replica}`
          if (!pending.has(key)) continue
          if (census.running.some((r) => r.container.deploymentId === h.id && r.container.replica === h.replica && r.container.generation > h.generation)) {
            pending.delete(key)
            failovers.push(driver.elapsedMs() - killedAt)
            recorder.failover(key, killedAt, driver.elapsedMs())
          }
        }
        for (const observer of cluster.alive()) {
          if (detectedBy.has(observer.index)) continue
          if (victims.every((v) => observer.core.membership.member(v.peerId)?.state === 'dead')) {
            detectedBy.add(observer.index)
            detections.push(driver.elapsedMs() - killedAt)
            recorder.detection(victims[0]!.index, killedAt, driver.elapsedMs(), observer.index)
          }
        }
      }
      if (pending.size > 0) violations.push(`failover: ${pending.size} replica(s) not running again within ${budgetMs} ms`)
      // Printed now: the return phase below restarts every victim, the heaviest part of a large run.
      if (failovers.length > 0) {
        const { p50, p99 } = p50p99(failovers)
        log(`failover: ${failovers.length} replica(s) running again, failoverMs p50 ${p50} / p99 ${p99}; ${detections.length} observer(s) saw every death${detections.length > 0 ? `, deathDetectionMs p50 ${p50p99(detections).p50}` : ''}`)
      }
      await converge('failover liveness')
      for (const victim of victims) await cluster.restart(victim)
      await converge('return liveness')
    }

    if (options.scenario === 'partition') {
      const half = cluster.nodes.slice(0, Math.floor(cluster.nodes.length / 2))
      const other = cluster.nodes.slice(half.length)
      cluster.network.partition([half.map((n) => n.peerId), other.map((n) => n.peerId)])
      log(`partitioned ${half.length}/${other.length}`)
      await driver.runFor(15_000) // each side declares the other dead and re-places its replicas
      const count = Math.max(2, Math.floor(options.deployments / 10))
      await deployMany(count, 2_000, () => half[rng.int(half.length)]!)
      await deployMany(count, 2_000, () => other[rng.int(other.length)]!)
      await driver.runFor(10_000)
      log('healing')
      await converge('partition heal liveness')
    }
  }

  const alive = cluster.alive()
  const elapsedS = driver.elapsedMs() / 1000
  const gossipBytes = cluster.nodes.reduce((sum, n) => sum + n.core.membership.counters().gossipBytesIn + n.core.stateSync.counters().syncBytesIn, 0)
  const falsePositiveDeaths = options.scenario === 'failover' || options.scenario === 'partition' ? 0 : alive.reduce((sum, n) => sum + n.core.membership.members().filter((m) => m.state === 'dead' && alive.some((a) => a.peerId === m.peerId)).length, 0)
  const heapAfter = process.memoryUsage().heapUsed
  const report: ClusterScenarioReport = {
    seed: options.seed,
    nodes: options.nodes,
    scenario: options.scenario,
    virtualSeconds: Math.round(elapsedS),
    wallSeconds: Math.round((performance.now() - wallStartedAt) / 100) / 10,
    invariants: { ok: violations.length === 0, violations },
    traceHash: trace.digest(),
    figures: {
      joinConvergenceMs: { p50: joinConvergenceMs, p99: joinConvergenceMs },
      deathDetectionMs: detections.length > 0 ? p50p99(detections) : null,
      falsePositiveDeaths,
      placeLatencyMs: placeLatencies.length > 0 ? p50p99(placeLatencies) : null,
      failoverMs: failovers.length > 0 ? p50p99(failovers) : null,
      placementsPerSecond,
      bidsPerPlacement,
      gossipBytesPerNodePerSecond: Math.round(gossipBytes / options.nodes / Math.max(1, elapsedS)),
      heapBytesPerNode: Math.max(0, Math.round((heapAfter - heapBefore) / options.nodes)),
    },
    details: {
      accepted: accepted.length,
      deleted: deleted.size,
      traceEntries: trace.entries(),
      eventsProcessed: driver.eventsProcessed(),
      placements: placeLatencies.length,
      ...epochFigures(cluster.nodes, alive),
    },
    series: recorder.toSeries(),
  }
  await cluster.stopAll()
  return report
}

export type { SimCluster }
