/** The ClusterState surface state sync builds on: the Automerge sync protocol, snapshots, coverage of heads, apply results. */
import { describe, expect, it, vi } from 'vitest'
import * as A from '@automerge/automerge'
import { createRng } from '../core/index.ts'
import { createVirtualClock } from '../sim/virtual-clock.ts'
import type { ClusterState, SyncState } from './cluster-state.ts'
import { toDocValue, type DocMap } from './doc-codec.ts'
import { createHandle } from './doc-handle.ts'
import { createMemoryStore } from './level-store.ts'
import { replicaView, syncPair } from './sync-test-support.ts'
import { sampleNode, sampleStatus, startState } from './test-support.ts'

const clock = createVirtualClock()
const start = async (selfId: string, store = createMemoryStore()): Promise<ClusterState> => (await startState({ clock, selfId, store })).state

/** `length` base-36 characters drawn from `seed`: incompressible, so sizes in bytes are what the test sets. */
const noise = (seed: number, length: number): string => {
  const rng = createRng(seed)
  return Array.from({ length }, () => rng.int(36).toString(36)).join('')
}

const foreign = (state: ClusterState, edit: (doc: DocMap) => void): Uint8Array => {
  const doc = A.load<DocMap>(state.saveSnapshot(), { actor: 'ab'.repeat(16) })
  return A.getLastLocalChange(A.change(doc, { time: 0 }, edit))!
}

/** The sync protocol from `sender` to `receiver` until neither has more to say: the entries the receiver found invalid, its largest message received. */
async function syncRecording(sender: ClusterState, receiver: ClusterState): Promise<{ invalid: string[][]; largest: number }> {
  let senderState: SyncState = A.initSyncState()
  let receiverState: SyncState = A.initSyncState()
  const invalid: string[][] = []
  let largest = 0
  for (let round = 0; round < 10; round++) {
    const [nextSender, toReceiver] = sender.generateSyncMessage(senderState)
    senderState = nextSender
    if (toReceiver !== null) {
      largest = Math.max(largest, toReceiver.byteLength)
      const received = await receiver.receiveSyncMessage(receiverState, toReceiver)
      receiverState = received.syncState
      invalid.push(...received.result.invalidEntries)
    }
    const [nextReceiver, toSender] = receiver.generateSyncMessage(receiverState)
    receiverState = nextReceiver
    if (toSender !== null) senderState = (await sender.receiveSyncMessage(senderState, toSender)).syncState
    if (toSender === null && toReceiver === null) return { invalid, largest }
  }
  throw new Error('sync did not finish in 10 rounds')
}

/** The kind of each chunk `sender` sent `receiver` while syncing them to the end (0: a whole document, 1 and 2: changes). */
async function chunkKindsSent(sender: ClusterState, receiver: ClusterState): Promise<number[]> {
  const kinds: number[] = []
  await syncPair(sender, receiver, (message) => kinds.push(...A.decodeSyncMessage(message).changes.map((chunk) => chunk[8]!)))
  return kinds
}

describe('cluster state sync surface', () => {
  it('a peer holding part of the history is sent changes, never the whole document; a joining one (genesis only) gets the whole document', async () => {
    const sender = await start('node-a')
    const [joiner, behind] = [await start('node-j'), await start('node-b')]
    const deploy = (i: number) => sender.createDeployment({ id: `d${i}`, spec: { name: `web-${i}`, image: 'nginx' }, owner: 'node-a' })
    for (let i = 0; i < 10; i++) await deploy(i)
    await syncPair(sender, behind)
    // Three quarters of the history are new to `behind`: Automerge alone would send it the whole document.
    for (let i = 10; i < 40; i++) await deploy(i)
    expect(await chunkKindsSent(sender, joiner)).toEqual([0])
    const toBehind = await chunkKindsSent(sender, behind)
    expect(toBehind.length).toBeGreaterThan(0)
    expect(toBehind.filter((kind) => kind === 0)).toEqual([])
    expect(replicaView(behind)).toEqual(replicaView(sender))
    expect(replicaView(joiner)).toEqual(replicaView(sender))
  })

  it('two replicas running the sync protocol end with equal heads and entries, and what they received is persisted', async () => {
    const store = createMemoryStore()
    const a = await start('node-a')
    const b = await start('node-b', store)
    await a.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await b.upsertSelfNode(sampleNode)
    expect(await syncPair(a, b)).toBeGreaterThan(0)
    expect(replicaView(b)).toEqual(replicaView(a))
    await b.stop()
    const restarted = await start('node-b', store)
    expect(replicaView(restarted)).toEqual(replicaView(a))
  })

  it('a sync message that is not one is VALIDATION_FAILED and changes nothing; the replica still syncs afterwards', async () => {
    const a = await start('node-a')
    const b = await start('node-b')
    await a.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    const before = replicaView(b)
    await expect(b.receiveSyncMessage(A.initSyncState(), Uint8Array.from([0x42, 9, 9, 9]))).rejects.toMatchObject({ code: 'VALIDATION_FAILED' })
    await expect(b.receiveSyncMessage(A.initSyncState(), new TextEncoder().encode('{"heads":[]}'))).rejects.toMatchObject({ code: 'VALIDATION_FAILED' })
    await expect(b.mergeSnapshot(Uint8Array.from({ length: 40 }, (_, i) => i))).rejects.toMatchObject({ code: 'VALIDATION_FAILED' })
    expect(replicaView(b)).toEqual(before)
    await syncPair(a, b)
    expect(replicaView(b)).toEqual(replicaView(a))
  })

  it('a joining replica receiving the whole document in one large message re-reads every entry and reports the invalid ones', async () => {
    const a = await start('node-a')
    for (let i = 0; i < 40; i++) await a.createDeployment({ id: `d${i}`, spec: { name: `web-${i}`, image: 'nginx', env: { NOISE: noise(i + 1, 600) } }, owner: 'node-a' })
    await a.applyChanges([foreign(a, (doc) => {
      ;(doc.deployments as DocMap).broken = toDocValue({ id: 'broken' })
    })])
    expect(a.saveSnapshot().byteLength).toBeGreaterThan(16 * 1024)
    const b = await start('node-b')
    const { invalid } = await syncRecording(a, b)
    expect(invalid).toEqual([['deployments', 'broken']])
    expect(replicaView(b)).toEqual(replicaView(a))
    expect(b.deployments()).toHaveLength(40)
  })

  it('a large backlog for a few entries is read from the diff, and the replica then reads what a fresh one loaded from it reads', async () => {
    const a = await start('node-a')
    for (let i = 0; i < 40; i++) await a.createDeployment({ id: `d${i}`, spec: { name: `web-${i}`, image: 'nginx', env: { NOISE: noise(i + 1, 400) } }, owner: 'node-a' })
    const b = await start('node-b')
    await syncPair(a, b)
    // Away from a, b reports again and again on three replicas: many changes, few entries.
    for (let round = 0; round < 20; round++) {
      for (const id of ['d1', 'd2', 'd3']) await b.reportStatus(id, 0, { ...sampleStatus, restarts: round, error: noise(100 + round, 400) })
    }
    await b.setReplicas('d5', 3) // a field key, "d5/replicas": the entry is d5
    await b.applyChanges([foreign(b, (doc) => {
      ;(doc.status as DocMap)['d4/0/node-b'] = toDocValue('not a status')
    })])
    const touched: Array<'all' | string[]> = []
    a.onChange((change) => touched.push(change.deployments === 'all' ? 'all' : [...change.deployments].sort()))
    const { invalid, largest } = await syncRecording(b, a)
    // A bulk message (≥ 16 KiB and a good part of the document), yet only the entries it changed were read.
    expect(largest).toBeGreaterThan(16 * 1024)
    expect(touched).not.toContain('all')
    expect(new Set(touched.flat())).toEqual(new Set(['d1', 'd2', 'd3', 'd4', 'd5']))
    expect(a.deployment('d5')?.replicas).toBe(3)
    expect(invalid).toEqual([['status', 'd4/0/node-b']])
    expect(replicaView(a)).toEqual(replicaView(b))
    const fresh = await start('node-c')
    await fresh.mergeSnapshot(a.saveSnapshot())
    expect(replicaView(a)).toEqual(replicaView(fresh))
    expect(a.statuses('d2')).toMatchObject([{ peerId: 'node-b', restarts: 19 }])
  })

  it('a joining replica writes its first sync as a compaction; a backlog smaller than what a replica stores is written as one chunk', async () => {
    const storeA = createMemoryStore()
    const a = await start('node-a', storeA)
    for (let i = 0; i < 40; i++) await a.createDeployment({ id: `d${i}`, spec: { name: `web-${i}`, image: 'nginx', env: { NOISE: noise(i + 1, 1_500) } }, owner: 'node-a' })
    const b = await start('node-b')
    await syncRecording(a, b)
    expect(b.stats().chunks).toBe(0) // the whole document, as one snapshot
    for (let round = 0; round < 30; round++) await b.reportStatus(`d${round % 10}`, 0, { ...sampleStatus, restarts: round, error: noise(100 + round, 600) })
    const before = a.stats()
    const { largest } = await syncRecording(b, a)
    // A bulk message (≥ 16 KiB and over a quarter of what a stores), yet smaller than what a stores.
    expect(largest).toBeGreaterThan(16 * 1024)
    expect(largest * 4).toBeGreaterThan(before.sizeBytes)
    expect(largest).toBeLessThan(before.sizeBytes)
    expect(a.stats().chunks).toBe(before.chunks + 1)
    expect(replicaView(a)).toEqual(replicaView(b))
    const view = replicaView(a)
    await a.stop()
    expect(replicaView(await start('node-a', storeA))).toEqual(view)
  })

  it('a bulk merge that adds more keys than half the index holds re-reads every entry without asking Automerge for a diff', async () => {
    const a = await start('node-a')
    for (let i = 0; i < 10; i++) await a.createDeployment({ id: `d${i}`, spec: { name: `web-${i}`, image: 'nginx', replicas: 3 }, owner: 'node-a' })
    for (let i = 0; i < 10; i++) for (let replica = 0; replica < 3; replica++) await a.reportStatus(`d${i}`, replica, { ...sampleStatus, error: noise(i * 3 + replica + 1, 1_000) })
    const b = await start('node-b')
    await b.upsertSelfNode(sampleNode)
    await b.createDeployment({ id: 'mine', spec: { name: 'mine', image: 'nginx' }, owner: 'node-b' })
    const touched: Array<'all' | string[]> = []
    b.onChange((change) => touched.push(change.deployments === 'all' ? 'all' : [...change.deployments].sort()))
    const probe = createHandle('aa')
    const handleClass = Object.getPrototypeOf(probe) as { diff(...args: unknown[]): unknown }
    probe.free()
    const diff = vi.spyOn(handleClass, 'diff')
    try {
      const { largest } = await syncRecording(a, b)
      expect(largest).toBeGreaterThan(16 * 1024)
      // Thirty status keys and a node entry arrived on an index of two entries: the diff could only have said "all".
      expect(diff).not.toHaveBeenCalled()
      expect(touched).toContain('all')
      expect(replicaView(b)).toEqual(replicaView(a))
      expect(b.statuses('d9')).toHaveLength(3)
    } finally {
      diff.mockRestore()
    }
  })

  it('mergeSnapshot brings in a whole document, idempotently', async () => {
    const a = await start('node-a')
    const b = await start('node-b')
    await a.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await b.upsertSelfNode(sampleNode)
    expect(await b.mergeSnapshot(a.saveSnapshot())).toEqual({ applied: true, invalidEntries: [] })
    expect(await b.mergeSnapshot(a.saveSnapshot())).toEqual({ applied: false, invalidEntries: [] })
    expect(b.deployment('d1')).toEqual(a.deployment('d1'))
    expect(b.node('node-b')).toBeDefined()
  })

  it('applyChanges reports the entries a peer’s change left invalid; they stay out of reads', async () => {
    const a = await start('node-a')
    const bad = foreign(a, (doc) => {
      ;(doc.deployments as DocMap).broken = toDocValue({ id: 'broken', replicas: -1 })
    })
    expect(await a.applyChanges([bad])).toEqual({ applied: true, invalidEntries: [['deployments', 'broken']] })
    expect(a.deployment('broken')).toBeUndefined()
    expect(await a.applyChanges([bad])).toEqual({ applied: false, invalidEntries: [] })
  })

  it('coveredBy: heads are covered by a peer’s heads that descend from them, not by older or unknown ones', async () => {
    const a = await start('node-a')
    await a.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    const old = a.heads()
    await a.setReplicas('d1', 2)
    const now = a.heads()
    expect(a.coveredBy(old, now)).toBe(true)
    expect(a.coveredBy(now, now)).toBe(true)
    expect(a.coveredBy(now, old)).toBe(false)
    expect(a.coveredBy(now, [])).toBe(false)
    expect(a.coveredBy(now, ['00'.repeat(32)])).toBe(false)
    expect(a.coveredBy([], [])).toBe(true)
    expect(a.hasChanges(now)).toBe(true)
    expect(a.hasChanges(['00'.repeat(32)])).toBe(false)
    expect(a.hasChanges(['not-a-hash'])).toBe(false)
  })

  it('missingAmong names, in one question, the hashes that are not in the history: unknown, malformed, or only queued behind a missing dependency', async () => {
    const a = await start('node-a')
    const b = await start('node-b')
    const shared = a.heads()
    await b.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-b' })
    const first = b.heads()
    await b.setReplicas('d1', 3)
    const second = b.heads()
    const unknown = '00'.repeat(32)
    expect(a.missingAmong([])).toEqual(new Set())
    expect(a.missingAmong([...shared, ...first, unknown])).toEqual(new Set([...first, unknown]))
    expect(a.missingAmong([...shared, 'not-a-hash', unknown])).toEqual(new Set(['not-a-hash', unknown]))
    // The second change without the first: Automerge queues it, so it is not in the history.
    await a.applyChanges(b.changesSince(first))
    expect(a.missingAmong([...shared, ...second])).toEqual(new Set(second))
    expect(a.hasChanges(second)).toBe(false)
    await a.applyChanges(b.changesSince(shared).filter((change) => A.decodeChange(change).hash === first[0]))
    expect(a.missingAmong([...shared, ...first, ...second])).toEqual(new Set())
  })
})
