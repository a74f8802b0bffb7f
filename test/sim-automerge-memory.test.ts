/**
 * The simulator's Automerge memory guard (automerge-memory.ts): a cluster's
 * engines are reserved for its size up front, and an engine whose allocator
 * had to grow its memory anyway is topped up at once, by a factor.
 */
import { describe, expect, it } from 'vitest'
import { createHandle } from '../crdt/doc-handle.ts'
import { automergeBytesFor, guardAutomergeMemory, TOP_UP_FACTOR } from '../sim/automerge-memory.ts'
import { createSimDriver } from '../sim/driver.ts'
import { createSimCluster } from '../sim/sim-cluster.ts'

describe('automerge memory guard', () => {
  it('reserves for the cluster, then tops an engine up as soon as its allocator grew it', () => {
    const guard = guardAutomergeMemory(8)
    expect(guard.engines()).toBe(1)
    const engine = guard.engineFor(3)
    const reserved = engine.memoryBytes()!
    expect(reserved).toBeGreaterThanOrEqual(automergeBytesFor(8))
    expect(guard.reservedBytes()).toBe(automergeBytesFor(8))
    expect(guard.memoryBytes()).toBe(reserved)

    // Documents within the reserve grow nothing: nothing to top up.
    const docs = [createHandle(undefined, engine)]
    guard.check()
    expect(guard.topUps()).toBe(0)
    // Documents beyond it make the allocator grow the memory page by page; the next check grows it by the factor.
    while (engine.memoryBytes()! <= reserved) {
      const handle = createHandle(undefined, engine)
      for (let k = 0; k < 2_000; k++) handle.put('_root', `k${k}`, `value ${k} of document ${docs.length}`)
      handle.commit()
      docs.push(handle)
    }
    const outgrown = engine.memoryBytes()!
    guard.check()
    expect(guard.topUps()).toBe(1)
    expect(engine.memoryBytes()!).toBeGreaterThanOrEqual(outgrown * TOP_UP_FACTOR)
    // Freed documents leave their space to later ones: no growth, no top-up.
    const grown = engine.memoryBytes()!
    for (const handle of docs.splice(1)) handle.free()
    guard.check()
    expect(guard.topUps()).toBe(1)
    expect(engine.memoryBytes()).toBe(grown)
    for (const handle of docs) handle.free()
  })

  it('a simulated cluster tops its engine up at the step that outgrew it, not at the end of the advance', async () => {
    const cluster = createSimCluster({ nodes: 3, seed: 5 })
    await cluster.startAll()
    const engine = cluster.automergeMemory.engineFor(0)
    const topUpsBefore = cluster.automergeMemory.topUps()
    const docs: Array<ReturnType<typeof createHandle>> = []
    let outgrown = 0
    let seenAfter: { topUps: number; bytes: number } | undefined
    // One timer outgrows the reserve; a later timer of the same advance looks at the guard.
    cluster.driver.clock.setTimer(100, () => {
      const reserve = engine.memoryBytes()!
      while (engine.memoryBytes()! <= reserve) {
        const handle = createHandle(undefined, engine)
        for (let k = 0; k < 2_000; k++) handle.put('_root', `k${k}`, `value ${k} of document ${docs.length}`)
        handle.commit()
        docs.push(handle)
      }
      outgrown = engine.memoryBytes()!
    })
    cluster.driver.clock.setTimer(200, () => {
      seenAfter = { topUps: cluster.automergeMemory.topUps(), bytes: engine.memoryBytes()! }
    })
    try {
      await cluster.driver.runFor(10_000)
      expect(seenAfter).toBeDefined()
      expect(seenAfter!.topUps).toBe(topUpsBefore + 1)
      expect(seenAfter!.bytes).toBeGreaterThanOrEqual(outgrown * TOP_UP_FACTOR)
    } finally {
      for (const handle of docs) handle.free()
      await cluster.stopAll()
    }
  }, 60_000)

  it('the driver calls onStep after each virtual instant whose timers ran, and onAdvance once per advance', async () => {
    const calls: string[] = []
    const driver = createSimDriver(1, undefined, { onStep: () => calls.push('step'), onAdvance: () => calls.push('advance') })
    driver.clock.setTimer(10, () => calls.push('a'))
    driver.clock.setTimer(10, () => calls.push('b'))
    driver.clock.setTimer(20, () => {
      calls.push('c')
      void Promise.resolve().then(() => calls.push('c then'))
    })
    await driver.runFor(100)
    expect(calls).toEqual(['a', 'b', 'step', 'c', 'c then', 'step', 'advance'])
  })
})
