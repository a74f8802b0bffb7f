/**
 * The `scheduled` script (scenarios `churn`, `chaos` and any scenario file
 * with `script: scheduled`): the whole node core per simulated node, a fault
 * schedule (sim/faults.ts) and two phases.
 *
 * 1. join — every node starts and membership converges.
 * 2. safety — `durationS` of virtual time under the fault schedule while the
 *    deployments are accepted through random healthy nodes (spread over
 *    `deployments.spreadS`). Every `checkEveryMs` the safety invariants are
 *    checked: no accepted deployment held by no node; no node runs a replica
 *    of a generation it did not win (sim/invariants.ts UnwonRunWatch); and,
 *    when the schedule injects only loss/delay/duplication (and container
 *    faults), no healthy node declared dead.
 * 3. liveness — faults off (crashed nodes restart, paused ones resume, clocks
 *    agree, network healed and calm); within `liveness.budgetS` every eventual
 *    invariant must hold: every node that did not leave runs; no accepted
 *    deployment lost on any alive node; equal document heads; equal
 *    membership views; every desired replica runs exactly once on an alive
 *    node that won it at the current generation; replicas of a deployment on
 *    distinct nodes while there are enough nodes.
 *
 * Figures (CONTRACTS.md): joinConvergenceMs; deathDetectionMs (a crash → each
 * running observer marks the node dead); falsePositiveDeaths (dead
 * declarations about nodes that ran unpaused, with no partition on or ended
 * within `FALSE_DEATH_GRACE_MS`); placeLatencyMs (accept → first replica
 * running, for the initial placement of each replica); failoverMs (a crash →
 * a replica it held running on another node); placementsPerSecond;
 * bidsPerPlacement; gossipBytesPerNodePerSecond (all bytes received per
 * node); heapBytesPerNode. The report carries every series the plots need.
 */
import type { DeploymentSpecInput, Rng } from '../../core/index.ts'
import type { ClusterEvent } from '../../node/events.ts'
import { p50p99 } from '../bench/stats.ts'
import { FaultScheduler, type FaultEvent } from '../faults.ts'
import {
  checkAcceptedDeploymentsDurable,
  checkEqualHeads,
  checkEqualMembershipViews,
  checkNoAcceptedDeploymentLost,
  checkNoHealthyNodeDeclaredDead,
  checkReplicaPlacement,
  takeCensus,
  UnwonRunWatch,
  type DeathDeclaration,
} from '../invariants.ts'
import { SeriesRecorder } from '../report/series.ts'
import { onlyNetworkNoise, type ScheduledSpec } from '../scenario-file.ts'
import { createSimCluster, type SimCluster, type SimNode } from '../sim-cluster.ts'
import { epochFigures, SIM_EPOCH_CHECK_INTERVAL_MS, type ClusterScenarioReport } from './cluster.ts'
import { Trace, type TraceSink } from '../trace.ts'

export interface ScheduledScenarioOptions {
  spec: ScheduledSpec
  seed: number
  log?: (line: string) => void
  /** Every advance of virtual time: the progress line. */
  onProgress?: (sample: { virtualMs: number; events: number; violations: number; note?: string }) => void
  /** Writes every trace line (--trace FILE). */
  traceSink?: TraceSink
  /**
   * Test seam for planted violations: runs once when the safety phase begins,
   * e.g. a deliberately broken network the schedule does not know about.
   */
  plant?: (cluster: SimCluster) => void | Promise<void>
}

/** The cluster scenarios' report, named by the scenario file. */
export type ScheduledScenarioReport = Omit<ClusterScenarioReport, 'scenario'> & { scenario: string }

/** A dead declaration this soon after a partition healed, or the subject resumed or came back from a crash, is not counted false: suspicion started while it really was unreachable. */
export const FALSE_DEATH_GRACE_MS = 30_000
/** Violations kept in the report at most (the rest are counted). */
const VIOLATIONS_KEPT = 50
/** Series sample interval (virtual ms): one point per second is plenty for the plots. */
const SAMPLE_EVERY_MS = 1_000
/** How often the progress line re-reads epochs, pooled documents and Automerge memory (virtual ms): each read walks every node. */
const PROGRESS_DOCUMENT_NOTE_EVERY_MS = 5_000
/** Observers whose alive count is plotted. */
const ALIVE_OBSERVERS = 4
/** The progress line names the first unmet eventual invariant in at most this many characters (a view's difference can list hundreds of nodes). */
const LIVENESS_NOTE_CHARS_MAX = 100

function abbreviate(text: string, charsMax: number): string {
  return text.length <= charsMax ? text : `${text.slice(0, charsMax - 1)}…`
}


function drawSpec(spec: ScheduledSpec, index: number, rng: Rng): DeploymentSpecInput {
  const { mix, replicas, strategy } = spec.deployments
  const total = mix.reduce((sum, m) => sum + m.weight, 0)
  let roll = rng.next() * total
  let entry = mix[mix.length - 1]!
  for (const m of mix) {
    roll -= m.weight
    if (roll < 0) {
      entry = m
      break
    }
  }
  return {
    name: `app-${index}`,
    image: 'lattice-test/busybox:latest',
    command: ['/bin/httpd', '-f', '-p', '80', '-h', '/www'],
    replicas: replicas.min + rng.int(replicas.max - replicas.min + 1),
    resources: { cpu: entry.cpu, memoryMB: entry.memoryMB },
    strategy: strategy === 'mixed' ? (rng.next() < 0.5 ? 'spread' : 'binpack') : strategy,
  }
}

export async function runScheduledScenario(options: ScheduledScenarioOptions): Promise<ScheduledScenarioReport> {
  const { spec, seed } = options
  const log = options.log ?? (() => {})
  const wallStartedAt = performance.now()
  const { heapUsed: heapBefore, rss: residentBefore } = process.memoryUsage()
  const violations: string[] = []
  let violationCount = 0
  const violate = (found: readonly string[], phase: string, atMs: number): void => {
    for (const v of found) {
      violationCount++
      if (violations.length < VIOLATIONS_KEPT) violations.push(`${phase} at ${atMs} ms: ${v}`)
    }
  }
  let note = 'join'
  const cluster = createSimCluster({
    nodes: spec.nodes,
    seed,
    warmRegistry: spec.warmRegistry,
    plannedDeployments: spec.deployments.count,
    latencyMs: spec.network.latencyMs,
    ...(spec.epochChangesMin === undefined ? {} : { core: { epochs: { changesMin: spec.epochChangesMin, checkIntervalMs: SIM_EPOCH_CHECK_INTERVAL_MS } } }),
    driverHooks: { onAdvance: (virtualMs, events) => options.onProgress?.({ virtualMs, events, violations: violationCount, note: `${note}${documentNote(virtualMs)}` }) },
  })
  // What a long run's memory is made of, on the progress line (the wall of a 1,000-node run is in its documents); read every few virtual s, not per advance.
  let documentNoteText = ''
  let documentNoteAtMs = Number.NEGATIVE_INFINITY
  const documentNote = (virtualMs: number): string => {
    if (options.onProgress === undefined || virtualMs - documentNoteAtMs < PROGRESS_DOCUMENT_NOTE_EVERY_MS) return documentNoteText
    documentNoteAtMs = virtualMs
    const running = cluster.nodes.filter((n) => n.running)
    const epochs = running.map((n) => n.core.state.epoch().epoch)
    const gib = cluster.automergeMemory.memoryBytes() / 1024 ** 3
    documentNoteText = running.length === 0 ? '' : `, epoch ${Math.min(...epochs)}–${Math.max(...epochs)}, ${cluster.pooledDocuments()} docs, automerge ${gib.toFixed(1)} GiB`
    return documentNoteText
  }
  const { driver, network } = cluster
  const rng = cluster.rng.fork('scenario')
  const trace = new Trace(options.traceSink)
  const recorder = new SeriesRecorder()
  const noiseOnly = onlyNetworkNoise(spec)

  // ---- bookkeeping fed by node events
  const acceptedAt = new Map<string, number>()
  const accepted: string[] = []
  const firstRunning = new Map<string, number>()
  const placeLatencies: number[] = []
  /** Crashed and leaving nodes by PeerId: when, which replicas they held, who noticed. */
  const kills = new Map<string, { atMs: number; index: number; observers: Set<number>; held: Set<string>; graceful: boolean }>()
  const detections: number[] = []
  const failovers: number[] = []
  const declarations: DeathDeclaration[] = []
  let falsePositiveDeaths = 0
  const rounds = new Set<string>()
  let retiredBids = 0
  let firstAcceptMs = Number.POSITIVE_INFINITY
  let lastFirstRunningMs = 0
  /** Set when the safety phase begins (the watchers read it). */
  const faults: { scheduler?: FaultScheduler } = {}
  /** When each node last came back from a crash (a late notice of that crash is not a false death). */
  const restartedAt = new Map<number, number>()
  /** Node slots by PeerId, extended as nodes join (a restarted node takes its slot again, under the same PeerId). */
  const slotByPeer = new Map<string, number>()
  const nodeByPeer = (peerId: string): SimNode | undefined => {
    // Each half of a partition declares the other's nodes dead: building the whole map per declaration was 1 % of a run.
    if (slotByPeer.size !== cluster.nodes.length) for (const n of cluster.nodes) slotByPeer.set(n.peerId, n.index)
    const slot = slotByPeer.get(peerId)
    return slot === undefined ? undefined : cluster.nodes[slot]
  }

  const watch = (node: SimNode): void => {
    node.events.subscribe((event: ClusterEvent) => {
      const t = driver.elapsedMs()
      if (event.type === 'placement.closed') {
        trace.record(t, node.index, 0, `${event.type} ${event.deploymentId}/${event.replica}@${event.generation}`)
        rounds.add(`${event.deploymentId}/${event.replica}@${event.generation}`)
      } else if (event.type === 'replica.state' && event.state === 'running') {
        const key = `${event.deploymentId}/${event.replica}`
        const at = acceptedAt.get(event.deploymentId)
        if (at !== undefined && !firstRunning.has(key)) {
          firstRunning.set(key, t)
          placeLatencies.push(t - at)
          recorder.placeLatency(t - at)
          lastFirstRunningMs = Math.max(lastFirstRunningMs, t)
        }
        for (const [peerId, kill] of kills) {
          if (peerId === node.peerId || !kill.held.has(key)) continue
          kill.held.delete(key)
          if (!kill.graceful) failovers.push(t - kill.atMs)
          recorder.failover(key, kill.atMs, t)
        }
      } else if (event.type.startsWith('node.') && 'peerId' in event) {
        trace.record(t, node.index, 0, `${event.type} ${event.peerId.slice(-6)}`)
        const kill = kills.get(event.peerId)
        if (event.type === 'node.left' && kill?.graceful === true && !kill.observers.has(node.index)) {
          kill.observers.add(node.index)
          recorder.detection(kill.index, kill.atMs, t, node.index)
          return
        }
        if (event.type !== 'node.dead') return
        if (kill !== undefined && !kill.graceful && !kill.observers.has(node.index)) {
          kill.observers.add(node.index)
          detections.push(t - kill.atMs)
          recorder.detection(kill.index, kill.atMs, t, node.index)
          return
        }
        if (kill?.graceful === true) return // a leaving node may be suspected while it says goodbye; it is not healthy
        const subject = nodeByPeer(event.peerId)
        const subjectPaused = subject !== undefined && cluster.isPaused(subject)
        if (noiseOnly) declarations.push({ atMs: t, observer: node.index, subject, subjectPaused })
        const scheduler = faults.scheduler
        const since = (map: ReadonlyMap<number, number>): number => (subject === undefined ? Number.POSITIVE_INFINITY : t - (map.get(subject.index) ?? Number.NEGATIVE_INFINITY))
        const recentlyCut =
          scheduler !== undefined &&
          (scheduler.partitioned() || t - scheduler.lastPartitionEndMs < FALSE_DEATH_GRACE_MS || since(scheduler.lastPauseEndMs) < FALSE_DEATH_GRACE_MS || since(restartedAt) < FALSE_DEATH_GRACE_MS)
        if (subject !== undefined && subject.running && !subject.left && !subjectPaused && !recentlyCut && !scheduler?.faultyNodes().has(subject.index)) falsePositiveDeaths++
      }
    })
  }

  // ---- series
  let lastSampleMs = Number.NEGATIVE_INFINITY
  let lastBytes = 0
  const aliveObservers: number[] = []
  const sample = (): void => {
    const t = driver.elapsedMs()
    if (t - lastSampleMs < SAMPLE_EVERY_MS) return
    const alive = cluster.alive()
    for (const node of alive) {
      if (aliveObservers.length >= ALIVE_OBSERVERS) break
      if (!aliveObservers.includes(node.index)) aliveObservers.push(node.index)
    }
    for (const index of aliveObservers) {
      const observer = cluster.nodes[index]
      if (observer?.running === true) recorder.aliveCount(t, index, observer.core.membership.aliveMembers().length)
    }
    recorder.heads(t, new Set(alive.map((n) => [...n.core.state.heads()].sort().join())).size)
    const bytes = network.counters().total.bytesReceived
    if (Number.isFinite(lastSampleMs)) recorder.gossipBytes(t, Math.round((bytes - lastBytes) / Math.max(1, alive.length) / ((t - lastSampleMs) / 1000)))
    lastBytes = bytes
    lastSampleMs = t
  }

  // ---- join
  await cluster.startAll()
  for (const node of cluster.nodes) watch(node)
  const budgetMs = spec.liveness.budgetS * 1000
  const joined = await driver.runUntil(() => checkEqualMembershipViews(cluster.alive()).length === 0, budgetMs)
  const joinConvergenceMs = driver.elapsedMs()
  if (!joined) violate([`membership did not converge within ${budgetMs} ms`], 'join', driver.elapsedMs())
  log(`joined ${spec.nodes} nodes in ${joinConvergenceMs} virtual ms (${((performance.now() - wallStartedAt) / 1000).toFixed(1)} s wall)`)

  // ---- safety
  note = 'safety'
  const baseline = { latencyMs: spec.network.latencyMs, loss: spec.network.loss, duplicate: spec.network.duplicate }
  network.setLoss(baseline.loss)
  network.setDuplicate(baseline.duplicate)
  const bidsOf = (nodes: readonly SimNode[]): number => nodes.reduce((sum, n) => sum + n.core.placer.counters().bidsSent, 0)
  const scheduler = new FaultScheduler(cluster, spec.faults, baseline, rng.fork('faults'), spec.nodes, {
    onEvent: (event: FaultEvent) => trace.record(event.atMs, -1, event.node ?? -1, `fault ${event.kind} ${event.phase} ${event.detail}`),
    onNodeStarted: (node) => {
      // A crashed node back: its crash is over (later dead notices about it are new events, not detections of that crash).
      if (kills.delete(node.peerId)) restartedAt.set(node.index, driver.elapsedMs())
      watch(node)
    },
    onKill: (node) => depart(node, false),
    onLeave: (node) => depart(node, true),
  })
  function depart(node: SimNode, graceful: boolean): void {
      retiredBids += node.core.placer.counters().bidsSent
      const held = new Set<string>()
      const reference = cluster.alive().find((n) => n !== node && !cluster.isPaused(n)) ?? node
      for (const deployment of reference.core.state.deployments()) {
        if (deployment.desired !== 'running') continue
        for (const [replica, record] of reference.core.state.placements(deployment.id)) {
          if (replica < deployment.replicas && record.winners.includes(node.peerId)) held.add(`${deployment.id}/${replica}`)
        }
      }
      kills.set(node.peerId, { atMs: driver.elapsedMs(), index: node.index, observers: new Set(), held, graceful })
  }
  faults.scheduler = scheduler
  await options.plant?.(cluster)
  const unwon = new UnwonRunWatch(spec.invariants.unwonRunGraceS * 1000)
  let safetyCheckCount = 0
  const safetyChecks = async (phase: string): Promise<void> => {
    safetyCheckCount++
    const t = driver.elapsedMs()
    violate(checkAcceptedDeploymentsDurable(cluster.nodes, accepted), phase, t)
    const awake = cluster.alive().filter((n) => !cluster.isPaused(n))
    violate(unwon.observe(t, await takeCensus(awake)), phase, t)
    if (noiseOnly) violate(checkNoHealthyNodeDeclaredDead(declarations.splice(0)), phase, t)
  }
  const safetyStartMs = driver.elapsedMs()
  const safetyEndMs = safetyStartMs + spec.durationS * 1000
  const deployCount = spec.deployments.count
  const deployEveryMs = deployCount > 0 ? (spec.deployments.spreadS * 1000) / deployCount : 0
  const deployRng = rng.fork('deployments')
  while (driver.elapsedMs() < safetyEndMs || accepted.length < deployCount) {
    await scheduler.step()
    while (accepted.length < deployCount && driver.elapsedMs() >= safetyStartMs + accepted.length * deployEveryMs) {
      const via = deployRng.pick(cluster.alive().filter((n) => !cluster.isPaused(n)))
      if (via === undefined) break
      const id = await cluster.deploy(via, drawSpec(spec, accepted.length, deployRng))
      accepted.push(id)
      acceptedAt.set(id, driver.elapsedMs())
      firstAcceptMs = Math.min(firstAcceptMs, driver.elapsedMs())
      trace.record(driver.elapsedMs(), via.index, 0, `accepted ${id}`)
    }
    // Up to the next check, the end of the faults or, once they are over while deployments are still due
    // (durationS < spreadS), the next deployment: not 1 ms at a time (that ran the checks 1,000 times a virtual second).
    const now = driver.elapsedMs()
    const nextDeployMs = accepted.length < deployCount ? safetyStartMs + accepted.length * deployEveryMs : Number.POSITIVE_INFINITY
    const untilDeploy = nextDeployMs > now ? nextDeployMs - now : spec.checkEveryMs // due but no node to take it: try again at the next check
    const untilNext = Math.max(1, Math.min(spec.checkEveryMs, safetyEndMs > now ? safetyEndMs - now : untilDeploy))
    await driver.runFor(untilNext)
    sample()
    await safetyChecks('safety')
  }
  log(`safety: ${spec.durationS} virtual s of faults (${Object.entries(scheduler.counts.started).filter(([, n]) => n > 0).map(([k, n]) => `${n} ${k}`).join(', ') || 'none'}); ${violationCount} violation(s)`)

  // ---- liveness
  note = 'liveness'
  await scheduler.healAll()
  const livenessStartMs = driver.elapsedMs()
  const eventual = async (): Promise<string[]> => {
    const alive = cluster.alive()
    const reference = alive[0]
    if (reference === undefined) return ['no alive node']
    const notRunning = cluster.nodes.filter((n) => !n.left && !n.running)
    return [
      ...(notRunning.length > 0 ? [`${notRunning.length} node(s) not running again, e.g. node ${notRunning[0]!.index}`] : []),
      ...checkNoAcceptedDeploymentLost(alive, accepted),
      ...checkEqualHeads(alive),
      ...checkEqualMembershipViews(alive),
      ...checkReplicaPlacement(reference, alive, await takeCensus(alive)),
    ]
  }
  let last: string[] = []
  let livenessConvergedMs: number | null = null
  while (driver.elapsedMs() - livenessStartMs < budgetMs) {
    await driver.runFor(spec.checkEveryMs)
    sample()
    await safetyChecks('liveness')
    last = await eventual()
    // What liveness still waits for, on the progress line: a slow convergence says which invariant held it.
    note = last.length === 0 ? 'liveness' : `liveness, waiting: ${abbreviate(last[0]!, LIVENESS_NOTE_CHARS_MAX)}`
    if (last.length === 0) {
      livenessConvergedMs = driver.elapsedMs() - livenessStartMs
      break
    }
  }
  if (livenessConvergedMs === null) violate(last.slice(0, 20), `liveness (not converged within ${budgetMs} ms)`, driver.elapsedMs())
  log(livenessConvergedMs === null ? `liveness: NOT converged: ${last.slice(0, 3).join('; ')}` : `liveness: converged ${livenessConvergedMs} virtual ms after the faults stopped`)

  const alive = cluster.alive()
  const elapsedS = driver.elapsedMs() / 1000
  const bids = retiredBids + bidsOf(cluster.nodes.filter((n) => n.running))
  const { heapUsed: heapAfter, rss: residentAfter } = process.memoryUsage()
  const report: ScheduledScenarioReport = {
    seed,
    nodes: spec.nodes,
    scenario: spec.name,
    virtualSeconds: Math.round(elapsedS),
    wallSeconds: Math.round((performance.now() - wallStartedAt) / 100) / 10,
    invariants: { ok: violationCount === 0, violations: violationCount > violations.length ? [...violations, `… and ${violationCount - violations.length} more`] : violations },
    traceHash: trace.digest(),
    figures: {
      joinConvergenceMs: { p50: joinConvergenceMs, p99: joinConvergenceMs },
      deathDetectionMs: detections.length > 0 ? p50p99(detections) : null,
      falsePositiveDeaths,
      placeLatencyMs: placeLatencies.length > 0 ? p50p99(placeLatencies) : null,
      failoverMs: failovers.length > 0 ? p50p99(failovers) : null,
      placementsPerSecond: placeLatencies.length > 0 && lastFirstRunningMs > firstAcceptMs ? Math.round((placeLatencies.length / ((lastFirstRunningMs - firstAcceptMs) / 1000)) * 10) / 10 : null,
      bidsPerPlacement: rounds.size > 0 ? Math.round((bids / rounds.size) * 100) / 100 : null,
      gossipBytesPerNodePerSecond: Math.round(network.counters().total.bytesReceived / Math.max(1, cluster.nodes.length) / Math.max(1, elapsedS)),
      heapBytesPerNode: Math.max(0, Math.round((heapAfter - heapBefore) / Math.max(1, cluster.nodes.length))),
    },
    details: {
      script: 'scheduled',
      onlyNetworkNoise: noiseOnly,
      accepted: accepted.length,
      replicasPlaced: placeLatencies.length,
      placementRounds: rounds.size,
      violationsTotal: violationCount,
      livenessConvergedMs,
      finalNodes: cluster.nodes.length,
      aliveAtEnd: alive.length,
      ...Object.fromEntries(Object.entries(scheduler.counts.started).map(([kind, n]) => [`faults.${kind}`, n])),
      kills: kills.size,
      replicasMoved: failovers.length,
      ...epochFigures(cluster.nodes, alive),
      traceEntries: trace.entries(),
      eventsProcessed: driver.eventsProcessed(),
      safetyChecks: safetyCheckCount,
      // heapBytesPerNode reads the JS heap only: Automerge's documents live in WebAssembly memory beside it.
      residentBytesPerNode: Math.max(0, Math.round((residentAfter - residentBefore) / Math.max(1, cluster.nodes.length))),
      automergeMemoryBytes: cluster.automergeMemory.memoryBytes(),
    },
    series: recorder.toSeries(),
  }
  await cluster.stopAll()
  return report
}
