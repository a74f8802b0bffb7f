/** Persistence of the cluster state: restart, compaction, damage, failed writes, invalid entries. */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import * as A from '@automerge/automerge'
import { createVirtualClock, type VirtualClock } from '../sim/virtual-clock.ts'
import type { ClusterState } from './cluster-state.ts'
import { toDocValue, type DocMap } from './doc-codec.ts'
import { createLevelStore, createMemoryStore } from './level-store.ts'
import { loadHandle } from './doc-handle.ts'
import { GENESIS_HASH } from './document.ts'
import { seal } from './envelope.ts'
import { CHUNK_PREFIX, SNAPSHOT_KEY } from './persistence.ts'
import { flakyStore, foreignChange, sampleNode, sampleStatus, startState, withOpen, type Started, type StartOptions } from './test-support.ts'

/** Starts a ClusterState on a memory store and a fresh virtual clock unless given. */
const start = (options: Partial<StartOptions<VirtualClock>> = {}): Promise<Started<VirtualClock>> =>
  startState({ clock: createVirtualClock(), ...options })

type AnyDoc = Record<string, unknown>

/** Everything a reader can see, for comparing two replicas or two loads. */
function view(state: ClusterState): unknown {
  return {
    heads: state.heads(),
    nodes: state.nodes(),
    deployments: state.deployments(),
    placements: state.deployments().map((d) => [...state.placements(d.id)]),
    statuses: state.deployments().map((d) => state.statuses(d.id)),
  }
}

const docJs = (state: ClusterState): unknown => A.toJS(A.load<AnyDoc>(state.saveSnapshot()))

async function writeSome(state: ClusterState, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    if (i % 3 === 0) await state.createDeployment({ id: `d${i}`, spec: { name: `web-${i}`, image: 'nginx' }, owner: state.selfId })
    else await state.reportStatus(`d${i - (i % 3)}`, 0, { ...sampleStatus, restarts: i })
  }
}

describe('cluster state persistence', () => {
  it('a node restarted on the same store has the same heads and the same entries', async () => {
    const store = createMemoryStore()
    const { state, clock } = await start({ store })
    await state.upsertSelfNode(sampleNode)
    await writeSome(state, 10)
    await state.writePlacement('d0', 0, {
      generation: 1, winners: ['node-a'], bids: [], shortlist: ['node-a'], closedBy: 'node-a', openedAtMs: 1, closedAtMs: 2, history: [],
    })
    const before = view(state)
    await state.stop()
    await clock.advance(10_000)
    const restarted = await start({ store, clock })
    expect(view(restarted.state)).toEqual(before)
    expect(restarted.state.stats().corruptChunks).toBe(0)
  })

  it('nodes persisting the very same change objects (gossip in the simulator) each store chunks that load back, however the batches differ', async () => {
    const clock = createVirtualClock()
    const writer = await start({ clock, selfId: 'node-w' })
    await writer.state.upsertSelfNode(sampleNode)
    await writeSome(writer.state, 6)
    // Past the genesis every node holds: changes new to each node are what it persists as they came.
    const changes = writer.state.changesSince([GENESIS_HASH])
    // A node applying the batch a node before it applied (the same objects) reuses that node's sealed chunk.
    const batches = [changes.slice(0, 2), changes, changes, changes.slice(0, 2)]
    const expected = view(writer.state)
    for (const [i, batch] of batches.entries()) {
      const store = createMemoryStore()
      const { state } = await start({ clock, store, selfId: `node-${i}` })
      await state.applyChanges(batch)
      if (batch.length < changes.length) await state.applyChanges(changes.slice(batch.length))
      await state.stop()
      const restarted = await start({ clock, store, selfId: `node-${i}` })
      expect(restarted.state.heads()).toEqual(writer.state.heads())
      expect(view(restarted.state)).toEqual(expected)
      expect(restarted.state.stats().corruptChunks).toBe(0)
      await restarted.state.stop()
    }
  })

  it('the same holds on LevelDB across a close and a new store on the same directory', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lattice-crdt-'))
    try {
      const { state, clock } = await start({ store: createLevelStore({ path: dir }), compactAfterChunks: 4 })
      await writeSome(state, 9)
      const before = view(state)
      await state.stop()
      const restarted = await start({ store: createLevelStore({ path: dir }), clock })
      expect(view(restarted.state)).toEqual(before)
      await restarted.state.stop()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('with a small compactAfterChunks, many writes leave one snapshot and few chunks, and reload equal', async () => {
    const store = createMemoryStore()
    const { state, clock } = await start({ store, compactAfterChunks: 5 })
    await writeSome(state, 23)
    await state.stop() // flushes a queued compaction too
    const { snapshot, chunks } = await withOpen(store, async () => ({ snapshot: await store.get(SNAPSHOT_KEY), chunks: await store.list(CHUNK_PREFIX) }))
    expect(snapshot).toBeDefined()
    expect(chunks.length).toBeLessThan(5)
    const restarted = await start({ store, clock, compactAfterChunks: 5 })
    expect(restarted.state.stats().chunks).toBe(chunks.length)
    expect(restarted.state.heads()).toEqual(state.heads())
    expect(docJs(restarted.state)).toEqual(docJs(state))
    expect(view(restarted.state)).toEqual(view(state))
  })

  it('incremental chunks plus compactions load to the same document as one full save', async () => {
    const store = createMemoryStore()
    const { state, clock } = await start({ store, compactAfterChunks: 4 })
    await writeSome(state, 14)
    const full = A.load<AnyDoc>(state.saveSnapshot())
    await state.stop()
    const restarted = await start({ store, clock })
    expect(restarted.state.heads()).toEqual(A.getHeads(full))
    expect(docJs(restarted.state)).toEqual(A.toJS(full))
  })

  it('stats report the bytes in the store, the chunks since the snapshot and the change count', async () => {
    const store = createMemoryStore()
    const { state } = await start({ store, compactAfterChunks: 100 })
    await writeSome(state, 6)
    const stored = [...(await store.list('doc/chunk/')), ...(await store.list(SNAPSHOT_KEY))]
    expect(state.stats()).toEqual({
      sizeBytes: stored.reduce((sum, entry) => sum + entry.value.length, 0),
      changeCount: 7, // genesis + 6 writes
      headsCount: 1,
      chunks: 6,
      invalidEntries: 0,
      corruptChunks: 0,
      entriesDecoded: expect.any(Number),
      entriesUnchecked: 0,
      indexFromCache: false,
      epoch: 0,
    })
  })

  it('a chunk overwritten with garbage: start succeeds, corruptChunks is 1, the error names its key, other chunks still load', async () => {
    const store = createMemoryStore()
    const { state, clock } = await start({ store, compactAfterChunks: 1_000 })
    await state.upsertSelfNode(sampleNode)
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await state.stop()
    const second = await withOpen(store, async () => {
      const [, chunk] = await store.list(CHUNK_PREFIX)
      await store.put(chunk!.key, Uint8Array.from({ length: 64 }, (_, i) => (i * 37) % 256))
      return chunk
    })

    const restarted = await start({ store, clock })
    expect(restarted.state.stats().corruptChunks).toBe(1)
    const errors = restarted.logger.at('error')
    expect(errors).toHaveLength(1)
    expect(errors[0]!.obj).toMatchObject({ key: second!.key })
    expect(restarted.state.node('node-a')).toBeDefined() // the first chunk
    expect(restarted.state.deployment('d1')).toBeUndefined() // lost here; sync brings it back
    await restarted.state.createDeployment({ id: 'd2', spec: { name: 'api', image: 'nginx' }, owner: 'node-a' })
  })

  it('one flipped bit inside a chunk is caught by the checksum, though Automerge alone would load it silently', async () => {
    const store = createMemoryStore()
    const { state, clock } = await start({ store })
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await state.stop()
    const chunk = await withOpen(store, async () => {
      const [first] = await store.list(CHUNK_PREFIX)
      const damaged = first!.value.slice()
      damaged[damaged.length - 3]! ^= 0x01
      await store.put(first!.key, damaged)
      return first
    })
    const restarted = await start({ store, clock })
    expect(restarted.state.stats().corruptChunks).toBe(1)
    expect(restarted.logger.at('error')[0]!.obj).toMatchObject({ key: chunk!.key, reason: 'checksum mismatch' })
  })

  it('a damaged snapshot is reported and skipped; the node starts with what the chunks hold', async () => {
    const store = createMemoryStore()
    const { state, clock } = await start({ store, compactAfterChunks: 2 })
    await writeSome(state, 3)
    await state.stop()
    await withOpen(store, async () => {
      expect(await store.get(SNAPSHOT_KEY)).toBeDefined()
      await store.put(SNAPSHOT_KEY, new Uint8Array(100))
    })
    const restarted = await start({ store, clock })
    expect(restarted.state.stats().corruptChunks).toBe(1)
    expect(restarted.logger.at('error')[0]!.obj).toMatchObject({ key: SNAPSHOT_KEY })
    await restarted.state.upsertSelfNode(sampleNode)
    expect(restarted.state.node('node-a')).toBeDefined()
  })

  it('the next compaction deletes a damaged chunk, so the damage is reported at one start only', async () => {
    const store = createMemoryStore()
    const { state, clock } = await start({ store, compactAfterChunks: 3 })
    await state.upsertSelfNode(sampleNode)
    await state.stop()
    await withOpen(store, async () => {
      const [chunk] = await store.list(CHUNK_PREFIX)
      await store.put(chunk!.key, new Uint8Array([1, 2, 3]))
    })
    const second = await start({ store, clock, compactAfterChunks: 3 })
    expect(second.state.stats().corruptChunks).toBe(1)
    await writeSome(second.state, 3)
    await second.state.stop()
    const third = await start({ store, clock, compactAfterChunks: 3 })
    expect(third.state.stats().corruptChunks).toBe(0)
    expect(third.state.heads()).toEqual(second.state.heads())
  })

  it('a failed chunk write rejects that write; the next write carries its change, so nothing is lost', async () => {
    const store = flakyStore(createMemoryStore())
    const { state, clock } = await start({ store })
    store.failNextPut()
    await expect(state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })).rejects.toThrow('injected')
    await state.upsertSelfNode(sampleNode)
    await state.stop()
    const restarted = await start({ store, clock })
    expect(restarted.state.deployment('d1')).toBeDefined()
    expect(restarted.state.node('node-a')).toBeDefined()
  })

  it('stop flushes a change whose write failed', async () => {
    const store = flakyStore(createMemoryStore())
    const { state, clock } = await start({ store })
    store.failNextPut()
    await expect(state.upsertSelfNode(sampleNode)).rejects.toThrow('injected')
    await state.stop()
    const restarted = await start({ store, clock })
    expect(restarted.state.node('node-a')).toBeDefined()
  })

  it('a failed compaction keeps every chunk, is logged, and is retried after the next write', async () => {
    const store = flakyStore(createMemoryStore())
    const { state, clock, logger } = await start({ store, compactAfterChunks: 3 })
    store.failNextBatch()
    await writeSome(state, 3)
    await state.reportStatus('d0', 0, { ...sampleStatus, restarts: 99 }) // lets the failed compaction run, then retries
    await state.stop()
    expect(logger.at('error').map((record) => record.msg)).toEqual([expect.stringContaining('compaction failed')])
    expect(await withOpen(store, () => store.get(SNAPSHOT_KEY))).toBeDefined()
    const restarted = await start({ store, clock })
    expect(view(restarted.state)).toEqual(view(state))
  })

  it('a fresh node that merges a peer’s snapshot stores those bytes as its snapshot, not every change as a chunk', async () => {
    const { state: source } = await start({ selfId: 'node-a' })
    await writeSome(source, 30)
    const snapshot = source.saveSnapshot()
    const store = createMemoryStore()
    const { state: fresh, clock } = await start({ selfId: 'node-b', store })
    await fresh.mergeSnapshot(snapshot)
    expect(fresh.stats()).toMatchObject({ chunks: 0, sizeBytes: seal(snapshot).byteLength })
    await fresh.stop()
    const restarted = await start({ selfId: 'node-b', store, clock })
    expect(view(restarted.state)).toEqual(view(source))
  })

  it('a snapshot merged into a node holding changes of its own is written as a new snapshot of both', async () => {
    const { state: source } = await start({ selfId: 'node-a' })
    await writeSome(source, 9)
    const store = createMemoryStore()
    const { state: other, clock } = await start({ selfId: 'node-b', store })
    await other.createDeployment({ id: 'mine', spec: { name: 'mine', image: 'nginx' }, owner: 'node-b' })
    await other.mergeSnapshot(source.saveSnapshot())
    expect(other.stats().chunks).toBe(0)
    const merged = view(other)
    await other.stop()
    const restarted = await start({ selfId: 'node-b', store, clock })
    expect(view(restarted.state)).toEqual(merged)
    expect(restarted.state.deployments().map((d) => d.id).sort()).toEqual(['d0', 'd3', 'd6', 'mine'])
  })

  it('each start writes with a new actor id, so a node that lost chunks never reuses a sequence number', async () => {
    const store = createMemoryStore()
    const actors: string[] = []
    const first = await start({ store })
    first.state.onLocalChange((change) => actors.push(A.decodeChange(change).actor))
    await first.state.upsertSelfNode(sampleNode)
    await first.state.stop()
    const second = await start({ store, clock: first.clock }) // same instant: the boot count differs
    second.state.onLocalChange((change) => actors.push(A.decodeChange(change).actor))
    await second.state.upsertSelfNode({ ...sampleNode, name: 'renamed' })
    expect(actors).toHaveLength(2)
    expect(actors[0]).not.toBe(actors[1])
  })

  it('actor ids are derived, not random: the same store history and clock give the same heads', async () => {
    const run = async (): Promise<string[]> => {
      const { state } = await start({ store: createMemoryStore(), clock: createVirtualClock(5_000) })
      await writeSome(state, 4)
      return state.heads()
    }
    expect(await run()).toEqual(await run())
  })
})

describe('cluster state validation on read', () => {
  it('a deployment whose definition JSON is garbage is skipped, counted and warned with its path; others still read', async () => {
    const { state, logger } = await start()
    await state.createDeployment({ id: 'good', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await state.applyChanges([foreignChange(state, (doc) => {
      ;(doc.deployments as DocMap).bad = new A.ImmutableString('{"id":"bad","spec":{"name": "web", "image":')
    })])
    expect(state.deployment('bad')).toBeUndefined()
    expect(state.deployments().map((d) => d.id)).toEqual(['good'])
    expect(state.stats().invalidEntries).toBe(1)
    const warnings = logger.at('warn')
    expect(warnings).toHaveLength(1)
    expect(warnings[0]!.obj).toMatchObject({ path: ['deployments', 'bad'] })
    expect(String(warnings[0]!.obj.reason)).toContain('definition is not valid JSON')
  })

  it('a definition whose spec breaks the schema, or whose id is not its key, is skipped and reported', async () => {
    const { state, logger } = await start()
    await state.createDeployment({ id: 'good', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    const definition = (id: string, spec: unknown): A.ImmutableString =>
      new A.ImmutableString(JSON.stringify({ id, spec, specVersion: 1, owner: 'node-a', createdAtMs: 1 }))
    const result = await state.applyChanges([foreignChange(state, (doc) => {
      const deployments = doc.deployments as DocMap
      deployments.badspec = definition('badspec', { ...state.deployment('good')!.spec, image: '' })
      deployments.moved = definition('elsewhere', state.deployment('good')!.spec)
    })])
    expect(result.invalidEntries.sort()).toEqual([['deployments', 'badspec'], ['deployments', 'moved']])
    expect(state.deployments().map((d) => d.id)).toEqual(['good'])
    expect(logger.at('warn').map((w) => String(w.obj.reason))).toEqual(
      expect.arrayContaining([expect.stringContaining('definition.spec.image'), expect.stringContaining('does not match its key moved')]),
    )
  })

  it('a field written under a deployment that has no definition makes an invalid entry, not a deployment', async () => {
    const { state } = await start()
    const result = await state.applyChanges([foreignChange(state, (doc) => {
      ;(doc.deployments as DocMap)['ghost/replicas'] = 3
    })])
    expect(result.invalidEntries).toEqual([['deployments', 'ghost']])
    expect(state.deployments()).toEqual([])
    // The id is taken: a new deployment must not inherit the stray field.
    await expect(state.createDeployment({ id: 'ghost', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })).rejects.toMatchObject({ code: 'CONFLICT' })
  })

  it('an invalid entry repaired by a later change is read again and no longer counted', async () => {
    const { state } = await start()
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await state.applyChanges([foreignChange(state, (doc) => {
      ;(doc.deployments as DocMap)['d1/replicas'] = -3
    })])
    expect(state.deployment('d1')).toBeUndefined()
    expect(state.stats().invalidEntries).toBe(1)
    await state.applyChanges([foreignChange(state, (doc) => {
      ;(doc.deployments as DocMap)['d1/replicas'] = 2
    })])
    expect(state.deployment('d1')?.replicas).toBe(2)
    expect(state.stats().invalidEntries).toBe(0)
  })

  it('placements and statuses with keys that do not split into their parts, or bodies that break the schema, are each skipped and counted', async () => {
    const { state } = await start({ selfId: 'node-a' })
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx', replicas: 2 }, owner: 'node-a' })
    await state.createDeployment({ id: 'd2', spec: { name: 'api', image: 'nginx' }, owner: 'node-a' })
    await state.reportStatus('d1', 0, sampleStatus)
    await state.writePlacement('d1', 0, { generation: 1, winners: ['node-a'], bids: [], shortlist: [], closedBy: 'node-a', openedAtMs: 1, closedAtMs: 2, history: [] })
    const status = state.statuses('d1')[0]!
    const placement = state.placement('d1', 0)!
    const body = new A.ImmutableString(JSON.stringify({ ...status, peerId: undefined, replica: undefined }))
    const result = await state.applyChanges([foreignChange(state, (doc) => {
      const statuses = doc.status as DocMap
      const placements = doc.placements as DocMap
      statuses['d1/07/node-b'] = body // non-canonical replica
      statuses['d1/1/node b'] = body // not a peer id
      statuses['d1/1'] = body // no peer
      statuses['d2/0/node-a'] = new A.ImmutableString('not json')
      placements['d1/1/extra'] = new A.ImmutableString(JSON.stringify(placement)) // too many parts
      placements['d1/64'] = new A.ImmutableString(JSON.stringify(placement)) // beyond any replica index
      placements['d2/0'] = new A.ImmutableString(JSON.stringify({ ...placement, winners: 'node-a' }))
      ;(doc.nodes as DocMap)['node-b'] = toDocValue({ ...sampleNode, peerId: 'node-c', joinedAtMs: 1, updatedAtMs: 1 }) // disagrees with its key
    })])
    expect(result.invalidEntries).toHaveLength(8)
    expect(state.statuses('d1')).toEqual([status])
    expect(state.statuses('d2')).toEqual([])
    expect([...state.placements('d1')]).toEqual([[0, placement]])
    expect(state.placements('d2').size).toBe(0)
    expect(state.nodes()).toEqual([])
    expect(state.stats().invalidEntries).toBe(8)
    // A report overwrites what another peer broke under this node's key.
    await state.reportStatus('d2', 0, sampleStatus)
    expect(state.statuses('d2')).toHaveLength(1)
    expect(state.stats().invalidEntries).toBe(7)
  })

  it('a section that is not a map is reported once and its entries read as absent', async () => {
    const { state } = await start({ selfId: 'node-a' })
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await state.reportStatus('d1', 0, sampleStatus)
    const result = await state.applyChanges([foreignChange(state, (doc) => {
      doc.status = 'not a map'
    })])
    expect(result.invalidEntries).toEqual([['status']])
    expect(state.statuses('d1')).toEqual([])
    expect(state.deployment('d1')).toBeDefined()
  })

  it('a section map replaced by a peer: the new map is read from then on, and a write into the old one is not (object paths are remembered across changes)', async () => {
    const { state } = await start({ selfId: 'node-a' })
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await state.reportStatus('d1', 0, sampleStatus)
    const handle = loadHandle(state.saveSnapshot(), 'fd'.repeat(16))
    const oldSection = handle.getWithType('_root', 'status')![1] as string
    const stored = handle.get(oldSection, 'd1/0/node-a') as string
    await state.reportStatus('d1', 1, sampleStatus)
    expect(state.statuses('d1')).toHaveLength(2)
    const replaced = handle.putObject('_root', 'status', {})
    handle.commit('replace', 0)
    await state.applyChanges([handle.getLastLocalChange()!])
    expect(state.statuses('d1')).toEqual([])
    handle.put(replaced, 'd1/0/node-b', stored)
    handle.put(oldSection, 'd1/1/node-b', stored)
    handle.commit('both', 0)
    await state.applyChanges([handle.getLastLocalChange()!])
    expect(state.statuses('d1').map((status) => [status.replica, status.peerId])).toEqual([[0, 'node-b']])
  })

  it('a node entry replaced by a peer: writes into the new map and the maps in it are read, a write into the old one changes nothing (object places are remembered across changes)', async () => {
    const { state } = await start({ selfId: 'node-a' })
    const peer = (await start({ selfId: 'node-b' })).state
    await peer.upsertSelfNode(sampleNode)
    await state.applyChanges(peer.changesSince([]))
    const handle = loadHandle(state.saveSnapshot(), 'fd'.repeat(16))
    const nodesId = handle.getWithType('_root', 'nodes')![1] as string
    const oldEntry = handle.getWithType(nodesId, 'node-b')![1] as string
    const oldCapacity = handle.getWithType(oldEntry, 'capacity')![1] as string
    const apply = async (edit: () => void): Promise<void> => {
      edit()
      handle.commit('edit', 0)
      await state.applyChanges([handle.getLastLocalChange()!])
    }
    const nodeB = () => state.nodes().find((node) => node.peerId === 'node-b')
    await apply(() => handle.put(oldEntry, 'name', 'renamed'))
    expect(nodeB()?.name).toBe('renamed')
    await apply(() => handle.put(oldCapacity, 'cpu', 4))
    expect(nodeB()?.capacity.cpu).toBe(4)
    // Replaced whole: a copy made field by field, as a peer's fresh write would make it.
    const copy = (target: string, key: string | number, value: unknown, insert = false): void => {
      if (Array.isArray(value) || (typeof value === 'object' && value !== null)) {
        const made = insert ? handle.insertObject(target, key as number, Array.isArray(value) ? [] : {}) : handle.putObject(target, key, Array.isArray(value) ? [] : {})
        if (Array.isArray(value)) value.forEach((item, index) => copy(made, index, item, true))
        else for (const [field, item] of Object.entries(value)) copy(made, field, item)
      } else if (insert) handle.insert(target, key as number, value as string)
      else handle.put(target, key, value as string)
    }
    await apply(() => copy(nodesId, 'node-b', { ...(handle.materialize(oldEntry) as object), name: 'second' }))
    expect(nodeB()?.name).toBe('second')
    expect(nodeB()?.capacity.cpu).toBe(4)
    await apply(() => {
      handle.put(oldEntry, 'name', 'ghost')
      handle.put(oldCapacity, 'cpu', 64)
    })
    expect(nodeB()?.name).toBe('second')
    expect(nodeB()?.capacity.cpu).toBe(4)
    const newCapacity = handle.getWithType(handle.getWithType(nodesId, 'node-b')![1] as string, 'capacity')![1] as string
    await apply(() => handle.put(newCapacity, 'cpu', 16))
    expect(nodeB()?.capacity.cpu).toBe(16)
    // Two entries made in one change, their maps interleaved: each later write lands in its own entry.
    const template = handle.materialize(oldEntry) as Record<string, unknown>
    await apply(() => {
      const c = handle.putObject(nodesId, 'node-c', {})
      const d = handle.putObject(nodesId, 'node-d', {})
      for (const [field, value] of Object.entries(template)) {
        copy(d, field, field === 'peerId' ? 'node-d' : value)
        copy(c, field, field === 'peerId' ? 'node-c' : value)
      }
    })
    const capacityOf = (peerId: string): string => handle.getWithType(handle.getWithType(nodesId, peerId)![1] as string, 'capacity')![1] as string
    const nameOf = (peerId: string) => state.nodes().find((node) => node.peerId === peerId)?.name
    await apply(() => handle.put(handle.getWithType(nodesId, 'node-d')![1] as string, 'name', 'dee'))
    expect(nameOf('node-d')).toBe('dee')
    await apply(() => handle.put(handle.getWithType(nodesId, 'node-c')![1] as string, 'name', 'cee'))
    expect(nameOf('node-c')).toBe('cee')
    await apply(() => handle.put(capacityOf('node-c'), 'cpu', 2))
    await apply(() => handle.put(capacityOf('node-d'), 'gpus', 1))
    const byPeer = new Map(state.nodes().map((node) => [node.peerId, node]))
    expect([byPeer.get('node-c')?.name, byPeer.get('node-d')?.name]).toEqual(['cee', 'dee'])
    expect([byPeer.get('node-c')?.capacity.cpu, byPeer.get('node-c')?.capacity.gpus]).toEqual([2, 0])
    expect([byPeer.get('node-d')?.capacity.cpu, byPeer.get('node-d')?.capacity.gpus]).toEqual([64, 1]) // the old map's values, ghost write included, copied
  })

  it('a key named __proto__ holding a map, in a section or inside an entry, is an invalid entry; the rest of the section still reads, at load too', async () => {
    const store = createMemoryStore()
    const { state, clock } = await start({ selfId: 'node-a', store })
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await state.writePlacement('d1', 0, { generation: 1, winners: ['node-a'], bids: [], shortlist: [], closedBy: 'node-a', openedAtMs: 1, closedAtMs: 2, history: [] })
    const placement = state.placement('d1', 0)
    // Written with the raw handle: materialize would make such a map the prototype of the section it reads.
    const handle = loadHandle(state.saveSnapshot(), 'fe'.repeat(16))
    const sectionId = (name: string): string => handle.getWithType('_root', name)![1] as string
    handle.putObject(sectionId('placements'), '__proto__', { 'd1/1': JSON.stringify(placement) })
    const node = handle.putObject(sectionId('nodes'), 'node-b', {})
    handle.putObject(node, '__proto__', { peerId: 'node-b' })
    handle.commit('proto', 0)
    const result = await state.applyChanges([handle.getLastLocalChange()!])
    expect(result.invalidEntries.sort()).toEqual([['nodes', 'node-b'], ['placements', '__proto__']])
    expect([...state.placements('d1')]).toEqual([[0, placement]])
    await state.stop()
    const restarted = (await start({ selfId: 'node-a', store, clock })).state
    expect([...restarted.placements('d1')]).toEqual([[0, placement]])
    expect(restarted.nodes()).toEqual([])
    expect(restarted.stats().invalidEntries).toBe(2)
  })

  it('an invalid entry is counted at load too, and warned once per reason, not once per read', async () => {
    const store = createMemoryStore()
    const { state, clock } = await start({ store })
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await state.applyChanges([foreignChange(state, (doc) => {
      ;(doc.deployments as DocMap)['d1/desired'] = 'paused'
    })])
    for (let i = 0; i < 3; i++) state.deployments()
    expect(state.stats().invalidEntries).toBe(1)
    await state.stop()
    const restarted = await start({ store, clock })
    expect(restarted.state.stats().invalidEntries).toBe(1)
    expect(restarted.logger.at('warn')).toHaveLength(1)
    expect(restarted.state.deployments()).toEqual([])
  })
})

describe('cluster state: statuses validated on first read after a restart', () => {
  /** A node holding one valid status per replica of d1 and d2, and four invalid ones, restarted on its store. */
  const restartedWithInvalidStatuses = async () => {
    const store = createMemoryStore()
    const { state, clock } = await start({ selfId: 'node-a', store })
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx', replicas: 2 }, owner: 'node-a' })
    await state.createDeployment({ id: 'd2', spec: { name: 'api', image: 'nginx' }, owner: 'node-a' })
    await state.reportStatus('d1', 0, sampleStatus)
    await state.reportStatus('d1', 1, sampleStatus)
    const status = state.statuses('d1')[0]!
    const body = new A.ImmutableString(JSON.stringify({ ...status, peerId: undefined, replica: undefined }))
    const result = await state.applyChanges([foreignChange(state, (doc) => {
      const statuses = doc.status as DocMap
      statuses['d1/07/node-b'] = body // non-canonical replica
      statuses['d1/1/node b'] = body // not a peer id
      statuses['d2/0/node-a'] = new A.ImmutableString('not json')
      statuses['d2/0/node-c'] = new A.ImmutableString(JSON.stringify({ ...sampleStatus, state: 'dancing', updatedAtMs: 1 }))
    })])
    expect(result.invalidEntries).toHaveLength(4)
    expect(state.stats().invalidEntries).toBe(4)
    const before = { d1: state.statuses('d1'), d2: state.statuses('d2'), mine: state.statusesReportedBy('node-a') }
    await state.stop()
    return { before, status, ...(await start({ selfId: 'node-a', store, clock })) }
  }

  it('reads give what an eager load gives; each invalid status is warned when first read, and counted', async () => {
    const { before, state, logger } = await restartedWithInvalidStatuses()
    expect(state.stats().entriesUnchecked).toBe(6)
    expect(logger.at('warn')).toEqual([]) // nothing read yet
    expect(state.statuses('d1')).toEqual(before.d1)
    expect(state.stats().entriesUnchecked).toBe(2) // d2's two
    expect(logger.at('warn').map((w) => w.obj.path)).toEqual(expect.arrayContaining([['status', 'd1/07/node-b'], ['status', 'd1/1/node b']]))
    expect(state.statusesReportedBy('node-a').sort((a, b) => byKey(a).localeCompare(byKey(b)))).toEqual(before.mine.sort((a, b) => byKey(a).localeCompare(byKey(b))))
    expect(state.statusesReportedBy('node-c')).toEqual([])
    expect(state.statuses('d2')).toEqual(before.d2)
    expect(state.stats().invalidEntries).toBe(4)
    for (let i = 0; i < 3; i++) state.statuses('d1')
    expect(logger.at('warn')).toHaveLength(4) // once each, not once per read
  })

  it('invalidEntries counts the unchecked statuses when read, right after the start', async () => {
    const { state } = await restartedWithInvalidStatuses()
    const stats = state.stats()
    expect(stats.entriesUnchecked).toBe(6)
    expect(stats.invalidEntries).toBe(4)
    expect(stats.entriesUnchecked).toBe(0)
    expect(state.statusesReportedBy('node-c')).toEqual([])
  })

  it("a peer's change to an unchecked status is blamed only for what it broke, as with an eager load", async () => {
    const { state, status } = await restartedWithInvalidStatuses()
    const stillInvalid = await state.applyChanges([foreignChange(state, (doc) => {
      ;(doc.status as DocMap)['d2/0/node-a'] = new A.ImmutableString('still not json')
    })])
    expect(stillInvalid.invalidEntries).toEqual([])
    const broken = await state.applyChanges([foreignChange(state, (doc) => {
      ;(doc.status as DocMap)['d1/0/node-a'] = new A.ImmutableString(JSON.stringify({ ...status, peerId: undefined, replica: undefined, restarts: -1 }))
    })])
    expect(broken.invalidEntries).toEqual([['status', 'd1/0/node-a']])
    expect(state.stats().invalidEntries).toBe(5)
  })

  it('a bulk merge that changes few entries reads them from the diff and reports exactly what it breaks; the rest wait for their first read', async () => {
    const { state } = await restartedWithInvalidStatuses()
    const peer = A.load<DocMap>(state.saveSnapshot(), { actor: 'ee'.repeat(16) })
    const changed = A.change(peer, { time: 0 }, (doc) => {
      ;(doc.status as DocMap)['d2/0/node-c'] = new A.ImmutableString('{}') // was invalid already
      ;(doc.status as DocMap)['d1/1/node-a'] = new A.ImmutableString('{}') // was valid
    })
    const touched: Array<'all' | string[]> = []
    state.onChange((change) => touched.push(change.deployments === 'all' ? 'all' : [...change.deployments].sort()))
    const result = await state.mergeSnapshot(A.save(changed))
    expect(result.invalidEntries).toEqual([['status', 'd1/1/node-a']])
    expect(touched).toEqual([['d1', 'd2']])
    expect(state.stats().entriesUnchecked).toBe(4) // the statuses nobody touched
    expect(state.stats().invalidEntries).toBe(5)
    expect(state.statuses('d1').map((status) => `${status.replica}/${status.peerId}`)).toEqual(['0/node-a'])
  })

  it('a bulk merge that changes most entries re-reads and validates every entry, and reports exactly what it breaks', async () => {
    const { state } = await restartedWithInvalidStatuses()
    const peer = A.load<DocMap>(state.saveSnapshot(), { actor: 'ee'.repeat(16) })
    const changed = A.change(peer, { time: 0 }, (doc) => {
      const statuses = doc.status as DocMap
      statuses['d2/0/node-c'] = new A.ImmutableString('{}') // was invalid already
      statuses['d1/1/node-a'] = new A.ImmutableString('{}') // was valid
      for (const key of ['d1/07/node-b', 'd1/1/node b', 'd2/0/node-a']) statuses[key] = new A.ImmutableString('still not a status')
      ;(doc.deployments as DocMap)['d1/replicas'] = 3
    })
    const touched: Array<'all' | string[]> = []
    state.onChange((change) => touched.push(change.deployments === 'all' ? 'all' : [...change.deployments].sort()))
    const result = await state.mergeSnapshot(A.save(changed))
    expect(result.invalidEntries).toEqual([['status', 'd1/1/node-a']])
    expect(touched).toEqual(['all'])
    expect(state.stats().entriesUnchecked).toBe(0)
    expect(state.stats().invalidEntries).toBe(5)
  })
})

const byKey = (entry: { deploymentId: string; replica: number }): string => `${entry.deploymentId}/${entry.replica}`
