/**
 * `npm run bench -- crdt`: a cluster-state document with 10,000 deployments
 * and their placements and statuses — save size (target ≤ 5 MB), load time
 * (target ≤ 500 ms), apply time per change, bytes for a fresh node to sync
 * it. Prints figures; asserts nothing.
 */
import * as Automerge from '@automerge/automerge'
import { silentLogger } from '../../core/index.ts'
import { createClusterState, createMemoryStore, type ClusterState } from '../../crdt/index.ts'
import { createVirtualClock } from '../virtual-clock.ts'

const DEPLOYMENTS = Number(process.env.LATTICE_BENCH_CRDT_DEPLOYMENTS ?? 10_000)
/** Deployments written per change: the API writes one per change, bulk loads batch (STACK-NOTES: batching is ~8× faster). */
const BATCH = 100

export async function crdtBench(): Promise<Record<string, unknown>> {
  const clock = createVirtualClock()
  const make = (selfId: string): ClusterState => createClusterState({ selfId })({ store: createMemoryStore(), clock, logger: silentLogger })
  const source = make('12D3KooWsource')
  await source.start()
  const peers = Array.from({ length: 50 }, (_, i) => `12D3KooWpeer${String(i).padStart(3, '0')}`)

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
  for (const peerId of peers.slice(0, 5)) {
    const reporter = make(peerId)
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
  const applyStartedAt = performance.now()
  for (const change of statusChanges) await source.applyChanges([change])
  const applyPerChangeMs = (performance.now() - applyStartedAt) / Math.max(1, statusChanges.length)

  const saved = source.saveSnapshot()
  const loadStartedAt = performance.now()
  const loaded = Automerge.load(saved)
  const automergeLoadMs = performance.now() - loadStartedAt
  const fresh = make('12D3KooWfresh')
  const stateLoadStartedAt = performance.now()
  await fresh.start()
  await fresh.mergeSnapshot(saved)
  const loadAndIndexMs = performance.now() - stateLoadStartedAt

  // A fresh node syncing from scratch with the Automerge sync protocol.
  let sourceSync = Automerge.initSyncState()
  let freshSync = Automerge.initSyncState()
  let freshDoc = Automerge.init()
  let sourceDoc = loaded
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

  await Promise.all([source, fresh, ...reporters.values()].map((s) => s.stop()))
  return {
    deployments: DEPLOYMENTS,
    placements: DEPLOYMENTS,
    statuses: statusChanges.length,
    changes: source.stats().changeCount,
    writeDeploymentsAndPlacementsMs: Math.round(writeMs),
    saveBytes: saved.byteLength,
    saveMB: Math.round((saved.byteLength / (1024 * 1024)) * 100) / 100,
    automergeLoadMs: Math.round(automergeLoadMs),
    loadAndValidateAllEntriesMs: Math.round(loadAndIndexMs),
    applyOneStatusChangeMs: Math.round(applyPerChangeMs * 1000) / 1000,
    freshNodeSyncBytes: syncBytes,
    freshNodeSyncRounds: rounds,
    targets: { saveMB: 5, loadMs: 500 },
  }
}
