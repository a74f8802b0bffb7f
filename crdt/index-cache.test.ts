/** The validated index kept in the store at a stop (index-cache.ts): used only when it fits the document exactly. */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { deflateRawSync, inflateRawSync } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import * as A from '@automerge/automerge'
import { createVirtualClock, type VirtualClock } from '../sim/virtual-clock.ts'
import type { ClusterState } from './cluster-state.ts'
import type { DocMap } from './doc-codec.ts'
import type { IndexSnapshot } from './doc-index.ts'
import { seal, unseal } from './envelope.ts'
import { INDEX_CACHE_KEY, indexCacheFingerprint } from './index-cache.ts'
import { createLevelStore, createMemoryStore } from './level-store.ts'
import { flakyStore, foreignChange, sampleNode, sampleStatus, startState, withOpen, type Started, type StartOptions } from './test-support.ts'

/** Keeps the index at every stop (no size bound) unless told otherwise. */
const start = (options: Partial<StartOptions<VirtualClock>> = {}): Promise<Started<VirtualClock>> =>
  startState({ clock: createVirtualClock(), indexCacheEntriesMin: 0, ...options })

const PEERS = ['node-a', 'node-b', 'node-c']

/** Everything a reader can see, indexes by peer included. */
function view(state: ClusterState): unknown {
  return {
    heads: [...state.heads()].sort(),
    nodes: state.nodes(),
    deployments: state.deployments(),
    placements: state.deployments().map((d) => [...state.placements(d.id)]),
    statuses: state.deployments().map((d) => state.statuses(d.id)),
    wonBy: PEERS.map((peer) => sortedReplicas(state.placementsWonBy(peer))),
    reportedBy: PEERS.map((peer) => sortedReplicas(state.statusesReportedBy(peer))),
    invalid: state.stats().invalidEntries,
  }
}

const sortedReplicas = (replicas: Array<{ deploymentId: string; replica: number }>): string[] =>
  replicas.map((r) => `${r.deploymentId}/${r.replica}`).sort()

/** Entries of every section, changed fields, and four invalid entries (a deployment, a placement, two statuses). */
async function populate(state: ClusterState): Promise<void> {
  await state.upsertSelfNode(sampleNode)
  for (let i = 0; i < 6; i++) {
    await state.createDeployment({ id: `d${i}`, spec: { name: `web-${i}`, image: 'nginx', replicas: 2 }, owner: state.selfId })
    for (const replica of [0, 1]) {
      const winner = PEERS[(i + replica) % PEERS.length]!
      await state.writePlacement(`d${i}`, replica, {
        generation: 1, winners: [winner], bids: [], shortlist: PEERS, closedBy: winner, openedAtMs: 1, closedAtMs: 2, history: [],
      })
    }
    await state.reportStatus(`d${i}`, 0, { ...sampleStatus, restarts: i })
  }
  await state.setReplicas('d1', 3)
  await state.setDesired('d2', 'stopped')
  const result = await state.applyChanges([foreignChange(state, (doc) => {
    ;(doc.deployments as DocMap)['d9'] = new A.ImmutableString('{"id":"d9"}')
    ;(doc.placements as DocMap)['d3/7'] = new A.ImmutableString('not json')
    ;(doc.status as DocMap)['d4/0/node-b'] = new A.ImmutableString(JSON.stringify({ ...sampleStatus, state: 'dancing', updatedAtMs: 1 }))
    ;(doc.status as DocMap)['d4/1/node-c'] = new A.ImmutableString(JSON.stringify({ ...sampleStatus, updatedAtMs: 1 }))
  })])
  expect(result.invalidEntries).toHaveLength(3)
}

/** A blob laid out as index-cache.ts writes it, with whatever header and body a test wants. */
function forgedCache(header: unknown, body: Uint8Array): Uint8Array {
  const head = new TextEncoder().encode(`${JSON.stringify(header)}\n`)
  const payload = new Uint8Array(head.byteLength + body.byteLength)
  payload.set(head, 0)
  payload.set(body, head.byteLength)
  return seal(payload)
}

const deflatedJson = (value: unknown): Uint8Array => deflateRawSync(new TextEncoder().encode(JSON.stringify(value)))

/**
 * A populated node stopped on a memory store, what it read, and the cache
 * its stop kept: whole, its header, and its deflated body.
 */
async function stoppedWithCache() {
  const store = createMemoryStore()
  const first = await start({ store })
  await populate(first.state)
  const expected = view(first.state)
  const heads = [...first.state.heads()].sort()
  await first.state.stop()
  const good = await withOpen(store, async () => (await store.get(INDEX_CACHE_KEY))!)
  const payload = (unseal(good) as { payload: Uint8Array }).payload
  const header = { format: 1, fingerprint: indexCacheFingerprint(), heads }
  return { store, first, expected, header, good, body: payload.subarray(payload.indexOf(0x0a) + 1) }
}

const refusals = (started: Started<VirtualClock>): unknown[] =>
  started.logger.at('info').filter((record) => record.msg?.startsWith('index cache not used') === true).map((record) => record.obj.reason)

describe('index cache', () => {
  it('on LevelDB: a stop keeps the index, the next start restores it and reads exactly what a rebuild reads', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lattice-index-cache-'))
    try {
      const store = createLevelStore({ path: dir })
      const { state, clock } = await start({ store })
      await populate(state)
      const before = view(state)
      await state.stop()

      const restored = await start({ store, clock })
      expect(restored.state.stats().indexFromCache).toBe(true)
      expect(restored.state.stats().entriesDecoded).toBe(0) // nothing read from the document
      expect(view(restored.state)).toEqual(before)
      expect(restored.logger.at('warn').map((record) => record.obj.invalidEntries)).toEqual([3])
      await restored.state.stop()

      await withOpen(store, () => store.del(INDEX_CACHE_KEY))
      const rebuilt = await start({ store, clock })
      expect(rebuilt.state.stats().indexFromCache).toBe(false)
      expect(view(rebuilt.state)).toEqual(before)
      await rebuilt.state.stop()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('statuses a start left unchecked stay unchecked through the cache, and an invalid one is still found', async () => {
    const store = createMemoryStore()
    const { state, clock } = await start({ store })
    await populate(state)
    const before = view(state)
    await state.stop()
    await withOpen(store, () => store.del(INDEX_CACHE_KEY))
    const deferring = await start({ store, clock }) // a rebuild: statuses unchecked
    const unchecked = deferring.state.stats().entriesUnchecked
    expect(unchecked).toBe(8)
    await deferring.state.stop() // nothing read: the cache holds them unchecked

    const restored = await start({ store, clock })
    expect(restored.state.stats().indexFromCache).toBe(true)
    expect(restored.state.stats().entriesUnchecked).toBe(unchecked)
    expect(view(restored.state)).toEqual(before)
    expect(restored.state.stats().entriesUnchecked).toBe(0)
    expect(restored.logger.at('warn').map((record) => record.obj.path)).toContainEqual(['status', 'd4/0/node-b'])
  })

  it('after a restore, changes update the index as they do after a rebuild', async () => {
    const store = createMemoryStore()
    const first = await start({ store })
    await populate(first.state)
    await first.state.stop()
    const restored = await start({ store, clock: first.clock })
    const rebuiltStore = createMemoryStore()
    const rebuilt = await start({ store: rebuiltStore, clock: first.clock, indexCacheEntriesMin: Number.MAX_SAFE_INTEGER })
    await rebuilt.state.mergeSnapshot(restored.state.saveSnapshot())

    for (const { state } of [restored, rebuilt]) {
      const change = foreignChange(state, (doc) => {
        ;(doc.status as DocMap)['d0/0/node-a'] = new A.ImmutableString('{}') // was valid
        ;(doc.placements as DocMap)['d3/7'] = new A.ImmutableString('still not json') // was invalid
        ;(doc.deployments as DocMap)['d5/replicas'] = 4
      })
      const result = await state.applyChanges([change])
      expect(result.invalidEntries).toEqual([['status', 'd0/0/node-a']])
      await state.writePlacement('d5', 0, { generation: 2, winners: ['node-c'], bids: [], shortlist: PEERS, closedBy: 'node-c', openedAtMs: 3, closedAtMs: 4, history: [] })
    }
    expect(restored.state.stats().indexFromCache).toBe(true)
    expect(restored.state.deployment('d5')?.replicas).toBe(4)
    expect(restored.state.stats().invalidEntries).toBe(4)
    const { heads: _restoredHeads, ...restoredView } = view(restored.state) as Record<string, unknown>
    const { heads: _rebuiltHeads, ...rebuiltView } = view(rebuilt.state) as Record<string, unknown>
    expect(restoredView).toEqual(rebuiltView)
  })

  it('a cache written for other heads is not used, and is deleted: the start rebuilds and sees the newer change', async () => {
    const store = createMemoryStore()
    const first = await start({ store })
    await populate(first.state)
    await first.state.stop()
    const older = await withOpen(store, async () => (await store.get(INDEX_CACHE_KEY))!)

    const second = await start({ store, clock: first.clock })
    await second.state.createDeployment({ id: 'late', spec: { name: 'late', image: 'nginx' }, owner: 'node-a' })
    const expected = view(second.state)
    await second.state.stop()
    await withOpen(store, () => store.put(INDEX_CACHE_KEY, older))

    const third = await start({ store, clock: first.clock })
    expect(third.state.stats().indexFromCache).toBe(false)
    expect(refusals(third)).toEqual(['written for other heads'])
    expect(view(third.state)).toEqual(expected)
    expect(third.state.deployment('late')).toBeDefined()
    await third.state.stop()
    const fourth = await start({ store, clock: first.clock })
    expect(fourth.state.stats().indexFromCache).toBe(true) // the third stop wrote a fresh one
  })

  it('a damaged, foreign-rules, malformed or uninflatable cache is refused with its reason; the node starts and reads right', async () => {
    const { store, first, expected, header, good, body } = await stoppedWithCache()
    const flipped = Uint8Array.from(good)
    flipped[flipped.length - 1]! ^= 0xff
    const emptySections = { nodes: [], deployments: [], placements: [], status: [] }
    const cases: Array<[Uint8Array, string]> = [
      [flipped, 'damaged: checksum mismatch'],
      [forgedCache({ ...header, fingerprint: 'other rules' }, body), 'written under other validation rules'],
      [forgedCache({ ...header, format: 99 }, deflatedJson({})), 'unknown format'],
      [forgedCache(header, deflatedJson({ sections: { ...emptySections, deployments: [[['d0'], 2, {}]] }, invalid: [] })), 'malformed entries'],
      [forgedCache(header, deflatedJson({ sections: { ...emptySections, status: [[[], 0, {}]] }, invalid: [] })), 'malformed entries'],
      [forgedCache(header, new TextEncoder().encode('plain, not deflated')), expect.stringMatching(/^not inflatable/) as unknown as string],
      [seal(new TextEncoder().encode('no header line')), 'no header'],
    ]
    for (const [blob, reason] of cases) {
      await withOpen(store, () => store.put(INDEX_CACHE_KEY, blob))
      const started = await start({ store, clock: first.clock, indexCacheEntriesMin: Number.MAX_SAFE_INTEGER })
      expect(started.state.stats().indexFromCache).toBe(false)
      expect(refusals(started)).toEqual([reason])
      expect(view(started.state)).toEqual(expected)
      await started.state.stop()
    }
    // The same blob, intact, is used.
    await withOpen(store, () => store.put(INDEX_CACHE_KEY, good))
    const again = await start({ store, clock: first.clock })
    expect(again.state.stats().indexFromCache).toBe(true)
  })

  it('a cache whose restore fails (a value the shape checks let through) is dropped for a rebuild that reads right', async () => {
    const { store, first, expected, header, body } = await stoppedWithCache()
    const snapshot = JSON.parse(new TextDecoder().decode(inflateRawSync(body))) as IndexSnapshot
    snapshot.sections.placements[0]![2] = 42 // not a placement: its winners cannot be listed
    await withOpen(store, () => store.put(INDEX_CACHE_KEY, forgedCache(header, deflatedJson(snapshot))))
    const started = await start({ store, clock: first.clock })
    expect(started.state.stats().indexFromCache).toBe(false)
    expect(started.logger.at('warn').map((record) => record.msg)).toContain('index cache not used: restoring it failed; the index is rebuilt from the document')
    expect(view(started.state)).toEqual(expected)
  })

  it('below indexCacheEntriesMin a stop writes nothing and drops a cache left from before', async () => {
    const store = createMemoryStore()
    const first = await start({ store, indexCacheEntriesMin: 1_000 })
    await populate(first.state)
    await first.state.stop()
    expect(await withOpen(store, () => store.get(INDEX_CACHE_KEY))).toBeUndefined()
    const keeping = await start({ store, clock: first.clock, indexCacheEntriesMin: 10 })
    await keeping.state.stop()
    expect(await withOpen(store, () => store.get(INDEX_CACHE_KEY))).toBeDefined()
    const small = await start({ store, clock: first.clock, indexCacheEntriesMin: 1_000 })
    expect(small.state.stats().indexFromCache).toBe(true) // it fits this document: used
    await small.state.stop()
    expect(await withOpen(store, () => store.get(INDEX_CACHE_KEY))).toBeUndefined()
  })

  it('a failed cache write is logged and the stop completes; the next start rebuilds', async () => {
    const store = flakyStore(createMemoryStore())
    const first = await start({ store })
    await populate(first.state)
    const expected = view(first.state)
    store.failNextPut()
    await first.state.stop()
    expect(first.logger.at('warn').map((record) => record.msg)).toContain('cluster state: index cache not written; the next start rebuilds the index')
    const restarted = await start({ store, clock: first.clock })
    expect(restarted.state.stats().indexFromCache).toBe(false)
    expect(view(restarted.state)).toEqual(expected)
  })
})
