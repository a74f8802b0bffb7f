/**
 * The composition root of a real node: key material and config from the data
 * dir, the real adapters (libp2p transport, LevelDB store, Docker runtime,
 * system clock) unless the caller hands in others (tests pass the fake
 * runtime), the node core (node-core.ts) and the HTTP API on top.
 */
import { randomBytes } from 'node:crypto'
import { statfs } from 'node:fs/promises'
import { cpus, hostname, totalmem } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { pino } from 'pino'
import { createRng, type Clock, type Logger, type Rng, type Runtime, type Store, type Transport } from '../core/index.ts'
import { EPOCH_TOPIC, STATE_TOPIC, createLevelStore, type AutomergeEngine, type ClusterState } from '../crdt/index.ts'
import { LIBP2P_TRANSPORT_PRESETS, MEMBERSHIP_TOPIC, createLibp2pTransport, encodeInvite, loadOrCreateIdentity } from '../mesh/index.ts'
import { createDockerRuntime } from '../runtime/index.ts'
import { createApiServer } from './api/server.ts'
import type { NodeConfig } from './config.ts'
import { ensureDataDir, loadOrCreateApiToken, writeApiCredentials } from './data-dir.ts'
import { createEventBus, type EventBus } from './events.ts'
import { createIdGenerator } from './ids.ts'
import { peerIdOf, prepareMesh, rememberPeers } from './join.ts'
import { rememberListenPorts, stickyListenAddresses } from './listen-ports.ts'
import { createNodeMetrics, type NodeMetrics } from './metrics.ts'
import { createNodeCore, type NodeCore } from './node-core.ts'
import type { Reconciler } from './reconciler.ts'
import { createSystemClock } from './system-clock.ts'
import { LATTICE_VERSION } from './version.ts'

export interface LatticeNodeOptions {
  dataDir: string
  config: NodeConfig
  /** An invite (`lattice invite` of a member) to join that mesh. */
  join?: string
  /** Overrides for tests; real adapters otherwise. */
  runtime?: (nodeId: string, logger: Logger) => Runtime
  store?: Store
  clock?: Clock
  rng?: Rng
  logger?: Logger
  /** The Automerge instance for the cluster document (tests that make it fail use one of their own); the default one otherwise. */
  automerge?: AutomergeEngine
}

export interface LatticeNode {
  readonly peerId: string
  readonly name: string
  readonly dataDir: string
  readonly token: string
  /** http://host:port once started. */
  apiUrl(): string
  /** One line a new node joins with: this node's addresses and the mesh key. */
  invite(): string
  readonly api: FastifyInstance
  readonly core: NodeCore
  readonly state: ClusterState
  readonly reconciler: Reconciler
  readonly runtime: Runtime
  readonly transport: Transport
  readonly events: EventBus
  readonly metrics: NodeMetrics
  start(): Promise<void>
  /** Graceful by default: announces `left` to the mesh. */
  stop(options?: { graceful: boolean }): Promise<void>
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
  const mesh = await prepareMesh(dataDir, options.join)
  const peerId = identity.peerId
  const name = config.name ?? hostname()
  const logger = (options.logger ?? createRootLogger(config.logLevel)).child({ node: name, peerId: peerId.slice(-8) })
  const clock = options.clock ?? createSystemClock()
  const rng = options.rng ?? createRng(randomBytes(4).readUInt32LE(0))
  const store = options.store ?? createLevelStore({ path: join(dataDir, 'state') })
  const runtime = options.runtime !== undefined
    ? options.runtime(peerId, logger)
    : createDockerRuntime({ nodeId: peerId, publishHostIp: config.publishHostIp, ...(config.dockerSocketPath !== undefined ? { socketPath: config.dockerSocketPath } : {}) })({ logger: logger.child({ module: 'runtime' }) })
  const transport = createLibp2pTransport({
    ...LIBP2P_TRANSPORT_PRESETS[config.meshTransportPreset],
    listen: config.stickyListenPorts ? await stickyListenAddresses(dataDir, config.listen) : config.listen,
    meshKey: mesh.meshKey,
    topics: [MEMBERSHIP_TOPIC, STATE_TOPIC, EPOCH_TOPIC],
    bootstrap: mesh.bootstrap,
  })({ privateKey: identity.privateKey, logger: logger.child({ module: 'transport' }), clock })
  const metrics = createNodeMetrics({ processMetrics: true })
  const events = createEventBus({ bufferMax: config.eventBufferMax }, { clock })
  const capacity = await measureCapacity(config, dataDir)
  const core = createNodeCore({
    name,
    version: LATTICE_VERSION,
    capacity,
    labels: config.labels,
    reconciler: {
      intervalMs: config.reconcileIntervalMs,
      restartBackoffMinMs: config.restartBackoffMinMs,
      restartBackoffMaxMs: config.restartBackoffMaxMs,
      restartBackoffResetMs: config.restartBackoffResetMs,
      containerStopTimeoutMs: config.containerStopTimeoutMs,
      containerPidsMax: config.containerPidsMax,
      startsConcurrentMax: config.containerStartsConcurrentMax,
      startingReportDelayMs: config.startingReportDelayMs,
    },
    docCompactAfterChunks: config.docCompactAfterChunks,
    membershipPreset: config.membershipPreset,
    stateSyncPreset: config.stateSyncPreset,
    connectionsTarget: config.connectionsTarget,
    seeds: mesh.bootstrap.map(peerIdOf).filter((id): id is string => id !== undefined),
    founder: mesh.founder,
    epochs: { changesMin: config.epochChangesMin, checkIntervalMs: config.epochCheckIntervalMs, cutSettleMs: config.epochCutSettleMs, bootstrapNodes: config.epochBootstrapNodes },
  })({ transport, store, runtime, clock, rng, logger, events, metrics, ...(options.automerge !== undefined ? { automerge: options.automerge } : {}) })
  const { state, reconciler } = core
  const token = await loadOrCreateApiToken(dataDir)
  const startedAtMs = clock.nowMs()
  const invite = (): string => encodeInvite({ addresses: transport.addresses(), meshKey: mesh.meshKey })

  const api = await createApiServer(
    { token, bodyBytesMax: config.apiBodyBytesMax, sseKeepAliveMs: config.sseKeepAliveMs, logTailDefault: config.logTailDefault, logTailMax: config.logTailMax, ackTimeoutMs: config.ackTimeoutMs },
    { state, runtime, reconciler, events, metrics, clock, logger: logger.child({ module: 'api' }), nodeInfo: { peerId, name, version: LATTICE_VERSION, startedAtMs }, newDeploymentId: createIdGenerator({ rng }), nodesView: () => core.nodesView(), invite, neverFits: (spec) => core.placer.neverFits(spec), setDraining: (draining) => core.setDraining(draining), waitForPeerAck: (heads, timeoutMs) => core.stateSync.waitForPeerAck(heads, timeoutMs) },
  )
  registerMeshMetrics(metrics, core)

  let apiUrl = ''
  let started = false
  // Remember alive members' addresses, so a restart finds the mesh even if its bootstrap peers moved:
  // shortly after membership changes, every rememberPeersIntervalMs (addresses arrive with metadata), and at stop.
  const rememberNow = async (): Promise<void> => {
    const addresses = core.membership.members()
      .filter((m) => m.state === 'alive' && m.peerId !== peerId && m.addresses.length > 0)
      .sort((a, b) => b.lastSeenAtMs - a.lastSeenAtMs)
      .map((m) => m.addresses.find((a) => a.includes('/p2p/')) ?? `${m.addresses[0]}/p2p/${m.peerId}`)
    if (addresses.length > 0) await rememberPeers(dataDir, addresses).catch((error: unknown) => logger.warn({ err: String(error) }, 'could not remember peers'))
  }
  let rememberTimer: NodeJS.Timeout | undefined
  const offRemember = core.membership.onEvent(() => {
    clearTimeout(rememberTimer)
    rememberTimer = setTimeout(() => void rememberNow(), 1_000)
    rememberTimer.unref()
  })
  const rememberInterval = setInterval(() => void rememberNow(), config.rememberPeersIntervalMs)
  rememberInterval.unref()

  return {
    peerId,
    name,
    dataDir,
    token,
    api,
    core,
    state,
    reconciler,
    runtime,
    transport,
    events,
    metrics,
    apiUrl: () => apiUrl,
    invite,
    async start() {
      await core.start()
      started = true
      if (config.stickyListenPorts) await rememberListenPorts(dataDir, config.listen, transport.addresses()).catch((error: unknown) => logger.warn({ err: String(error) }, 'could not remember listen ports'))
      const address = await api.listen({ host: config.apiHost, port: config.apiPort })
      apiUrl = address.replace('[::1]', '127.0.0.1')
      await writeApiCredentials(dataDir, { url: apiUrl, token })
      logger.info({ api: apiUrl, dataDir, addresses: transport.addresses(), runtime: reconciler.runtimeHealth() }, 'node started')
    },
    async stop(stopOptions = { graceful: true }) {
      clearTimeout(rememberTimer)
      clearInterval(rememberInterval)
      offRemember()
      if (started) await rememberNow()
      await api.close()
      if (started) await core.stop(stopOptions)
      started = false
      logger.info({}, 'node stopped')
    },
  }
}

function registerMeshMetrics(metrics: NodeMetrics, core: NodeCore): void {
  const { state, membership } = core
  metrics.gaugeFrom('lattice_document_bytes', 'Size of the saved cluster-state document', () => state.stats().sizeBytes)
  metrics.gaugeFrom('lattice_document_changes', 'Changes in the cluster-state document history', () => state.stats().changeCount)
  metrics.gaugeFrom('lattice_document_heads', 'Heads of the cluster-state document', () => state.stats().headsCount)
  metrics.gaugeFrom('lattice_document_epoch', 'Epoch of the cluster-state document (its history starts at the epoch\'s cut)', () => state.stats().epoch)
  metrics.gaugeFrom('lattice_epoch_proposals_total', 'New epochs this node proposed', () => core.epochs.counters().proposals)
  metrics.gaugeFrom('lattice_document_invalid_entries', 'Document entries skipped because they failed validation', () => state.stats().invalidEntries)
  for (const memberState of ['alive', 'suspect', 'dead', 'left'] as const) {
    metrics.gaugeFrom(`lattice_peers_${memberState}`, `Members this node sees ${memberState}`, () => membership.members().filter((m) => m.state === memberState).length)
  }
  metrics.gaugeFrom('lattice_heartbeats_out_total', 'Membership probes (heartbeats) sent', () => membership.counters().pingsOut)
  metrics.gaugeFrom('lattice_heartbeats_in_total', 'Membership probes (heartbeats) received', () => membership.counters().pingsIn)
  metrics.gaugeFrom('lattice_gossip_bytes_in_total', 'Membership bytes received', () => membership.counters().gossipBytesIn)
  metrics.gaugeFrom('lattice_gossip_bytes_out_total', 'Membership bytes sent', () => membership.counters().gossipBytesOut)
  metrics.gaugeFrom('lattice_gossip_dropped_total', 'Inbound membership messages dropped (all reasons; see lattice_gossip_dropped_by_reason)', () => Object.values(membership.counters().dropped).reduce((a, b) => a + b, 0))
  const sync = (): ReturnType<NodeCore['stateSync']['counters']> => core.stateSync.counters()
  metrics.gaugeByLabel('lattice_state_changes_total', 'Document changes on the state topic, by event', 'event', () => {
    const c = sync()
    return { published: c.changesPublished, received: c.changesReceived, applied: c.changesApplied, duplicate: c.changesDuplicate, not_published: c.changesNotPublished }
  })
  metrics.gaugeFrom('lattice_state_changes_pending', 'Received changes waiting for their dependencies', () => sync().changesPending)
  metrics.gaugeByLabel('lattice_state_changes_dropped_total', 'State-topic messages dropped, by reason', 'reason', () => sync().changesDropped)
  metrics.gaugeByLabel('lattice_state_sync_sessions_total', 'Anti-entropy sessions, by outcome', 'outcome', () => {
    const c = sync()
    return { ok: c.syncSessionsOk, failed: c.syncSessionsFailed, served: c.syncSessionsServed }
  })
  metrics.gaugeFrom('lattice_state_sync_gap_sessions_total', 'Anti-entropy sessions brought forward because a received change waited for a lost one', () => sync().gapSyncs)
  metrics.gaugeByLabel('lattice_state_sync_rounds_total', 'Anti-entropy round trips, by direction', 'direction', () => ({ out: sync().syncRoundsOut, in: sync().syncRoundsIn }))
  metrics.gaugeByLabel('lattice_state_sync_bytes_total', 'Anti-entropy bytes, by direction', 'direction', () => ({ out: sync().syncBytesOut, in: sync().syncBytesIn }))
  metrics.gaugeByLabel('lattice_state_sync_dropped_total', 'Sync messages dropped, by reason', 'reason', () => sync().syncDropped)
  metrics.gaugeByLabel('lattice_placement_rounds_total', 'Placement rounds, by event', 'event', () => {
    const c = core.placer.counters()
    return { opened: c.roundsOpened, closed: c.roundsClosed, unschedulable: c.roundsUnschedulable, close_conflicts: c.closeConflicts }
  })
  metrics.gaugeByLabel('lattice_placement_bids_total', 'Placement bids, by event', 'event', () => ({ made: core.placer.counters().bidsSent, messages_sent: core.placer.counters().bidMessagesSent, received: core.placer.counters().bidsReceived }))
  metrics.gaugeByLabel('lattice_placement_bids_ignored_total', 'Bids a closer ignored, by reason', 'reason', () => core.placer.counters().bidsIgnored)
  metrics.gaugeByLabel('lattice_gossip_dropped_by_reason', 'Inbound membership messages dropped, by reason', 'reason', () => membership.counters().dropped)
}
