/**
 * The Runtime port: running workloads as containers. Real adapter: Docker
 * through dockerode (runtime/docker-runtime.ts); test and simulator adapter:
 * an in-memory fake with configurable start delay and crashes
 * (runtime/fake-runtime.ts). Both pass the runtime acceptance suite
 * (test/suites/runtime-suite.ts).
 *
 * A runtime instance belongs to one node: every container it creates carries
 * the label `lattice.node=<nodeId>`, and `list()` returns only containers with
 * that label — the node's container namespace. Several nodes can share one
 * engine without seeing each other's containers.
 */

/** Labels every Lattice container carries. */
export const LABEL = {
  node: 'lattice.node',
  deployment: 'lattice.deployment',
  replica: 'lattice.replica',
  generation: 'lattice.generation',
  epoch: 'lattice.epoch',
} as const

export interface PortRequest {
  container: number
  protocol: 'tcp' | 'udp'
}

export interface ContainerSpec {
  deploymentId: string
  replica: number
  /** Placement generation this container was started for (fencing). */
  generation: number
  /** Run epoch of the deployment: start/restart bump it, so older containers are replaced. */
  epoch: number
  /** Human-readable container name suffix; the adapter makes it unique. */
  name: string
  image: string
  command?: string[]
  env?: Record<string, string>
  ports?: PortRequest[]
  resources: {
    cpu: number
    memoryMB: number
    pidsMax: number
  }
  /** Linux capabilities added back after dropping ALL (e.g. "NET_BIND_SERVICE"). */
  capAdd?: string[]
}

export type ContainerState = 'created' | 'running' | 'paused' | 'restarting' | 'exited' | 'dead' | 'removing'

/** What the runtime enforces on a container, read back from the engine. */
export interface ContainerLimits {
  memoryBytes: number
  memorySwapBytes: number
  nanoCpus: number
  pidsLimit: number
  capDrop: string[]
  capAdd: string[]
  securityOpt: string[]
  privileged: boolean
  init: boolean
}

export interface ContainerInfo {
  id: string
  name: string
  image: string
  deploymentId: string
  replica: number
  generation: number
  epoch: number
  state: ContainerState
  /** Exit code once exited; undefined while running. */
  exitCode?: number
  /** Published ports: container port (as string) → host port. */
  hostPorts: Record<string, number>
  startedAtMs?: number
  finishedAtMs?: number
  /** OOM kill, engine error and the like. */
  error?: string
}

export interface ContainerDetails extends ContainerInfo {
  limits: ContainerLimits
  env: Record<string, string>
  labels: Record<string, string>
}

export interface LogLine {
  stream: 'stdout' | 'stderr'
  line: string
}

export interface LogOptions {
  follow: boolean
  /** Lines from the end to start with; undefined means all. */
  tail?: number
  signal?: AbortSignal
}

export interface ContainerStats {
  cpuPercent: number
  memoryBytes: number
  memoryLimitBytes: number
  pids: number
}

export type RuntimeHealth =
  | { available: true; engine: string; version: string }
  | { available: false; reason: string; hint: string }

export interface Runtime {
  /** Short adapter name, e.g. "docker" or "fake". */
  readonly kind: string
  /** Checks that the engine answers; never throws. */
  health(): Promise<RuntimeHealth>
  /**
   * Creates and starts a container. On any failure nothing is left behind and
   * a RuntimeError is thrown (code IMAGE_NOT_FOUND when the image is absent
   * and cannot be pulled).
   */
  run(spec: ContainerSpec): Promise<ContainerInfo>
  /** Stops a running container (SIGTERM, then SIGKILL after timeoutMs). Stopped or absent: no-op. */
  stop(id: string, timeoutMs: number): Promise<void>
  /** Removes a container, stopping it first if needed. Absent: no-op. */
  remove(id: string): Promise<void>
  /** This node's containers (label lattice.node), running or not. */
  list(): Promise<ContainerInfo[]>
  /** One container with its limits, or undefined if absent. */
  inspect(id: string): Promise<ContainerDetails | undefined>
  /** Log lines, stdout and stderr demultiplexed; ends when the container stops (follow) or the tail is read. */
  logs(id: string, options: LogOptions): AsyncIterable<LogLine>
  /** One sample of resource usage. */
  stats(id: string): Promise<ContainerStats>
}

export type RuntimeErrorCode =
  | 'RUNTIME_UNAVAILABLE'
  | 'IMAGE_NOT_FOUND'
  | 'CONTAINER_NOT_FOUND'
  | 'START_FAILED'
  | 'RUNTIME_ERROR'

export class RuntimeError extends Error {
  override readonly name = 'RuntimeError'
  constructor(readonly code: RuntimeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
  }
}
