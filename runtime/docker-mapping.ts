/**
 * Pure translations between the Runtime port's types and the Docker Engine
 * API's (v1.41): the create request that carries our safe defaults, and the
 * inspect/stats answers read back into ContainerInfo, ContainerDetails and
 * ContainerStats. Kept free of I/O so every rule here is easy to read.
 */
import type Docker from 'dockerode'
import type {
  ContainerDetails,
  ContainerInfo,
  ContainerLimits,
  ContainerSpec,
  ContainerState,
  ContainerStats,
} from '../core/index.ts'
import { hostPortKey, identityFromLabels, labelsFor } from './container-identity.ts'

const BYTES_PER_MB = 1024 * 1024
const NANO_CPUS_PER_CPU = 1e9
/** Docker's zero time: a container that never started or never finished. */
const DOCKER_ZERO_TIME = '0001-01-01T00:00:00Z'
/** The PATH Docker execs with when neither the image nor the spec sets one. */
const DOCKER_DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
const PATH_DIRS_CHECKED_MAX = 16

export interface CreateContext {
  nodeId: string
  name: string
  publishHostIp: string
}

export function createOptions(spec: ContainerSpec, context: CreateContext): Docker.ContainerCreateOptions {
  const exposedPorts: Record<string, object> = {}
  const portBindings: Docker.PortMap = {}
  for (const port of spec.ports ?? []) {
    const key = `${port.container}/${port.protocol}`
    exposedPorts[key] = {}
    // HostPort '' lets Docker choose a free port; run() reads it back after start.
    portBindings[key] = [{ HostIp: context.publishHostIp, HostPort: '' }]
  }
  const memoryBytes = spec.resources.memoryMB * BYTES_PER_MB
  return {
    name: context.name,
    Image: spec.image,
    Cmd: spec.command !== undefined && spec.command.length > 0 ? spec.command : undefined,
    Env: Object.entries(spec.env ?? {}).map(([key, value]) => `${key}=${value}`),
    Labels: labelsFor(context.nodeId, spec),
    // Without a TTY, logs arrive multiplexed and stdout and stderr stay apart.
    Tty: false,
    AttachStdin: false,
    OpenStdin: false,
    ExposedPorts: exposedPorts,
    HostConfig: {
      PortBindings: portBindings,
      // Equal to Memory: otherwise Docker grants as much swap again.
      Memory: memoryBytes,
      MemorySwap: memoryBytes,
      NanoCpus: Math.round(spec.resources.cpu * NANO_CPUS_PER_CPU),
      PidsLimit: spec.resources.pidsMax,
      // An init as PID 1 forwards SIGTERM, so stop takes ~100 ms instead of the full timeout.
      Init: true,
      SecurityOpt: ['no-new-privileges:true'],
      CapDrop: ['ALL'],
      CapAdd: spec.capAdd ?? [],
      Privileged: false,
      // The reconciler restarts per the deployment's policy; Docker restarting too would race it.
      RestartPolicy: { Name: 'no' },
    },
  }
}

/**
 * Where the engine will look for the executable, when we can tell before
 * start: the image has no entrypoint and the spec sets a command. An init
 * (tini) as PID 1 starts fine and only then fails to exec, so without this
 * check a typo'd command would look like a crash instead of a failed start.
 */
export function executableCandidates(spec: ContainerSpec, image: Docker.ImageInspectInfo): string[] {
  const executable = spec.command?.[0]
  if (executable === undefined || executable.length === 0) return []
  const entrypoint = image.Config?.Entrypoint
  if (entrypoint !== undefined && entrypoint !== null && entrypoint.length > 0) return []
  if (executable.includes('/')) return executable.startsWith('/') ? [executable] : []
  const path = spec.env?.PATH ?? envToRecord(image.Config?.Env ?? []).PATH ?? DOCKER_DEFAULT_PATH
  return path
    .split(':')
    .filter((dir) => dir.startsWith('/'))
    .slice(0, PATH_DIRS_CHECKED_MAX)
    .map((dir) => `${dir.replace(/\/+$/, '')}/${executable}`)
}

const STATES: readonly ContainerState[] = ['created', 'running', 'paused', 'restarting', 'exited', 'dead', 'removing']

function toState(status: string): ContainerState {
  return (STATES as readonly string[]).includes(status) ? (status as ContainerState) : 'dead'
}

function timeMs(text: string | undefined): number | undefined {
  if (text === undefined || text === '' || text === DOCKER_ZERO_TIME) return undefined
  const ms = Date.parse(text)
  return Number.isFinite(ms) && ms > 0 ? ms : undefined
}

export function envToRecord(env: readonly string[]): Record<string, string> {
  const record: Record<string, string> = {}
  for (const entry of env) {
    const eq = entry.indexOf('=')
    if (eq > 0) record[entry.slice(0, eq)] = entry.slice(eq + 1)
  }
  return record
}

function hostPortsOf(raw: Docker.ContainerInspectInfo): Record<string, number> {
  const hostPorts: Record<string, number> = {}
  for (const [key, bindings] of Object.entries(raw.NetworkSettings?.Ports ?? {})) {
    // Docker lists one binding per address family; they share the port.
    const hostPort = Number.parseInt(bindings?.[0]?.HostPort ?? '', 10)
    const [port, protocol] = key.split('/')
    if (!Number.isInteger(hostPort) || hostPort <= 0 || port === undefined) continue
    hostPorts[hostPortKey({ container: Number(port), protocol: protocol === 'udp' ? 'udp' : 'tcp' })] = hostPort
  }
  return hostPorts
}

export function toContainerInfo(raw: Docker.ContainerInspectInfo): ContainerInfo {
  const identity = identityFromLabels(raw.Config?.Labels)
  const state = toState(raw.State.Status)
  const ended = state === 'exited' || state === 'dead'
  const errors = [raw.State.OOMKilled ? 'killed: out of memory' : '', raw.State.Error ?? ''].filter((e) => e !== '')
  const info: ContainerInfo = {
    id: raw.Id,
    name: raw.Name.replace(/^\//, ''),
    image: raw.Config?.Image ?? raw.Image,
    deploymentId: identity.deploymentId,
    replica: identity.replica,
    generation: identity.generation,
    epoch: identity.epoch,
    state,
    hostPorts: hostPortsOf(raw),
  }
  if (ended) info.exitCode = raw.State.ExitCode
  const startedAtMs = timeMs(raw.State.StartedAt)
  if (startedAtMs !== undefined) info.startedAtMs = startedAtMs
  const finishedAtMs = ended ? timeMs(raw.State.FinishedAt) : undefined
  if (finishedAtMs !== undefined) info.finishedAtMs = finishedAtMs
  if (errors.length > 0) info.error = errors.join('; ')
  return info
}

/** Docker reports a capability as given, or (newer engines) with a CAP_ prefix; we report it without. */
function capabilities(value: unknown): string[] {
  if (!Array.isArray(value)) return []
  return value.filter((v): v is string => typeof v === 'string').map((cap) => cap.replace(/^CAP_/, ''))
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : []
}

function limitsOf(hostConfig: Docker.HostConfig): ContainerLimits {
  return {
    memoryBytes: hostConfig.Memory ?? 0,
    memorySwapBytes: hostConfig.MemorySwap ?? 0,
    nanoCpus: hostConfig.NanoCpus ?? 0,
    pidsLimit: hostConfig.PidsLimit ?? 0,
    capDrop: capabilities(hostConfig.CapDrop),
    capAdd: capabilities(hostConfig.CapAdd),
    securityOpt: strings(hostConfig.SecurityOpt),
    privileged: hostConfig.Privileged ?? false,
    init: hostConfig.Init ?? false,
  }
}

export function toContainerDetails(raw: Docker.ContainerInspectInfo): ContainerDetails {
  return {
    ...toContainerInfo(raw),
    limits: limitsOf(raw.HostConfig),
    env: envToRecord(raw.Config?.Env ?? []),
    labels: { ...(raw.Config?.Labels ?? {}) },
  }
}

/**
 * One stats sample as `docker stats` shows it: CPU as a share of one CPU
 * (100 % = one full core) over the engine's ~1 s sampling window, and memory
 * without the reclaimable page cache (inactive_file), as the Docker CLI does.
 */
export function toContainerStats(raw: Docker.ContainerStats): ContainerStats {
  const cpu = raw.cpu_stats
  const precpu = raw.precpu_stats
  const cpuDelta = (cpu?.cpu_usage?.total_usage ?? 0) - (precpu?.cpu_usage?.total_usage ?? 0)
  const systemDelta = (cpu?.system_cpu_usage ?? 0) - (precpu?.system_cpu_usage ?? 0)
  const onlineCpus = cpu?.online_cpus || cpu?.cpu_usage?.percpu_usage?.length || 1
  const cpuPercent = cpuDelta > 0 && systemDelta > 0 ? (cpuDelta / systemDelta) * onlineCpus * 100 : 0

  const memory = raw.memory_stats
  const usage = memory?.usage ?? 0
  const detail: Partial<Record<string, number>> = memory?.stats ?? {}
  // cgroup v1 reports total_inactive_file, cgroup v2 inactive_file.
  const inactiveFile = detail.total_inactive_file ?? detail.inactive_file ?? 0
  const memoryBytes = inactiveFile < usage ? usage - inactiveFile : usage

  return {
    cpuPercent,
    memoryBytes,
    memoryLimitBytes: memory?.limit ?? 0,
    pids: raw.pids_stats?.current ?? 0,
  }
}
