/**
 * The composition root: builds one Lattice node from its config and the four
 * ports, starts it and stops it. Real adapters are chosen here when the
 * caller does not hand in others (tests pass the fake runtime, a memory store,
 * a virtual clock).
 */
import { randomBytes } from 'node:crypto'
import { statfs } from 'node:fs/promises'
import { cpus, hostname, totalmem } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { pino } from 'pino'
import { createRng, type Clock, type Logger, type Rng, type Runtime, type Store } from '../core/index.ts'
import { createClusterState, createLevelStore, type ClusterState } from '../crdt/index.ts'
import { loadOrCreateIdentity } from '../mesh/index.ts'
import { createDockerRuntime } from '../runtime/index.ts'
import { createApiServer } from './api/server.ts'
import type { NodeView } from './api/context.ts'
import type { NodeConfig } from './config.ts'
import { ensureDataDir, loadOrCreateApiToken, writeApiCredentials } from './data-dir.ts'
import { createEventBus, type EventBus } from './events.ts'
import { createIdGenerator } from './ids.ts'
import { createLocalPlacement } from './local-placement.ts'
import { createNodeMetrics, type NodeMetrics } from './metrics.ts'
import { createReconciler, type Reconciler } from './reconciler.ts'
import { createSystemClock } from './system-clock.ts'
import { LATTICE_VERSION } from './version.ts'

export interface LatticeNodeOptions {
  dataDir: string
  config: NodeConfig
  /** Overrides for tests and the simulator; real adapters otherwise. */
  runtime?: (nodeId: string, logger: Logger) => Runtime
  store?: Store
  clock?: Clock
  rng?: Rng
  logger?: Logger
}

export interface LatticeNode {
  readonly peerId: string
  readonly name: string
  readonly dataDir: string
  readonly token: string
  /** http://host:port once started. */
  apiUrl(): string
  readonly api: FastifyInstance
  readonly state: ClusterState
  readonly reconciler: Reconciler
  readonly runtime: Runtime
  readonly events: EventBus
  readonly metrics: NodeMetrics
  start(): Promise<void>
  stop(): Promise<void>
}

export function createRootLogger(level: NodeConfig['logLevel']): Logger {
  return pino({ level, base: { app: 'lattice' } }, pino.destination(2)) as unknown as Logger
}

async function measureCapacity(config: NodeConfig, dataDir: string): Promise<{ cpu: number; memoryMB: number; diskMB: number; gpus: number }> {
  let diskMB = 0
  try {
    const fs = await statfs(dataDir)
    diskMB = Math.floor((fs.bavail * fs.bsize) / (1024 * 1024))
  } catch {
    diskMB = 0
  }
  return {
    cpu: config.capacity.cpu ?? cpus().length,
    memoryMB: config.capacity.memoryMB ?? Math.floor(totalmem() / (1024 * 1024)),
    diskMB: config.capacity.diskMB ?? diskMB,
    gpus: config.capacity.gpus ?? 0,
  }
}

export async function createLatticeNode(options: LatticeNodeOptions): Promise<LatticeNode> {
  const { dataDir, config } = options
  await ensureDataDir(dataDir)
  const identity = await loadOrCreateIdentity(dataDir)
  const peerId = identity.peerId
  const name = config.name ?? hostname()
  const logger = (options.logger ?? createRootLogger(config.logLevel)).child({ node: name, peerId: peerId.slice(-8) })
  const clock = options.clock ?? createSystemClock()
  const rng = options.rng ?? createRng(randomBytes(4).readUInt32LE(0))
  const store = options.store ?? createLevelStore({ path: join(dataDir, 'state') })
  const runtime = options.runtime !== undefined
    ? options.runtime(peerId, logger)
    : createDockerRuntime({ nodeId: peerId, publishHostIp: config.publishHostIp, ...(config.dockerSocketPath !== undefined ? { socketPath: config.dockerSocketPath } : {}) })({ logger: logger.child({ module: 'runtime' }) })
  const metrics = createNodeMetrics({ processMetrics: true })
  const events = createEventBus({ bufferMax: config.eventBufferMax }, { clock })
  const state = createClusterState({ selfId: peerId, compactAfterChunks: config.docCompactAfterChunks })({ store, clock, logger: logger.child({ module: 'crdt' }) })
  const placement = createLocalPlacement({ state, clock, events })
  const reconciler = createReconciler({
    intervalMs: config.reconcileIntervalMs,
    restartBackoffMinMs: config.restartBackoffMinMs,
    restartBackoffMaxMs: config.restartBackoffMaxMs,
    restartBackoffResetMs: config.restartBackoffResetMs,
    containerStopTimeoutMs: config.containerStopTimeoutMs,
    containerPidsMax: config.containerPidsMax,
  })({
    state,
    runtime,
    clock,
    logger: logger.child({ module: 'reconciler' }),
    events,
    metrics,
    beforePass: async () => {
      await placement.placeMissing()
    },
  })
  const token = await loadOrCreateApiToken(dataDir)
  const startedAtMs = clock.nowMs()
  let capacity = { cpu: 0, memoryMB: 0, diskMB: 0, gpus: 0 }

  const nodesView = (): NodeView[] => {
    const nowMs = clock.nowMs()
    return state.nodes().map((entry) => ({
      peerId: entry.peerId,
      name: entry.name,
      state: 'alive' as const,
      self: entry.peerId === peerId,
      capacity: entry.capacity,
      free: entry.capacity,
      labels: entry.labels,
      addresses: entry.addresses,
      version: entry.version,
      lastSeenMs: entry.peerId === peerId ? 0 : nowMs - entry.updatedAtMs,
    }))
  }

  const api = await createApiServer(
    { token, bodyBytesMax: config.apiBodyBytesMax, sseKeepAliveMs: config.sseKeepAliveMs, logTailDefault: config.logTailDefault, logTailMax: config.logTailMax },
    { state, runtime, reconciler, events, metrics, clock, logger: logger.child({ module: 'api' }), nodeInfo: { peerId, name, version: LATTICE_VERSION, startedAtMs }, newDeploymentId: createIdGenerator({ rng }), nodesView },
  )
  metrics.gaugeFrom('lattice_document_bytes', 'Size of the saved cluster-state document', () => state.stats().sizeBytes)
  metrics.gaugeFrom('lattice_document_changes', 'Changes in the cluster-state document history', () => state.stats().changeCount)
  metrics.gaugeFrom('lattice_document_heads', 'Heads of the cluster-state document', () => state.stats().headsCount)
  metrics.gaugeFrom('lattice_document_invalid_entries', 'Document entries skipped because they failed validation', () => state.stats().invalidEntries)

  let apiUrl = ''
  let unsubscribe: (() => void) | undefined

  return {
    peerId,
    name,
    dataDir,
    token,
    api,
    state,
    reconciler,
    runtime,
    events,
    metrics,
    apiUrl: () => apiUrl,
    async start() {
      await state.start()
      capacity = await measureCapacity(config, dataDir)
      await state.upsertSelfNode({ name, addresses: [], labels: config.labels, capacity, version: LATTICE_VERSION, joinedAtMs: startedAtMs, updatedAtMs: clock.nowMs() })
      unsubscribe = state.onChange(() => reconciler.trigger())
      await reconciler.start()
      const address = await api.listen({ host: config.apiHost, port: config.apiPort })
      apiUrl = address.replace('[::1]', '127.0.0.1')
      await writeApiCredentials(dataDir, { url: apiUrl, token })
      logger.info({ api: apiUrl, dataDir, runtime: reconciler.runtimeHealth() }, 'node started')
    },
    async stop() {
      unsubscribe?.()
      await api.close()
      await reconciler.stop()
      await state.stop()
      logger.info({}, 'node stopped')
    },
  }
}
