/**
 * Scenario `membership`: N nodes run the real membership code (mesh/) over
 * their own simulated Transport, on one virtual clock, from one seed.
 *
 * Phases:
 * 1. join — nodes start `joinSpacingMs` apart, each syncing with a random
 *    earlier node; until every node sees every other alive
 *    (joinConvergenceMs per node: the slowest observer to learn of it,
 *    counted from when both existed).
 * 2. steady — `durationS` of virtual time with `loss` on every gossip copy and
 *    every request leg, latency with jitter and spikes, and nodes updating
 *    their load every ~10 s; `kill` × N nodes crash (silent stop) at evenly
 *    spaced times (deathDetectionMs: kill → each survivor marks it dead).
 *    Any survivor marked dead is a false death (in every phase but the
 *    partition, where only same-side deaths are false, and the heal, where a
 *    cross-side suspicion may still end in a death notice that the subject
 *    refutes — reported as healAftermathDeathObservations).
 * 3. partition (optional) — the survivors split 50/50; until each side sees
 *    the other dead; then heal, until all survivors see each other alive.
 * 4. settle — the final views must agree: every survivor alive, every
 *    crashed node dead, in every survivor's view.
 *
 * Every membership event is a trace line (virtual ms, observer, subject,
 * type), hashed into traceHash.
 */
import v8 from 'node:v8'
import vm from 'node:vm'
import { silentLogger, type Rng } from '../../core/index.ts'
import { createMembership } from '../../mesh/membership.ts'
import type { MemberMeta, Membership, MembershipCounters, MembershipEvent } from '../../mesh/membership-types.ts'
import { percentile } from '../bench/stats.ts'
import { createSimDriver } from '../driver.ts'
import { simPeerIds } from '../peer-ids.ts'
import { FaultyTransport } from '../request-faults.ts'
import { createSimNetwork, type LatencyModel } from '../sim-network.ts'
import { Trace, type TraceSink } from '../trace.ts'

export interface MembershipScenarioOptions {
  nodes: number
  seed: number
  /** Length of the steady (loss + jitter + kills) phase, virtual seconds. */
  durationS: number
  /** Loss probability of each gossip copy and each request/response leg in the steady and partition phases. */
  loss: number
  /** Fraction of nodes crashed during the steady phase (at least one when > 0). */
  kill: number
  /**
   * How a killed node fails: `crash` stops its transport (peers' requests are
   * refused after a round trip, like a dead process on a live host);
   * `vanish` cuts it off both ways while it "runs" (requests time out, like a
   * host that lost power or its cable). Default crash.
   */
  killMode?: 'crash' | 'vanish'

  partition: boolean
  /** Virtual ms between two node starts in the join phase. */
  joinSpacingMs?: number
  /** Nodes re-publish their free resources and load about this often (virtual ms); 0 disables. */
  metaChurnMs?: number
  /** Progress lines (phase ends, wall times); the CLI prints them to stderr. */
  log?: (line: string) => void
  /** Also log, every 5 virtual seconds of a wait, how many (observer, subject) pairs are still missing. */
  verbose?: boolean
  /** Every advance of virtual time (the progress line). */
  onProgress?: (sample: { virtualMs: number; events: number; violations: number }) => void
  /** Writes every trace line (--trace FILE). */
  traceSink?: TraceSink
}

export interface Percentiles {
  p50: number
  p99: number
}

export interface MembershipScenarioReport {
  seed: number
  nodes: number
  scenario: 'membership'
  virtualSeconds: number
  wallSeconds: number
  invariants: { ok: boolean; violations: string[] }
  traceHash: string
  figures: {
    joinConvergenceMs: Percentiles
    deathDetectionMs: Percentiles
    falsePositiveDeaths: number
    placeLatencyMs: null
    failoverMs: null
    placementsPerSecond: null
    bidsPerPlacement: null
    gossipBytesPerNodePerSecond: number
    heapBytesPerNode: number
  }
  details: Record<string, unknown>
}

const UNKNOWN = 0
const ALIVE = 1
const SUSPECT = 2
const DEAD = 3
const LEFT = 4
const CODE: Record<MembershipEvent['type'], number> = { joined: ALIVE, alive: ALIVE, suspect: SUSPECT, dead: DEAD, left: LEFT }

/** A calm LAN for the join phase. */
const CALM_LATENCY: LatencyModel = { min: 1, max: 10 }

/** Jitter: 2–20 ms typical, a 5 % exponential tail (mean 60 ms), 0.5 % spikes up to 500 ms. */
const JITTER_LATENCY: LatencyModel = (rng: Rng) => {
  let ms = 2 + rng.next() * 18
  if (rng.next() < 0.05) ms += -Math.log(1 - rng.next()) * 60
  if (rng.next() < 0.005) ms += 100 + rng.next() * 400
  return Math.min(600, Math.round(ms))
}

interface SimNode {
  index: number
  peerId: string
  transport: FaultyTransport
  membership: Membership
  rng: Rng
  startedAtMs: number
  started: boolean
  running: boolean
  killedAtMs: number
  side: number
  off: () => void
}

export async function runMembershipScenario(options: MembershipScenarioOptions): Promise<MembershipScenarioReport> {
  const wallStart = performance.now()
  const n = options.nodes
  const log = options.log ?? (() => {})
  const joinSpacingMs = options.joinSpacingMs ?? 10
  const metaChurnMs = options.metaChurnMs ?? 10_000
  const violations: string[] = []

  const heapBaseline = liveHeapBytes()

  const driver = createSimDriver(options.seed, undefined, { onAdvance: (virtualMs, events) => options.onProgress?.({ virtualMs, events, violations: violations.length }) })
  const { clock } = driver
  const network = createSimNetwork({ latencyMs: CALM_LATENCY, lossRate: 0, duplicateRate: 0 }, { clock, rng: driver.rng.fork('network') })
  let requestLoss = 0
  const ids = simPeerIds(driver.rng.fork('peer-ids'), n)
  const indexOf = new Map(ids.map((id, index) => [id, index]))
  const trace = new Trace(options.traceSink)

  // view[o * n + j]: observer o's state of subject j.
  const view = new Uint8Array(n * n)
  const joinLatencyMax = new Float64Array(n)
  const detections: number[] = []
  const detectionsByVictim = new Map<number, number[]>()
  const firstSuspectOf = new Map<number, { atMs: number; observer: number }>()
  /** Crash → first request any node sent to the victim. */
  const firstContactOf = new Map<number, number>()
  const killedByPeerId = new Map<string, SimNode>()
  const detected = new Uint8Array(n * n)
  let phase: 'join' | 'steady' | 'partition' | 'heal' | 'settle' = 'join'
  const falseDeathIncidents = new Set<string>()
  let falseDeathObservations = 0
  let healAftermathDeaths = 0
  const falseSuspicionIncidents = new Set<string>()
  const falseDeathLog: string[] = []

  const nodes: SimNode[] = ids.map((peerId, index) => {
    const rng = driver.rng.fork(`node/${index}`)
    const transport = new FaultyTransport(network.transport(peerId), clock, rng.fork('request-faults'), {
      requestLossRate: () => requestLoss,
      onRequest: (to) => {
        const victim = killedByPeerId.get(to)
        if (victim !== undefined && !firstContactOf.has(victim.index)) firstContactOf.set(victim.index, driver.elapsedMs() - victim.killedAtMs)
      },
    })
    const seeds = index === 0 ? [] : [ids[rng.int(index)] as string]
    const membership = createMembership({ preset: 'sim', seeds, meta: initialMeta(rng) })({ transport, clock, rng: rng.fork('membership'), logger: silentLogger })
    return { index, peerId, transport, membership, rng, startedAtMs: 0, started: false, running: false, killedAtMs: -1, side: -1, off: () => {} }
  })

  const onEvent = (observer: SimNode, event: MembershipEvent): void => {
    const o = observer.index
    const j = indexOf.get(event.peerId)
    if (j === undefined) return
    const t = driver.elapsedMs()
    trace.record(t, o, j, event.type)
    const code = CODE[event.type]
    const cell = o * n + j
    const previous = view[cell] as number
    view[cell] = code
    const subject = nodes[j] as SimNode
    if (code === ALIVE && previous === UNKNOWN) {
      const latency = t - Math.max(observer.startedAtMs, subject.startedAtMs)
      if (latency > (joinLatencyMax[j] as number)) joinLatencyMax[j] = latency
    }
    if (code === DEAD) {
      if (subject.killedAtMs >= 0) {
        if (detected[cell] === 0) {
          detected[cell] = 1
          detections.push(t - subject.killedAtMs)
          let perVictim = detectionsByVictim.get(j)
          if (perVictim === undefined) detectionsByVictim.set(j, (perVictim = []))
          perVictim.push(t - subject.killedAtMs)
        }
      } else if (subject.running) {
        const crossPartition = phase === 'partition' && observer.side !== subject.side
        if (phase === 'heal') {
          // A suspicion begun across the partition may still end in a death notice just after the heal;
          // the subject refutes it. Partition aftermath, reported on its own.
          healAftermathDeaths++
        } else if (!crossPartition) {
          falseDeathObservations++
          falseDeathIncidents.add(`${j}/${event.incarnation}`)
          if (falseDeathLog.length < 20) falseDeathLog.push(`t=${t} observer=${o} subject=${j} inc=${event.incarnation} phase=${phase}`)
        }
      }
    }
    if (code === SUSPECT && subject.running && phase !== 'partition') falseSuspicionIncidents.add(`${j}/${event.incarnation}`)
    if (code === SUSPECT && subject.killedAtMs >= 0 && !firstSuspectOf.has(j)) firstSuspectOf.set(j, { atMs: t - subject.killedAtMs, observer: o })
  }

  const startNode = async (node: SimNode): Promise<void> => {
    node.startedAtMs = driver.elapsedMs()
    node.started = true
    node.running = true
    node.off = node.membership.onEvent((event) => onEvent(node, event))
    await node.transport.start()
    node.membership.setLocalMeta({ addresses: node.transport.addresses() })
    await node.membership.start()
    if (metaChurnMs > 0) scheduleChurn(node)
  }

  const scheduleChurn = (node: SimNode): void => {
    clock.setTimer(Math.round(metaChurnMs * (0.5 + node.rng.next())), () => {
      if (!node.running) return
      const capacity = node.membership.member(node.peerId)?.capacity
      if (capacity !== undefined) {
        node.membership.setLocalMeta({
          free: {
            cpu: round1(capacity.cpu * node.rng.next()),
            memoryMB: Math.floor(capacity.memoryMB * node.rng.next()),
            diskMB: Math.floor(capacity.diskMB * node.rng.next()),
            gpus: capacity.gpus,
          },
          load: round2(node.rng.next() * capacity.cpu),
        })
      }
      scheduleChurn(node)
    })
  }

  const kill = async (node: SimNode): Promise<void> => {
    node.killedAtMs = driver.elapsedMs()
    killedByPeerId.set(node.peerId, node)
    node.running = false
    node.off()
    await node.membership.stop()
    if (options.killMode === 'vanish') {
      vanished.push(node.peerId)
      network.partition(islands())
    } else {
      await node.transport.stop()
    }
  }

  const running = (): SimNode[] => nodes.filter((node) => node.running)
  /** Vanished nodes, each an island of its own; everyone else is the unlisted island (or `groups`). */
  const vanished: string[] = []
  const islands = (groups: string[][] = []): string[][] => [...groups, ...vanished.map((peerId) => [peerId])]

  /** Every running observer sees `pred(state, subject)` for every other subject of `subjects`. */
  const allSee = (observers: SimNode[], subjects: SimNode[], ok: (state: number) => boolean): boolean => {
    for (const o of observers) {
      const row = o.index * n
      for (const s of subjects) if (s !== o && !ok(view[row + s.index] as number)) return false
    }
    return true
  }
  const countNotSeeing = (observers: SimNode[], subjects: SimNode[], ok: (state: number) => boolean): number => {
    let missing = 0
    for (const o of observers) {
      const row = o.index * n
      for (const s of subjects) if (s !== o && !ok(view[row + s.index] as number)) missing++
    }
    return missing
  }
  /** The first few (observer, subject) pairs not satisfying `ok`, with both sides' view of the subject. */
  const describeMissing = (observers: SimNode[], subjects: SimNode[], ok: (state: number) => boolean, max = 5): string => {
    const out: string[] = []
    for (const o of observers) {
      for (const s of subjects) {
        if (s === o || ok(view[o.index * n + s.index] as number)) continue
        const seen = o.membership.member(s.peerId)
        const own = s.running ? s.membership.member(s.peerId) : undefined
        out.push(`${o.index}→${s.index}: ${seen?.state ?? 'unknown'}@${seen?.incarnation ?? '-'} (own ${own?.incarnation ?? 'down'})`)
        if (out.length >= max) return out.join(', ')
      }
    }
    return out.join(', ')
  }
  /** runUntil, logging the missing pairs every 5 virtual seconds when verbose. */
  const waitUntil = async (what: string, condition: () => boolean, missing: () => number, budgetMs: number, describe?: () => string): Promise<boolean> => {
    if (options.verbose !== true) return driver.runUntil(condition, budgetMs, 250)
    const startMs = driver.elapsedMs()
    let nextLogMs = startMs + 5_000
    return driver.runUntil(
      () => {
        if (driver.elapsedMs() >= nextLogMs) {
          const count = missing()
          log(`  ${what}: +${Math.round((driver.elapsedMs() - startMs) / 1000)} s, ${count} pairs missing${count > 0 && count <= 10 && describe ? `: ${describe()}` : ''}`)
          nextLogMs += 5_000
        }
        return condition()
      },
      budgetMs,
      250,
    )
  }

  const phaseWall: Record<string, number> = {}
  let phaseWallStart = performance.now()
  const endPhase = (name: string, extra = ''): void => {
    const now = performance.now()
    phaseWall[name] = round1((now - phaseWallStart) / 1000)
    phaseWallStart = now
    log(`[membership n=${n} seed=${options.seed}] ${name} done at virtual ${round1(driver.elapsedMs() / 1000)} s, wall ${phaseWall[name]} s${extra ? ` — ${extra}` : ''}`)
  }

  // ---- 1. join
  for (const node of nodes) clock.setTimer(node.index * joinSpacingMs, () => void startNode(node))
  const joinBudgetMs = n * joinSpacingMs + 60_000
  const joined = await driver.runUntil(() => nodes.every((node) => node.started) && allSee(nodes, nodes, (s) => s === ALIVE), joinBudgetMs, 250)
  if (!joined) violations.push(`join: not every node saw every other alive within ${joinBudgetMs} ms (${countNotSeeing(nodes, nodes, (s) => s === ALIVE)} pairs missing)`)
  const joinVirtualMs = driver.elapsedMs()
  const joinConvergence = [...joinLatencyMax]
  let heapPeak = liveHeapBytes()
  endPhase('join')

  // ---- 2. steady: loss, jitter, churn, kills
  phase = 'steady'
  network.setLoss(options.loss)
  network.setLatency(JITTER_LATENCY)
  requestLoss = options.loss
  const steadyMs = options.durationS * 1000
  const killCount = options.kill > 0 ? Math.max(1, Math.round(options.kill * n)) : 0
  const killRng = driver.rng.fork('kills')
  const victims = pickDistinct(killRng, nodes, Math.min(killCount, n - 2))
  const steadyStartMs = driver.elapsedMs()
  const bytesBefore = network.counters().byPeer
  victims.forEach((victim, k) => {
    clock.setTimer(Math.round((steadyMs * (k + 0.5)) / victims.length), () => void kill(victim))
  })
  await driver.runFor(steadyMs)
  const steadyEndMs = driver.elapsedMs()
  const bytesAfter = network.counters().byPeer
  heapPeak = Math.max(heapPeak, liveHeapBytes())
  // Detection of the last kills may still be running: give it its budget before judging.
  const survivors = running()
  const victimsDetected = (): boolean => allSee(survivors, victims, (s) => s === DEAD)
  const detectionBudgetMs = 30_000
  if (!(await driver.runUntil(victimsDetected, detectionBudgetMs, 250))) {
    violations.push(`kill: ${countNotSeeing(survivors, victims, (s) => s === DEAD)} (survivor, victim) pairs without the victim dead ${detectionBudgetMs} ms after the steady phase`)
  }
  const bytes = trafficFigures(nodes, bytesBefore, bytesAfter, steadyStartMs, steadyEndMs)
  endPhase('steady', `${victims.length} kills, ${falseDeathIncidents.size} false deaths, ${falseSuspicionIncidents.size} false suspicions`)

  // ---- 3. partition and heal
  let partitionSplitMs: number | null = null
  let healConvergenceMs: number | null = null
  if (options.partition) {
    phase = 'partition'
    const alive = running()
    const shuffled = shuffleCopy(alive, driver.rng.fork('partition'))
    const half = Math.floor(shuffled.length / 2)
    const sideA = shuffled.slice(0, half)
    const sideB = shuffled.slice(half)
    for (const node of sideA) node.side = 0
    for (const node of sideB) node.side = 1
    network.partition(islands([sideA.map((node) => node.peerId), sideB.map((node) => node.peerId)]))
    const splitStart = driver.elapsedMs()
    const splitBudgetMs = 120_000
    const split = await waitUntil(
      'partition',
      () => allSee(sideA, sideB, (s) => s === DEAD) && allSee(sideB, sideA, (s) => s === DEAD),
      () => countNotSeeing(sideA, sideB, (s) => s === DEAD) + countNotSeeing(sideB, sideA, (s) => s === DEAD),
      splitBudgetMs,
      () => `${describeMissing(sideA, sideB, (s) => s === DEAD)} ${describeMissing(sideB, sideA, (s) => s === DEAD)}`,
    )
    if (split) partitionSplitMs = driver.elapsedMs() - splitStart
    else violations.push(`partition: sides did not see each other dead within ${splitBudgetMs} ms (${countNotSeeing(sideA, sideB, (s) => s === DEAD) + countNotSeeing(sideB, sideA, (s) => s === DEAD)} pairs missing)`)
    endPhase('partition', `split in ${partitionSplitMs ?? 'n/a'} ms`)
    phase = 'heal'
    if (vanished.length > 0) network.partition(islands())
    else network.heal()
    const healStart = driver.elapsedMs()
    const healBudgetMs = 180_000
    const healed = await waitUntil(
      'heal',
      () => allSee(alive, alive, (s) => s === ALIVE),
      () => countNotSeeing(alive, alive, (s) => s === ALIVE),
      healBudgetMs,
      () => describeMissing(alive, alive, (s) => s === ALIVE),
    )
    if (healed) healConvergenceMs = driver.elapsedMs() - healStart
    else violations.push(`heal: survivors did not all see each other alive within ${healBudgetMs} ms (${countNotSeeing(alive, alive, (s) => s === ALIVE)} pairs missing)`)
    endPhase('heal', `all alive again in ${healConvergenceMs ?? 'n/a'} ms`)
  }

  // ---- 4. settle and check the final views
  phase = 'settle'
  network.setLoss(0)
  requestLoss = 0
  network.setLatency(CALM_LATENCY)
  const finalSurvivors = running()
  const consistent = (): boolean => allSee(finalSurvivors, finalSurvivors, (s) => s === ALIVE) && allSee(finalSurvivors, victims, (s) => s === DEAD)
  if (!(await driver.runUntil(consistent, 60_000, 250))) {
    violations.push(
      `final views disagree: ${countNotSeeing(finalSurvivors, finalSurvivors, (s) => s === ALIVE)} (observer, survivor) pairs not alive, ${countNotSeeing(finalSurvivors, victims, (s) => s === DEAD)} (observer, victim) pairs not dead`,
    )
  }
  if (falseDeathIncidents.size > 0) violations.push(`false deaths: ${falseDeathIncidents.size} incidents (${falseDeathObservations} observations): ${falseDeathLog.slice(0, 5).join('; ')}`)
  endPhase('settle')

  // Live heap at the end of the join and of the steady phase, above the baseline, per node.
  const heapBytesPerNode = Math.max(0, Math.round((heapPeak - heapBaseline) / n))
  const totals = sumCounters(nodes.map((node) => node.membership.counters()))
  const faults = nodes.reduce((acc, node) => ({ requestsLost: acc.requestsLost + node.transport.faultCounters.requestsLost, responsesLost: acc.responsesLost + node.transport.faultCounters.responsesLost }), { requestsLost: 0, responsesLost: 0 })
  const traceEntries = trace.entries()
  const report: MembershipScenarioReport = {
    seed: options.seed,
    nodes: n,
    scenario: 'membership',
    virtualSeconds: round1(driver.elapsedMs() / 1000),
    wallSeconds: round1((performance.now() - wallStart) / 1000),
    invariants: { ok: violations.length === 0, violations },
    traceHash: trace.digest(),
    figures: {
      joinConvergenceMs: { p50: percentile(joinConvergence, 0.5), p99: percentile(joinConvergence, 0.99) },
      deathDetectionMs: { p50: percentile(detections, 0.5), p99: percentile(detections, 0.99) },
      falsePositiveDeaths: falseDeathIncidents.size,
      placeLatencyMs: null,
      failoverMs: null,
      placementsPerSecond: null,
      bidsPerPlacement: null,
      gossipBytesPerNodePerSecond: Math.round(bytes.receivedPerNodePerSecond),
      heapBytesPerNode,
    },
    details: {
      options: { durationS: options.durationS, loss: options.loss, kill: options.kill, killMode: options.killMode ?? 'crash', partition: options.partition, joinSpacingMs, metaChurnMs },
      joinPhaseVirtualMs: joinVirtualMs,
      kills: victims.length,
      deathDetectionMsMax: detections.length > 0 ? Math.max(...detections) : 0,
      deathDetectionObservations: detections.length,
      /** Per crash: the first and the median survivor to mark it dead, and the last. */
      deathDetectionMsByKill: victims.map((victim) => {
        const times = detectionsByVictim.get(victim.index) ?? []
        const suspect = firstSuspectOf.get(victim.index)
        return {
          node: victim.index,
          firstContact: firstContactOf.has(victim.index) ? Math.round(firstContactOf.get(victim.index) as number) : null,
          firstSuspect: suspect === undefined ? null : Math.round(suspect.atMs),
          firstSuspectBy: suspect?.observer ?? null,
          first: Math.round(percentile(times, 0)),
          p50: Math.round(percentile(times, 0.5)),
          max: Math.round(times.length > 0 ? Math.max(...times) : 0),
        }
      }),
      falseDeathObservations,
      falseSuspicions: falseSuspicionIncidents.size,
      partitionSplitMs,
      healConvergenceMs,
      healAftermathDeathObservations: healAftermathDeaths,
      traffic: bytes,
      requestFaults: faults,
      membershipCounters: totals,
      traceEntries,
      eventsProcessed: driver.eventsProcessed(),
      phaseWallSeconds: phaseWall,
    },
  }
  for (const node of nodes) if (node.running) await node.membership.stop()
  return report
}

/**
 * Bytes each node received per second of the steady phase (gossip copies,
 * requests and responses, as the simulated network delivered them), over the
 * node-seconds actually run (crashed nodes stop counting).
 */
function trafficFigures(
  nodes: SimNode[],
  before: Record<string, { bytesReceived: number; bytesSent: number }>,
  after: Record<string, { bytesReceived: number; bytesSent: number }>,
  startMs: number,
  endMs: number,
): { receivedPerNodePerSecond: number; receivedPerNodePerSecondP99: number; receivedPerNodePerSecondMax: number; nodeSeconds: number } {
  let received = 0
  let nodeSeconds = 0
  const rates: number[] = []
  for (const node of nodes) {
    const got = (after[node.peerId]?.bytesReceived ?? 0) - (before[node.peerId]?.bytesReceived ?? 0)
    const untilMs = node.killedAtMs >= 0 && node.killedAtMs < endMs ? node.killedAtMs : endMs
    const seconds = Math.max(0, untilMs - startMs) / 1000
    received += got
    nodeSeconds += seconds
    if (seconds > 10) rates.push(got / seconds)
  }
  return {
    receivedPerNodePerSecond: nodeSeconds > 0 ? received / nodeSeconds : 0,
    receivedPerNodePerSecondP99: Math.round(percentile(rates, 0.99)),
    receivedPerNodePerSecondMax: Math.round(rates.length > 0 ? Math.max(...rates) : 0),
    nodeSeconds: Math.round(nodeSeconds),
  }
}

/** Every node's membership counters added up (drops per reason too). */
export function sumCounters(all: MembershipCounters[]): Record<string, number | Record<string, number>> {
  const total: Record<string, number> = {}
  const dropped: Record<string, number> = {}
  for (const counters of all) {
    for (const [key, value] of Object.entries(counters)) {
      if (key === 'dropped') for (const [reason, count] of Object.entries(value as Record<string, number>)) dropped[reason] = (dropped[reason] ?? 0) + count
      else total[key] = (total[key] ?? 0) + (value as number)
    }
  }
  return { ...total, dropped }
}

/** A simulated machine: a few sizes, drawn from the scenario's PRNG. */
export function initialMeta(rng: Rng): Partial<MemberMeta> {
  const cpu = [4, 8, 16, 32][rng.int(4)] as number
  const memoryMB = cpu * 2048
  const diskMB = [256_000, 512_000, 1_024_000][rng.int(3)] as number
  const gpus = rng.next() < 0.1 ? 1 : 0
  return {
    capacity: { cpu, memoryMB, diskMB, gpus },
    free: { cpu, memoryMB, diskMB, gpus },
    load: 0,
    labels: { zone: `zone-${rng.int(4)}` },
    version: '0.1.0',
  }
}

function pickDistinct<T>(rng: Rng, items: readonly T[], count: number): T[] {
  return shuffleCopy(items, rng).slice(0, Math.max(0, count))
}

function shuffleCopy<T>(items: readonly T[], rng: Rng): T[] {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(i + 1)
    ;[out[i], out[j]] = [out[j] as T, out[i] as T]
  }
  return out
}

/**
 * A full garbage collection, so heap samples measure live objects, not
 * garbage not yet collected. The simulator's process enables `gc` for itself
 * (the same as node --expose-gc).
 */
let collect: (() => void) | undefined
function heapSettle(): void {
  if (collect === undefined) {
    v8.setFlagsFromString('--expose-gc')
    collect = vm.runInNewContext('gc') as () => void
  }
  collect()
}

/** Live heap bytes, after a full collection. */
function liveHeapBytes(): number {
  heapSettle()
  return process.memoryUsage().heapUsed
}

const round1 = (x: number): number => Math.round(x * 10) / 10
const round2 = (x: number): number => Math.round(x * 100) / 100
