/**
 * The fault schedule of a `scheduled` scenario, VOPR / FoundationDB style:
 * at every fault tick each fault kind starts one instance with its
 * probability (when under its bound) and the instance lasts a duration drawn
 * in [minDurationS, maxDurationS]; every draw comes from one Rng forked from
 * the run's root seed, so a seed fixes the whole schedule.
 *
 * Node faults (kill, restart, pause, clockSkew, clockJump, containers) hit one
 * node at a time each and never more than `maxFaultyFraction` of the initial
 * nodes at once; a node carries at most one node fault. Network faults (loss,
 * delay, duplicate) change the whole network, one instance each at a time;
 * a partition is one at a time (halves, isolate one node, or asymmetric).
 * Churn adds brand-new nodes and lets nodes leave gracefully at its rates.
 *
 * `healAll()` ends every fault for the liveness phase: crashed nodes restart,
 * paused ones resume, clocks return to the shared time, the network heals and
 * drops back to a calm LAN (no loss, no duplication, baseline latency).
 */
import type { Rng } from '../core/index.ts'
import { maxDurationS, type FaultKind, type FaultSchedule } from './scenario-file.ts'
import type { SimCluster, SimNode } from './sim-cluster.ts'

export interface FaultEvent {
  atMs: number
  kind: FaultKind | 'join' | 'leave'
  phase: 'start' | 'end'
  /** The node concerned (node faults, churn). */
  node?: number
  detail: string
}

interface ActiveFault {
  kind: FaultKind
  /** Virtual ms (driver.elapsedMs) at which it ends. */
  endsAtMs: number
  node?: SimNode
  /** False while the fault cannot end yet (a crashed node still finishing its stop); it ends at a later step. */
  ready?: () => boolean
  end(): Promise<void>
}

export interface FaultSchedulerHooks {
  /** Every start and end of a fault, and every churn join and leave. */
  onEvent?(event: FaultEvent): void
  /** A node (re)started: restart after a kill, a churn join. The scenario watches its events. */
  onNodeStarted?(node: SimNode): void
  /** A node is about to crash (kill, restart): the scenario notes which replicas it held. */
  onKill?(node: SimNode): void
  /** A node is about to leave gracefully (churn). */
  onLeave?(node: SimNode): void
}

export interface FaultCounts {
  started: Record<FaultKind | 'join' | 'leave', number>
}

export interface NetworkBaseline {
  latencyMs: { min: number; max: number }
  loss: number
  duplicate: number
}

/** Longest the liveness phase waits for crashed nodes to finish stopping before it restarts them (a slow container start is the usual wait). */
const HEAL_STOP_WAIT_MS = 120_000

const NODE_FAULTS = new Set<FaultKind>(['kill', 'restart', 'pause', 'clockSkew', 'clockJump', 'containers'])

export class FaultScheduler {
  private readonly active: ActiveFault[] = []
  /** Node indices under a node fault, or crashed and not running again yet. */
  private readonly busy = new Set<number>()
  private nextTickMs: number
  readonly counts: FaultCounts = { started: { kill: 0, restart: 0, pause: 0, partition: 0, loss: 0, delay: 0, duplicate: 0, clockSkew: 0, clockJump: 0, containers: 0, join: 0, leave: 0 } }
  /** When the last partition ended (driver ms); -Infinity before any. */
  lastPartitionEndMs = Number.NEGATIVE_INFINITY
  /** Last pause end per node (driver ms). */
  readonly lastPauseEndMs = new Map<number, number>()

  constructor(
    private readonly cluster: SimCluster,
    private readonly schedule: FaultSchedule,
    private readonly baseline: NetworkBaseline,
    private readonly rng: Rng,
    private readonly initialNodes: number,
    private readonly hooks: FaultSchedulerHooks = {},
  ) {
    this.nextTickMs = cluster.driver.elapsedMs()
  }

  /** Whether a partition (of any kind) is on now. */
  partitioned(): boolean {
    return this.active.some((f) => f.kind === 'partition')
  }

  /** Node indices under a node fault now (killed, restarting, paused, skewed, …). */
  faultyNodes(): ReadonlySet<number> {
    return this.busy
  }

  activeFaults(): Array<{ kind: FaultKind; node?: number; endsAtMs: number }> {
    return this.active.map((f) => ({ kind: f.kind, endsAtMs: f.endsAtMs, ...(f.node === undefined ? {} : { node: f.node.index }) }))
  }

  /** Ends what is due, then draws new faults if a tick is due. Call as often as you like. */
  async step(): Promise<void> {
    const now = this.cluster.driver.elapsedMs()
    await this.endDue(now)
    this.releaseRestarted()
    while (now >= this.nextTickMs) {
      this.nextTickMs += this.schedule.tickMs
      await this.tick(now)
    }
  }

  private async endDue(now: number): Promise<void> {
    for (const fault of [...this.active]) {
      if (fault.endsAtMs > now || fault.ready?.() === false) continue
      this.active.splice(this.active.indexOf(fault), 1)
      await fault.end()
    }
  }

  /** A crashed node counts as faulty until it runs again. */
  private releaseRestarted(): void {
    for (const index of [...this.busy]) {
      if (this.active.some((f) => f.node?.index === index)) continue
      const node = this.cluster.nodes[index]
      if (node === undefined || node.running || node.left) this.busy.delete(index)
    }
  }

  private emit(kind: FaultEvent['kind'], phase: FaultEvent['phase'], detail: string, node?: SimNode): void {
    this.hooks.onEvent?.({ atMs: this.cluster.driver.elapsedMs(), kind, phase, detail, ...(node === undefined ? {} : { node: node.index }) })
  }

  private drawDurationMs(fault: { minDurationS: number; maxDurationS?: number | undefined }): number {
    const min = fault.minDurationS * 1000
    const max = maxDurationS(fault) * 1000
    return Math.round(min + this.rng.next() * (max - min))
  }

  /** A running, unpaused node with no node fault, or undefined when the bound is reached. */
  private pickHealthyNode(): SimNode | undefined {
    const bound = Math.max(1, Math.floor(this.schedule.maxFaultyFraction * this.initialNodes))
    if (this.busy.size >= bound) return undefined
    const candidates = this.cluster.nodes.filter((n) => n.running && !n.left && !this.busy.has(n.index) && !this.cluster.isPaused(n))
    return this.rng.pick(candidates)
  }

  private async tick(now: number): Promise<void> {
    for (const kind of ['kill', 'restart', 'pause', 'partition', 'loss', 'delay', 'duplicate', 'clockSkew', 'clockJump', 'containers'] as const) {
      const fault = this.schedule[kind]
      if (fault.probability <= 0 || this.rng.next() >= fault.probability) continue
      if (NODE_FAULTS.has(kind)) {
        const node = this.pickHealthyNode()
        if (node === undefined) continue
        await this.startNodeFault(kind, node, now + this.drawDurationMs(fault))
      } else {
        if (this.active.some((f) => f.kind === kind)) continue
        this.startNetworkFault(kind, now + this.drawDurationMs(fault))
      }
    }
    await this.churn()
  }

  private async startNodeFault(kind: FaultKind, node: SimNode, endsAtMs: number): Promise<void> {
    const { cluster, schedule } = this
    this.busy.add(node.index)
    this.counts.started[kind]++
    const add = (detail: string, end: () => Promise<void> | void, ready?: () => boolean): void => {
      this.emit(kind, 'start', detail, node)
      this.active.push({
        kind,
        endsAtMs,
        node,
        ...(ready === undefined ? {} : { ready }),
        end: async () => {
          await end()
          this.emit(kind, 'end', detail, node)
        },
      })
    }
    switch (kind) {
      case 'kill':
      case 'restart': {
        this.hooks.onKill?.(node)
        this.killed.add(node)
        // Not awaited: the rest of the stop may wait on an in-flight container start, i.e. on virtual time.
        let stopped = false
        this.stopping.set(node, () => stopped)
        void cluster.crash(node).then(
          () => (stopped = true),
          (err: unknown) => {
            stopped = true
            this.emit(kind, 'end', `node ${node.index} stop failed: ${err instanceof Error ? err.message : String(err)}`, node)
          },
        )
        add(
          kind === 'kill' ? `crash for ${endsAtMs - cluster.driver.elapsedMs()} ms` : `process restart after ${endsAtMs - cluster.driver.elapsedMs()} ms`,
          () => this.restartNode(node),
          () => stopped,
        )
        return
      }
      case 'pause':
        cluster.pause(node)
        add(`pause for ${endsAtMs - cluster.driver.elapsedMs()} ms`, () => {
          cluster.resume(node)
          this.lastPauseEndMs.set(node.index, cluster.driver.elapsedMs())
        })
        return
      case 'clockSkew': {
        const offset = Math.round((this.rng.next() * 2 - 1) * schedule.clockSkew.maxOffsetMs)
        node.clock.setOffset(offset)
        add(`clock offset ${offset} ms`, () => node.clock.setOffset(0))
        return
      }
      case 'clockJump': {
        const jump = Math.round((this.rng.next() * 2 - 1) * schedule.clockJump.maxJumpMs)
        node.clock.jump(jump)
        add(`clock jump ${jump} ms`, () => node.clock.jump(-jump))
        return
      }
      case 'containers': {
        const { failureRate, slowRate, slowDelayMs } = schedule.containers
        node.runtime.setStartFaults({ failureRate, slowRate, slowDelayMs })
        add(`container starts: ${failureRate} fail, ${slowRate} slow (+${slowDelayMs} ms)`, () => {
          // A restart in between gave the node a fresh runtime; end the fault on whichever it has.
          ;(cluster.nodes[node.index] ?? node).runtime.setStartFaults({ failureRate: 0, slowRate: 0 })
        })
        return
      }
      default:
        throw new Error(`not a node fault: ${kind}`)
    }
  }

  private startNetworkFault(kind: FaultKind, endsAtMs: number): void {
    const { cluster, schedule, baseline } = this
    const { network } = cluster
    this.counts.started[kind]++
    const add = (detail: string, end: () => void): void => {
      this.emit(kind, 'start', detail)
      this.active.push({
        kind,
        endsAtMs,
        end: async () => {
          end()
          this.emit(kind, 'end', detail)
        },
      })
    }
    switch (kind) {
      case 'loss': {
        const rate = Math.min(1, Math.round((baseline.loss + schedule.loss.rate) * 1e6) / 1e6)
        network.setLoss(rate)
        add(`loss ${rate}`, () => network.setLoss(baseline.loss))
        return
      }
      case 'duplicate': {
        const rate = Math.min(1, Math.round((baseline.duplicate + schedule.duplicate.rate) * 1e6) / 1e6)
        network.setDuplicate(rate)
        add(`duplicate ${rate}`, () => network.setDuplicate(baseline.duplicate))
        return
      }
      case 'delay': {
        network.setLatency(schedule.delay.latencyMs)
        add(`latency ${schedule.delay.latencyMs.min}–${schedule.delay.latencyMs.max} ms`, () => network.setLatency(baseline.latencyMs))
        return
      }
      case 'partition': {
        const kinds = schedule.partition.kinds
        const shape = kinds[this.rng.int(kinds.length)]!
        const everyone = cluster.nodes.map((n) => n.peerId)
        const shuffled = [...everyone]
        for (let i = shuffled.length - 1; i > 0; i--) {
          const j = this.rng.int(i + 1)
          ;[shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!]
        }
        const half = Math.floor(shuffled.length / 2)
        if (shape === 'halves') {
          network.partition([shuffled.slice(0, half), shuffled.slice(half)])
          add(`halves ${half}/${shuffled.length - half}`, () => this.healPartition())
        } else if (shape === 'isolate') {
          const alone = shuffled[0]!
          network.partition([[alone], shuffled.slice(1)])
          add(`isolate node ${everyone.indexOf(alone)}`, () => this.healPartition())
        } else {
          network.partitionOneWay(shuffled.slice(0, half), shuffled.slice(half))
          add(`asymmetric: ${half} nodes cannot reach the other ${shuffled.length - half}`, () => this.healPartition())
        }
        return
      }
      default:
        throw new Error(`not a network fault: ${kind}`)
    }
  }

  /** Crashed node objects → whether their stop has finished. */
  private readonly stopping = new Map<SimNode, () => boolean>()

  private async restartNode(node: SimNode): Promise<void> {
    this.stopping.delete(node)
    await this.cluster.restart(node, { wait: false })
    const fresh = this.cluster.nodes[node.index]
    if (fresh !== undefined && fresh !== node) this.hooks.onNodeStarted?.(fresh)
  }

  private healPartition(): void {
    this.cluster.network.heal()
    this.lastPartitionEndMs = this.cluster.driver.elapsedMs()
  }

  private async churn(): Promise<void> {
    const { churn, tickMs } = this.schedule
    const perTick = (perMinute: number): number => {
      const expected = (perMinute * tickMs) / 60_000
      let count = Math.floor(expected)
      if (this.rng.next() < expected - count) count++
      return count
    }
    if (churn.joinPerMinute > 0) {
      for (let i = perTick(churn.joinPerMinute); i > 0; i--) {
        const node = await this.cluster.addNode({ wait: false })
        this.counts.started.join++
        this.emit('join', 'start', `node ${node.index} joins`, node)
        this.hooks.onNodeStarted?.(node)
      }
    }
    if (churn.leavePerMinute > 0) {
      for (let i = perTick(churn.leavePerMinute); i > 0; i--) {
        const floor = Math.max(3, Math.ceil(churn.minNodesFraction * this.initialNodes))
        if (this.cluster.alive().length <= floor) break
        const candidates = this.cluster.nodes.filter((n) => n.running && !n.left && !this.busy.has(n.index) && !this.cluster.isPaused(n))
        const node = this.rng.pick(candidates)
        if (node === undefined) break
        this.counts.started.leave++
        this.emit('leave', 'start', `node ${node.index} leaves`, node)
        this.hooks.onLeave?.(node)
        // A graceful leave waits on the clock (the goodbye is disseminated): it runs while the driver moves time.
        void this.cluster.leave(node).catch((err: unknown) => this.emit('leave', 'end', `node ${node.index} leave failed: ${err instanceof Error ? err.message : String(err)}`, node))
      }
    }
  }

  /** Liveness: every fault off, crashed nodes restarted (not waited for: the budget counts it), the network calm. */
  async healAll(): Promise<void> {
    // Crashed nodes still finishing their stop: let virtual time run until they have (bounded).
    await this.cluster.driver.runUntil(() => [...this.stopping.values()].every((done) => done()), HEAL_STOP_WAIT_MS)
    for (const fault of this.active.splice(0)) await fault.end()
    const { network } = this.cluster
    network.heal()
    network.setLoss(0)
    network.setDuplicate(0)
    network.setLatency(this.baseline.latencyMs)
    for (const node of [...this.cluster.nodes]) {
      if (node.left) continue
      if (this.cluster.isPaused(node)) this.cluster.resume(node)
      node.clock.setOffset(0)
      node.runtime.setStartFaults({ failureRate: 0, slowRate: 0 })
      if (!node.running && this.cluster.nodes[node.index] === node && !this.startingNow(node)) await this.restartNode(node)
    }
  }

  /** A node object that is starting (restarted or joined, start not finished). */
  private startingNow(node: SimNode): boolean {
    return !node.running && !this.killed.has(node)
  }

  /** Node objects that were crashed (and not replaced yet). */
  private readonly killed = new WeakSet<SimNode>()

  /** Marks a node object as crashed (the scheduler's kills, and the scenario's own). */
  noteKilled(node: SimNode): void {
    this.killed.add(node)
  }
}
