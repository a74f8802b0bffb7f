/**
 * The membership scenario over real libp2p (`--network libp2p`): N real nodes
 * in this process on loopback — TCP, pnet, noise, yamux, identify, gossipsub,
 * kad-dht if asked — each running the real membership code with the product's `lan`
 * timings on the system clock. Same phases and the same report shape as the
 * simulated scenario (sim/scenarios/membership.ts), so the two can be read
 * side by side:
 *
 * 1. join — nodes start in batches (see cluster.ts), each dialling 3 earlier
 *    nodes; until every node sees every other alive. joinConvergenceMs per
 *    node: the slowest observer to learn of it, from when both existed.
 * 2. steady — `durationS` wall seconds: `loss` on every request leg
 *    (FaultyTransport, as in the simulator; gossip copies travel on real TCP
 *    and are not dropped), every node re-publishing its load every ~10 s,
 *    `kill` × N nodes crashed at evenly spaced times (membership and libp2p
 *    stopped: its sockets close, as when a process dies on a live host).
 * 3. settle — every survivor must see every survivor alive and every crashed
 *    node dead.
 *
 * Not available here: `partition` and `killMode: 'vanish'` (loopback TCP
 * cannot be made silent from inside the process); they are refused.
 *
 * Differences to keep in mind when comparing: times are wall times of every
 * node sharing one JavaScript thread (a slow host, not a LAN of machines);
 * gossipBytesPerNodePerSecond counts membership's own bytes (topic messages,
 * requests, responses) as the simulator does, not TCP/noise/yamux/gossipsub
 * framing and control traffic; heapBytesPerNode is the whole libp2p stack's
 * heap per node, not membership's alone. traceHash hashes wall-clock events,
 * so it differs between runs.
 */
import os from 'node:os'
import { createRng, silentLogger, type Rng } from '../../core/index.ts'
import type { MembershipCounters, MembershipEvent } from '../../mesh/index.ts'
import { createSystemClock } from '../../node/index.ts'
import { p50p99, percentile } from '../bench/stats.ts'
import { FaultyTransport } from '../request-faults.ts'
import { initialMeta, sumCounters, type MembershipScenarioOptions, type MembershipScenarioReport } from '../scenarios/membership.ts'
import { Trace } from '../trace.ts'
import { startLibp2pCluster, type Libp2pClusterNode } from './cluster.ts'
import { LIBP2P_SCENARIO_NODES_MAX } from './limits.ts'

export interface Libp2pMembershipScenarioOptions extends MembershipScenarioOptions {
  /**
   * Run kad-dht on every node, as the product's transport does by default.
   * Default false here, as in the mesh benchmark: with it, ~50 or more nodes
   * in one process do not converge (docs/ARCHITECTURE.md, mesh).
   */
  dht?: boolean
  /** Wall-time budget of the join phase (default 60 s + 0.6 s per node). */
  joinBudgetMs?: number
}


const UNKNOWN = 0
const ALIVE = 1
const SUSPECT = 2
const DEAD = 3
const LEFT = 4
const CODE: Record<MembershipEvent['type'], number> = { joined: ALIVE, alive: ALIVE, suspect: SUSPECT, dead: DEAD, left: LEFT }

interface RunNode {
  index: number
  peerId: string
  cluster: Libp2pClusterNode | undefined
  faulty: FaultyTransport | undefined
  startedAtMs: number
  running: boolean
  killedAtMs: number
  churn: { cancel(): void } | undefined
}

export async function runMembershipScenarioLibp2p(options: Libp2pMembershipScenarioOptions): Promise<MembershipScenarioReport> {
  const n = options.nodes
  if (!Number.isInteger(n) || n < 2 || n > LIBP2P_SCENARIO_NODES_MAX) throw new RangeError(`libp2p network: nodes must be an integer in [2, ${LIBP2P_SCENARIO_NODES_MAX}]`)
  if (options.partition) throw new RangeError('libp2p network: --partition is not available (loopback TCP cannot be partitioned from inside the process)')
  if (options.killMode === 'vanish') throw new RangeError('libp2p network: --kill-mode vanish is not available (a stopped node closes its sockets: crash only)')
  const wallStart = performance.now()
  const log = options.log ?? (() => {})
  const metaChurnMs = options.metaChurnMs ?? 10_000
  const clock = createSystemClock()
  const root = createRng(options.seed)
  const violations: string[] = []
  global.gc?.()
  const heapBaseline = process.memoryUsage().heapUsed
  const rssBaseline = process.memoryUsage().rss
  const t0 = clock.nowMs()
  const elapsed = (): number => clock.nowMs() - t0

  const trace = new Trace()
  const view = new Uint8Array(n * n)
  const joinLatencyMax = new Float64Array(n)
  const detections: number[] = []
  const detected = new Uint8Array(n * n)
  const falseDeathIncidents = new Set<string>()
  const falseSuspicionIncidents = new Set<string>()
  let falseDeathObservations = 0
  let requestLoss = 0
  const nodes: RunNode[] = Array.from({ length: n }, (_, index) => ({ index, peerId: '', cluster: undefined, faulty: undefined, startedAtMs: 0, running: false, killedAtMs: -1, churn: undefined }))
  const indexOf = new Map<string, number>()

  const onEvent = (observer: RunNode, event: MembershipEvent): void => {
    const j = indexOf.get(event.peerId)
    if (j === undefined) return
    const t = elapsed()
    const o = observer.index
    trace.record(Math.round(t), o, j, event.type)
    const code = CODE[event.type]
    const cell = o * n + j
    const previous = view[cell] as number
    view[cell] = code
    const subject = nodes[j] as RunNode
    if (code === ALIVE && previous === UNKNOWN) {
      const latency = t - Math.max(observer.startedAtMs, subject.startedAtMs)
      if (latency > (joinLatencyMax[j] as number)) joinLatencyMax[j] = latency
    }
    if (code === DEAD) {
      if (subject.killedAtMs >= 0) {
        if (detected[cell] === 0) {
          detected[cell] = 1
          detections.push(t - subject.killedAtMs)
        }
      } else if (subject.running) {
        falseDeathObservations++
        falseDeathIncidents.add(`${j}/${event.incarnation}`)
      }
    }
    if (code === SUSPECT && subject.running) falseSuspicionIncidents.add(`${j}/${event.incarnation}`)
  }

  const cluster = await startLibp2pCluster({
    nodes: n,
    rng: root.fork('cluster'),
    clock,
    dht: options.dht ?? false,
    logger: silentLogger,
    meta: (index) => initialMeta(root.fork(`meta/${index}`)),
    wrapTransport: (transport, index) => {
      const faulty = new FaultyTransport(transport, clock, root.fork(`request-faults/${index}`), { requestLossRate: () => requestLoss })
      ;(nodes[index] as RunNode).faulty = faulty
      return faulty
    },
    onNode: (clusterNode) => {
      const node = nodes[clusterNode.index] as RunNode
      node.cluster = clusterNode
      node.peerId = clusterNode.peerId
      node.startedAtMs = clusterNode.startedAtMs - t0
      node.running = true
      indexOf.set(clusterNode.peerId, clusterNode.index)
      clusterNode.membership.onEvent((event) => {
        if (node.running) onEvent(node, event)
      })
    },
  })
  const member = (node: RunNode): Libp2pClusterNode => node.cluster as Libp2pClusterNode
  const phaseWall: Record<string, number> = {}
  let phaseStart = performance.now()
  const endPhase = (name: string, extra = ''): void => {
    phaseWall[name] = round1((performance.now() - phaseStart) / 1000)
    phaseStart = performance.now()
    log(`[membership/libp2p n=${n} seed=${options.seed}] ${name} done at ${round1(elapsed() / 1000)} s${extra ? ` — ${extra}` : ''}`)
  }
  const allSee = (observers: RunNode[], subjects: RunNode[], ok: (state: number) => boolean): boolean =>
    observers.every((o) => subjects.every((s) => s === o || ok(view[o.index * n + s.index] as number)))
  const countNotSeeing = (observers: RunNode[], subjects: RunNode[], ok: (state: number) => boolean): number => {
    let missing = 0
    for (const o of observers) for (const s of subjects) if (s !== o && !ok(view[o.index * n + s.index] as number)) missing++
    return missing
  }
  const waitUntil = async (condition: () => boolean, budgetMs: number): Promise<boolean> => {
    const deadline = clock.nowMs() + budgetMs
    while (!condition()) {
      if (clock.nowMs() >= deadline) return false
      await clock.sleep(100)
    }
    return true
  }
  const sampleHeap = (): number => {
    global.gc?.()
    return process.memoryUsage().heapUsed
  }

  try {
    // ---- 1. join
    const joinBudgetMs = options.joinBudgetMs ?? 60_000 + 600 * n
    const joined = await waitUntil(() => allSee(nodes, nodes, (s) => s === ALIVE), joinBudgetMs)
    if (!joined) violations.push(`join: not every node saw every other alive within ${joinBudgetMs} ms (${countNotSeeing(nodes, nodes, (s) => s === ALIVE)} pairs missing)`)
    const joinMs = elapsed()
    let heapPeak = sampleHeap()
    endPhase('join', `connected in ${Math.round(cluster.connectMs)} ms`)

    // ---- 2. steady: request loss, load churn, kills
    requestLoss = options.loss
    const killRng = root.fork('kills')
    const churnRng = root.fork('churn')
    const scheduleChurn = (node: RunNode): void => {
      if (metaChurnMs <= 0) return
      node.churn = clock.setTimer(Math.round(metaChurnMs * (0.5 + churnRng.next())), () => {
        if (!node.running) return
        const capacity = member(node).membership.member(node.peerId)?.capacity
        if (capacity !== undefined) {
          member(node).membership.setLocalMeta({
            free: { cpu: round1(capacity.cpu * churnRng.next()), memoryMB: Math.floor(capacity.memoryMB * churnRng.next()), diskMB: Math.floor(capacity.diskMB * churnRng.next()), gpus: capacity.gpus },
            load: Math.round(churnRng.next() * capacity.cpu * 100) / 100,
          })
        }
        scheduleChurn(node)
      })
    }
    for (const node of nodes) scheduleChurn(node)
    const steadyMs = options.durationS * 1000
    const killCount = options.kill > 0 ? Math.max(1, Math.round(options.kill * n)) : 0
    const victims = shuffleCopy(nodes, killRng).slice(0, Math.min(killCount, n - 2))
    const kill = async (node: RunNode): Promise<void> => {
      node.killedAtMs = elapsed()
      node.running = false
      node.churn?.cancel()
      await member(node).membership.stop()
      await member(node).transport.stop()
    }
    const counters = (): MembershipCounters[] => nodes.map((node) => member(node).membership.counters())
    const bytesBefore = counters().map((c) => c.gossipBytesIn)
    const steadyStart = elapsed()
    const killTimers = victims.map((victim, k) => clock.setTimer(Math.round((steadyMs * (k + 0.5)) / victims.length), () => void kill(victim)))
    await clock.sleep(steadyMs)
    const steadyEnd = elapsed()
    const bytesAfter = counters().map((c) => c.gossipBytesIn)
    heapPeak = Math.max(heapPeak, sampleHeap())
    const rssBytes = process.memoryUsage().rss
    requestLoss = 0
    const survivors = nodes.filter((node) => node.running)
    const detectionBudgetMs = 30_000
    if (!(await waitUntil(() => allSee(survivors, victims, (s) => s === DEAD), detectionBudgetMs))) {
      violations.push(`kill: ${countNotSeeing(survivors, victims, (s) => s === DEAD)} (survivor, victim) pairs without the victim dead ${detectionBudgetMs} ms after the steady phase`)
    }
    for (const timer of killTimers) timer.cancel()
    endPhase('steady', `${victims.length} kills, ${falseDeathIncidents.size} false deaths, ${falseSuspicionIncidents.size} false suspicions`)

    // ---- 3. settle
    const consistent = (): boolean => allSee(survivors, survivors, (s) => s === ALIVE) && allSee(survivors, victims, (s) => s === DEAD)
    if (!(await waitUntil(consistent, 60_000))) {
      violations.push(`final views disagree: ${countNotSeeing(survivors, survivors, (s) => s === ALIVE)} (observer, survivor) pairs not alive, ${countNotSeeing(survivors, victims, (s) => s === DEAD)} (observer, victim) pairs not dead`)
    }
    if (falseDeathIncidents.size > 0) violations.push(`false deaths: ${falseDeathIncidents.size} incidents (${falseDeathObservations} observations)`)
    endPhase('settle')

    // Bytes each node received per second of the steady phase, over the node-seconds run.
    let received = 0
    let nodeSeconds = 0
    for (const node of nodes) {
      received += (bytesAfter[node.index] as number) - (bytesBefore[node.index] as number)
      const untilMs = node.killedAtMs >= 0 && node.killedAtMs < steadyEnd ? node.killedAtMs : steadyEnd
      nodeSeconds += Math.max(0, untilMs - steadyStart) / 1000
    }
    const connections = nodes.filter((node) => node.running).map((node) => member(node).transport.connectedPeers().length)
    const totals = sumCounters(counters())
    const health = survivors.map((node) => member(node).membership.health())
    return {
      seed: options.seed,
      nodes: n,
      scenario: 'membership',
      // Wall seconds: this network runs on the system clock.
      virtualSeconds: round1(elapsed() / 1000),
      wallSeconds: round1((performance.now() - wallStart) / 1000),
      invariants: { ok: violations.length === 0, violations },
      traceHash: trace.digest(),
      figures: {
        joinConvergenceMs: p50p99([...joinLatencyMax]),
        deathDetectionMs: p50p99(detections),
        falsePositiveDeaths: falseDeathIncidents.size,
        placeLatencyMs: null,
        failoverMs: null,
        placementsPerSecond: null,
        bidsPerPlacement: null,
        gossipBytesPerNodePerSecond: nodeSeconds > 0 ? Math.round(received / nodeSeconds) : 0,
        heapBytesPerNode: Math.max(0, Math.round((heapPeak - heapBaseline) / n)),
      },
      details: {
        network: 'libp2p',
        machine: `${os.cpus().length} cores; all nodes on one JavaScript thread`,
        options: { durationS: options.durationS, loss: options.loss, kill: options.kill, killMode: 'crash', partition: false, metaChurnMs, dht: options.dht ?? false },
        startAllMs: Math.round(cluster.startAllMs),
        connectMs: Math.round(cluster.connectMs),
        joinPhaseMs: Math.round(joinMs),
        kills: victims.length,
        deathDetectionMsMax: detections.length > 0 ? Math.round(Math.max(...detections)) : 0,
        deathDetectionObservations: detections.length,
        falseDeathObservations,
        falseSuspicions: falseSuspicionIncidents.size,
        rssBytesPerNode: Math.max(0, Math.round((rssBytes - rssBaseline) / n)),
        connectionsPerNode: { p50: percentile(connections, 0.5), max: connections.length > 0 ? Math.max(...connections) : 0 },
        awarenessMax: health.length > 0 ? Math.max(...health.map((h) => h.awareness)) : 0,
        lagMsMax: health.length > 0 ? Math.round(Math.max(...health.map((h) => h.lagMsMax))) : 0,
        requestFaults: nodes.reduce((acc, node) => ({ requestsLost: acc.requestsLost + (node.faulty?.faultCounters.requestsLost ?? 0), responsesLost: acc.responsesLost + (node.faulty?.faultCounters.responsesLost ?? 0) }), { requestsLost: 0, responsesLost: 0 }),
        membershipCounters: totals,
        traceEntries: trace.entries(),
        phaseWallSeconds: phaseWall,
      },
    }
  } finally {
    for (const node of nodes) node.churn?.cancel()
    await cluster.stop()
  }
}



function shuffleCopy<T>(items: readonly T[], rng: Rng): T[] {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(i + 1)
    ;[out[i], out[j]] = [out[j] as T, out[i] as T]
  }
  return out
}

function round1(value: number): number {
  return Math.round(value * 10) / 10
}
