/**
 * Small bounded structures of the membership service: a set with O(1)
 * random choice (helpers, dead peers to re-probe) and the transmit-limited
 * piggyback queue (SWIM: each update rides on λ·log n outgoing probes).
 */
import type { Rng } from '../core/index.ts'
import type { WireUpdate } from './membership-wire.ts'

/** A set of strings with O(1) add, delete and uniform random choice. */
export class IndexedSet {
  private readonly items: string[] = []
  private readonly index = new Map<string, number>()

  get size(): number {
    return this.items.length
  }

  has(item: string): boolean {
    return this.index.has(item)
  }

  add(item: string): void {
    if (this.index.has(item)) return
    this.index.set(item, this.items.length)
    this.items.push(item)
  }

  delete(item: string): void {
    const at = this.index.get(item)
    if (at === undefined) return
    const last = this.items.pop() as string
    this.index.delete(item)
    if (at < this.items.length) {
      this.items[at] = last
      this.index.set(last, at)
    }
  }

  random(rng: Rng): string | undefined {
    return this.items.length === 0 ? undefined : this.items[rng.int(this.items.length)]
  }

  /** Up to `count` distinct members not in `exclude`, uniformly. */
  sample(rng: Rng, count: number, exclude: ReadonlySet<string>): string[] {
    const eligible = this.items.length - [...exclude].filter((item) => this.index.has(item)).length
    const want = Math.min(count, Math.max(0, eligible))
    const chosen = new Set<string>()
    // Rejection sampling: count is small (indirectChecks) and the set large; fall back to a scan when dense.
    for (let attempts = 0; chosen.size < want && attempts < want * 8; attempts++) {
      const item = this.items[rng.int(this.items.length)] as string
      if (!exclude.has(item)) chosen.add(item)
    }
    if (chosen.size < want) {
      for (const item of this.items) {
        if (chosen.size >= want) break
        if (!exclude.has(item)) chosen.add(item)
      }
    }
    return [...chosen]
  }

  values(): readonly string[] {
    return this.items
  }
}

/**
 * Strings kept in sorted order (UTF-16 code units, as `<` compares) as they
 * come and go: a change costs a binary search and one splice, where sorting
 * the whole list again after each change cost O(n log n) comparisons. At
 * 1,000 members a partition flips hundreds of them between alive and suspect,
 * and placement asks for the sorted alive list after each flip.
 */
export class SortedStrings {
  private readonly items: string[] = []

  get size(): number {
    return this.items.length
  }

  add(item: string): void {
    const at = this.search(item)
    if (this.items[at] !== item) this.items.splice(at, 0, item)
  }

  delete(item: string): void {
    const at = this.search(item)
    if (this.items[at] === item) this.items.splice(at, 1)
  }

  /** A sorted copy, with `extra` in its place when given (and not held already). */
  copy(extra?: string): string[] {
    if (extra === undefined) return this.items.slice()
    const at = this.search(extra)
    if (this.items[at] === extra) return this.items.slice()
    const out = this.items.slice(0, at)
    out.push(extra)
    for (let i = at; i < this.items.length; i++) out.push(this.items[i]!)
    return out
  }

  /** The index of the first item not below `item`. */
  private search(item: string): number {
    let low = 0
    let high = this.items.length
    while (low < high) {
      const mid = (low + high) >>> 1
      if (this.items[mid]! < item) low = mid + 1
      else high = mid
    }
    return low
  }
}

interface Pending {
  update: WireUpdate
  transmits: number
  limit: number
  /** Replaced by a newer update about its peer, sent its last transmit, skipped or evicted: its queue slot is skipped. */
  gone: boolean
}

/** Entries in arrival order; `head` is the first slot not yet taken or skipped. */
interface Level {
  slots: Pending[]
  head: number
}

/** A level's taken slots are cut off once this many have piled up (and they are half of it): amortised O(1) per entry. */
const LEVEL_COMPACT_MIN = 64
/** A level holding this many times the queue's capacity in slots (most of them replaced entries) drops its replaced ones. */
const LEVEL_SLOTS_PER_CAPACITY = 4

/**
 * Updates waiting to be piggybacked, one per subject (a newer update about a
 * peer replaces the older one). `take` returns the least-transmitted first, so
 * fresh news spreads before old news is repeated. Entries sit in levels by
 * transmit count (a small number: ≤ λ·log n), each an array in arrival order
 * whose replaced entries are skipped when reached, so a take costs O(count)
 * amortised, not a sort of the whole queue on every probe. (Levels were Maps;
 * a Map used as a queue keeps its deleted entries as holes until it grows
 * again, which every take walked: a twelfth of a 1,000-node simulation.)
 */
export class PiggybackQueue {
  /** levels[t]: entries transmitted t times, in arrival order. */
  private readonly levels: Level[] = []
  private readonly entries = new Map<string, Pending>()

  constructor(private readonly capacity: number) {}

  get size(): number {
    return this.entries.size
  }

  private level(transmits: number): Level {
    let level = this.levels[transmits]
    if (level === undefined) {
      level = { slots: [], head: 0 }
      this.levels[transmits] = level
    }
    return level
  }

  private enqueue(entry: Pending): void {
    const level = this.level(entry.transmits)
    level.slots.push(entry)
    // Replaced entries wait in their slots until a take reaches them; news about the same peers arriving much faster
    // than probes take it must not grow a level without bound.
    if (level.slots.length - level.head > LEVEL_SLOTS_PER_CAPACITY * this.capacity) {
      level.slots = level.slots.slice(level.head).filter((queued) => !queued.gone)
      level.head = 0
    }
  }

  /** The first entry of a level still queued, its slot consumed; undefined when none is left. */
  private shift(level: Level): Pending | undefined {
    while (level.head < level.slots.length) {
      const entry = level.slots[level.head++]!
      if (!entry.gone) {
        this.compact(level)
        return entry
      }
    }
    level.slots.length = 0
    level.head = 0
    return undefined
  }

  private compact(level: Level): void {
    if (level.head >= LEVEL_COMPACT_MIN && level.head * 2 >= level.slots.length) {
      level.slots.splice(0, level.head)
      level.head = 0
    }
  }

  private remove(entry: Pending): void {
    entry.gone = true
    this.entries.delete(entry.update.p)
  }

  /** Returns false when the queue was full and an entry had to be evicted (the most transmitted, oldest first). */
  push(update: WireUpdate, limit: number): boolean {
    const old = this.entries.get(update.p)
    if (old !== undefined) this.remove(old)
    let evicted = false
    if (this.entries.size >= this.capacity) {
      for (let t = this.levels.length - 1; t >= 0 && !evicted; t--) {
        const level = this.levels[t]
        if (level === undefined) continue
        const victim = this.shift(level)
        if (victim === undefined) continue
        this.remove(victim)
        evicted = true
      }
    }
    const entry: Pending = { update, transmits: 0, limit, gone: false }
    this.enqueue(entry)
    this.entries.set(update.p, entry)
    return !evicted
  }

  /** Up to `count` updates, least transmitted first; each taken counts one transmit. `skip` drops an entry for good. */
  take(count: number, skip?: (update: WireUpdate) => boolean): WireUpdate[] {
    if (this.entries.size === 0 || count <= 0) return []
    const out: WireUpdate[] = []
    const promoted: Pending[] = []
    for (let t = 0; t < this.levels.length && out.length < count; t++) {
      const level = this.levels[t]
      if (level === undefined) continue
      while (out.length < count) {
        const entry = this.shift(level)
        if (entry === undefined) break
        if (skip?.(entry.update) === true) {
          this.remove(entry)
          continue
        }
        out.push(entry.update)
        entry.transmits++
        if (entry.transmits >= entry.limit) this.remove(entry)
        else promoted.push(entry)
      }
    }
    // Promoted after the scan, so one take never returns an entry twice.
    for (const entry of promoted) this.enqueue(entry)
    return out
  }

  clear(): void {
    for (const entry of this.entries.values()) entry.gone = true
    this.levels.length = 0
    this.entries.clear()
  }
}
