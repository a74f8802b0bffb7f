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
}

/**
 * Updates waiting to be piggybacked, one per subject (a newer update about a
 * peer replaces the older one). `take` returns the least-transmitted first, so
 * fresh news spreads before old news is repeated. Entries sit in buckets by
 * transmit count (a small number: ≤ λ·log n), so a take costs O(count), not a
 * sort of the whole queue on every probe.
 */
export class PiggybackQueue {
  /** levels[t]: entries transmitted t times, in arrival order. */
  private readonly levels: Map<string, Pending>[] = []
  private readonly entries = new Map<string, Pending>()

  constructor(private readonly capacity: number) {}

  get size(): number {
    return this.entries.size
  }

  private level(transmits: number): Map<string, Pending> {
    let level = this.levels[transmits]
    if (level === undefined) {
      level = new Map()
      this.levels[transmits] = level
    }
    return level
  }

  /** Returns false when the queue was full and an entry had to be evicted (the most transmitted, oldest first). */
  push(update: WireUpdate, limit: number): boolean {
    const old = this.entries.get(update.p)
    if (old !== undefined) {
      this.levels[old.transmits]?.delete(update.p)
      this.entries.delete(update.p)
    }
    let evicted = false
    if (this.entries.size >= this.capacity) {
      for (let t = this.levels.length - 1; t >= 0 && !evicted; t--) {
        const level = this.levels[t]
        if (level === undefined || level.size === 0) continue
        const victim = level.keys().next().value as string
        level.delete(victim)
        this.entries.delete(victim)
        evicted = true
      }
    }
    const entry: Pending = { update, transmits: 0, limit }
    this.level(0).set(update.p, entry)
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
      for (const [peerId, entry] of level) {
        if (out.length >= count) break
        level.delete(peerId)
        if (skip?.(entry.update) === true) {
          this.entries.delete(peerId)
          continue
        }
        out.push(entry.update)
        entry.transmits++
        if (entry.transmits >= entry.limit) this.entries.delete(peerId)
        else promoted.push(entry)
      }
    }
    // Promoted after the scan, so one take never returns an entry twice.
    for (const entry of promoted) this.level(entry.transmits).set(entry.update.p, entry)
    return out
  }

  clear(): void {
    this.levels.length = 0
    this.entries.clear()
  }
}
