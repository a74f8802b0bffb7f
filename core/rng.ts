/**
 * The seeded PRNG handed to every module that needs chance. One root seed
 * derives every child (fork by label), so a simulation is replayable and two
 * modules never share a stream by accident. Algorithm: xoshiro128**, seeded
 * through splitmix32 (fast, 128-bit state, good statistical quality).
 */
export interface Rng {
  /** Uniform float in [0, 1). */
  next(): number
  /** Uniform integer in [0, maxExclusive). */
  int(maxExclusive: number): number
  /** A uniformly chosen element; undefined for an empty array. */
  pick<T>(items: readonly T[]): T | undefined
  /** An independent child stream, derived from this one's seed and `label`. */
  fork(label: string): Rng
  /** The seed this stream was created from. */
  readonly seed: number
}

function splitmix32(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x9e3779b9) >>> 0
    let z = state
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
    return (z ^ (z >>> 16)) >>> 0
  }
}

/** FNV-1a 32-bit: stable hash of a label, for deriving child seeds. */
export function fnv1a32(text: string, seed = 0x811c9dc5): number {
  let hash = seed >>> 0
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash >>> 0
}

export function createRng(seed: number): Rng {
  const init = splitmix32(seed)
  let s0 = init()
  let s1 = init()
  let s2 = init()
  let s3 = init()
  if ((s0 | s1 | s2 | s3) === 0) s0 = 1

  const nextU32 = (): number => {
    const result = Math.imul(rotl(Math.imul(s1, 5) >>> 0, 7), 9) >>> 0
    const t = (s1 << 9) >>> 0
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = rotl(s3, 11)
    return result
  }

  const rng: Rng = {
    seed,
    next: () => nextU32() / 0x1_0000_0000,
    int: (maxExclusive) => {
      if (!Number.isInteger(maxExclusive) || maxExclusive <= 0) throw new RangeError(`int(${maxExclusive}): bound must be a positive integer`)
      return Math.floor(rng.next() * maxExclusive)
    },
    pick: (items) => (items.length === 0 ? undefined : items[rng.int(items.length)]),
    fork: (label) => createRng(fnv1a32(label, seed ^ 0x9e3779b9)),
  }
  return rng
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0
}
