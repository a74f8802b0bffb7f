/**
 * The real Runtime adapter: Docker through dockerode (Engine API 1.41+).
 *
 * Every container it creates carries the node's label and safe defaults
 * (memory = swap limit, CPU and pids limits, all capabilities dropped but
 * the spec's, no-new-privileges, an init as PID 1, no Docker restart policy).
 * Only containers labelled with this node's id exist for it: list, inspect,
 * stop, remove, logs and stats treat any other container as absent, so a
 * node never touches its neighbours' workloads (or the user's own) on a
 * shared engine. Every engine call has a deadline; an unreachable engine
 * surfaces as RUNTIME_UNAVAILABLE with a hint that says how to fix it.
 */
import { randomBytes } from 'node:crypto'
import Docker from 'dockerode'
import {
  LABEL,
  RuntimeError,
  type ContainerDetails,
  type ContainerInfo,
  type ContainerSpec,
  type ContainerStats,
  type LogLine,
  type LogOptions,
  type Logger,
  type Runtime,
  type RuntimeErrorCode,
  type RuntimeHealth,
} from '../core/index.ts'
import { containerName } from './container-identity.ts'
import { DeadlineExceeded, diagnose, engineMessage, statusCodeOf, withDeadline } from './docker-errors.ts'
import { demuxLogLines } from './docker-logs.ts'
import {
  createOptions,
  executableCandidates,
  toContainerDetails,
  toContainerInfo,
  toContainerStats,
} from './docker-mapping.ts'

export interface DockerRuntimeInit {
  /** This node's id, written as label `lattice.node`: the node's container namespace. Required. */
  nodeId: string
  /**
   * The engine's unix socket. Default: the path of DOCKER_HOST when it is
   * `unix://…`; when DOCKER_HOST names a tcp/ssh engine, that engine (as the
   * docker CLI would); otherwise /var/run/docker.sock.
   */
  socketPath?: string
  /**
   * Host address published ports bind to. Default '0.0.0.0', so peers can
   * reach workloads; '127.0.0.1' keeps them private to this machine.
   */
  publishHostIp?: string
  /** First part of every container name: `<prefix>-<name>-<replica>-<suffix>`. Default 'lattice'. */
  containerNamePrefix?: string
  /**
   * How long pulling an absent image may take before run() fails with
   * IMAGE_NOT_FOUND. Default 300_000 (5 min): large images on slow links take
   * minutes; lower fails sooner when offline.
   */
  pullTimeoutMs?: number
  /**
   * Deadline for each ordinary engine call (create, start, inspect, list,
   * stats…). Default 15_000. Lower notices a hung engine sooner at the cost
   * of failing calls on a heavily loaded one.
   */
  requestTimeoutMs?: number
  /**
   * Grace period remove() gives a running container to exit on SIGTERM
   * before killing it. Default 10_000, Docker's own default.
   */
  removeStopTimeoutMs?: number
  /** Inspects list() runs at once (one per container, for exit codes and ports). Default 8. */
  listInspectConcurrencyMax?: number
}

export interface DockerRuntimeComponents {
  logger: Logger
}

interface DockerRuntimeConfig extends Required<Omit<DockerRuntimeInit, 'socketPath'>> {
  socketPath: string | undefined
}

const DEFAULTS = {
  publishHostIp: '0.0.0.0',
  containerNamePrefix: 'lattice',
  pullTimeoutMs: 300_000,
  requestTimeoutMs: 15_000,
  removeStopTimeoutMs: 10_000,
  listInspectConcurrencyMax: 8,
} as const

const DEFAULT_SOCKET_PATH = '/var/run/docker.sock'
const NAME_SUFFIX_BYTES = 3
/** States in which a container has a process that stop() must end. */
const STOPPABLE_STATES = new Set(['running', 'paused', 'restarting'])

function withDefaults(init: DockerRuntimeInit): DockerRuntimeConfig {
  if (init.nodeId.length === 0) throw new RangeError('DockerRuntimeInit.nodeId must not be empty')
  return {
    nodeId: init.nodeId,
    socketPath: init.socketPath,
    publishHostIp: init.publishHostIp ?? DEFAULTS.publishHostIp,
    containerNamePrefix: init.containerNamePrefix ?? DEFAULTS.containerNamePrefix,
    pullTimeoutMs: init.pullTimeoutMs ?? DEFAULTS.pullTimeoutMs,
    requestTimeoutMs: init.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs,
    removeStopTimeoutMs: init.removeStopTimeoutMs ?? DEFAULTS.removeStopTimeoutMs,
    listInspectConcurrencyMax: init.listInspectConcurrencyMax ?? DEFAULTS.listInspectConcurrencyMax,
  }
}

/** Where the engine is, as dockerode options plus a description for messages. */
function resolveEndpoint(socketPath: string | undefined): { options: Docker.DockerOptions; description: string } {
  if (socketPath !== undefined) return { options: { socketPath }, description: socketPath }
  const dockerHost = process.env.DOCKER_HOST ?? ''
  if (dockerHost.startsWith('unix://') && dockerHost.length > 'unix://'.length) {
    const path = dockerHost.slice('unix://'.length)
    return { options: { socketPath: path }, description: path }
  }
  // dockerode reads DOCKER_HOST (and its TLS variables) itself.
  if (dockerHost !== '') return { options: {}, description: dockerHost }
  return { options: { socketPath: DEFAULT_SOCKET_PATH }, description: DEFAULT_SOCKET_PATH }
}

function hasCode(err: unknown, code: RuntimeErrorCode): boolean {
  return err instanceof RuntimeError && err.code === code
}

/** The HTTP status behind a mapped error, e.g. 304 "already stopped". */
function engineStatus(err: unknown): number | undefined {
  return statusCodeOf(err) ?? (err instanceof Error ? statusCodeOf(err.cause) : undefined)
}

/** A function, not an inline check, because TypeScript keeps an earlier narrowing of `signal.aborted` across awaits. */
function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true
}

async function mapConcurrent<T, R>(items: readonly T[], concurrencyMax: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++
      results[index] = await fn(items[index] as T)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrencyMax, items.length) }, worker))
  return results
}

class DockerRuntime implements Runtime {
  readonly kind = 'docker'
  private readonly docker: Docker
  private readonly endpoint: string
  private readonly log: Logger

  constructor(private readonly config: DockerRuntimeConfig, components: DockerRuntimeComponents) {
    const endpoint = resolveEndpoint(config.socketPath)
    this.docker = new Docker(endpoint.options)
    this.endpoint = endpoint.description
    this.log = components.logger.child({ component: 'docker-runtime', nodeId: config.nodeId })
  }

  async health(): Promise<RuntimeHealth> {
    try {
      // dockerode's version() takes no signal; withDeadline's race still bounds it.
      const version = await this.call('read engine version', () => this.docker.version())
      return { available: true, engine: 'docker', version: `${version.Version} (API ${version.ApiVersion})` }
    } catch (err) {
      const { reason, hint } = diagnose(err, this.endpoint)
      return { available: false, reason, hint }
    }
  }

  async run(spec: ContainerSpec): Promise<ContainerInfo> {
    const image = await this.ensureImage(spec.image)
    const name = containerName(this.config.containerNamePrefix, spec, randomBytes(NAME_SUFFIX_BYTES).toString('hex'))
    const options = createOptions(spec, { nodeId: this.config.nodeId, name, publishHostIp: this.config.publishHostIp })

    let container: Docker.Container
    try {
      container = await this.call(
        `create container ${name}`,
        (signal) => this.docker.createContainer({ ...options, abortSignal: signal }),
        this.config.requestTimeoutMs,
        'IMAGE_NOT_FOUND',
      )
    } catch (err) {
      // A create that timed out on our side may still have happened on the engine's.
      await this.removeQuietly(name)
      throw this.startFailure(err, name)
    }

    try {
      await this.checkExecutable(container, spec, image)
      await this.call(`start container ${name}`, (signal) => container.start({ abortSignal: signal }))
      // Docker picks the host ports at start; only a fresh inspect knows them.
      const raw = await this.call(`inspect container ${name}`, (signal) => container.inspect({ abortSignal: signal }))
      const info = toContainerInfo(raw)
      this.log.info({ id: info.id, name, image: spec.image, hostPorts: info.hostPorts }, 'container started')
      return info
    } catch (err) {
      await this.removeQuietly(container.id)
      throw this.startFailure(err, name)
    }
  }

  async stop(id: string, timeoutMs: number): Promise<void> {
    const raw = await this.inspectOwned(id)
    if (raw === undefined || !STOPPABLE_STATES.has(raw.State.Status)) return
    // The engine takes whole seconds; round up so the process gets at least what was asked.
    const seconds = Math.max(0, Math.ceil(timeoutMs / 1000))
    try {
      await this.call(
        `stop container ${id}`,
        (signal) => this.docker.getContainer(id).stop({ t: seconds, abortSignal: signal }),
        seconds * 1000 + this.config.requestTimeoutMs,
      )
    } catch (err) {
      // 304: it stopped on its own meanwhile; 404: it was removed meanwhile.
      if (engineStatus(err) === 304 || hasCode(err, 'CONTAINER_NOT_FOUND')) return
      throw err
    }
  }

  async remove(id: string): Promise<void> {
    const raw = await this.inspectOwned(id)
    if (raw === undefined) return
    if (STOPPABLE_STATES.has(raw.State.Status)) await this.stop(id, this.config.removeStopTimeoutMs)
    try {
      await this.call(`remove container ${id}`, (signal) => {
        // dockerode honours abortSignal here although its types omit it.
        const options = { force: true, v: true, abortSignal: signal }
        return this.docker.getContainer(id).remove(options)
      })
    } catch (err) {
      // 404: already gone; 409: another removal is under way.
      if (hasCode(err, 'CONTAINER_NOT_FOUND') || engineStatus(err) === 409) return
      throw err
    }
  }

  async list(): Promise<ContainerInfo[]> {
    const entries = await this.call('list containers', (signal) =>
      this.docker.listContainers({ all: true, filters: { label: [`${LABEL.node}=${this.config.nodeId}`] }, abortSignal: signal }),
    )
    // The list answer lacks exit codes and start times; inspect each (a container removed meanwhile drops out).
    const raws = await mapConcurrent(entries, this.config.listInspectConcurrencyMax, (entry) => this.inspectOwned(entry.Id))
    return raws.filter((raw): raw is Docker.ContainerInspectInfo => raw !== undefined).map(toContainerInfo)
  }

  async inspect(id: string): Promise<ContainerDetails | undefined> {
    const raw = await this.inspectOwned(id)
    return raw === undefined ? undefined : toContainerDetails(raw)
  }

  async *logs(id: string, options: LogOptions): AsyncGenerator<LogLine> {
    await this.requireOwned(id)
    const { signal } = options
    if (signal?.aborted === true) return
    const container = this.docker.getContainer(id)
    const query = { stdout: true, stderr: true, ...(options.tail === undefined ? {} : { tail: options.tail }) }

    if (!options.follow) {
      const buffer = await this.call(`read logs of ${id}`, (deadline) =>
        container.logs({ ...query, follow: false, abortSignal: deadline }),
      )
      // An empty log arrives as an empty Buffer; anything else non-Buffer would be a dockerode change.
      if (!Buffer.isBuffer(buffer)) throw new RuntimeError('RUNTIME_ERROR', `read logs of ${id}: unexpected answer from dockerode`)
      yield* demuxLogLines([buffer])
      return
    }

    // One controller ends the stream on the caller's signal, or on the connect deadline.
    const abort = new AbortController()
    const onAbort = (): void => abort.abort(signal?.reason)
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      const stream = await this.call(`follow logs of ${id}`, (deadline) => {
        deadline.addEventListener('abort', () => abort.abort(deadline.reason), { once: true })
        return container.logs({ ...query, follow: true, abortSignal: abort.signal })
      })
      // The engine ends the stream when the container stops.
      yield* demuxLogLines(stream)
    } catch (err) {
      // The caller's abort ends the iteration quietly; anything else is a failure.
      if (isAborted(signal)) return
      throw err instanceof RuntimeError ? err : new RuntimeError('RUNTIME_ERROR', `follow logs of ${id}: ${engineMessage(err)}`, { cause: err })
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
  }

  async stats(id: string): Promise<ContainerStats> {
    await this.requireOwned(id)
    // stream: false makes the engine take two samples ~1 s apart, so the CPU share is meaningful.
    const raw = await this.call(`read stats of ${id}`, (signal) => {
      // dockerode honours abortSignal here although its types omit it.
      const options = { stream: false as const, abortSignal: signal }
      return this.docker.getContainer(id).stats(options)
    })
    return toContainerStats(raw)
  }

  private call<T>(
    what: string,
    fn: (signal: AbortSignal) => Promise<T>,
    timeoutMs: number = this.config.requestTimeoutMs,
    notFound: RuntimeErrorCode = 'CONTAINER_NOT_FOUND',
  ): Promise<T> {
    return withDeadline(what, timeoutMs, this.endpoint, fn, notFound)
  }

  /** The container if it exists and belongs to this node; otherwise undefined. */
  private async inspectOwned(id: string): Promise<Docker.ContainerInspectInfo | undefined> {
    try {
      const raw = await this.call(`inspect container ${id}`, (signal) => this.docker.getContainer(id).inspect({ abortSignal: signal }))
      return raw.Config?.Labels?.[LABEL.node] === this.config.nodeId ? raw : undefined
    } catch (err) {
      if (hasCode(err, 'CONTAINER_NOT_FOUND')) return undefined
      throw err
    }
  }

  private async requireOwned(id: string): Promise<void> {
    if ((await this.inspectOwned(id)) === undefined) {
      throw new RuntimeError('CONTAINER_NOT_FOUND', `no container ${id} on node ${this.config.nodeId}`)
    }
  }

  /** The image's config, pulling it first when it is not present locally. */
  private async ensureImage(image: string): Promise<Docker.ImageInspectInfo> {
    const inspectImage = (): Promise<Docker.ImageInspectInfo> =>
      this.call(`inspect image ${image}`, () => this.docker.getImage(image).inspect(), this.config.requestTimeoutMs, 'IMAGE_NOT_FOUND')
    try {
      return await inspectImage()
    } catch (err) {
      if (!hasCode(err, 'IMAGE_NOT_FOUND')) throw err
    }
    this.log.info({ image }, 'image absent locally; pulling')
    try {
      await this.pull(image)
    } catch (err) {
      // An engine that went away is not the image's fault; a pull that ran out of time is.
      if (hasCode(err, 'RUNTIME_UNAVAILABLE') && !(err instanceof Error && err.cause instanceof DeadlineExceeded)) throw err
      const why = err instanceof Error && err.cause instanceof DeadlineExceeded
        ? `the pull did not finish within ${this.config.pullTimeoutMs} ms`
        : engineMessage(err instanceof Error && err.cause !== undefined ? err.cause : err)
      throw new RuntimeError('IMAGE_NOT_FOUND', `image ${image} is not present locally and could not be pulled: ${why}`, { cause: err })
    }
    try {
      return await inspectImage()
    } catch (err) {
      throw new RuntimeError('IMAGE_NOT_FOUND', `image ${image} was pulled but the engine cannot find it: ${engineMessage(err)}`, { cause: err })
    }
  }

  private async pull(image: string): Promise<void> {
    await this.call(
      `pull image ${image}`,
      async (signal) => {
        const stream = await this.docker.pull(image, { abortSignal: signal })
        // The engine reports registry errors inside the progress stream, with HTTP 200.
        await new Promise<void>((resolve, reject) => {
          let streamError: string | undefined
          this.docker.modem.followProgress(
            stream,
            (err) => {
              if (err !== null) reject(err)
              else if (streamError !== undefined) reject(new Error(streamError))
              else resolve()
            },
            (event: { error?: unknown }) => {
              if (typeof event.error === 'string') streamError ??= event.error
            },
          )
        })
      },
      this.config.pullTimeoutMs,
      'IMAGE_NOT_FOUND',
    )
  }

  /**
   * Fails the start when the command's executable is provably absent from
   * the image (see executableCandidates). When the engine cannot tell us,
   * start goes ahead and the exit code tells the story.
   */
  private async checkExecutable(container: Docker.Container, spec: ContainerSpec, image: Docker.ImageInspectInfo): Promise<void> {
    const candidates = executableCandidates(spec, image)
    if (candidates.length === 0) return
    for (const path of candidates) {
      try {
        await this.call(`look up ${path} in ${container.id}`, (signal) => container.infoArchive({ path, abortSignal: signal }))
        return
      } catch (err) {
        // The container was created a moment ago, so a 404 here means the path is absent.
        if (hasCode(err, 'CONTAINER_NOT_FOUND')) continue
        if (hasCode(err, 'RUNTIME_UNAVAILABLE')) throw err
        return
      }
    }
    throw new RuntimeError('START_FAILED', `executable ${spec.command?.[0] ?? ''} not found in image ${spec.image}`)
  }

  /** What run() throws: the engine's own verdict when it is coded, START_FAILED otherwise. */
  private startFailure(err: unknown, name: string): RuntimeError {
    const error =
      err instanceof RuntimeError && err.code !== 'RUNTIME_ERROR' && err.code !== 'CONTAINER_NOT_FOUND'
        ? err
        : new RuntimeError('START_FAILED', `container ${name} failed to start: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
    this.log.warn({ name, code: error.code, err: error.message }, 'container failed to start')
    return error
  }

  /** Best-effort cleanup after a failed start; a failure here is logged, the original error wins. */
  private async removeQuietly(idOrName: string): Promise<void> {
    try {
      await this.call(`remove container ${idOrName}`, (signal) => {
        const options = { force: true, v: true, abortSignal: signal }
        return this.docker.getContainer(idOrName).remove(options)
      })
    } catch (err) {
      if (hasCode(err, 'CONTAINER_NOT_FOUND')) return
      this.log.warn({ container: idOrName, err: err instanceof Error ? err.message : String(err) }, 'could not remove a container after a failed start')
    }
  }
}

/** The Docker Runtime adapter as a js-libp2p style factory. */
export function createDockerRuntime(init: DockerRuntimeInit): (components: DockerRuntimeComponents) => Runtime {
  const config = withDefaults(init)
  return (components) => new DockerRuntime(config, components)
}
