/**
 * A Map bounded by entry count that forgets the least recently used entry
 * first (per-peer sync states, known peer heads, misbehaviour counts).
 * `get` and `set` both count as use.
 */
export class LruMap<K, V> {
  private readonly entries = new Map<K, V>()
  /** Entries forgotten to stay within the bound (for the metric). */
  evicted = 0

  constructor(readonly sizeMax: number) {
    if (!(Number.isInteger(sizeMax) && sizeMax >= 1)) throw new RangeError(`LruMap sizeMax must be an integer >= 1, got ${sizeMax}`)
  }

  get size(): number {
    return this.entries.size
  }

  get(key: K): V | undefined {
    const value = this.entries.get(key)
    if (value !== undefined) {
      this.entries.delete(key)
      this.entries.set(key, value)
    }
    return value
  }

  /** Reads without counting as use. */
  peek(key: K): V | undefined {
    return this.entries.get(key)
  }

  set(key: K, value: V): void {
    this.entries.delete(key)
    this.entries.set(key, value)
    while (this.entries.size > this.sizeMax) {
      const oldest = this.entries.keys().next()
      if (oldest.done === true) break
      this.entries.delete(oldest.value)
      this.evicted++
    }
  }

  delete(key: K): boolean {
    return this.entries.delete(key)
  }

  /** Forgets every entry (not counted as evicted). */
  clear(): void {
    this.entries.clear()
  }

  /** Oldest first. */
  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.entries[Symbol.iterator]()
  }
}
