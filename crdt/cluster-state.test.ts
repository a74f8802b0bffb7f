/** Reads and writes of the cluster state on one node. */
import { describe, expect, it } from 'vitest'
import * as A from '@automerge/automerge'
import { LatticeError, silentLogger } from '../core/index.ts'
import { createVirtualClock, type VirtualClock } from '../sim/virtual-clock.ts'
import { createClusterState } from './cluster-state.ts'
import { GENESIS_HASH } from './document.ts'
import { INDEX_CACHE_KEY } from './index-cache.ts'
import { createMemoryStore } from './level-store.ts'
import { SCHEMA_LIMITS, type PlacementInput } from './schema.ts'
import { recordingLogger, sampleNode, sampleStatus, startState, withOpen, type Started, type StartOptions } from './test-support.ts'

/** Starts a ClusterState on a memory store and a fresh virtual clock unless given. */
const start = (options: Partial<StartOptions<VirtualClock>> = {}): Promise<Started<VirtualClock>> =>
  startState({ clock: createVirtualClock(), ...options })

const code = async (promise: Promise<unknown>): Promise<string | undefined> => {
  try {
    await promise
    return undefined
  } catch (err) {
    return err instanceof LatticeError ? err.code : `not a LatticeError: ${String(err)}`
  }
}

const placement = (generation: number, winner: string, closedAtMs = 1_000): PlacementInput => ({
  generation,
  winners: [winner],
  bids: [{ peerId: winner, score: 0.5, atMs: closedAtMs - 10 }],
  shortlist: [winner, 'node-z'],
  closedBy: winner,
  openedAtMs: closedAtMs - 100,
  closedAtMs,
  history: [],
})

describe('cluster state: deployments', () => {
  it('a created deployment reads back with spec defaults filled, running, epoch 1, replicas from the spec', async () => {
    const { state, clock } = await start()
    const created = await state.createDeployment({
      id: 'd1',
      spec: { name: 'web', image: 'lattice-test/busybox:latest', replicas: 2, env: { KEY: 'v' } },
      owner: 'node-a',
    })
    const read = state.deployment('d1')
    expect(read).toEqual(created)
    expect(read).toMatchObject({
      id: 'd1',
      name: 'web',
      specVersion: 1,
      desired: 'running',
      replicas: 2,
      epoch: 1,
      owner: 'node-a',
      createdAtMs: clock.nowMs(),
      updatedAtMs: clock.nowMs(),
    })
    expect(read?.spec).toEqual({
      name: 'web',
      image: 'lattice-test/busybox:latest',
      env: { KEY: 'v' },
      ports: [],
      resources: { cpu: 0.5, memoryMB: 128 },
      replicas: 2,
      restart: 'always',
      constraints: { labels: {} },
      strategy: 'spread',
      capAdd: [],
    })
  })

  it('a deployment is stored as one compact JSON definition; the fields others change get their own keys once changed', async () => {
    const { state, clock } = await start()
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    const stored = (): Record<string, unknown> => A.load<Record<string, Record<string, unknown>>>(state.saveSnapshot()).deployments!
    expect(Object.keys(stored())).toEqual(['d1'])
    expect(A.isImmutableString(stored().d1)).toBe(true)
    const json = (stored().d1 as A.ImmutableString).val
    expect(json).not.toMatch(/\s/)
    expect(JSON.parse(json)).toEqual({ id: 'd1', spec: state.deployment('d1')!.spec, specVersion: 1, owner: 'node-a', createdAtMs: clock.nowMs() })

    await clock.advance(5)
    await state.setReplicas('d1', 3)
    expect(stored()).toEqual({ d1: expect.anything(), 'd1/replicas': 3, 'd1/updatedAtMs': clock.nowMs() })
    await state.setDesired('d1', 'stopped')
    expect(A.isImmutableString(stored()['d1/desired'])).toBe(true)
    expect(state.deployment('d1')).toMatchObject({ desired: 'stopped', replicas: 3, epoch: 1, updatedAtMs: clock.nowMs() })
  })

  it('a placement and a status are each one compact JSON string under "<id>/<replica>" and "<id>/<replica>/<peer>"', async () => {
    const { state } = await start({ selfId: 'node-a' })
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx', replicas: 2 }, owner: 'node-a' })
    await state.writePlacement('d1', 1, placement(1, 'node-a'))
    await state.reportStatus('d1', 1, sampleStatus)
    const doc = A.load<Record<string, Record<string, unknown>>>(state.saveSnapshot())
    expect(Object.keys(doc.placements!)).toEqual(['d1/1'])
    expect(JSON.parse((doc.placements!['d1/1'] as A.ImmutableString).val)).toEqual(state.placement('d1', 1))
    expect(Object.keys(doc.status!)).toEqual(['d1/1/node-a'])
    const { peerId, replica, ...body } = state.statuses('d1')[0]!
    expect([peerId, replica]).toEqual(['node-a', 1])
    expect(JSON.parse((doc.status!['d1/1/node-a'] as A.ImmutableString).val)).toEqual(body)
  })

  it('creating a deployment whose id exists fails with CONFLICT and changes nothing', async () => {
    const { state } = await start()
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    const heads = state.heads()
    expect(await code(state.createDeployment({ id: 'd1', spec: { name: 'other', image: 'nginx' }, owner: 'node-a' }))).toBe('CONFLICT')
    expect(state.heads()).toEqual(heads)
    expect(state.deployment('d1')?.name).toBe('web')
  })

  it('an invalid spec or id is refused with VALIDATION_FAILED', async () => {
    const { state } = await start()
    expect(await code(state.createDeployment({ id: 'd1', spec: { name: 'Not Valid', image: 'nginx' }, owner: 'node-a' }))).toBe('VALIDATION_FAILED')
    expect(await code(state.createDeployment({ id: 'd/1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' }))).toBe('VALIDATION_FAILED')
    expect(state.deployments()).toEqual([])
  })

  it('every write naming an unknown deployment fails with NOT_FOUND', async () => {
    const { state } = await start()
    expect(await code(state.setDesired('nope', 'stopped'))).toBe('NOT_FOUND')
    expect(await code(state.bumpEpoch('nope'))).toBe('NOT_FOUND')
    expect(await code(state.setReplicas('nope', 2))).toBe('NOT_FOUND')
    expect(await code(state.writePlacement('nope', 0, placement(1, 'node-a')))).toBe('NOT_FOUND')
    expect(await code(state.reportStatus('nope', 0, sampleStatus))).toBe('NOT_FOUND')
    expect(await code(state.clearStatus('nope', 0))).toBe('NOT_FOUND')
    expect(await code(state.setDesired('__proto__', 'stopped'))).toBe('NOT_FOUND')
  })

  it('stop keeps the epoch, start after stop bumps it, restart bumps it, and updatedAtMs follows the clock', async () => {
    const { state, clock } = await start()
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await clock.advance(1_000)
    await state.setDesired('d1', 'stopped')
    expect(state.deployment('d1')).toMatchObject({ desired: 'stopped', epoch: 1, updatedAtMs: clock.nowMs() })
    await state.setDesired('d1', 'running')
    expect(state.deployment('d1')).toMatchObject({ desired: 'running', epoch: 2 })
    await state.bumpEpoch('d1')
    expect(state.deployment('d1')?.epoch).toBe(3)
  })

  it('a write at a fractional clock time is stored at the whole millisecond and reads back', async () => {
    const { state, clock } = await start()
    await clock.advance(1_000.5)
    await state.createDeployment({ id: 'd-frac', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    expect(state.deployment('d-frac')).toMatchObject({ createdAtMs: Math.floor(clock.nowMs()), updatedAtMs: Math.floor(clock.nowMs()) })
    expect(state.deployments().map((d) => d.id)).toContain('d-frac')
  })

  it('setting the desired state it already has writes no change', async () => {
    const { state } = await start()
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    const heads = state.heads()
    await state.setDesired('d1', 'running')
    await state.setReplicas('d1', 1)
    expect(state.heads()).toEqual(heads)
  })

  it('scale changes the current replica count but not the spec; out-of-range counts are refused', async () => {
    const { state } = await start()
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx', replicas: 1 }, owner: 'node-a' })
    await state.setReplicas('d1', 5)
    expect(state.deployment('d1')).toMatchObject({ replicas: 5, spec: { replicas: 1 } })
    await state.setReplicas('d1', 64)
    expect(state.deployment('d1')?.replicas).toBe(64)
    expect(await code(state.setReplicas('d1', 65))).toBe('VALIDATION_FAILED')
    expect(await code(state.setReplicas('d1', -1))).toBe('VALIDATION_FAILED')
  })

  it('a deleted deployment stays listed but cannot be started, restarted or scaled (CONFLICT)', async () => {
    const { state } = await start()
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await state.setDesired('d1', 'deleted')
    expect(state.deployments().map((d) => [d.id, d.desired])).toEqual([['d1', 'deleted']])
    expect(await code(state.setDesired('d1', 'running'))).toBe('CONFLICT')
    expect(await code(state.bumpEpoch('d1'))).toBe('CONFLICT')
    expect(await code(state.setReplicas('d1', 3))).toBe('CONFLICT')
  })

  it('deployments are listed by creation time, then id', async () => {
    const { state, clock } = await start()
    await state.createDeployment({ id: 'late', spec: { name: 'a', image: 'nginx' }, owner: 'node-a' })
    await state.createDeployment({ id: 'b-same', spec: { name: 'b', image: 'nginx' }, owner: 'node-a' }) // same instant
    clock.jumpTo(clock.nowMs() - 5_000)
    await state.createDeployment({ id: 'early', spec: { name: 'c', image: 'nginx' }, owner: 'node-a' })
    expect(state.deployments().map((d) => d.id)).toEqual(['early', 'b-same', 'late'])
  })
})

describe('cluster state: nodes, placements, statuses', () => {
  it("upsertSelfNode writes this node's entry and keeps joinedAtMs across updates", async () => {
    const { state, clock } = await start({ selfId: 'node-a' })
    const joinedAtMs = clock.nowMs()
    await state.upsertSelfNode(sampleNode)
    await clock.advance(60_000)
    await state.upsertSelfNode({ ...sampleNode, labels: { zone: 'office' } })
    expect(state.nodes()).toEqual([{ ...sampleNode, labels: { zone: 'office' }, peerId: 'node-a', joinedAtMs, updatedAtMs: clock.nowMs() }])
    expect(state.node('node-a')?.labels).toEqual({ zone: 'office' })
  })

  it('an unchanged upsertSelfNode at a later time writes nothing', async () => {
    const { state, clock } = await start()
    await state.upsertSelfNode(sampleNode)
    const heads = state.heads()
    await clock.advance(1_000)
    await state.upsertSelfNode(sampleNode)
    expect(state.heads()).toEqual(heads)
  })

  it('a placement is written whole, read per replica and per deployment', async () => {
    const { state } = await start()
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx', replicas: 2 }, owner: 'node-a' })
    await state.writePlacement('d1', 1, placement(1, 'node-b'))
    // Read once before the next write: the answer is shared while nothing changes, and a write replaces it.
    expect([...state.placements('d1').keys()]).toEqual([1])
    expect(state.placements('d1')).toBe(state.placements('d1'))
    await state.writePlacement('d1', 0, placement(1, 'node-a'))
    expect(state.placement('d1', 0)).toEqual(placement(1, 'node-a'))
    expect([...state.placements('d1').keys()]).toEqual([0, 1])
    expect(state.placements('d1').get(1)?.winners).toEqual(['node-b'])
    expect(state.placements('other').size).toBe(0)
  })

  it('placements read before a peer\'s change show the change after it is applied', async () => {
    const clock = createVirtualClock()
    const a = await start({ clock, selfId: 'node-a' })
    const b = await start({ clock, selfId: 'node-b' })
    await a.state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx', replicas: 2 }, owner: 'node-a' })
    await a.state.writePlacement('d1', 0, placement(1, 'node-a'))
    await b.state.applyChanges(a.state.changesSince([]))
    expect([...b.state.placements('d1').keys()]).toEqual([0])
    await a.state.writePlacement('d1', 1, placement(1, 'node-b'))
    await a.state.writePlacement('d1', 0, placement(2, 'node-c'))
    await b.state.applyChanges(a.state.changesSince(b.state.heads()))
    expect([...b.state.placements('d1').keys()]).toEqual([0, 1])
    expect(b.state.placements('d1').get(0)?.winners).toEqual(['node-c'])
  })

  it('a placement of an older generation than the stored one is refused with CONFLICT', async () => {
    const { state } = await start()
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await state.writePlacement('d1', 0, placement(3, 'node-b'))
    expect(await code(state.writePlacement('d1', 0, placement(2, 'node-a')))).toBe('CONFLICT')
    expect(state.placement('d1', 0)?.generation).toBe(3)
  })

  it('placement history longer than its bound keeps the newest entries', async () => {
    const { state } = await start()
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    const history = Array.from({ length: SCHEMA_LIMITS.placementHistoryMax + 5 }, (_, generation) => ({
      generation, winners: ['node-a'], closedBy: 'node-a', closedAtMs: generation, reason: 'node died',
    }))
    await state.writePlacement('d1', 0, { ...placement(40, 'node-a'), history })
    const stored = state.placement('d1', 0)!.history
    expect(stored).toHaveLength(SCHEMA_LIMITS.placementHistoryMax)
    expect(stored.at(-1)?.generation).toBe(SCHEMA_LIMITS.placementHistoryMax + 4)
  })

  it('statuses read back per replica; clearStatus removes only this node’s own report', async () => {
    const { state, clock } = await start({ selfId: 'node-a' })
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx', replicas: 2 }, owner: 'node-a' })
    const { containerId: _none, ...starting } = { ...sampleStatus, state: 'starting' as const }
    await state.reportStatus('d1', 1, starting)
    await state.reportStatus('d1', 0, sampleStatus)
    expect(state.statuses('d1')).toEqual([
      { ...sampleStatus, peerId: 'node-a', replica: 0, updatedAtMs: clock.nowMs() },
      { ...starting, peerId: 'node-a', replica: 1, updatedAtMs: clock.nowMs() },
    ])
    await state.clearStatus('d1', 0)
    expect(state.statuses('d1').map((s) => s.replica)).toEqual([1])
    await state.clearStatus('d1', 0) // already gone: harmless
  })

  it('a report that differs only in updatedAtMs writes no change and no chunk', async () => {
    const { state, clock } = await start()
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await state.reportStatus('d1', 0, sampleStatus)
    const before = { heads: state.heads(), chunks: state.stats().chunks }
    await clock.advance(5_000)
    await state.reportStatus('d1', 0, sampleStatus)
    await state.reportStatus('d1', 0, { ...sampleStatus, updatedAtMs: clock.nowMs() + 1 })
    expect({ heads: state.heads(), chunks: state.stats().chunks }).toEqual(before)
    await state.reportStatus('d1', 0, { ...sampleStatus, restarts: 1 })
    expect(state.stats().chunks).toBe(before.chunks + 1)
    expect(state.statuses('d1')[0]).toMatchObject({ restarts: 1, updatedAtMs: clock.nowMs() })
  })

  it('a status report with an error and no container drops the old container id', async () => {
    const { state } = await start()
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await state.reportStatus('d1', 0, sampleStatus)
    const { containerId: _gone, ...failed } = { ...sampleStatus, state: 'failed' as const, error: 'image not found' }
    await state.reportStatus('d1', 0, failed)
    const status = state.statuses('d1')[0]!
    expect(status.state).toBe('failed')
    expect(status.error).toBe('image not found')
    expect('containerId' in status).toBe(false)
  })
})

describe('cluster state: changes, batches, feed', () => {
  it('a batch of several writes is one change and one chunk', async () => {
    const { state } = await start()
    const changes: Uint8Array[] = []
    state.onLocalChange((change) => changes.push(change))
    const chunksBefore = state.stats().chunks
    const created = await state.batch((tx) => {
      const entry = tx.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
      tx.setReplicas('d1', 3)
      tx.reportStatus('d1', 2, sampleStatus)
      return entry
    }, 'deploy and scale')
    expect(created.id).toBe('d1')
    expect(changes).toHaveLength(1)
    expect(A.decodeChange(changes[0]!).message).toBe('deploy and scale')
    expect(state.stats().chunks).toBe(chunksBefore + 1)
    expect(state.deployment('d1')?.replicas).toBe(3)
    expect(state.statuses('d1')).toHaveLength(1)
  })

  it('a batch that throws writes nothing, and the state stays writable', async () => {
    const { state } = await start()
    const heads = state.heads()
    await expect(state.batch((tx) => {
      tx.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
      tx.setDesired('missing', 'stopped')
    })).rejects.toMatchObject({ code: 'NOT_FOUND' })
    expect(state.heads()).toEqual(heads)
    expect(state.deployment('d1')).toBeUndefined()
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    expect(state.deployment('d1')).toBeDefined()
  })

  it('an async batch callback is refused and writes nothing', async () => {
    const { state } = await start()
    const heads = state.heads()
    await expect(state.batch(async (tx) => {
      tx.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    })).rejects.toBeInstanceOf(LatticeError)
    expect(state.heads()).toEqual(heads)
  })

  it('onChange fires local:true after each write and onLocalChange gets its bytes, once durable; unsubscribe stops both', async () => {
    const { state, store } = await start()
    const chunksBefore = (await store.list('doc/chunk/')).length
    // Chunks counted as written when each listener runs: the change must already be durable.
    const events: Array<{ local: boolean; chunksWritten: number }> = []
    const changes: Array<{ change: Uint8Array; chunksWritten: number }> = []
    const offChange = state.onChange((event) => events.push({ ...event, chunksWritten: state.stats().chunks }))
    const offLocal = state.onLocalChange((change) => changes.push({ change, chunksWritten: state.stats().chunks }))
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    expect(events).toEqual([{ local: true, deployments: new Set(['d1']), nodes: false, chunksWritten: chunksBefore + 1 }])
    expect(changes.map((c) => c.chunksWritten)).toEqual([chunksBefore + 1])
    expect((await store.list('doc/chunk/')).length).toBe(chunksBefore + 1)
    expect(A.decodeChange(changes[0]!.change).hash).toBe(state.heads()[0])
    offChange()
    offLocal()
    await state.setDesired('d1', 'stopped')
    expect(events).toHaveLength(1)
    expect(changes).toHaveLength(1)
  })

  it('a listener that throws is logged and neither fails the write nor starves other listeners', async () => {
    const { state, logger } = await start()
    let calls = 0
    state.onChange(() => {
      throw new Error('listener bug')
    })
    state.onChange(() => {
      calls++
    })
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    expect(calls).toBe(1)
    expect(logger.at('error')).toHaveLength(1)
  })

  it('entries handed to readers are frozen, so no reader can change another reader’s view', async () => {
    const { state } = await start()
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    const entry = state.deployment('d1')!
    expect(Object.isFrozen(entry)).toBe(true)
    expect(Object.isFrozen(entry.spec.env)).toBe(true)
    expect(() => {
      ;(entry as { desired: string }).desired = 'stopped'
    }).toThrow(TypeError)
  })

  it('writes before start or after stop fail; reads before start are empty', async () => {
    const state = createClusterState({ selfId: 'node-a' })({ store: createMemoryStore(), clock: createVirtualClock(), logger: silentLogger })
    expect(state.deployments()).toEqual([])
    expect(state.heads()).toEqual([])
    expect(await code(state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' }))).toBe('INTERNAL')
    await state.start()
    await state.stop()
    expect(await code(state.setDesired('d1', 'stopped'))).toBe('INTERNAL')
  })

  it('concurrent start calls share one start, and a stop issued before start finished stops it', async () => {
    const store = createMemoryStore()
    const logger = recordingLogger()
    const state = createClusterState({ selfId: 'node-a' })({ store, clock: createVirtualClock(), logger })
    await Promise.all([state.start(), state.start()])
    expect(logger.records.filter((record) => record.msg === 'cluster state loaded')).toHaveLength(1)
    await state.stop()
    const first = state.start()
    const stopped = state.stop()
    await first
    await stopped
    expect(await code(state.upsertSelfNode(sampleNode))).toBe('INTERNAL')
    await expect(store.get('doc/boots')).rejects.toThrow() // the store is closed again
  })

  it('a created deployment is returned frozen, like every entry a reader gets', async () => {
    const { state } = await start()
    const created = await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    expect(Object.isFrozen(created)).toBe(true)
    expect(Object.isFrozen(created.spec)).toBe(true)
  })

  it('every fresh node starts from the same genesis change, so fresh documents share their heads', async () => {
    const a = await start({ selfId: 'node-a' })
    const b = await start({ selfId: 'node-b' })
    expect(a.state.heads()).toEqual([GENESIS_HASH])
    expect(b.state.heads()).toEqual([GENESIS_HASH])
  })

  it('an invalid selfId or compactAfterChunks is refused at creation', () => {
    expect(() => createClusterState({ selfId: 'bad id' })).toThrow(LatticeError)
    expect(() => createClusterState({ selfId: 'node-a', compactAfterChunks: 0 })).toThrow(LatticeError)
  })
})

describe('cluster state: indexes by peer and touched deployments', () => {
  it('drainingNodes follows the draining flag through local writes, peers\' changes, a restart and the index cache', async () => {
    const clock = createVirtualClock()
    const a = await start({ clock, selfId: 'node-a' })
    const b = await start({ clock, selfId: 'node-b', indexCacheEntriesMin: 1 })
    await a.state.upsertSelfNode({ ...sampleNode, draining: true })
    await b.state.upsertSelfNode(sampleNode)
    expect(a.state.drainingNodes()).toEqual(['node-a'])
    expect(b.state.drainingNodes()).toEqual([])
    await b.state.applyChanges(a.state.changesSince([]))
    expect(b.state.drainingNodes()).toEqual(['node-a'])
    await b.state.upsertSelfNode({ ...sampleNode, draining: true })
    expect(b.state.drainingNodes()).toEqual(['node-a', 'node-b'])
    await a.state.upsertSelfNode({ ...sampleNode, draining: false })
    await b.state.applyChanges(a.state.changesSince(b.state.heads()))
    expect(b.state.drainingNodes()).toEqual(['node-b'])
    expect(b.state.drainingNodes()).toEqual(b.state.nodes().filter((n) => n.draining === true).map((n) => n.peerId))
    // Restarted on its store, with and without the index cache: the same answer.
    await b.state.stop()
    const again = await start({ clock, selfId: 'node-b', store: b.store, indexCacheEntriesMin: 1 })
    expect(again.state.stats().indexFromCache).toBe(true)
    expect(again.state.drainingNodes()).toEqual(['node-b'])
    await again.state.stop()
    await withOpen(b.store, () => b.store.del(INDEX_CACHE_KEY))
    const rebuilt = await start({ clock, selfId: 'node-b', store: b.store })
    expect(rebuilt.state.stats().indexFromCache).toBe(false)
    expect(rebuilt.state.drainingNodes()).toEqual(['node-b'])
  })

  it('placementsWonBy and statusesReportedBy follow writes, newer generations and clears; each change event names what it touched', async () => {
    const { state } = await start()
    const events: Array<{ deployments: ReadonlySet<string> | 'all'; nodes: boolean }> = []
    state.onChange((event) => events.push({ deployments: event.deployments, nodes: event.nodes }))
    await state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx', replicas: 2 }, owner: 'node-a' })
    await state.createDeployment({ id: 'd2', spec: { name: 'api', image: 'nginx' }, owner: 'node-a' })
    await state.batch((tx) => {
      tx.writePlacement('d1', 0, placement(1, 'node-a'))
      tx.writePlacement('d1', 1, placement(1, 'node-b'))
      tx.writePlacement('d2', 0, placement(1, 'node-a'))
    })
    const sorted = (list: Array<{ deploymentId: string; replica: number }>): string[] => list.map((r) => `${r.deploymentId}/${r.replica}`).sort()
    expect(sorted(state.placementsWonBy('node-a'))).toEqual(['d1/0', 'd2/0'])
    expect(sorted(state.placementsWonBy('node-b'))).toEqual(['d1/1'])
    // A newer round moves d1/0 to node-b.
    await state.writePlacement('d1', 0, placement(2, 'node-b'))
    expect(sorted(state.placementsWonBy('node-a'))).toEqual(['d2/0'])
    expect(sorted(state.placementsWonBy('node-b'))).toEqual(['d1/0', 'd1/1'])
    await state.reportStatus('d2', 0, sampleStatus)
    expect(sorted(state.statusesReportedBy('node-a'))).toEqual(['d2/0'])
    await state.clearStatus('d2', 0)
    expect(state.statusesReportedBy('node-a')).toEqual([])
    await state.upsertSelfNode(sampleNode)
    expect(events).toEqual([
      { deployments: new Set(['d1']), nodes: false },
      { deployments: new Set(['d2']), nodes: false },
      { deployments: new Set(['d1', 'd2']), nodes: false },
      { deployments: new Set(['d1']), nodes: false },
      { deployments: new Set(['d2']), nodes: false },
      { deployments: new Set(['d2']), nodes: false },
      { deployments: new Set(), nodes: true },
    ])
  })
})
