/**
 * The in-memory Runtime adapter for tests and the simulator. It passes the
 * same acceptance suite as the Docker adapter, and reads time only from the
 * Clock and chance only from the Rng, so a simulation replays exactly.
 *
 * Behaviour:
 * - run(): an image not in `images` fails with IMAGE_NOT_FOUND (there is no
 *   registry). Otherwise the container is created (listed as "created"),
 *   waits `startDelayMs` on the clock, then either fails with START_FAILED —
 *   drawn from the rng with probability `startFailureRate`, or because its
 *   command cannot run (see fake-programs.ts: the busybox image's tools only)
 *   — and is removed, or starts: host ports are handed out from
 *   `hostPortStart` upwards, a stdout line "started <image> <command…>" is
 *   logged, and its program runs (`/bin/echo hi` prints "hi" and exits 0,
 *   `/bin/true` exits 0, `/bin/false` exits 1, `sh -c` scripts run their
 *   echo/sleep/exit statements on the clock, httpd and unknown images run
 *   until stopped).
 * - stop() ends the process as SIGTERM would (exit code 143), at once: with
 *   Docker's init as PID 1, busybox processes honour SIGTERM. Exited
 *   containers hold no host ports, as on Docker.
 * - Limits reported by inspect() are those the Docker adapter asks for
 *   (memory = swap, NanoCpus, PidsLimit, CapDrop ALL, no-new-privileges,
 *   init, unprivileged); stats() is a fixed sample (4 MiB, 2 pids, 0 % CPU).
 * - Only containers labelled with this runtime's nodeId exist for it.
 *
 * Slow starts: with `slowStartRate` a start waits `slowStartDelayMs` longer
 * (an image pull, a cold disk), drawn from the rng at create time like the
 * failure. `setStartFaults()` changes both rates and the delay while running
 * (the simulator's fault schedule turns them on and off).
 *
 * Test controls: crash(), setAvailable() (false makes every call but health()
 * throw RUNTIME_UNAVAILABLE), respond() (what HTTP GET / on a host port would
 * answer), emitLog(). Pass one FakeEngine to several instances to share
 * containers (adoption after a node restart).
 */
import {
  LABEL,
  RuntimeError,
  silentLogger,
  type Clock,
  type ContainerDetails,
  type ContainerInfo,
  type ContainerSpec,
  type ContainerStats,
  type LogLine,
  type LogOptions,
  type Logger,
  type Rng,
  type Runtime,
  type RuntimeHealth,
} from '../core/index.ts'
import { containerName, hostPortKey, labelsFor } from './container-identity.ts'
import {
  addContainer,
  allocateHostPort,
  appendLog,
  createFakeEngine,
  deleteContainer,
  exitContainer,
  type FakeContainer,
  type FakeEngine,
} from './fake-engine.ts'
import { compileProgram, imageEnv, imageFile, type Step } from './fake-programs.ts'

export const FAKE_TEST_IMAGE = 'lattice-test/busybox:latest'

export interface FakeRuntimeInit {
  /** This node's id, written as label `lattice.node`: the node's container namespace. Required. */
  nodeId: string
  /** The machine's containers; pass one engine to several runtimes to share them. Default: a private engine. */
  engine?: FakeEngine
  /** Images present locally; anything else is IMAGE_NOT_FOUND. Default ['lattice-test/busybox:latest']. */
  images?: string[]
  /** Virtual time from create to running (or to a start failure). Default 0: run() resolves without the clock advancing. */
  startDelayMs?: number
  /** Probability (0..1) that a start fails, drawn from the rng. Default 0. */
  startFailureRate?: number
  /** Probability (0..1) that a start is slow: it waits `slowStartDelayMs` more. Default 0. */
  slowStartRate?: number
  /** Extra virtual time of a slow start. Default 30_000: a slow image pull over a home uplink. */
  slowStartDelayMs?: number
  /** Lowest host port handed out. Default 40_000. */
  hostPortStart?: number
  /** Whether the engine answers at first. Default true. */
  available?: boolean
  /** First part of container names. Default 'lattice'. */
  containerNamePrefix?: string
}

export interface FakeRuntimeComponents {
  clock: Clock
  rng: Rng
  logger?: Logger
}

export interface FakeRuntime extends Runtime {
  readonly nodeId: string
  readonly engine: FakeEngine
  /** Ends a running container's process with `exitCode` (e.g. 137 with error "killed: out of memory"). Not running: no-op. */
  crash(id: string, exitCode: number, error?: string): void
  /** Makes the engine (un)reachable for this runtime; health() reports it, other calls throw RUNTIME_UNAVAILABLE. */
  setAvailable(available: boolean): void
  /** The body an HTTP GET / to this host port answers, or undefined when nothing serves there. */
  respond(hostPort: number): string | undefined
  /** Appends a line to a container's log, as if its process wrote it. */
  emitLog(id: string, stream: LogLine['stream'], line: string): void
  /** Changes the injected start faults from now on (omitted fields keep their value). */
  setStartFaults(faults: StartFaults): void
  /** The injected start faults in force. */
  startFaults(): Required<StartFaults>
  /** list() without the promise: the simulator's census reads every node's containers every virtual second. */
  listNow(): ContainerInfo[]
}

export interface StartFaults {
  /** Probability (0..1) that a start fails with START_FAILED. */
  failureRate?: number
  /** Probability (0..1) that a start waits `slowDelayMs` longer. */
  slowRate?: number
  slowDelayMs?: number
}

/** Default extra time of a slow start: a slow image pull over a home uplink. */
export const SLOW_START_DELAY_MS_DEFAULT = 30_000

function assertRate(name: string, rate: number): void {
  if (!(rate >= 0 && rate <= 1)) throw new RangeError(`FakeRuntimeInit.${name} must be in 0..1, got ${rate}`)
}

const BYTES_PER_MB = 1024 * 1024
const NANO_CPUS_PER_CPU = 1e9
const SIGTERM_EXIT_CODE = 143
const STATS_MEMORY_BYTES = 4 * BYTES_PER_MB
const STATS_PIDS = 2
const ID_HEX_CHARS = 64
const NAME_SUFFIX_HEX_CHARS = 6
const LIVE_STATES = new Set(['created', 'running', 'paused', 'restarting'])
const STOPPABLE_STATES = new Set(['running', 'paused', 'restarting'])

function startFailed(message: string): RuntimeError {
  return new RuntimeError('START_FAILED', message)
}

class FakeRuntimeImpl implements FakeRuntime {
  readonly kind = 'fake'
  readonly nodeId: string
  readonly engine: FakeEngine
  private readonly images: Set<string>
  private readonly startDelayMs: number
  private startFailureRate: number
  private slowStartRate: number
  private slowStartDelayMs: number
  private readonly hostPortStart: number
  private readonly containerNamePrefix: string
  private available: boolean
  private readonly clock: Clock
  private readonly rng: Rng
  private readonly log: Logger

  constructor(init: FakeRuntimeInit, components: FakeRuntimeComponents) {
    if (init.nodeId.length === 0) throw new RangeError('FakeRuntimeInit.nodeId must not be empty')
    const rate = init.startFailureRate ?? 0
    assertRate('startFailureRate', rate)
    assertRate('slowStartRate', init.slowStartRate ?? 0)
    this.nodeId = init.nodeId
    this.engine = init.engine ?? createFakeEngine()
    this.images = new Set(init.images ?? [FAKE_TEST_IMAGE])
    this.startDelayMs = Math.max(0, init.startDelayMs ?? 0)
    this.startFailureRate = rate
    this.slowStartRate = init.slowStartRate ?? 0
    this.slowStartDelayMs = Math.max(0, init.slowStartDelayMs ?? SLOW_START_DELAY_MS_DEFAULT)
    this.hostPortStart = init.hostPortStart ?? 40_000
    this.containerNamePrefix = init.containerNamePrefix ?? 'lattice'
    this.available = init.available ?? true
    this.clock = components.clock
    this.rng = components.rng
    this.log = (components.logger ?? silentLogger).child({ component: 'fake-runtime', nodeId: init.nodeId })
  }

  async health(): Promise<RuntimeHealth> {
    return this.available
      ? { available: true, engine: 'fake', version: '1' }
      : { available: false, reason: 'the fake engine is set unavailable', hint: 'call setAvailable(true) on the fake runtime' }
  }

  async run(spec: ContainerSpec): Promise<ContainerInfo> {
    this.assertAvailable()
    if (!this.images.has(spec.image)) {
      throw new RuntimeError('IMAGE_NOT_FOUND', `image ${spec.image} is not present locally and could not be pulled: the fake engine has no registry`)
    }
    const env = { ...imageEnv(spec.image), ...(spec.env ?? {}) }
    const program = compileProgram(spec.image, spec.command, env)
    const container = this.create(spec, env)
    // Drawn at create time so the draw sequence does not depend on how the delay interleaves.
    const injectedFailure = this.startFailureRate > 0 && this.rng.next() < this.startFailureRate
    const slow = this.slowStartRate > 0 && this.rng.next() < this.slowStartRate
    const delayMs = this.startDelayMs + (slow ? this.slowStartDelayMs : 0)
    if (delayMs > 0) await this.clock.sleep(delayMs)

    if (container.removed) throw startFailed(`container ${container.name} was removed while starting`)
    if (!program.ok || injectedFailure) {
      deleteContainer(this.engine, container)
      const reason = program.ok ? 'injected start failure' : program.reason
      this.log.warn({ name: container.name, reason }, 'container failed to start')
      throw startFailed(`container ${container.name} failed to start: ${reason}`)
    }
    this.start(container, program.steps)
    return this.info(container)
  }

  async stop(id: string, _timeoutMs: number): Promise<void> {
    this.assertAvailable()
    const container = this.owned(id)
    if (container === undefined || !STOPPABLE_STATES.has(container.state)) return
    exitContainer(this.engine, container, SIGTERM_EXIT_CODE, this.clock.nowMs())
  }

  async remove(id: string): Promise<void> {
    this.assertAvailable()
    const container = this.owned(id)
    if (container === undefined) return
    if (STOPPABLE_STATES.has(container.state)) exitContainer(this.engine, container, SIGTERM_EXIT_CODE, this.clock.nowMs())
    deleteContainer(this.engine, container)
  }

  async list(): Promise<ContainerInfo[]> {
    return this.listNow()
  }

  listNow(): ContainerInfo[] {
    this.assertAvailable()
    return [...(this.engine.byNode.get(this.nodeId)?.values() ?? [])].map((c) => this.info(c))
  }

  async inspect(id: string): Promise<ContainerDetails | undefined> {
    this.assertAvailable()
    const container = this.owned(id)
    return container === undefined ? undefined : this.details(container)
  }

  async *logs(id: string, options: LogOptions): AsyncGenerator<LogLine> {
    this.assertAvailable()
    const container = this.required(id)
    const { signal } = options
    const end = (): number => container.logLinesDropped + container.logs.length
    let cursor = options.tail === undefined ? container.logLinesDropped : Math.max(container.logLinesDropped, end() - Math.max(0, options.tail))
    for (;;) {
      while (cursor < end() && signal?.aborted !== true) {
        // Lines dropped by the log bound while we waited are skipped.
        cursor = Math.max(cursor, container.logLinesDropped)
        const line = container.logs[cursor - container.logLinesDropped]
        cursor++
        if (line !== undefined) yield { ...line }
      }
      if (!options.follow || signal?.aborted === true || container.removed || !LIVE_STATES.has(container.state)) return
      await this.nextChange(container, signal)
    }
  }

  async stats(id: string): Promise<ContainerStats> {
    this.assertAvailable()
    const container = this.required(id)
    if (container.state !== 'running') return { cpuPercent: 0, memoryBytes: 0, memoryLimitBytes: 0, pids: 0 }
    const limit = container.spec.resources.memoryMB * BYTES_PER_MB
    return { cpuPercent: 0, memoryBytes: Math.min(STATS_MEMORY_BYTES, limit), memoryLimitBytes: limit, pids: STATS_PIDS }
  }

  crash(id: string, exitCode: number, error?: string): void {
    const container = this.required(id)
    if (container.state !== 'running') return
    this.log.info({ id, exitCode, error }, 'container crashed (injected)')
    exitContainer(this.engine, container, exitCode, this.clock.nowMs(), error)
  }

  setStartFaults(faults: StartFaults): void {
    if (faults.failureRate !== undefined) {
      assertRate('startFailureRate', faults.failureRate)
      this.startFailureRate = faults.failureRate
    }
    if (faults.slowRate !== undefined) {
      assertRate('slowStartRate', faults.slowRate)
      this.slowStartRate = faults.slowRate
    }
    if (faults.slowDelayMs !== undefined) this.slowStartDelayMs = Math.max(0, faults.slowDelayMs)
  }

  startFaults(): Required<StartFaults> {
    return { failureRate: this.startFailureRate, slowRate: this.slowStartRate, slowDelayMs: this.slowStartDelayMs }
  }

  setAvailable(available: boolean): void {
    this.available = available
  }

  respond(hostPort: number): string | undefined {
    for (const container of this.engine.containers.values()) {
      const server = container.server
      if (container.state !== 'running' || server === undefined) continue
      if (container.hostPorts[hostPortKey({ container: server.port, protocol: 'tcp' })] !== hostPort) continue
      return imageFile(container.spec.image, `${server.home}/index.html`)
    }
    return undefined
  }

  emitLog(id: string, stream: LogLine['stream'], line: string): void {
    appendLog(this.engine, this.required(id), { stream, line })
  }

  private assertAvailable(): void {
    if (!this.available) {
      throw new RuntimeError('RUNTIME_UNAVAILABLE', 'the fake engine is unavailable; call setAvailable(true) on the fake runtime')
    }
  }

  private isOwn(container: FakeContainer): boolean {
    return container.labels[LABEL.node] === this.nodeId
  }

  private owned(id: string): FakeContainer | undefined {
    const container = this.engine.containers.get(id)
    return container !== undefined && this.isOwn(container) ? container : undefined
  }

  private required(id: string): FakeContainer {
    const container = this.owned(id)
    if (container === undefined) throw new RuntimeError('CONTAINER_NOT_FOUND', `no container ${id} on node ${this.nodeId}`)
    return container
  }

  private hex(chars: number): string {
    let out = ''
    while (out.length < chars) out += this.rng.int(0x1_0000_0000).toString(16).padStart(8, '0')
    return out.slice(0, chars)
  }

  private create(spec: ContainerSpec, env: Record<string, string>): FakeContainer {
    const sequence = this.engine.containersCreated++
    const id = (sequence.toString(16).padStart(8, '0') + this.hex(ID_HEX_CHARS)).slice(0, ID_HEX_CHARS)
    const container: FakeContainer = {
      id,
      name: containerName(this.containerNamePrefix, spec, this.hex(NAME_SUFFIX_HEX_CHARS)),
      spec: structuredClone(spec),
      labels: labelsFor(this.nodeId, spec),
      env,
      state: 'created',
      hostPorts: {},
      logs: [],
      logLinesDropped: 0,
      removed: false,
      watchers: new Set(),
    }
    addContainer(this.engine, container)
    return container
  }

  private start(container: FakeContainer, steps: readonly Step[]): void {
    const hostPorts: Record<string, number> = {}
    for (const port of container.spec.ports ?? []) {
      const hostPort = allocateHostPort(this.engine, this.hostPortStart)
      if (hostPort === undefined) {
        for (const taken of Object.values(hostPorts)) this.engine.hostPortsInUse.delete(taken)
        deleteContainer(this.engine, container)
        throw startFailed(`container ${container.name} failed to start: no free host port from ${this.hostPortStart}`)
      }
      hostPorts[hostPortKey(port)] = hostPort
    }
    container.hostPorts = hostPorts
    container.state = 'running'
    container.startedAtMs = this.clock.nowMs()
    const command = container.spec.command ?? []
    appendLog(this.engine, container, { stream: 'stdout', line: ['started', container.spec.image, ...command].join(' ') })
    this.execute(container, steps, 0, 0)
  }

  /** Runs steps until one waits on the clock, serves, or the program ends. */
  private execute(container: FakeContainer, steps: readonly Step[], from: number, status: number): void {
    let lastStatus = status
    for (let index = from; index < steps.length; index++) {
      const step = steps[index] as Step
      switch (step.kind) {
        case 'log':
          appendLog(this.engine, container, { stream: step.stream, line: step.line })
          break
        case 'status':
          lastStatus = step.code
          break
        case 'sleep':
          container.pendingStep = this.clock.setTimer(step.ms, () => {
            container.pendingStep = undefined
            if (container.state === 'running' && !container.removed) this.execute(container, steps, index + 1, 0)
          })
          return
        case 'exit':
          exitContainer(this.engine, container, step.code, this.clock.nowMs())
          return
        case 'serve':
          if (step.server !== undefined) container.server = step.server
          return
      }
    }
    exitContainer(this.engine, container, lastStatus, this.clock.nowMs())
  }

  /** Resolves on the next log line or state change of the container, or when the signal aborts. */
  private nextChange(container: FakeContainer, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        container.watchers.delete(done)
        signal?.removeEventListener('abort', done)
        resolve()
      }
      container.watchers.add(done)
      signal?.addEventListener('abort', done, { once: true })
    })
  }

  private info(container: FakeContainer): ContainerInfo {
    const { spec } = container
    const info: ContainerInfo = {
      id: container.id,
      name: container.name,
      image: spec.image,
      deploymentId: spec.deploymentId,
      replica: spec.replica,
      generation: spec.generation,
      epoch: spec.epoch,
      state: container.state,
      hostPorts: { ...container.hostPorts },
    }
    if (container.state === 'exited' || container.state === 'dead') info.exitCode = container.exitCode
    if (container.startedAtMs !== undefined) info.startedAtMs = container.startedAtMs
    if (container.finishedAtMs !== undefined) info.finishedAtMs = container.finishedAtMs
    if (container.error !== undefined) info.error = container.error
    return info
  }

  private details(container: FakeContainer): ContainerDetails {
    const { resources, capAdd } = container.spec
    const memoryBytes = resources.memoryMB * BYTES_PER_MB
    return {
      ...this.info(container),
      limits: {
        memoryBytes,
        memorySwapBytes: memoryBytes,
        nanoCpus: Math.round(resources.cpu * NANO_CPUS_PER_CPU),
        pidsLimit: resources.pidsMax,
        capDrop: ['ALL'],
        capAdd: [...(capAdd ?? [])],
        securityOpt: ['no-new-privileges:true'],
        privileged: false,
        init: true,
      },
      env: { ...container.env },
      labels: { ...container.labels },
    }
  }
}

/** The fake Runtime adapter as a js-libp2p style factory. */
export function createFakeRuntime(init: FakeRuntimeInit): (components: FakeRuntimeComponents) => FakeRuntime {
  return (components) => new FakeRuntimeImpl(init, components)
}
