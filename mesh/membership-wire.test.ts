/**
 * The membership wire's schemas through the fast path in front of zod
 * (core/fast-accept.ts): the messages a node sends are accepted without zod,
 * with exactly zod's output, and no mutation of them is accepted where zod
 * would refuse it or answer something else.
 */
import { describe, expect, it } from 'vitest'
import type { z } from 'zod'
import { understands } from '../core/fast-accept.ts'
import { agree, mutate, mutateJson, NASTY, prng } from '../core/fast-accept-test-support.ts'
import { decodeWire, encodeSyncWire, encodeWire, ProbeRequestSchema, ProbeResponseSchema, recordText, SyncMessageSchema, TopicMessageSchema, type WireRecord } from './membership-wire.ts'

const meta = {
  capacity: { cpu: 4, memoryMB: 8192, diskMB: 100_000, gpus: 0 },
  free: { cpu: 3.5, memoryMB: 6000, diskMB: 90_000, gpus: 0 },
  load: 0.25,
  labels: { zone: 'a' },
  version: '0.1.0',
  addresses: ['/ip4/10.0.0.1/tcp/4001'],
}
const update = { p: '12D3KooWpeer001', s: 's', i: 3, q: 7, b: '12D3KooWpeer002' }
const record = { p: '12D3KooWpeer000', s: 'a', i: 2, q: 9, b: 4, m: meta }

// As membership.ts builds them: keys in the schemas' order.
const topicMessages = [
  { v: 1, t: 'u', u: [update, { p: '12D3KooWpeer003', s: 'd', i: 1, q: 0 }] },
  { v: 1, t: 'm', r: record },
  { v: 1, t: 'f', i: 2, q: 10, b: 4, f: meta.free, l: 0.5 },
]
const requests = [
  { v: 1, t: 'ping', i: 2, q: 9, u: [update] },
  { v: 1, t: 'ping', i: 2, q: 9, ts: 's', ti: 3, u: [] },
  { v: 1, t: 'preq', i: 2, q: 9, tg: '12D3KooWpeer004', w: 250, ts: 's', ti: 1, u: [update] },
  { v: 1, t: 'note', i: 2, q: 9, u: [update] },
  { v: 1, t: 'metaq', i: 2, q: 9 },
]
const responses = [
  { v: 1, t: 'ack', i: 4, q: 1, u: [update] },
  { v: 1, t: 'pres', ok: true, i: 4, q: 1, u: [] },
  { v: 1, t: 'meta', r: record },
  { v: 1, t: 'err', c: 'stopped' },
]
const sync = { v: 1, t: 'sync', join: true, r: [record, { p: '12D3KooWpeer005', s: 'd', i: 8, q: 2 }] }

describe('membership wire through the fast path', () => {
  it('compiles every membership schema', () => {
    for (const schema of [TopicMessageSchema, ProbeRequestSchema, ProbeResponseSchema, SyncMessageSchema]) expect(understands(schema)).toBe(true)
  })

  it('accepts the messages nodes send, with exactly zod output, and decodeWire answers the same', () => {
    const cases: Array<readonly [z.ZodType, unknown]> = [
      ...topicMessages.map((message) => [TopicMessageSchema, message] as const),
      ...requests.map((message) => [ProbeRequestSchema, message] as const),
      ...responses.map((message) => [ProbeResponseSchema, message] as const),
      [SyncMessageSchema, sync] as const,
    ]
    for (const [schema, message] of cases) {
      expect(agree(schema, message)).toBe('fast')
      expect(decodeWire(schema, encodeWire(message), 65_536)).toEqual({ ok: true, value: message })
    }
    // An unknown kind, an unknown key, keys out of order: left to zod, which refuses, strips, reorders.
    expect(agree(ProbeRequestSchema, { v: 1, t: 'pong', i: 2, q: 9, u: [] })).toBe('zod-rejects')
    expect(agree(ProbeRequestSchema, { v: 1, t: 'metaq', i: 2, q: 9, extra: 1 })).toBe('zod-accepts')
    expect(agree(ProbeResponseSchema, { v: 1, t: 'pres', ok: true, i: 4, q: 1, u: [], ti: 2 })).toBe('zod-accepts')
    expect(agree(ProbeRequestSchema, { v: 2, t: 'metaq', i: 2, q: 9 })).toBe('zod-rejects')
    expect(decodeWire(ProbeRequestSchema, encodeWire({ v: 1, t: 'metaq', i: -1, q: 9 }), 65_536)).toEqual({ ok: false, reason: 'malformed' })
  })

  it('never accepts what zod rejects, over thousands of mutated messages', () => {
    const random = prng(20_261_122)
    const tally = { fast: 0, 'zod-accepts': 0, 'zod-rejects': 0 }
    const ROUNDS = 400
    const pool = [...NASTY, 'a', 's', 'd', 'l', 'u', 'm', 'f', 'ping', 'preq', 'note', 'metaq', 'ack', 'pres', 'meta', 'err', 'sync']
    for (let i = 0; i < ROUNDS; i++) {
      for (const message of topicMessages) tally[agree(TopicMessageSchema, mutate(message, random, pool))]++
      for (const message of requests) tally[agree(ProbeRequestSchema, mutate(message, random, pool))]++
      for (const message of responses) tally[agree(ProbeResponseSchema, mutate(message, random, pool))]++
      tally[agree(SyncMessageSchema, mutate(sync, random, pool))]++
      const text = mutateJson(requests[i % requests.length], random)
      if (typeof text === 'string') {
        let json: unknown
        try {
          json = JSON.parse(text)
        } catch {
          continue
        }
        tally[agree(ProbeRequestSchema, json)]++
      }
    }
    // Every outcome is reached, so the comparison is not vacuous.
    expect(tally.fast).toBeGreaterThan(ROUNDS)
    expect(tally['zod-accepts']).toBeGreaterThan(ROUNDS / 4)
    expect(tally['zod-rejects']).toBeGreaterThan(ROUNDS * 2)
  })
})

describe('push-pull records written from their parts', () => {
  const deepFrozen = <T>(value: T): T => {
    if (typeof value === 'object' && value !== null) {
      for (const child of Object.values(value)) deepFrozen(child)
      Object.freeze(value)
    }
    return value
  }

  it('give exactly the bytes encodeWire gives the whole message', () => {
    const unicode = { ...meta, labels: { zone: 'zürich "a"\\n', emoji: '🙂' }, addresses: [] }
    const records: WireRecord[] = [
      record as WireRecord,
      { p: '12D3KooWpeer005', s: 'd', i: 8, q: 2 },
      { p: 'peer-"quoted"', s: 's', i: 0, q: 0, b: 0 },
      { p: '12D3KooWpeer006', s: 'l', i: 2 ** 40, q: Number.MAX_SAFE_INTEGER, b: 3, m: deepFrozen(structuredClone(unicode)) },
      { p: '12D3KooWpeer007', s: 'a', i: 1, q: 4, b: 4, m: { ...unicode, load: 1.5e-7 } },
    ]
    for (const join of [true, false]) {
      const texts = records.map((r) => recordText(r))
      expect(Buffer.from(encodeSyncWire(join, texts)).equals(Buffer.from(encodeWire({ v: 1, t: 'sync', join, r: records })))).toBe(true)
      expect(Buffer.from(encodeSyncWire(join, [])).equals(Buffer.from(encodeWire({ v: 1, t: 'sync', join, r: [] })))).toBe(true)
    }
    for (const r of records) expect(recordText(r)).toBe(JSON.stringify(r))
  })

  it('write metadata again when it may have changed: only a deeply frozen one is remembered', () => {
    const open = structuredClone(meta)
    const mutable: WireRecord = { p: 'peer-1', s: 'a', i: 1, q: 2, b: 2, m: open }
    expect(recordText(mutable)).toBe(JSON.stringify(mutable))
    open.free.cpu = 1
    open.labels.zone = 'b'
    expect(recordText(mutable)).toBe(JSON.stringify(mutable))
    // Frozen at the top only: its parts can still change.
    const shallow = Object.freeze({ ...structuredClone(meta) })
    const shallowRecord: WireRecord = { p: 'peer-2', s: 'a', i: 1, q: 2, m: shallow }
    expect(recordText(shallowRecord)).toBe(JSON.stringify(shallowRecord))
    shallow.free.cpu = 0.5
    expect(recordText(shallowRecord)).toBe(JSON.stringify(shallowRecord))
  })
})
