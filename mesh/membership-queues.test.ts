/** The membership's small structures against plain reference models. */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { PiggybackQueue, SortedStrings } from './membership-queues.ts'
import type { WireUpdate } from './membership-wire.ts'

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

/** The piggyback queue as its contract reads: least transmitted first, arrival order within a transmit count. */
class ReferenceQueue {
  private entries: Array<{ update: WireUpdate; transmits: number; limit: number; order: number }> = []
  private clock = 0
  constructor(private readonly capacity: number) {}
  get size(): number {
    return this.entries.length
  }
  private byTurn(): typeof this.entries {
    return [...this.entries].sort((a, b) => a.transmits - b.transmits || a.order - b.order)
  }
  push(update: WireUpdate, limit: number): boolean {
    this.entries = this.entries.filter((entry) => entry.update.p !== update.p)
    let evicted = false
    if (this.entries.length >= this.capacity) {
      const victim = [...this.entries].sort((a, b) => b.transmits - a.transmits || a.order - b.order)[0]!
      this.entries = this.entries.filter((entry) => entry !== victim)
      evicted = true
    }
    this.entries.push({ update, transmits: 0, limit, order: this.clock++ })
    return !evicted
  }
  take(count: number, skip: (update: WireUpdate) => boolean): WireUpdate[] {
    const out: WireUpdate[] = []
    const promoted: typeof this.entries = []
    for (const entry of this.byTurn()) {
      if (out.length >= count) break
      this.entries = this.entries.filter((other) => other !== entry)
      if (skip(entry.update)) continue
      out.push(entry.update)
      entry.transmits++
      if (entry.transmits < entry.limit) promoted.push(entry)
    }
    for (const entry of promoted) this.entries.push({ ...entry, order: this.clock++ })
    return out
  }
}

describe('PiggybackQueue', () => {
  it('takes what the reference takes, through any pushes, replacements, evictions, skips and takes', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('push' as const), peer: fc.integer({ min: 0, max: 11 }), incarnation: fc.integer({ min: 0, max: 3 }), limit: fc.integer({ min: 1, max: 4 }) }),
      fc.record({ kind: fc.constant('take' as const), count: fc.integer({ min: 0, max: 5 }), skipPeer: fc.integer({ min: -1, max: 11 }) }),
    )
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.array(op, { maxLength: 300 }), (capacity, ops) => {
        const queue = new PiggybackQueue(capacity)
        const reference = new ReferenceQueue(capacity)
        for (const step of ops) {
          if (step.kind === 'push') {
            const update: WireUpdate = { p: `peer${step.peer}`, s: 'a', i: step.incarnation, q: 0 }
            expect(queue.push(update, step.limit)).toBe(reference.push(update, step.limit))
          } else {
            const skip = (update: WireUpdate): boolean => update.p === `peer${step.skipPeer}`
            expect(queue.take(step.count, skip)).toEqual(reference.take(step.count, skip))
          }
          expect(queue.size).toBe(reference.size)
        }
      }),
      { numRuns: 300 },
    )
  })

  it('after many replacements a take returns the oldest entries still queued, and replaced entries do not pile up', () => {
    const queue = new PiggybackQueue(512)
    for (let round = 0; round < 2_000; round++) queue.push({ p: `peer${round % 400}`, s: 'a', i: round, q: 0 }, 4)
    expect(queue.size).toBe(400)
    const taken = queue.take(6)
    // The oldest still queued: the 400 newest pushes, in order.
    expect(taken.map((update) => update.i)).toEqual([1600, 1601, 1602, 1603, 1604, 1605])
    // Far more news than takes about the same two peers: the replaced entries are dropped, the newest kept.
    const small = new PiggybackQueue(2)
    for (let round = 0; round < 50; round++) small.push({ p: `peer${round % 2}`, s: 'a', i: round, q: 0 }, 4)
    expect(small.take(6).map((update) => update.i)).toEqual([48, 49])
  })
})
