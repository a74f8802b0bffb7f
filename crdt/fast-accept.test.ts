/**
 * The fast path in front of zod (fast-accept.ts) against zod itself: it
 * accepts the entries nodes write, and whatever it accepts zod accepts with
 * the same output (key order included); on thousands of mutations of those
 * entries it never says yes where zod says no.
 */
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { ASK_ZOD, fastAccept, understands } from './fast-accept.ts'
import {
  IdSchema,
  NodeEntrySchema,
  ReplicaIndexSchema,
  SCHEMA_LIMITS,
  StoredDeploymentSchema,
  StoredPlacementSchema,
  StoredStatusSchema,
} from './schema.ts'

/** Deterministic, so a failure names a reproducible case. */
function prng(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const definition = {
  id: 'd-000000000042',
  spec: {
    name: 'app-42',
    image: 'lattice-test/busybox:latest',
    command: ['httpd', '-f'],
    env: { KEY: 'v', OTHER_2: '' },
    ports: [
      { container: 80, protocol: 'tcp' },
      { container: 53, protocol: 'udp' },
    ],
    resources: { cpu: 0.1, memoryMB: 64 },
    replicas: 2,
    restart: 'always',
    constraints: { labels: { zone: 'a' } },
    strategy: 'spread',
    capAdd: ['NET_ADMIN'],
  },
  specVersion: 1,
  owner: '12D3KooWpeer000',
  createdAtMs: 1_700_000_000_000,
}
const placement = {
  generation: 1,
  winners: ['12D3KooWpeer000'],
  bids: [
    { peerId: '12D3KooWpeer000', score: 500, atMs: 1_700_000_000_000 },
    { peerId: '12D3KooWpeer001', score: -0.5, atMs: 1_700_000_000_000 },
  ],
  shortlist: ['12D3KooWpeer000', '12D3KooWpeer001'],
  closedBy: '12D3KooWpeer000',
  openedAtMs: 1_700_000_000_000,
  closedAtMs: 1_700_000_000_300,
  history: [{ generation: 1, winners: ['12D3KooWpeer000'], closedBy: '12D3KooWpeer000', closedAtMs: 1_700_000_000_300, reason: 'initial' }],
  unschedulableReason: 'none left',
}
const status = {
  generation: 1,
  epoch: 1,
  state: 'running',
  containerId: 'c42',
  hostPorts: { '80': 40_000, '53/udp': 40_001 },
  startedAtMs: 1_700_000_001_000,
  error: '',
  restarts: 0,
  updatedAtMs: 1_700_000_001_000,
}
const node = {
  peerId: '12D3KooWpeer000',
  name: 'node-0',
  addresses: ['/ip4/10.0.0.1/tcp/4001'],
  labels: { zone: 'a' },
  capacity: { cpu: 2, memoryMB: 4096, diskMB: 100_000, gpus: 0 },
  version: '0.1.0',
  draining: false,
  joinedAtMs: 1_700_000_000_000,
  updatedAtMs: 1_700_000_000_000,
}

/** zod's verdict and output; the fast path's answer must never contradict it. */
function agree(schema: z.ZodType, value: unknown): 'fast' | 'zod-accepts' | 'zod-rejects' {
  const fast = fastAccept(schema, value)
  const zod = schema.safeParse(value)
  if (fast === ASK_ZOD) return zod.success ? 'zod-accepts' : 'zod-rejects'
  if (!zod.success) throw new Error(`fast path accepted what zod rejects: ${JSON.stringify(value)?.slice(0, 400)}: ${zod.error.message}`)
  expect(fast).toStrictEqual(zod.data)
  expect(JSON.stringify(fast)).toBe(JSON.stringify(zod.data))
  return 'fast'
}

const astral = '\u{1F600}' // two UTF-16 units, one code point
const strings = (length: number): string[] => ['a'.repeat(length), 'A1'.repeat(length).slice(0, length), astral.repeat(Math.ceil(length / 2)).slice(0, length)]
const LENGTHS = [0, 1, 2, 3, 4, 5, 6, 31, 32, 33, 62, 63, 64, 65, 127, 128, 129, 255, 256, 257, 511, 512, 513, 4095, 4096, 4097, 16_384, 16_385]
const NASTY: unknown[] = [
  ...LENGTHS.flatMap(strings),
  '', ' ', 'x y', '-leading', '.dot', 'UPPER', 'lower-case', 'NET_ADMIN', 'N', 'a/b', '80', '80/udp', '80/sctp', '123456', '0', '01', '63', '64',
  'running', 'deleted', 'tcp', 'udp', 'always', 'spread', 'binpack', 'on-failure', '__proto__', 'constructor', astral, '\u00e9t\u00e9',
  -1, -0, 0, 0.005, 0.01, 0.5, 1, 1.5, 5, 6, 63, 64, 65, 127, 128, 255, 256, 1_000, 65_535, 65_536, 1_048_576, 1_048_577, 2 ** 32, 2 ** 32 + 1,
  2 ** 40, 2 ** 40 + 1, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER + 1, 1e21, -1e21, 1e-7,
  true, false, null, [], [1], ['a'], {}, { a: 1 }, { container: 80, protocol: 'tcp' }, { peerId: 'p', score: 1, atMs: 1 },
]
// Values only a document (not JSON) can hold, for the fields the stored deployment keeps outside its JSON.
const NOT_JSON: unknown[] = [Number.NaN, Number.POSITIVE_INFINITY, undefined, new Date(0), new Uint8Array(1)]

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
function mutate(value: Json, random: () => number, pool: readonly unknown[]): Json {
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
function mutateJson(value: Json, random: () => number): unknown {
  const roll = random()
  const text = JSON.stringify(value)
  if (roll < 0.05) return text.slice(0, Math.floor(random() * text.length)) // truncated: not JSON
  if (roll < 0.08) return text.replace('{', '{"__proto__":{"generation":1},') // a JSON __proto__ key is an own property
  if (roll < 0.1) return `${text}${' '.repeat(Math.floor(random() * 3))}`
  if (roll < 0.12) return pick(random, NASTY)
  return JSON.stringify(mutate(value, random, NASTY))
}

const pick = <T>(random: () => number, items: readonly T[]): T => items[Math.floor(random() * items.length)]!

describe('fast accept', () => {
  it('compiles every schema the index reads entries with', () => {
    for (const schema of [StoredStatusSchema, StoredPlacementSchema, StoredDeploymentSchema, IdSchema, ReplicaIndexSchema, NodeEntrySchema]) {
      expect(understands(schema)).toBe(true)
    }
  })

  it('accepts the entries nodes write, with exactly zod output', () => {
    expect(agree(StoredStatusSchema, JSON.stringify(status))).toBe('fast')
    expect(agree(StoredPlacementSchema, JSON.stringify(placement))).toBe('fast')
    expect(agree(StoredDeploymentSchema, { definition: JSON.stringify(definition), desired: 'stopped', replicas: 3, epoch: 2, updatedAtMs: 5 })).toBe('fast')
    expect(agree(StoredDeploymentSchema, { definition: JSON.stringify(definition) })).toBe('fast')
    expect(agree(NodeEntrySchema, node)).toBe('fast')
    expect(agree(IdSchema, 'a'.repeat(SCHEMA_LIMITS.idLengthMax))).toBe('fast')
    expect(agree(ReplicaIndexSchema, 63)).toBe('fast')
  })

  it('leaves to zod what zod would change or decide otherwise: defaults, unknown keys, key order, code-point lengths', () => {
    const { env: _env, ...withoutEnv } = definition.spec
    // A default fills env: zod's output differs from the input.
    expect(agree(StoredDeploymentSchema, { definition: JSON.stringify({ ...definition, spec: withoutEnv }) })).toBe('zod-accepts')
    // A newer node's field: zod strips it.
    expect(agree(StoredStatusSchema, JSON.stringify({ ...status, newField: 1 }))).toBe('zod-accepts')
    // Another order: zod outputs the shape's.
    const { generation, ...rest } = status
    expect(agree(StoredStatusSchema, JSON.stringify({ ...rest, generation }))).toBe('zod-accepts')
    const { containerId, ...others } = status
    expect(agree(StoredStatusSchema, JSON.stringify({ ...others, containerId }))).toBe('zod-accepts') // an optional key out of order
    // 129 UTF-16 units, 65 code points: this zod counts code points above the bound.
    const long = `${astral.repeat(64)}x`
    expect(agree(StoredStatusSchema, JSON.stringify({ ...status, containerId: long }))).toBe('zod-accepts')
    expect(agree(StoredStatusSchema, JSON.stringify({ ...status, containerId: 'c' }))).toBe('zod-accepts') // one unit: near the minimum, left to zod
    // The order gatherDeployments yields (alphabetical) when both epoch and replicas were written.
    expect(agree(StoredDeploymentSchema, { definition: JSON.stringify(definition), epoch: 2, replicas: 3 })).toBe('zod-accepts')
    // A JSON "__proto__" key is an own property; zod leaves it out of a record's output.
    const withProto = JSON.stringify(definition).replace('"env":{', '"env":{"__proto__":"x",')
    expect(agree(StoredDeploymentSchema, { definition: withProto })).toBe('zod-accepts')
    expect(agree(StoredStatusSchema, JSON.stringify({ ...status, generation: -1 }))).toBe('zod-rejects')
    expect(agree(StoredStatusSchema, `${JSON.stringify(status).slice(0, -1)}`)).toBe('zod-rejects')
  })

  it('never accepts what zod rejects, over thousands of mutated entries', () => {
    const random = prng(20_261_122)
    const tally = { fast: 0, 'zod-accepts': 0, 'zod-rejects': 0 }
    const ROUNDS = 1_500
    for (let i = 0; i < ROUNDS; i++) {
      tally[agree(StoredStatusSchema, mutateJson(status, random))]++
      tally[agree(StoredPlacementSchema, mutateJson(placement, random))]++
      const stored: Record<string, unknown> = { definition: mutateJson(definition, random) }
      for (const field of ['desired', 'replicas', 'epoch', 'updatedAtMs'] as const) {
        const roll = random()
        if (roll < 0.4) continue
        stored[field] = roll < 0.7 ? { desired: 'running', replicas: 2, epoch: 3, updatedAtMs: 9 }[field] : pick(random, roll < 0.95 ? NASTY : NOT_JSON)
      }
      tally[agree(StoredDeploymentSchema, random() < 0.9 ? stored : mutate(stored, random, [...NASTY, ...NOT_JSON]))]++
      tally[agree(NodeEntrySchema, mutate(node, random, NASTY))]++
      tally[agree(IdSchema, pick(random, NASTY))]++
      tally[agree(ReplicaIndexSchema, pick(random, [...NASTY, ...NOT_JSON]))]++
    }
    // The mutations reach every outcome, so the comparison above is not vacuous.
    expect(tally.fast).toBeGreaterThan(ROUNDS / 2)
    expect(tally['zod-accepts']).toBeGreaterThan(ROUNDS / 4)
    expect(tally['zod-rejects']).toBeGreaterThan(ROUNDS)
  })

  it('compiles what it does not understand to "ask zod"', () => {
    expect(understands(z.string().transform((s) => s.trim()))).toBe(false)
    expect(understands(z.email())).toBe(false)
    expect(understands(z.object({ a: z.string().trim() }))).toBe(false)
    expect(understands(z.object({ a: z.number().multipleOf(2) }))).toBe(false)
    expect(understands(z.union([z.string(), z.number()]))).toBe(false)
    expect(fastAccept(z.object({ a: z.number().multipleOf(2) }), { a: 3 })).toBe(ASK_ZOD)
    // eslint-disable-next-line no-sparse-arrays
    expect(agree(z.array(z.number().optional()), [1, , 3])).toBe('zod-accepts') // a hole: left to zod
    // A refine is run: it must say yes.
    const even = z.number().refine((n) => n % 2 === 0)
    expect(fastAccept(even, 3)).toBe(ASK_ZOD)
    expect(fastAccept(even, 4)).toBe(4)
  })
})
