/**
 * `npm run bench -- crdt`: a cluster-state document with 10,000 deployments
 * and their placements and statuses — save size (target ≤ 5 MB), load time
 * (target ≤ 500 ms), apply time per change, bytes for a fresh node to sync
 * it. Prints figures; asserts nothing.
 *
 * The load figures, from Automerge alone to what a node does:
 * - automergeLoadMs: Automerge.load of the snapshot, materialized as a
 *   JavaScript object (the library's own load; no node does this).
 * - automergeLoadHandleMs: the same bytes loaded as a node loads them
 *   (crdt/doc-handle.ts, loadHandle: no JavaScript copy).
 * - loadAndValidateAllEntriesMs: a fresh node, start() on an empty store
 *   then mergeSnapshot: load, validate every entry into the index, store
 *   the snapshot. The target applies to this figure and the next two.
 * - nodeStartFromStoreMs: a node restarted after a stop, start() with that
 *   snapshot and the index the stop kept (crdt/index-cache.ts) in its
 *   store; stopWithIndexCacheMs is what that stop took, indexCacheBytes
 *   what it stored.
 * - nodeStartFromStoreRebuildMs: the same start without the index cache
 *   (as after a crash): it validates every deployment and placement;
 *   statuses are validated when first read (crdt/doc-index.ts):
 *   statusesUncheckedAtStart says how many were left for later, and
 *   restartedStatusValidationMs what validating all of them then costs
 *   (reading stats().invalidEntries).
 * - nodeStartColdProcessMs / …RebuildMs: the same two starts in a new
 *   process on LevelDB, with nothing run before it to warm Automerge's
 *   WASM or the JIT (the median of COLD_STARTS processes each);
 *   nodeStartColdProcessMs is null below indexCacheEntriesMin, where a
 *   stop keeps no index cache to start from.
 * The in-process figures run after the document was built, in a process
 * that has already run every code path involved. Some also come as CPU
 * time (…CpuMs: every thread of the process), which another job on a
 * shared machine disturbs less.
 *
 * Epochs (crdt/epoch.ts, not yet switched to by nodes): epochGenesisBuildMs
 * is building the first change of a new epoch from the whole document,
 * epochGenesisBytes its size, epochSaveBytes the new epoch's document
 * saved (against saveBytes: what cutting the history would save).
 *
 * Sizes from the environment: LATTICE_BENCH_CRDT_DEPLOYMENTS (10,000) and
 * LATTICE_BENCH_CRDT_REPORTERS (by default all 50 peers report the
 * statuses of the replicas they won: every replica has one, the issue's
 * document; 5 gives 1,000 statuses).
 */
import { spawnSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import * as Automerge from '@automerge/automerge'
import { silentLogger } from '../../core/index.ts'
import { createClusterState, createLevelStore, createMemoryStore, type ClusterState } from '../../crdt/index.ts'
import { createHandle, loadHandle } from '../../crdt/doc-handle.ts'
import { buildEpochGenesis } from '../../crdt/epoch.ts'
import { INDEX_CACHE_KEY } from '../../crdt/index-cache.ts'
import { createVirtualClock } from '../virtual-clock.ts'

const DEPLOYMENTS = Number(process.env.LATTICE_BENCH_CRDT_DEPLOYMENTS ?? 10_000)
const PEERS = 50
const REPORTERS = Math.min(PEERS, Number(process.env.LATTICE_BENCH_CRDT_REPORTERS ?? PEERS))
/** Deployments written per change: the API writes one per change, bulk loads batch (STACK-NOTES: batching is ~8× faster). */
const BATCH = 100
/** New processes timed for nodeStartColdProcessMs; the median is printed. */
const COLD_STARTS = 3
/** A cold start must finish within this, or the figure is reported as missing. */
const COLD_START_TIMEOUT_MS = 120_000
/** argv[2] of this file run as a child process: time one start() on the LevelDB directory in argv[3]. */
const COLD_START_ARG = '--cold-start'
const COLD_START_SELF_ID = '12D3KooWfresh'

/** CPU time of this process (every thread: the collector's helpers too), for figures that wall time on a shared machine blurs. */
const cpuMs = (): number => {
  const { user, system } = process.cpuUsage()
  return (user + system) / 1000
}

/** Wall and CPU milliseconds `work` took. */
async function timed(work: () => Promise<unknown>): Promise<{ ms: number; cpuMs: number }> {
  const startedAt = performance.now()
  const cpuAtStart = cpuMs()
  await work()
  return { ms: performance.now() - startedAt, cpuMs: cpuMs() - cpuAtStart }
}

const make = (selfId: string, clock = createVirtualClock()): ClusterState =>
  createClusterState({ selfId })({ store: createMemoryStore(), clock, logger: silentLogger })

export async function crdtBench(): Promise<Record<string, unknown>> {
  const clock = createVirtualClock()
  const source = make('12D3KooWsource', clock)
  await source.start()
  const peers = Array.from({ length: PEERS }, (_, i) => `12D3KooWpeer${String(i).padStart(3, '0')}`)

  const writeStartedAt = performance.now()
  for (let first = 0; first < DEPLOYMENTS; first += BATCH) {
    await source.batch((tx) => {
      for (let i = first; i < Math.min(DEPLOYMENTS, first + BATCH); i++) {
        const id = `d-${String(i).padStart(12, '0')}`
        const winner = peers[i % peers.length]!
        tx.createDeployment({ id, spec: { name: `app-${i}`, image: 'lattice-test/busybox:latest', ports: [{ container: 80 }], resources: { cpu: 0.1, memoryMB: 64 } }, owner: winner })
        tx.writePlacement(id, 0, {
          generation: 1,
          winners: [winner],
          bids: peers.slice(0, 3).map((peerId, k) => ({ peerId, score: 500 + k, atMs: 1_700_000_000_000 })),
          shortlist: peers.slice(0, 5),
          closedBy: winner,
          openedAtMs: 1_700_000_000_000,
          closedAtMs: 1_700_000_000_300,
          history: [{ generation: 1, winners: [winner], closedBy: winner, closedAtMs: 1_700_000_000_300, reason: 'initial' }],
        })
      }
    }, `bench batch ${first}`)
  }
  const writeMs = performance.now() - writeStartedAt

  // Statuses are written by each node about itself: one change per status (the realistic shape).
  const statusChanges: Uint8Array[] = []
  const reporters = new Map<string, ClusterState>()
  for (const peerId of peers.slice(0, REPORTERS)) {
    const reporter = make(peerId, clock)
    await reporter.start()
    await reporter.mergeSnapshot(source.saveSnapshot())
    reporter.onLocalChange((change) => statusChanges.push(change))
    reporters.set(peerId, reporter)
  }
  for (let i = 0; i < DEPLOYMENTS; i++) {
    const id = `d-${String(i).padStart(12, '0')}`
    const winner = peers[i % peers.length]!
    const reporter = reporters.get(winner)
    if (reporter === undefined) continue
    await reporter.reportStatus(id, 0, { generation: 1, epoch: 1, state: 'running', containerId: `c${i}`, hostPorts: { '80': 40_000 + (i % 20_000) }, startedAtMs: 1_700_000_001_000, restarts: 0 })
  }
  await Promise.all([...reporters.values()].map((reporter) => reporter.stop()))
  reporters.clear() // their indexes would otherwise burden every garbage collection timed below
  const applyStartedAt = performance.now()
  for (const change of statusChanges) await source.applyChanges([change])
  const applyPerChangeMs = (performance.now() - applyStartedAt) / Math.max(1, statusChanges.length)

  const saved = source.saveSnapshot()
  const loadStartedAt = performance.now()
  Automerge.load(saved) // dropped at once: a materialized copy held on would slow every garbage collection timed below
  const automergeLoadMs = performance.now() - loadStartedAt
  const handleStartedAt = performance.now()
  loadHandle(saved).free()
  const automergeLoadHandleMs = performance.now() - handleStartedAt

  // A fresh node: start on an empty store, then the whole document from a peer.
  const freshStore = createMemoryStore()
  let fresh: ClusterState | undefined = createClusterState({ selfId: COLD_START_SELF_ID })({ store: freshStore, clock, logger: silentLogger })
  const freshNode = fresh
  const { ms: loadAndIndexMs, cpuMs: loadAndIndexCpuMs } = await timed(async () => {
    await freshNode.start()
    await freshNode.mergeSnapshot(saved)
  })
  const entriesValidated = fresh.stats().entriesDecoded
  const storedBytes = fresh.stats().sizeBytes
  const stopStartedAt = performance.now()
  await fresh.stop() // keeps the index (30,000 entries: above indexCacheEntriesMin)
  const stopWithIndexCacheMs = performance.now() - stopStartedAt
  fresh = undefined // a restarted node does not also hold the index it had before the restart
  await freshStore.open()
  const indexCacheBytes = (await freshStore.get(INDEX_CACHE_KEY))?.byteLength ?? 0
  await freshStore.close()

  // The same node restarted on its store, which now holds the snapshot and the index cache.
  const restarted = createClusterState({ selfId: COLD_START_SELF_ID })({ store: freshStore, clock, logger: silentLogger })
  const { ms: nodeStartFromStoreMs, cpuMs: nodeStartFromStoreCpuMs } = await timed(() => restarted.start())
  const restartUsedIndexCache = restarted.stats().indexFromCache
  await restarted.stop()

  // Restarted without the index cache, as after a crash.
  await freshStore.open()
  await freshStore.del(INDEX_CACHE_KEY)
  await freshStore.close()
  const rebuilding = createClusterState({ selfId: COLD_START_SELF_ID, indexCacheEntriesMin: Number.MAX_SAFE_INTEGER })({ store: freshStore, clock, logger: silentLogger })
  const { ms: nodeStartFromStoreRebuildMs, cpuMs: nodeStartFromStoreRebuildCpuMs } = await timed(() => rebuilding.start())
  const statusesUncheckedAtStart = rebuilding.stats().entriesUnchecked
  const deferredStartedAt = performance.now()
  const invalidAfterRestart = rebuilding.stats().invalidEntries
  const restartedStatusValidationMs = performance.now() - deferredStartedAt
  await rebuilding.stop()

  // Below indexCacheEntriesMin a stop keeps no index cache: there is no start from it to time (null).
  const nodeStartColdProcessMs = restartUsedIndexCache ? await coldStartsMedianMs(saved, 'with index cache') : undefined
  const nodeStartColdProcessRebuildMs = await coldStartsMedianMs(saved, 'rebuild')

  // A fresh node syncing from scratch with the Automerge sync protocol.
  let sourceSync = Automerge.initSyncState()
  let freshSync = Automerge.initSyncState()
  let freshDoc = Automerge.init()
  let sourceDoc = Automerge.load(saved)
  let syncBytes = 0
  let rounds = 0
  for (; rounds < 20; rounds++) {
    let message: Uint8Array | null
    ;[sourceSync, message] = Automerge.generateSyncMessage(sourceDoc, sourceSync)
    let reply: Uint8Array | null
    if (message !== null) {
      syncBytes += message.byteLength
      ;[freshDoc, freshSync] = Automerge.receiveSyncMessage(freshDoc, freshSync, message)
    }
    ;[freshSync, reply] = Automerge.generateSyncMessage(freshDoc, freshSync)
    if (reply !== null) {
      syncBytes += reply.byteLength
      ;[sourceDoc, sourceSync] = Automerge.receiveSyncMessage(sourceDoc, sourceSync, reply)
    }
    if (message === null && reply === null) break
  }

  // The same state as the first document of a new epoch (crdt/epoch.ts): its history is one change.
  const cutDoc = loadHandle(saved)
  const epochStartedAt = performance.now()
  const genesis = buildEpochGenesis(cutDoc, { epoch: 1, heads: cutDoc.getHeads() })
  const epochGenesisBuildMs = performance.now() - epochStartedAt
  cutDoc.free()
  const epochDoc = createHandle()
  epochDoc.applyChanges([genesis.change])
  const epochSaveBytes = epochDoc.save().byteLength
  epochDoc.free()

  const stats = source.stats()
  await source.stop()
  return {
    deployments: DEPLOYMENTS,
    placements: DEPLOYMENTS,
    statuses: statusChanges.length,
    changes: stats.changeCount,
    writeDeploymentsAndPlacementsMs: Math.round(writeMs),
    saveBytes: saved.byteLength,
    saveMB: Math.round((saved.byteLength / (1024 * 1024)) * 100) / 100,
    freshNodeStoredBytes: storedBytes,
    automergeLoadMs: Math.round(automergeLoadMs),
    automergeLoadHandleMs: Math.round(automergeLoadHandleMs),
    loadAndValidateAllEntriesMs: Math.round(loadAndIndexMs),
    loadAndValidateAllEntriesCpuMs: Math.round(loadAndIndexCpuMs),
    entriesValidated,
    stopWithIndexCacheMs: Math.round(stopWithIndexCacheMs),
    indexCacheBytes,
    nodeStartFromStoreMs: Math.round(nodeStartFromStoreMs),
    nodeStartFromStoreCpuMs: Math.round(nodeStartFromStoreCpuMs),
    restartUsedIndexCache,
    nodeStartFromStoreRebuildMs: Math.round(nodeStartFromStoreRebuildMs),
    nodeStartFromStoreRebuildCpuMs: Math.round(nodeStartFromStoreRebuildCpuMs),
    statusesUncheckedAtStart,
    restartedStatusValidationMs: Math.round(restartedStatusValidationMs),
    invalidAfterRestart,
    nodeStartColdProcessMs: nodeStartColdProcessMs === undefined ? null : Math.round(nodeStartColdProcessMs),
    nodeStartColdProcessRebuildMs: nodeStartColdProcessRebuildMs === undefined ? null : Math.round(nodeStartColdProcessRebuildMs),
    applyOneStatusChangeMs: Math.round(applyPerChangeMs * 1000) / 1000,
    freshNodeSyncBytes: syncBytes,
    freshNodeSyncRounds: rounds,
    epochGenesisBuildMs: Math.round(epochGenesisBuildMs),
    epochGenesisBytes: genesis.change.byteLength,
    epochSaveBytes,
    targets: { saveMB: 5, loadMs: 500 },
  }
}

type ColdStartKind = 'with index cache' | 'rebuild'

/**
 * Stores `snapshot` in a LevelDB directory as a node would (a merge, then
 * a stop, which keeps the index), then times start() on it in COLD_STARTS
 * new processes, each given the index cache or not (`kind`). Undefined when
 * a child fails (its stderr is printed).
 */
async function coldStartsMedianMs(snapshot: Uint8Array, kind: ColdStartKind): Promise<number | undefined> {
  const dir = await mkdtemp(join(tmpdir(), 'lattice-crdt-bench-'))
  try {
    const seeded = createClusterState({ selfId: COLD_START_SELF_ID })({ store: createLevelStore({ path: dir }), clock: createVirtualClock(), logger: silentLogger })
    await seeded.start()
    await seeded.mergeSnapshot(snapshot)
    await seeded.stop()
    const times: number[] = []
    for (let i = 0; i < COLD_STARTS; i++) {
      const child = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), COLD_START_ARG, dir, kind], {
        encoding: 'utf8',
        timeout: COLD_START_TIMEOUT_MS,
      })
      const figure = Number(child.stdout.trim().split('\n').pop())
      if (child.status !== 0 || !Number.isFinite(figure)) {
        console.error(`cold start ${i} (${kind}) failed (status ${String(child.status)}):\n${child.stderr}`)
        return undefined
      }
      times.push(figure)
    }
    return times.sort((a, b) => a - b)[Math.floor(times.length / 2)]
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/**
 * The child of coldStartsMedianMs: prints the milliseconds one start() took.
 * 'rebuild' deletes the index cache first and keeps none at the stop; the
 * other kind checks that the start used it (and its stop keeps it).
 */
async function coldStart(dir: string, kind: ColdStartKind): Promise<void> {
  const rebuild = kind === 'rebuild'
  const store = createLevelStore({ path: dir })
  if (rebuild) {
    await store.open()
    await store.del(INDEX_CACHE_KEY)
    await store.close()
  }
  const state = createClusterState({ selfId: COLD_START_SELF_ID, ...(rebuild ? { indexCacheEntriesMin: Number.MAX_SAFE_INTEGER } : {}) })({ store, clock: createVirtualClock(), logger: silentLogger })
  const startedAt = performance.now()
  await state.start()
  const ms = performance.now() - startedAt
  if (state.stats().indexFromCache === rebuild) throw new Error(`cold start (${kind}): indexFromCache is ${String(rebuild)}`)
  await state.stop()
  console.log(ms)
}

if (process.argv[2] === COLD_START_ARG && process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const kind = process.argv[4]
  if (kind !== 'with index cache' && kind !== 'rebuild') throw new Error(`unknown cold start kind ${String(kind)}`)
  await coldStart(process.argv[3]!, kind)
  process.exit(0)
}
