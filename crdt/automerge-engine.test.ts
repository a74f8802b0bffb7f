/** Documents on separate Automerge engines (separate WebAssembly memories) interoperate through bytes only. */
import { describe, expect, it } from 'vitest'
import * as A from '@automerge/automerge'
import { createVirtualClock } from '../sim/virtual-clock.ts'
import { automergeEngine, defaultEngine, engineOf } from './automerge-engine.ts'
import { createHandle, generateSyncMessage, loadHandle } from './doc-handle.ts'
import { createMemoryStore } from './level-store.ts'
import { replicaView, syncPair } from './sync-test-support.ts'
import { sampleNode, startState } from './test-support.ts'

const clock = createVirtualClock()

describe('Automerge engines', () => {
  it('engine 0 is the one @automerge/automerge loaded; a further engine is a separate instance of the module, kept for reuse', () => {
    expect(automergeEngine(0)).toBe(defaultEngine())
    expect(defaultEngine().owns(A.getBackend(A.init()))).toBe(true)
    const second = automergeEngine(1)
    expect(automergeEngine(1)).toBe(second)
    const handle = createHandle(undefined, second)
    expect(second.owns(handle)).toBe(true)
    expect(defaultEngine().owns(handle)).toBe(false)
    expect(engineOf(handle)).toBe(second)
    handle.free()
    expect(() => automergeEngine(-1)).toThrow(/no Automerge engine/)
  })

  it('a document is loaded and synced in its own engine, whatever engine the bytes came from', () => {
    const source = createHandle('aa'.repeat(16))
    source.put('_root', 'k', 'v')
    source.commit()
    const copy = loadHandle(source.save(), 'bb'.repeat(16), automergeEngine(1))
    expect(engineOf(copy)).toBe(automergeEngine(1))
    expect(copy.get('_root', 'k')).toBe('v')
    const [, message] = generateSyncMessage(copy, A.initSyncState())
    expect(message).not.toBeNull()
    source.free()
    copy.free()
  })

  it('cluster states on different engines converge by the sync protocol and by snapshots, and restart on their engine', async () => {
    const store = createMemoryStore()
    const a = (await startState({ clock, selfId: 'node-a' })).state
    const b = (await startState({ clock, selfId: 'node-b', store, automerge: automergeEngine(1) })).state
    const c = (await startState({ clock, selfId: 'node-c', automerge: automergeEngine(2) })).state
    await a.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await b.upsertSelfNode(sampleNode)
    await syncPair(a, b)
    expect(replicaView(b)).toEqual(replicaView(a))
    expect(await c.mergeSnapshot(b.saveSnapshot())).toMatchObject({ applied: true })
    expect(replicaView(c)).toEqual(replicaView(a))
    await c.createDeployment({ id: 'd2', spec: { name: 'db', image: 'postgres' }, owner: 'node-c' })
    await syncPair(c, b)
    await b.stop()
    const restarted = (await startState({ clock, selfId: 'node-b', store, automerge: automergeEngine(1) })).state
    expect(restarted.deployments()).toEqual(c.deployments())
    await Promise.all([a.stop(), c.stop(), restarted.stop()])
  })

  it('an engine this process made grows its memory without writing it, and later documents use that memory; the default engine cannot', () => {
    const engine = automergeEngine(5)
    const bytes = 512 * 1024 ** 2
    const before = { rss: process.memoryUsage().rss, memory: engine.memoryBytes()! }
    expect(engine.growUntouchedTo(before.memory + bytes)).toBe(true)
    const grown = { rss: process.memoryUsage().rss, memory: engine.memoryBytes()! }
    // The memory grew by the request; resident memory did not (its pages were never written).
    expect(grown.memory - before.memory).toBeGreaterThanOrEqual(bytes)
    expect(grown.rss - before.rss).toBeLessThan(bytes / 4)
    const docs = Array.from({ length: 50 }, (_, i) => {
      const handle = createHandle(undefined, engine)
      for (let k = 0; k < 1_000; k++) handle.put('_root', `k${k}`, `value ${k} of document ${i}`)
      handle.commit()
      return handle
    })
    expect(engine.memoryBytes()).toBe(grown.memory)
    for (const handle of docs) handle.free()
    // A second reserve grows the memory to its size although the first left that much free (asked as an amount to
    // add, the allocator would serve it from the free space and grow nothing), and a smaller one does nothing.
    expect(engine.growUntouchedTo(grown.memory + bytes)).toBe(true)
    expect(engine.memoryBytes()).toBeGreaterThanOrEqual(grown.memory + bytes)
    const twice = engine.memoryBytes()!
    expect(engine.growUntouchedTo(grown.memory)).toBe(true)
    expect(engine.memoryBytes()).toBe(twice)
    expect(process.memoryUsage().rss - before.rss).toBeLessThan(bytes / 2)
    expect(defaultEngine().growUntouchedTo(bytes)).toBe(false)
    expect(defaultEngine().memoryBytes()).toBeUndefined()
  })
})
