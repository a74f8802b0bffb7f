/**
 * The fake runtime's "dockerd": the containers and host ports of one machine.
 * Containers outlive the FakeRuntime instances that made them, so two
 * instances over the same engine see the same containers — the way a node
 * restart adopts what the previous process started. Holds state only; the
 * behaviour (time, chance, programs) lives in fake-runtime.ts.
 */
import { LABEL, type ContainerSpec, type ContainerState, type LogLine, type TimerHandle } from '../core/index.ts'
import type { HttpServer } from './fake-programs.ts'

export interface FakeEngineInit {
  /** Log lines kept per container; older ones are dropped (counted in `logLinesDropped`). Default 10_000. */
  logLinesMax?: number
}

export interface FakeContainer {
  readonly id: string
  readonly name: string
  readonly spec: ContainerSpec
  readonly labels: Record<string, string>
  readonly env: Record<string, string>
  state: ContainerState
  exitCode?: number
  error?: string
  hostPorts: Record<string, number>
  startedAtMs?: number
  finishedAtMs?: number
  /** Set while the container's httpd serves. */
  server?: HttpServer
  /** The program's next timed step, cancelled when the container stops. */
  pendingStep?: TimerHandle
  /** Log lines; `logLinesDropped` is the absolute index of logs[0]. */
  readonly logs: LogLine[]
  logLinesDropped: number
  removed: boolean
  /** Called on every new log line and state change (log followers wait on it). */
  readonly watchers: Set<() => void>
}

export interface FakeEngine {
  /** Containers in creation order. */
  readonly containers: Map<string, FakeContainer>
  /**
   * The same containers by their `lattice.node` label, each in creation
   * order: a runtime lists its own without a scan of the whole engine (the
   * simulator shares one engine among hundreds of nodes, each listing every
   * reconcile pass). Kept by addContainer and deleteContainer.
   */
  readonly byNode: Map<string, Map<string, FakeContainer>>
  readonly logLinesMax: number
  /** Host ports held by running containers. */
  readonly hostPortsInUse: Set<number>
  /** Where the next host port search starts (Docker hands them out in sequence too). */
  nextHostPort: number | undefined
  /** Creation counter, part of every id so instances sharing an engine never collide. */
  containersCreated: number
}

const LOG_LINES_MAX_DEFAULT = 10_000
const HOST_PORT_MAX = 65_535

export function createFakeEngine(init: FakeEngineInit = {}): FakeEngine {
  return {
    containers: new Map(),
    byNode: new Map(),
    logLinesMax: init.logLinesMax ?? LOG_LINES_MAX_DEFAULT,
    hostPortsInUse: new Set(),
    nextHostPort: undefined,
    containersCreated: 0,
  }
}

export function notify(container: FakeContainer): void {
  for (const watcher of [...container.watchers]) watcher()
}

export function appendLog(engine: FakeEngine, container: FakeContainer, line: LogLine): void {
  container.logs.push(line)
  if (container.logs.length > engine.logLinesMax) {
    container.logs.shift()
    container.logLinesDropped++
  }
  notify(container)
}

/** The first free host port at or after the engine's cursor (never below `startPort`); undefined when all are taken. */
export function allocateHostPort(engine: FakeEngine, startPort: number): number | undefined {
  const span = HOST_PORT_MAX - startPort + 1
  let candidate = Math.max(startPort, engine.nextHostPort ?? startPort)
  for (let tried = 0; tried < span; tried++) {
    if (candidate > HOST_PORT_MAX) candidate = startPort
    if (!engine.hostPortsInUse.has(candidate)) {
      engine.hostPortsInUse.add(candidate)
      engine.nextHostPort = candidate + 1
      return candidate
    }
    candidate++
  }
  return undefined
}

/** Ends the container's process: ports are released (Docker unpublishes them on exit). */
export function exitContainer(engine: FakeEngine, container: FakeContainer, exitCode: number, nowMs: number, error?: string): void {
  container.pendingStep?.cancel()
  container.pendingStep = undefined
  for (const hostPort of Object.values(container.hostPorts)) engine.hostPortsInUse.delete(hostPort)
  container.hostPorts = {}
  container.server = undefined
  container.state = 'exited'
  container.exitCode = exitCode
  container.finishedAtMs = nowMs
  if (error !== undefined) container.error = error
  notify(container)
}

/** Registers a new container (engine-wide and under its node label). */
export function addContainer(engine: FakeEngine, container: FakeContainer): void {
  engine.containers.set(container.id, container)
  const node = container.labels[LABEL.node] ?? ''
  let own = engine.byNode.get(node)
  if (own === undefined) {
    own = new Map()
    engine.byNode.set(node, own)
  }
  own.set(container.id, container)
}

export function deleteContainer(engine: FakeEngine, container: FakeContainer): void {
  for (const hostPort of Object.values(container.hostPorts)) engine.hostPortsInUse.delete(hostPort)
  container.hostPorts = {}
  container.removed = true
  engine.containers.delete(container.id)
  const node = container.labels[LABEL.node] ?? ''
  const own = engine.byNode.get(node)
  own?.delete(container.id)
  if (own?.size === 0) engine.byNode.delete(node)
  notify(container)
}
