/**
 * The simulator's Automerge memory guard (automerge-memory.ts): a cluster's
 * engines are reserved for its size up front, and an engine whose allocator
 * had to grow its memory anyway is topped up at once, by a factor.
 */
import { describe, expect, it } from 'vitest'
import { createHandle } from '../crdt/doc-handle.ts'
import { automergeBytesFor, guardAutomergeMemory, TOP_UP_FACTOR } from '../sim/automerge-memory.ts'

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
})
