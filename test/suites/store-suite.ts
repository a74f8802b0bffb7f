/**
 * The Store port's acceptance suite (STYLE.md §2): every Store adapter calls
 * `runStoreSuite` once; an adapter that passes is interchangeable with the
 * others. A bug found in one adapter becomes a case here.
 *
 * Contract beyond core/store.ts, pinned by the cases below: an absent key
 * reads as `undefined`; values are copied both ways (callers may reuse their
 * arrays); keys are ordered by code point (UTF-8 byte order); keys that are
 * not well-formed strings are rejected; every operation rejects once closed.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import type { Store, StoreOp } from '../../core/index.ts'

export interface StoreFixture {
  /** A store over an empty database; the suite opens it. */
  store: Store
  /**
   * A new store over the same data (called after the suite closed `store`);
   * the suite opens it. Omit when the adapter cannot outlive its instance.
   */
  reopen?: () => Promise<Store>
  /** Closes whatever is still open and removes any files. */
  cleanup(): Promise<void>
}

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values)
const text = (value: string): Uint8Array => new TextEncoder().encode(value)
const keysOf = (entries: ReadonlyArray<{ key: string }>): string[] => entries.map((entry) => entry.key)

export function runStoreSuite(name: string, makeStore: () => Promise<StoreFixture>): void {
  describe(`Store acceptance: ${name}`, () => {
    let fixture: StoreFixture
    let store: Store

    beforeEach(async () => {
      fixture = await makeStore()
      store = fixture.store
      await store.open()
    })

    afterEach(async () => {
      await fixture.cleanup()
    })

    it('a value put is read back, overwritten by a second put, and gone after del', async () => {
      await store.put('k', text('one'))
      expect(await store.get('k')).toEqual(text('one'))
      await store.put('k', text('two'))
      expect(await store.get('k')).toEqual(text('two'))
      await store.del('k')
      expect(await store.get('k')).toBeUndefined()
    })

    it('get of a key never written resolves to undefined, and del of it is harmless', async () => {
      expect(await store.get('never/written')).toBeUndefined()
      await store.del('never/written')
      expect(await store.get('never/written')).toBeUndefined()
    })

    it('values are plain Uint8Arrays that round-trip zeros, 0xff and the empty value exactly', async () => {
      const all = Uint8Array.from({ length: 256 }, (_, i) => i)
      await store.put('zeros', new Uint8Array(1024))
      await store.put('all', all)
      await store.put('empty', new Uint8Array(0))
      const zeros = await store.get('zeros')
      expect(zeros).toBeInstanceOf(Uint8Array)
      expect(zeros).toEqual(new Uint8Array(1024))
      expect(await store.get('all')).toEqual(all)
      expect(await store.get('empty')).toEqual(new Uint8Array(0))
    })

    it('arbitrary bytes round-trip exactly (property)', async () => {
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ maxLength: 2048 }), async (value) => {
          await store.put('prop', value)
          expect(await store.get('prop')).toEqual(value)
        }),
        { numRuns: 60, seed: 42 },
      )
    })

    it('a caller reusing its array after put or get does not change the stored value', async () => {
      const value = bytes(1, 2, 3)
      await store.put('shared', value)
      value[0] = 99
      const read = await store.get('shared')
      expect(read).toEqual(bytes(1, 2, 3))
      read![1] = 99
      expect(await store.get('shared')).toEqual(bytes(1, 2, 3))
      const batched = bytes(4, 5)
      await store.batch([{ type: 'put', key: 'batched', value: batched }])
      batched[0] = 99
      expect(await store.get('batched')).toEqual(bytes(4, 5))
    })

    it('batch applies its operations in order, so a later op on the same key wins', async () => {
      await store.put('gone', text('x'))
      await store.batch([
        { type: 'put', key: 'a', value: text('1') },
        { type: 'put', key: 'a', value: text('2') },
        { type: 'put', key: 'b', value: text('b') },
        { type: 'del', key: 'b' },
        { type: 'del', key: 'gone' },
        { type: 'del', key: 'c' },
        { type: 'put', key: 'c', value: text('c') },
      ])
      expect(await store.get('a')).toEqual(text('2'))
      expect(await store.get('b')).toBeUndefined()
      expect(await store.get('gone')).toBeUndefined()
      expect(await store.get('c')).toEqual(text('c'))
    })

    it('a batch with an invalid operation rejects and writes none of its operations', async () => {
      await store.put('kept', text('before'))
      const bad = [
        { type: 'put', key: 'first', value: text('1') },
        { type: 'del', key: 'kept' },
        { type: 'rename', key: 'x' },
      ] as unknown as StoreOp[]
      await expect(store.batch(bad)).rejects.toThrow()
      const badValue = [
        { type: 'put', key: 'first', value: text('1') },
        { type: 'put', key: 'second', value: 'not bytes' },
      ] as unknown as StoreOp[]
      await expect(store.batch(badValue)).rejects.toThrow()
      expect(await store.get('first')).toBeUndefined()
      expect(await store.get('kept')).toEqual(text('before'))
    })

    it('an empty batch is a no-op', async () => {
      await store.batch([])
      expect(await store.list('')).toEqual([])
    })

    it('list returns exactly the keys with the prefix, in ascending order, with their values', async () => {
      for (const key of ['p/c', 'p/a', 'p/b/1', 'o', 'q', 'p/b']) await store.put(key, text(key))
      const entries = await store.list('p/')
      expect(keysOf(entries)).toEqual(['p/a', 'p/b', 'p/b/1', 'p/c'])
      expect(entries[0]!.value).toEqual(text('p/a'))
      expect(await store.list('p/z')).toEqual([])
    })

    it('list orders keys by code point, numbers padded by the caller sort numerically', async () => {
      const keys = ['u/\u{10000}', 'u/\uffff', 'u/é', 'u/z', 'u/Z', 'u/000000000010', 'u/000000000002']
      for (const key of keys) await store.put(key, text(key))
      expect(keysOf(await store.list('u/'))).toEqual(['u/000000000002', 'u/000000000010', 'u/Z', 'u/z', 'u/é', 'u/\uffff', 'u/\u{10000}'])
      expect(keysOf(await store.list('u/\uffff'))).toEqual(['u/\uffff'])
    })

    it("list by prefix 'a/' excludes 'a', 'ab' and 'a0' (prefix isolation)", async () => {
      for (const key of ['a', 'a/', 'a/1', 'a/2', 'a0', 'ab', 'ab/1', 'b/1']) await store.put(key, text(key))
      expect(keysOf(await store.list('a/'))).toEqual(['a/', 'a/1', 'a/2'])
      expect(keysOf(await store.list('ab'))).toEqual(['ab', 'ab/1'])
    })

    it('list with an empty prefix returns every entry', async () => {
      for (const key of ['b', 'a', 'c']) await store.put(key, text(key))
      expect(keysOf(await store.list(''))).toEqual(['a', 'b', 'c'])
    })

    it('list with a limit returns the first entries in order, never more', async () => {
      for (let i = 0; i < 10; i++) await store.put(`l/${i}`, text(String(i)))
      expect(keysOf(await store.list('l/', { limit: 3 }))).toEqual(['l/0', 'l/1', 'l/2'])
      expect(await store.list('l/', { limit: 0 })).toEqual([])
      expect(await store.list('l/', { limit: 100 })).toHaveLength(10)
      await expect(store.list('l/', { limit: -1 })).rejects.toThrow()
      await expect(store.list('l/', { limit: 1.5 })).rejects.toThrow()
    })

    it('a key with a lone surrogate is rejected rather than silently altered', async () => {
      await expect(store.put('bad/\ud800', text('x'))).rejects.toThrow()
      await expect(store.get('bad/\udc00')).rejects.toThrow()
      expect(await store.list('bad/')).toEqual([])
    })

    it('data survives close and reopen', async (ctx) => {
      if (fixture.reopen === undefined) {
        ctx.skip()
        return
      }
      await store.put('kept/1', bytes(0, 1, 0))
      await store.batch([{ type: 'put', key: 'kept/2', value: bytes(2) }, { type: 'put', key: 'temp', value: bytes(3) }])
      await store.del('temp')
      await store.close()
      const reopened = await fixture.reopen()
      await reopened.open()
      expect(await reopened.get('kept/1')).toEqual(bytes(0, 1, 0))
      expect(await reopened.get('temp')).toBeUndefined()
      expect(keysOf(await reopened.list('kept/'))).toEqual(['kept/1', 'kept/2'])
    })

    it('every operation rejects after close, and close twice is harmless', async () => {
      await store.put('k', text('v'))
      await store.close()
      await store.close()
      await expect(store.get('k')).rejects.toThrow()
      await expect(store.put('k', text('w'))).rejects.toThrow()
      await expect(store.del('k')).rejects.toThrow()
      await expect(store.batch([{ type: 'put', key: 'k', value: text('w') }])).rejects.toThrow()
      await expect(store.list('')).rejects.toThrow()
    })
  })
}
