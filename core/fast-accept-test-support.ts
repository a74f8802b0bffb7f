/**
 * Test support for the fast path in front of zod (fast-accept.ts): a
 * deterministic PRNG, values that sit on schema bounds, mutations of valid
 * values and JSON, and `agree`, which runs the fast path and zod on one
 * value and fails when the fast path accepts what zod rejects or returns
 * anything but zod's output. Used by every schema family's own test.
 */
import { expect } from 'vitest'
import type { z } from 'zod'
import { ASK_ZOD, fastAccept } from './fast-accept.ts'

/** Deterministic, so a failure names a reproducible case. */
export function prng(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** zod's verdict and output; the fast path's answer must never contradict it. */
export function agree(schema: z.ZodType, value: unknown): 'fast' | 'zod-accepts' | 'zod-rejects' {
  const fast = fastAccept(schema, value)
  const zod = schema.safeParse(value)
  if (fast === ASK_ZOD) return zod.success ? 'zod-accepts' : 'zod-rejects'
  if (!zod.success) throw new Error(`fast path accepted what zod rejects: ${JSON.stringify(value)?.slice(0, 400)}: ${zod.error.message}`)
  expect(fast).toStrictEqual(zod.data)
  expect(JSON.stringify(fast)).toBe(JSON.stringify(zod.data))
  return 'fast'
}

export const astral = '\u{1F600}' // two UTF-16 units, one code point
const strings = (length: number): string[] => ['a'.repeat(length), 'A1'.repeat(length).slice(0, length), astral.repeat(Math.ceil(length / 2)).slice(0, length)]
const LENGTHS = [0, 1, 2, 3, 4, 5, 6, 31, 32, 33, 62, 63, 64, 65, 127, 128, 129, 255, 256, 257, 511, 512, 513, 4095, 4096, 4097, 16_384, 16_385]
export const NASTY: unknown[] = [
  ...LENGTHS.flatMap(strings),
  '', ' ', 'x y', '-leading', '.dot', 'UPPER', 'lower-case', 'NET_ADMIN', 'N', 'a/b', '80', '80/udp', '80/sctp', '123456', '0', '01', '63', '64',
  'running', 'deleted', 'tcp', 'udp', 'always', 'spread', 'binpack', 'on-failure', '__proto__', 'constructor', astral, '\u00e9t\u00e9',
  -1, -0, 0, 0.005, 0.01, 0.5, 1, 1.5, 5, 6, 63, 64, 65, 127, 128, 255, 256, 1_000, 65_535, 65_536, 1_048_576, 1_048_577, 2 ** 32, 2 ** 32 + 1,
  2 ** 40, 2 ** 40 + 1, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER + 1, 1e21, -1e21, 1e-7,
  true, false, null, [], [1], ['a'], {}, { a: 1 }, { container: 80, protocol: 'tcp' }, { peerId: 'p', score: 1, atMs: 1 },
]
// Values only a document (not JSON) can hold, for the fields the stored deployment keeps outside its JSON.
export const NOT_JSON: unknown[] = [Number.NaN, Number.POSITIVE_INFINITY, undefined, new Date(0), new Uint8Array(1)]

type Json = unknown
const isObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype

/** Every path to a value inside `value` (the root included). */
function paths(value: Json, at: Array<string | number> = []): Array<Array<string | number>> {
  const out = [at]
  if (Array.isArray(value)) value.forEach((item, i) => out.push(...paths(item, [...at, i])))
  else if (isObject(value)) for (const key of Object.keys(value)) out.push(...paths(value[key], [...at, key]))
  return out
}

/** A deep copy with one random mutation: a value replaced, a key removed, added, renamed to __proto__, or keys reordered, an item duplicated. */
export function mutate(value: Json, random: () => number, pool: readonly unknown[]): Json {
  const copy = structuredClone(value)
  const all = paths(copy)
  const path = all[Math.floor(random() * all.length)]!
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!
  if (path.length === 0) return pick(pool)
  let parent = copy as Record<string | number, unknown>
  for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>
  const key = path[path.length - 1]!
  const roll = random()
  if (Array.isArray(parent)) {
    if (roll < 0.6) parent[key as number] = pick(pool)
    else if (roll < 0.8) parent.push(structuredClone(parent[key as number]))
    else parent.splice(key as number, 1)
    return copy
  }
  if (roll < 0.55) parent[key] = pick(pool)
  else if (roll < 0.7) delete parent[key]
  else if (roll < 0.8) parent[`extra${Math.floor(random() * 3)}`] = pick(pool)
  else if (roll < 0.85) {
    // A key moved to the end: zod outputs keys in its shape's order.
    const moved = parent[key]
    delete parent[key]
    parent[key] = moved
  } else if (roll < 0.9) {
    const entries = Object.entries(parent).reverse()
    for (const [k] of entries) delete parent[k]
    for (const [k, v] of entries) parent[k] = v
  } else Object.defineProperty(parent, '__proto__', { value: pick(pool), enumerable: true, configurable: true, writable: true })
  return copy
}

/** JSON text with a mutation: of the value, or of the text itself. */
export function mutateJson(value: Json, random: () => number): unknown {
  const roll = random()
  const text = JSON.stringify(value)
  if (roll < 0.05) return text.slice(0, Math.floor(random() * text.length)) // truncated: not JSON
  if (roll < 0.08) return text.replace('{', '{"__proto__":{"generation":1},') // a JSON __proto__ key is an own property
  if (roll < 0.1) return `${text}${' '.repeat(Math.floor(random() * 3))}`
  if (roll < 0.12) return pick(random, NASTY)
  return JSON.stringify(mutate(value, random, NASTY))
}

export const pick = <T>(random: () => number, items: readonly T[]): T => items[Math.floor(random() * items.length)]!

