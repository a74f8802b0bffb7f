/**
 * The membership wire format: compact JSON validated with zod, each message
 * kind with a byte bound. Decoding never throws: it answers a value or the
 * reason the bytes were dropped, which the caller counts.
 *
 * Short keys keep a ping under ~100 bytes: p peerId, s state
 * (a alive, s suspect, d dead, l left), i incarnation, q metadata seq,
 * b the suspector ("by"), u piggybacked updates, r a record, m metadata.
 */
import { z } from 'zod'
import { ASK_ZOD, fastAccept } from '../core/fast-accept.ts'

export type WireState = 'a' | 's' | 'd' | 'l'

/** Why an inbound message (or one update in it) was dropped. */
export type DropReason =
  | 'oversized'
  | 'malformed'
  | 'stale'
  | 'unknownSender'
  | 'unknownSubject'
  | 'notSelf'
  | 'selfLoop'
  | 'stopped'
  | 'tableFull'

export const DROP_REASONS: readonly DropReason[] = [
  'oversized',
  'malformed',
  'stale',
  'unknownSender',
  'unknownSubject',
  'notSelf',
  'selfLoop',
  'stopped',
  'tableFull',
]

const INCARNATION_MAX = 2 ** 40
const SEQ_MAX = Number.MAX_SAFE_INTEGER

/** libp2p PeerIds are base58/base32 text; the simulator's are too. Printable ASCII, bounded. */
export const PeerIdSchema = z.string().min(1).max(128).regex(/^[\x21-\x7e]+$/)
const StateSchema = z.enum(['a', 's', 'd', 'l'])
const Incarnation = z.number().int().min(0).max(INCARNATION_MAX)
const Seq = z.number().int().min(0).max(SEQ_MAX)

export const UpdateSchema = z.object({
  p: PeerIdSchema,
  s: StateSchema,
  i: Incarnation,
  q: Seq,
  b: PeerIdSchema.optional(),
})
export type WireUpdate = z.output<typeof UpdateSchema>

const Quantity = z.number().min(0).max(1e12)
export const ResourcesSchema = z.object({
  cpu: Quantity,
  memoryMB: Quantity,
  diskMB: Quantity,
  gpus: Quantity,
})

export const MetaSchema = z.object({
  capacity: ResourcesSchema,
  free: ResourcesSchema,
  load: z.number().min(0).max(1e6),
  labels: z.record(z.string().max(128), z.string().max(256)).refine((labels) => Object.keys(labels).length <= 64, 'at most 64 labels'),
  version: z.string().max(64),
  addresses: z.array(z.string().max(512)).max(16),
})
export type WireMeta = z.output<typeof MetaSchema>

export const RecordSchema = z.object({
  p: PeerIdSchema,
  s: StateSchema,
  i: Incarnation,
  q: Seq,
  /** Seq at which the static part (capacity, labels, version, addresses) last changed; deltas name it as their base. */
  b: Seq.optional(),
  m: MetaSchema.optional(),
})
export type WireRecord = z.output<typeof RecordSchema>

const Updates = (max: number) => z.array(UpdateSchema).max(max)

/** Messages on the membership topic. */
export const TopicMessageSchema = z.discriminatedUnion('t', [
  /** State updates (suspect, dead, left, alive: refutation or join). */
  z.object({ v: z.literal(1), t: z.literal('u'), u: Updates(256).min(1) }),
  /** The sender's own record with metadata (join, change of its static part). */
  z.object({ v: z.literal(1), t: z.literal('m'), r: RecordSchema }),
  /** The sender's dynamic metadata only (free, load) at seq `q`, valid over the static part of seq `b`. */
  z.object({ v: z.literal(1), t: z.literal('f'), i: Incarnation, q: Seq, b: Seq, f: ResourcesSchema, l: z.number().min(0).max(1e6) }),
])
export type TopicWire = z.output<typeof TopicMessageSchema>

/** Requests on the probe protocol. `i`/`q` are always the sender's own incarnation and seq. */
export const ProbeRequestSchema = z.discriminatedUnion('t', [
  /** Direct probe; `ts`/`ti` carry the sender's view of the target when it is not alive, so the target refutes at once. */
  z.object({ v: z.literal(1), t: z.literal('ping'), i: Incarnation, q: Seq, ts: StateSchema.optional(), ti: Incarnation.optional(), u: Updates(64) }),
  /** Indirect probe: please ping `tg` for me; `w` is how long I will wait for your answer (ms). */
  z.object({ v: z.literal(1), t: z.literal('preq'), i: Incarnation, q: Seq, tg: PeerIdSchema, w: z.number().int().min(1).max(600_000).optional(), ts: StateSchema.optional(), ti: Incarnation.optional(), u: Updates(64) }),
  /** Direct delivery of updates (refutation to a suspector, "you are dead" notices). */
  z.object({ v: z.literal(1), t: z.literal('note'), i: Incarnation, q: Seq, u: Updates(64).min(1) }),
  /** Metadata pull: answer with your record. */
  z.object({ v: z.literal(1), t: z.literal('metaq'), i: Incarnation, q: Seq }),
])
export type ProbeRequestWire = z.output<typeof ProbeRequestSchema>

export const ProbeResponseSchema = z.discriminatedUnion('t', [
  z.object({ v: z.literal(1), t: z.literal('ack'), i: Incarnation, q: Seq, u: Updates(64) }),
  /** Answer to a ping-req: ok (the target acked, with its incarnation and seq) or a nack. */
  z.object({ v: z.literal(1), t: z.literal('pres'), ok: z.boolean(), i: Incarnation, q: Seq, ti: Incarnation.optional(), tq: Seq.optional(), u: Updates(64) }),
  z.object({ v: z.literal(1), t: z.literal('meta'), r: RecordSchema }),
  z.object({ v: z.literal(1), t: z.literal('err'), c: z.string().max(64) }),
])
export type ProbeResponseWire = z.output<typeof ProbeResponseSchema>

/** Push-pull full state, both ways. */
export const SyncMessageSchema = z.object({ v: z.literal(1), t: z.literal('sync'), join: z.boolean(), r: z.array(RecordSchema).max(100_000) })
export type SyncWire = z.output<typeof SyncMessageSchema>

const decoder = new TextDecoder('utf-8', { fatal: true })

export function encodeWire(value: unknown): Uint8Array {
  // Buffer.from, not TextEncoder: ~4× faster for a ping's few hundred bytes (small ones come from
  // Node's shared pool instead of an ArrayBuffer each), seen as a Uint8Array like any other bytes.
  const bytes = Buffer.from(JSON.stringify(value), 'utf8')
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/**
 * The JSON text of frozen metadata, by object: a push-pull message carries
 * every member's, and a node holds each member's as one frozen object until
 * it changes, so most of them were written out by the previous push-pull.
 */
const metaTexts = new WeakMap<WireMeta, string>()

function metaText(meta: WireMeta): string {
  let text = metaTexts.get(meta)
  if (text === undefined) {
    text = JSON.stringify(meta)
    // Only a deeply frozen one cannot change under its key (membership's freezeMeta freezes every part).
    if (Object.isFrozen(meta) && Object.isFrozen(meta.capacity) && Object.isFrozen(meta.free) && Object.isFrozen(meta.labels) && Object.isFrozen(meta.addresses)) metaTexts.set(meta, text)
  }
  return text
}

/** Exactly JSON.stringify(record) (its fields in the schema's order), the metadata's text written once per metadata object. */
export function recordText(record: WireRecord): string {
  let text = `{"p":${JSON.stringify(record.p)},"s":"${record.s}","i":${record.i},"q":${record.q}`
  if (record.b !== undefined) text += `,"b":${record.b}`
  if (record.m !== undefined) text += `,"m":${metaText(record.m)}`
  return `${text}}`
}

/** Exactly encodeWire({ v: 1, t: 'sync', join, r }), given each record's recordText. */
export function encodeSyncWire(join: boolean, recordTexts: readonly string[]): Uint8Array {
  const bytes = Buffer.from(`{"v":1,"t":"sync","join":${join},"r":[${recordTexts.join(',')}]}`, 'utf8')
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

export type Decoded<T> = { ok: true; value: T } | { ok: false; reason: DropReason }

/**
 * Topic messages decoded so far, by the message's bytes object: one
 * published message reaches every subscriber, and in the simulator hundreds
 * of nodes get the very same bytes — parsed and checked once, not once per
 * node. Values are deeply frozen (shared); a real node never hits (each
 * message arrives in its own buffer), so the memo costs it one lookup.
 */
const topicDecodes = new WeakMap<Uint8Array, Decoded<TopicWire>>()

/** decodeWire of a topic message, memoized by its bytes object (see topicDecodes); the bound is checked every time. */
export function decodeTopicMessage(data: Uint8Array, bytesMax: number): Decoded<TopicWire> {
  if (data.byteLength > bytesMax) return { ok: false, reason: 'oversized' }
  let decoded = topicDecodes.get(data)
  if (decoded === undefined) {
    decoded = decodeWire(TopicMessageSchema, data, Number.POSITIVE_INFINITY)
    if (decoded.ok) deepFreeze(decoded.value)
    topicDecodes.set(data, decoded)
  }
  return decoded
}

function deepFreeze(value: unknown): void {
  if (typeof value !== 'object' || value === null || Object.isFrozen(value)) return
  Object.freeze(value)
  for (const child of Object.values(value)) deepFreeze(child)
}

/**
 * Bound → UTF-8 → JSON → schema; never throws. The schema check goes
 * through the fast path first (core/fast-accept.ts), which accepts only what
 * zod would accept unchanged: probes and their answers are most of a
 * cluster's messages, and zod's copy of each was garbage.
 */
export function decodeWire<T>(schema: z.ZodType<T>, data: Uint8Array, bytesMax: number): Decoded<T> {
  if (data.byteLength > bytesMax) return { ok: false, reason: 'oversized' }
  let json: unknown
  try {
    json = JSON.parse(decoder.decode(data))
  } catch {
    return { ok: false, reason: 'malformed' }
  }
  const fast = fastAccept(schema, json)
  if (fast !== ASK_ZOD) return { ok: true, value: fast }
  const parsed = schema.safeParse(json)
  return parsed.success ? { ok: true, value: parsed.data } : { ok: false, reason: 'malformed' }
}
