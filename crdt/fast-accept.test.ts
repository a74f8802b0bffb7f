/**
 * The fast path in front of zod (fast-accept.ts) against zod itself: it
 * accepts the entries nodes write, and whatever it accepts zod accepts with
 * the same output (key order included); on thousands of mutations of those
 * entries it never says yes where zod says no.
 */
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { ASK_ZOD, fastAccept, understands } from '../core/fast-accept.ts'
import { agree, astral, mutate, mutateJson, NASTY, NOT_JSON, pick, prng } from '../core/fast-accept-test-support.ts'
import {
  IdSchema,
  NodeEntrySchema,
  ReplicaIndexSchema,
  SCHEMA_LIMITS,
  StoredDeploymentSchema,
  StoredPlacementSchema,
  StoredStatusSchema,
} from './schema.ts'

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
