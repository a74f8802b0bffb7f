/**
 * The reconciler: desired (replicas this node won, and what their deployment
 * wants) versus actual (this node's labelled containers). Each pass starts
 * what is missing, removes what is extra or stale (older generation or
 * epoch), restarts crashed replicas per restart policy with exponential
 * backoff, and reports each replica's state into the document.
 *
 * Passes never overlap: a trigger during a pass schedules one more pass.
 * Container starts run beside the passes (at most `startsConcurrentMax` at
 * once): a slow start must not hold back the rest of the work — above all
 * removing a copy this node no longer owns, which other nodes are already
 * replacing. A finished start asks for a pass.
 */
import type { Clock, ContainerInfo, Logger, ReplicaState, Runtime, RuntimeHealth, Startable, TimerHandle } from '../core/index.ts'
import { RuntimeError } from '../core/index.ts'
import { LatticeError } from '../core/index.ts'
import { jsonEqual, type ClusterState, type DeploymentEntry, type StatusEntry } from '../crdt/index.ts'
import type { EventBus } from './events.ts'
import type { NodeMetrics } from './metrics.ts'

export interface ReconcilerInit {
  intervalMs: number
  restartBackoffMinMs: number
  restartBackoffMaxMs: number
  restartBackoffResetMs: number
  containerStopTimeoutMs: number
  containerPidsMax: number
  /** Container starts under way at once. */
  startsConcurrentMax: number
  /** A start that ends sooner is reported once (its outcome), not `starting` first (config.ts says why). */
  startingReportDelayMs: number
}

export interface ReconcilerComponents {
  state: ClusterState
  runtime: Runtime
  clock: Clock
  logger: Logger
  events: EventBus
  metrics: NodeMetrics
}

export interface Reconciler extends Startable {
  /**
   * Asks for a pass as soon as the current one (if any) ends. With the
   * deployments a document change touched, only if one of them concerns
   * this node (it won a replica, runs a container or reports a status of it):
   * every node hears of every change, and most are about other nodes' work.
   */
  trigger(deployments?: ReadonlySet<string> | 'all'): void
  /** Runs one pass now (waits for a running pass first). */
  reconcileNow(): Promise<void>
  /** The engine's health as of the last pass. */
  runtimeHealth(): RuntimeHealth | undefined
}

interface Backoff {
  failures: number
  nextAttemptAtMs: number
  runningSinceMs?: number
}

interface DesiredReplica {
  deployment: DeploymentEntry
  replica: number
  generation: number
  mode: 'run' | 'stop'
}

const keyOf = (deploymentId: string, replica: number): string => `${deploymentId}/${replica}`

export function createReconciler(init: ReconcilerInit): (components: ReconcilerComponents) => Reconciler {
  return (components) => {
    const { state, runtime, clock, logger, events, metrics } = components
    const backoffs = new Map<string, Backoff>()
    let health: RuntimeHealth | undefined
    let timer: TimerHandle | undefined
    let running: Promise<void> | undefined
    let again = false
    let stopped = true
    /** Container starts under way, by replica key. */
    const startsInFlight = new Map<string, Promise<void>>()
    /** Starts that ended after the current pass listed the containers: its list may not show what they made. */
    const startsEndedSinceList = new Set<string>()
    /** Deployments the last pass found this node involved with (won, running, reported). */
    let involved = new Set<string>()

    /** The replicas this node won (from the document's index of winners: no scan of every deployment). */
    const desiredReplicas = (): Map<string, DesiredReplica> => {
      const desired = new Map<string, DesiredReplica>()
      const won = state.placementsWonBy(state.selfId).sort((a, b) => (a.deploymentId < b.deploymentId ? -1 : a.deploymentId > b.deploymentId ? 1 : a.replica - b.replica))
      for (const { deploymentId, replica } of won) {
        const deployment = state.deployment(deploymentId)
        if (deployment === undefined || deployment.desired === 'deleted' || replica >= deployment.replicas) continue
        const placement = state.placement(deploymentId, replica)
        if (placement === undefined || !placement.winners.includes(state.selfId)) continue
        desired.set(keyOf(deployment.id, replica), {
          deployment,
          replica,
          generation: placement.generation,
          mode: deployment.desired === 'running' ? 'run' : 'stop',
        })
      }
      return desired
    }

    /**
     * Status writes of the current pass, not yet in the document: a pass
     * writes them as ONE change (before each runtime action, so a report
     * such as `starting` is out before the action it announces, and at the
     * end of the pass) instead of one change per replica, since every node
     * applies every change.
     */
    const queued = new Map<string, { deploymentId: string; replica: number; entry: StatusEntry | null; event?: () => void }>()

    const ownStatus = (deploymentId: string, replica: number): StatusEntry | undefined => {
      const pending = queued.get(keyOf(deploymentId, replica))
      if (pending !== undefined) return pending.entry ?? undefined
      return state.statuses(deploymentId).find((s) => s.replica === replica && s.peerId === state.selfId)
    }

    /**
     * Flushes run one after another: a start flushing its `starting` report
     * while a pass flushes waits for that pass's write, so the report is in
     * the document before the start it announces.
     */
    let flushing: Promise<void> = Promise.resolve()
    const flushReports = (): Promise<void> => {
      const next = flushing.then(flushQueued)
      flushing = next.catch(() => {})
      return next
    }

    const flushQueued = async (): Promise<void> => {
      if (queued.size === 0) return
      const writes = [...queued.values()]
      queued.clear()
      await state.batch((tx) => {
        for (const write of writes) {
          try {
            if (write.entry === null) tx.clearStatus(write.deploymentId, write.replica)
            else tx.reportStatus(write.deploymentId, write.replica, write.entry)
          } catch (error) {
            // Deleted meanwhile (a peer's change applied during the pass): nothing to report on. Writes made before the throw are none.
            if (!(error instanceof LatticeError && error.code === 'NOT_FOUND')) throw error
          }
        }
      }, `status ×${writes.length}`)
      for (const write of writes) write.event?.()
    }

    const queueClear = (deploymentId: string, replica: number): void => {
      queued.set(keyOf(deploymentId, replica), { deploymentId, replica, entry: null })
    }

    const withoutTime = (entry: StatusEntry): Omit<StatusEntry, 'updatedAtMs'> => {
      const { updatedAtMs: _ignored, ...rest } = entry
      return rest
    }

    /** `eventOut`: the replica.state event of this report was emitted already. */
    const report = async (want: DesiredReplica, update: Omit<StatusEntry, 'peerId' | 'replica' | 'generation' | 'epoch' | 'updatedAtMs' | 'restarts'> & { restarts?: number }, eventOut = false): Promise<void> => {
      const previous = ownStatus(want.deployment.id, want.replica)
      const entry: StatusEntry = {
        peerId: state.selfId,
        replica: want.replica,
        generation: want.generation,
        epoch: want.deployment.epoch,
        state: update.state,
        hostPorts: update.hostPorts,
        restarts: update.restarts ?? previous?.restarts ?? 0,
        updatedAtMs: clock.nowMs(),
        ...(update.containerId !== undefined ? { containerId: update.containerId } : {}),
        ...(update.startedAtMs !== undefined ? { startedAtMs: update.startedAtMs } : {}),
        ...(update.error !== undefined ? { error: update.error } : {}),
      }
      // A report that changes nothing but its time is not written (the document would refuse it anyway).
      if (previous !== undefined && jsonEqual(withoutTime(previous), withoutTime(entry))) return
      const changed = !eventOut && (previous === undefined || previous.state !== entry.state || previous.error !== entry.error)
      const event = (): void => {
        if (!changed) return
        events.emit({ type: 'replica.state', deploymentId: want.deployment.id, replica: want.replica, nodeId: state.selfId, state: entry.state, ...(entry.error !== undefined ? { error: entry.error } : {}) })
        if (entry.state === 'running' && previous?.state !== 'running' && want.deployment.createdAtMs > 0) {
          metrics.acceptToRunningSeconds.observe(Math.max(0, clock.nowMs() - want.deployment.updatedAtMs) / 1000)
        }
      }
      const key = keyOf(want.deployment.id, want.replica)
      const earlier = queued.get(key)?.event
      queued.set(key, {
        deploymentId: want.deployment.id,
        replica: want.replica,
        entry,
        event: () => {
          earlier?.()
          event()
        },
      })
    }

    const restartsOf = (want: DesiredReplica): number => ownStatus(want.deployment.id, want.replica)?.restarts ?? 0

    const removeContainer = async (container: ContainerInfo, why: string): Promise<void> => {
      logger.info({ containerId: container.id, deploymentId: container.deploymentId, replica: container.replica, why }, 'removing container')
      await flushReports()
      await runtime.remove(container.id)
      metrics.reconcileActions.inc({ action: 'remove' })
    }

    const scheduleRetry = (key: string): number => {
      const backoff = backoffs.get(key) ?? { failures: 0, nextAttemptAtMs: 0 }
      backoff.failures++
      const delayMs = Math.min(init.restartBackoffMaxMs, init.restartBackoffMinMs * 2 ** (backoff.failures - 1))
      backoff.nextAttemptAtMs = clock.nowMs() + delayMs
      delete backoff.runningSinceMs
      backoffs.set(key, backoff)
      return delayMs
    }

    const startReplica = async (want: DesiredReplica, key: string, restarts: number): Promise<void> => {
      const { deployment } = want
      // `starting` is reported once the start has taken startingReportDelayMs:
      // a start that ends sooner is reported once, by its outcome, since
      // every node of the mesh applies every status change.
      // The event goes out at once: it is local, and a watcher sees the start begin.
      const before = ownStatus(deployment.id, want.replica)
      if (before?.state !== 'starting') events.emit({ type: 'replica.state', deploymentId: deployment.id, replica: want.replica, nodeId: state.selfId, state: 'starting' })
      const announceStarting = async (): Promise<void> => {
        await report(want, { state: 'starting', hostPorts: {}, restarts }, true)
        await flushReports()
      }
      const announce = init.startingReportDelayMs > 0 ? clock.setTimer(init.startingReportDelayMs, () => void announceStarting().catch((err: unknown) => logger.warn({ err, key }, 'reporting a start as starting failed'))) : undefined
      try {
        if (announce === undefined) await announceStarting()
        const info = await runtime.run({
          deploymentId: deployment.id,
          replica: want.replica,
          generation: want.generation,
          epoch: deployment.epoch,
          name: deployment.name,
          image: deployment.spec.image,
          ...(deployment.spec.command !== undefined ? { command: deployment.spec.command } : {}),
          env: deployment.spec.env,
          ports: deployment.spec.ports,
          resources: { cpu: deployment.spec.resources.cpu, memoryMB: deployment.spec.resources.memoryMB, pidsMax: init.containerPidsMax },
          capAdd: deployment.spec.capAdd,
        })
        metrics.reconcileActions.inc({ action: 'start' })
        const backoff = backoffs.get(key)
        if (backoff !== undefined) backoff.runningSinceMs = clock.nowMs()
        await report(want, { state: info.state === 'running' ? 'running' : 'starting', containerId: info.id, hostPorts: info.hostPorts, ...(info.startedAtMs !== undefined ? { startedAtMs: info.startedAtMs } : {}), restarts })
      } catch (error) {
        const code = error instanceof RuntimeError ? error.code : 'RUNTIME_ERROR'
        metrics.runtimeErrors.inc({ code })
        const delayMs = scheduleRetry(key)
        const message = error instanceof Error ? error.message : String(error)
        logger.warn({ deploymentId: deployment.id, replica: want.replica, code, err: message, retryInMs: delayMs }, 'replica failed to start')
        await report(want, { state: 'failed', hostPorts: {}, error: `${message} (retrying in ${Math.round(delayMs / 1000)} s)`, restarts })
      } finally {
        announce?.cancel()
      }
    }

    /** Starts a replica beside the pass; when the start ends (either way), another pass looks at the result. */
    const launchStart = (want: DesiredReplica, key: string, restarts: number): void => {
      // All slots busy: the pass that the next finished start asks for finds one free.
      if (startsInFlight.has(key) || startsInFlight.size >= init.startsConcurrentMax) return
      const start = startReplica(want, key, restarts)
        .catch((error: unknown) => {
          logger.error({ key, err: error instanceof Error ? error.message : String(error) }, 'replica start failed')
        })
        .finally(() => {
          startsInFlight.delete(key)
          startsEndedSinceList.add(key)
          if (!stopped) void reconcileNow()
        })
      startsInFlight.set(key, start)
    }

    const reconcileRun = async (want: DesiredReplica, key: string, containers: ContainerInfo[]): Promise<void> => {
      const { deployment } = want
      const current = containers.filter((c) => c.generation === want.generation && c.epoch === deployment.epoch)
      for (const stale of containers.filter((c) => !current.includes(c))) await removeContainer(stale, 'older generation or epoch')
      // A start under way owns this replica's current container until it ends; one that just ended
      // made a container this pass's list may not show (the pass it asked for will).
      if (startsInFlight.has(key) || startsEndedSinceList.has(key)) return
      // Keep the newest current container if several exist (e.g. after a crash between run and report).
      current.sort((a, b) => (b.startedAtMs ?? 0) - (a.startedAtMs ?? 0))
      for (const duplicate of current.slice(1)) await removeContainer(duplicate, 'duplicate')
      const container = current[0]
      const nowMs = clock.nowMs()
      const backoff = backoffs.get(key)

      if (container === undefined) {
        if (backoff !== undefined && nowMs < backoff.nextAttemptAtMs) return
        launchStart(want, key, restartsOf(want))
        return
      }
      if (container.state === 'running' || container.state === 'restarting') {
        if (backoff !== undefined) {
          backoff.runningSinceMs ??= nowMs
          if (nowMs - backoff.runningSinceMs >= init.restartBackoffResetMs) backoffs.delete(key)
        }
        await report(want, { state: 'running', containerId: container.id, hostPorts: container.hostPorts, ...(container.startedAtMs !== undefined ? { startedAtMs: container.startedAtMs } : {}) })
        return
      }
      if (container.state === 'created') {
        await report(want, { state: 'starting', containerId: container.id, hostPorts: {} })
        return
      }
      // Exited or dead: the restart policy decides.
      const exitCode = container.exitCode ?? -1
      const policy = deployment.spec.restart
      const restart = policy === 'always' || (policy === 'on-failure' && exitCode !== 0)
      if (!restart) {
        const finalState: ReplicaState = exitCode === 0 ? 'stopped' : 'failed'
        await report(want, { state: finalState, containerId: container.id, hostPorts: {}, ...(exitCode !== 0 ? { error: `exited with code ${exitCode}${container.error !== undefined ? `: ${container.error}` : ''}` } : {}) })
        return
      }
      if (backoff === undefined || backoff.runningSinceMs !== undefined) {
        // First time this exit is seen: count it and wait out the backoff.
        const delayMs = scheduleRetry(key)
        metrics.replicaRestarts.inc()
        const restarts = restartsOf(want) + 1
        logger.warn({ deploymentId: deployment.id, replica: want.replica, exitCode, restartInMs: delayMs }, 'replica exited; restarting per policy')
        await report(want, { state: 'failed', containerId: container.id, hostPorts: {}, error: `exited with code ${exitCode}${container.error !== undefined ? ` (${container.error})` : ''}; restarting in ${Math.round(delayMs / 1000)} s`, restarts })
        return
      }
      if (nowMs < backoff.nextAttemptAtMs) return
      await removeContainer(container, 'restart after exit')
      launchStart(want, key, restartsOf(want))
    }

    const reconcileStop = async (want: DesiredReplica, containers: ContainerInfo[]): Promise<void> => {
      for (const container of containers) {
        if (container.state === 'running' || container.state === 'restarting' || container.state === 'paused') {
          await flushReports()
          await runtime.stop(container.id, init.containerStopTimeoutMs)
          metrics.reconcileActions.inc({ action: 'stop' })
        }
      }
      const latest = containers.find((c) => c.epoch === want.deployment.epoch) ?? containers[0]
      await report(want, { state: 'stopped', hostPorts: {}, ...(latest !== undefined ? { containerId: latest.id } : {}) })
    }

    const pass = async (): Promise<void> => {
      const startedAt = clock.nowMs()
      const previousAvailable = health?.available
      health = await runtime.health()
      metrics.runtimeAvailable.set(health.available ? 1 : 0)
      if (previousAvailable !== health.available) {
        events.emit({ type: 'runtime.availability', available: health.available, ...(health.available ? {} : { reason: health.reason }) })
      }
      const desired = desiredReplicas()

      if (!health.available) {
        for (const want of desired.values()) {
          if (want.mode === 'run') await report(want, { state: 'pending', hostPorts: {}, error: `container runtime unavailable: ${health.reason}. ${health.hint}` })
        }
        await flushReports()
        metrics.reconcileRuns.inc({ outcome: 'runtime_unavailable' })
        return
      }

      startsEndedSinceList.clear()
      const containers = await runtime.list()
      const nowInvolved = new Set<string>()
      for (const want of desired.values()) nowInvolved.add(want.deployment.id)
      for (const container of containers) nowInvolved.add(container.deploymentId)
      for (const { deploymentId } of state.statusesReportedBy(state.selfId)) nowInvolved.add(deploymentId)
      involved = nowInvolved
      const byKey = new Map<string, ContainerInfo[]>()
      for (const container of containers) {
        const key = keyOf(container.deploymentId, container.replica)
        byKey.set(key, [...(byKey.get(key) ?? []), container])
      }
      const counts: Record<string, number> = {}
      for (const container of containers) counts[container.state] = (counts[container.state] ?? 0) + 1
      metrics.containers.reset()
      for (const [containerState, count] of Object.entries(counts)) metrics.containers.set({ state: containerState }, count)

      // Extra: containers nobody here should run (deleted, scaled down, lost the placement).
      for (const [key, list] of byKey) {
        if (desired.has(key)) continue
        for (const container of list) await removeContainer(container, 'not desired on this node')
        backoffs.delete(key)
        const [deploymentId, replicaText] = key.split('/')
        const replica = Number(replicaText)
        if (deploymentId !== undefined && state.deployment(deploymentId) !== undefined && ownStatus(deploymentId, replica) !== undefined) queueClear(deploymentId, replica)
      }
      // Status entries of replicas that are no longer ours and have no container.
      for (const { deploymentId, replica } of state.statusesReportedBy(state.selfId)) {
        const key = keyOf(deploymentId, replica)
        if (!desired.has(key) && !byKey.has(key) && state.deployment(deploymentId) !== undefined) queueClear(deploymentId, replica)
      }

      for (const [key, want] of desired) {
        const list = byKey.get(key) ?? []
        try {
          if (want.mode === 'run') await reconcileRun(want, key, list)
          else await reconcileStop(want, list)
        } catch (error) {
          const code = error instanceof RuntimeError ? error.code : 'RUNTIME_ERROR'
          metrics.runtimeErrors.inc({ code })
          logger.error({ key, err: error instanceof Error ? error.message : String(error) }, 'reconcile step failed')
        }
      }
      await flushReports()
      metrics.reconcileRuns.inc({ outcome: 'ok' })
      metrics.reconcileDurationSeconds.observe((clock.nowMs() - startedAt) / 1000)
    }

    const runPass = async (): Promise<void> => {
      do {
        again = false
        try {
          await pass()
        } catch (error) {
          metrics.reconcileRuns.inc({ outcome: 'error' })
          logger.error({ err: error instanceof Error ? error.message : String(error) }, 'reconcile pass failed')
        }
      } while (again && !stopped)
    }

    const reconcileNow = async (): Promise<void> => {
      if (running !== undefined) {
        again = true
        await running
        return
      }
      running = runPass().finally(() => {
        running = undefined
      })
      await running
    }

    const schedule = (): void => {
      if (stopped) return
      timer = clock.setTimer(init.intervalMs, () => {
        void reconcileNow().finally(schedule)
      })
    }

    return {
      async start() {
        stopped = false
        await reconcileNow()
        schedule()
      },
      async stop() {
        stopped = true
        timer?.cancel()
        if (running !== undefined) await running
        // Starts under way are not awaited: one may take as long as an image unpack, and what it
        // creates carries our labels — the next start adopts it or removes it. It only queues reports now.
      },
      trigger(deployments = 'all') {
        if (stopped) return
        if (deployments !== 'all') {
          const won = state.placementsWonBy(state.selfId)
          const concerns = (id: string): boolean => involved.has(id) || won.some((held) => held.deploymentId === id)
          if (![...deployments].some(concerns)) return
        }
        void reconcileNow()
      },
      reconcileNow,
      runtimeHealth: () => health,
    }
  }
}
