/** The membership's small structures against plain reference models. */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { SortedStrings } from './membership-queues.ts'

const byCodeUnits = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

describe('SortedStrings', () => {
  it('holds what a set would, in sorted order, through any adds and deletes; copy(extra) places extra once', () => {
    const op = fc.record({ add: fc.boolean(), item: fc.string({ maxLength: 4 }) })
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), fc.string({ maxLength: 4 }), (ops, extra) => {
        const sorted = new SortedStrings()
        const model = new Set<string>()
        for (const { add, item } of ops) {
          if (add) {
            sorted.add(item)
            model.add(item)
          } else {
            sorted.delete(item)
            model.delete(item)
          }
        }
        const expected = [...model].sort(byCodeUnits)
        expect(sorted.copy()).toEqual(expected)
        expect(sorted.size).toBe(model.size)
        expect(sorted.copy(extra)).toEqual([...new Set([...model, extra])].sort(byCodeUnits))
      }),
    )
  })

  it('a copy is the caller’s: changing the set later does not change it', () => {
    const sorted = new SortedStrings()
    for (const item of ['c', 'a', 'b']) sorted.add(item)
    const copy = sorted.copy('bb')
    sorted.delete('a')
    sorted.add('d')
    expect(copy).toEqual(['a', 'b', 'bb', 'c'])
    expect(sorted.copy()).toEqual(['b', 'c', 'd'])
  })
})
