/**
 * The state-sync wire formats. Binary, as Automerge's payloads are: one
 * version byte, one kind/flags byte where there is one, the sender's epoch
 * (4 bytes, big-endian: which document the payload belongs to), then the
 * payload. Decoding never throws: it answers a value or the reason the
 * bytes were dropped, which the caller counts.
 *
 * State topic (`lattice/state/1`):  [2] [epoch] [one Automerge change]
 * Sync request (`/lattice/state-sync/1`):  [2] [flags] [epoch] [payload]
 *   flags: START (first request of a session: the responder resets its
 *   state for us), SNAPSHOT (payload is a whole document, not a sync
 *   message), HEADS (alone: payload is the sender's heads, 32 bytes each —
 *   "are we in sync?"), EPOCH_DOCUMENT (alone, empty payload: "send me your
 *   whole document", asked by a node behind of a peer ahead, to adopt its
 *   epoch), EPOCH_GENESIS (alone, payload an epoch number in 4 bytes: "send
 *   me that epoch's genesis", for a node more than one epoch behind); an
 *   empty payload means "nothing to send this round".
 * Sync response:  [2] [kind] [epoch] [payload]
 *   kind: MESSAGE (payload a sync message, empty for nothing to send),
 *   SNAPSHOT (a whole document), BUSY (try another peer later), ERROR (your
 *   request was refused; payload: a short reason in UTF-8), HEADS (the
 *   answer to a HEADS request: the responder's durable heads, 32 bytes each),
 *   EPOCH (we are in different epochs: nothing of yours was applied; payload
 *   the responder's epoch record as JSON, so that a node behind learns the
 *   cut it missed).
 *
 * Version 1 frames (no epoch) are refused as malformed: every node of a
 * cluster runs one version.
 */
import * as A from '@automerge/automerge'

export const WIRE_VERSION = 2
const EPOCH_BYTES = 4
const HEADER_BYTES = 2 + EPOCH_BYTES
const TOPIC_HEADER_BYTES = 1 + EPOCH_BYTES
/** The largest epoch the wire carries (4 bytes): at an epoch a day, eleven million years. */
export const WIRE_EPOCH_MAX = 0xffff_ffff
const HASH_PATTERN = /^[0-9a-f]{64}$/

/** Why an inbound change or sync message was dropped. */
export type DropReason =
  /** Larger than its bound. */
  | 'oversized'
  /** Not our wire format, or not an Automerge change / sync message / document. */
  | 'malformed'
  /** Decoded and applied, but it left an entry invalid: the entry is left out of every read. */
  | 'invalidEntry'
  /** A held change (dependencies missing) pushed out by the pending bound; anti-entropy brings it. */
  | 'pendingFull'
  /** Applying failed on our side (store write failed, or stopping); anti-entropy brings it again. */
  | 'applyFailed'
  /** A sync request refused because syncInboundMax requests were being served. */
  | 'busy'
  /** Of another epoch's document than ours (not the sender's fault: one of us has not switched yet). */
  | 'otherEpoch'

export const DROP_REASONS: readonly DropReason[] = ['oversized', 'malformed', 'invalidEntry', 'pendingFull', 'applyFailed', 'busy', 'otherEpoch']

export type Decoded<T> = { ok: true; value: T } | { ok: false; reason: DropReason }

// ---- state topic ----

export interface TopicChange {
  /** The epoch of the document the change belongs to. */
  epoch: number
  change: Uint8Array
  hash: string
  deps: string[]
  /** The whole decoded change, so applying it need not decode it again. */
  decoded: A.DecodedChange
}

export function encodeTopicChange(change: Uint8Array, epoch: number): Uint8Array {
  const out = new Uint8Array(TOPIC_HEADER_BYTES + change.byteLength)
  out[0] = WIRE_VERSION
  writeEpoch(out, 1, epoch)
  out.set(change, TOPIC_HEADER_BYTES)
  return out
}

function writeEpoch(out: Uint8Array, at: number, epoch: number): void {
  if (!Number.isInteger(epoch) || epoch < 0 || epoch > WIRE_EPOCH_MAX) throw new RangeError(`not an epoch: ${epoch}`)
  new DataView(out.buffer, out.byteOffset, out.byteLength).setUint32(at, epoch)
}

function readEpoch(data: Uint8Array, at: number): number {
  return new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(at)
}

/**
 * Topic changes decoded so far, by the message's bytes object: one published
 * change reaches every subscriber, and in the simulator every node gets the
 * very same bytes — decoded (and hashed) once, not once per node. Values are
 * deeply frozen (shared); a real node never hits, each message arrives in its
 * own buffer. The bound is checked on every call.
 */
const topicChanges = new WeakMap<Uint8Array, Decoded<TopicChange>>()

export function decodeTopicChange(data: Uint8Array, changeBytesMax: number): Decoded<TopicChange> {
  if (data.byteLength > changeBytesMax + TOPIC_HEADER_BYTES) return { ok: false, reason: 'oversized' }
  let decoded = topicChanges.get(data)
  if (decoded === undefined) {
    decoded = decodeTopicChangeOnce(data)
    if (decoded.ok) deepFreeze(decoded.value.decoded)
    topicChanges.set(data, decoded)
  }
  return decoded
}

function deepFreeze(value: unknown): void {
  if (typeof value !== 'object' || value === null || ArrayBuffer.isView(value) || Object.isFrozen(value)) return
  Object.freeze(value)
  for (const child of Object.values(value)) deepFreeze(child)
}

function decodeTopicChangeOnce(data: Uint8Array): Decoded<TopicChange> {
  if (data.byteLength <= TOPIC_HEADER_BYTES || data[0] !== WIRE_VERSION) return { ok: false, reason: 'malformed' }
  const change = data.subarray(TOPIC_HEADER_BYTES)
  try {
    const decoded = A.decodeChange(change)
    if (!HASH_PATTERN.test(decoded.hash) || !decoded.deps.every((dep) => HASH_PATTERN.test(dep))) return { ok: false, reason: 'malformed' }
    return { ok: true, value: { epoch: readEpoch(data, 1), change, hash: decoded.hash, deps: decoded.deps, decoded } }
  } catch {
    return { ok: false, reason: 'malformed' }
  }
}

// ---- sync protocol ----

export const REQUEST_START = 0x01
export const REQUEST_SNAPSHOT = 0x02
export const REQUEST_HEADS = 0x04
export const REQUEST_EPOCH_DOCUMENT = 0x08
export const REQUEST_EPOCH_GENESIS = 0x10
const REQUEST_FLAGS = REQUEST_START | REQUEST_SNAPSHOT | REQUEST_HEADS | REQUEST_EPOCH_DOCUMENT | REQUEST_EPOCH_GENESIS

export type ResponseKind = 'message' | 'snapshot' | 'busy' | 'error' | 'heads' | 'epoch'
const KIND_CODES: Record<ResponseKind, number> = { message: 0, snapshot: 1, busy: 2, error: 3, heads: 4, epoch: 5 }
const KIND_BY_CODE: readonly ResponseKind[] = ['message', 'snapshot', 'busy', 'error', 'heads', 'epoch']

const HASH_BYTES = 32

export interface SyncRequest {
  /** The sender's epoch: which document the payload (and the sender) is in. */
  epoch: number
  start: boolean
  snapshot: boolean
  /** A heads round: `payload` is the sender's heads (encodeHeads), nothing else is asked. */
  heads?: boolean
  /** Asks for the responder's whole document (a node behind, adopting a later epoch); `payload` is empty. */
  epochDocument?: boolean
  /** Asks for the genesis the responder keeps of epoch `genesisOf` (a node more than one epoch behind); `payload` is empty. */
  genesisOf?: number
  payload: Uint8Array
}

export interface SyncResponse {
  /** The responder's epoch. */
  epoch: number
  kind: ResponseKind
  payload: Uint8Array
}

/** Bytes of a request or response carrying a payload of `payloadBytes`. */
export function syncFrameBytes(payloadBytes: number): number {
  return HEADER_BYTES + payloadBytes
}

function frame(second: number, epoch: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + payload.byteLength)
  out[0] = WIRE_VERSION
  out[1] = second
  writeEpoch(out, 2, epoch)
  out.set(payload, HEADER_BYTES)
  return out
}

export function encodeSyncRequest(request: SyncRequest): Uint8Array {
  const flags =
    (request.start ? REQUEST_START : 0) |
    (request.snapshot ? REQUEST_SNAPSHOT : 0) |
    (request.heads === true ? REQUEST_HEADS : 0) |
    (request.epochDocument === true ? REQUEST_EPOCH_DOCUMENT : 0) |
    (request.genesisOf !== undefined ? REQUEST_EPOCH_GENESIS : 0)
  if (request.genesisOf === undefined) return frame(flags, request.epoch, request.payload)
  const payload = new Uint8Array(EPOCH_BYTES)
  writeEpoch(payload, 0, request.genesisOf)
  return frame(flags, request.epoch, payload)
}

/** Change hashes (64 hex digits each) as 32 bytes each. */
export function encodeHeads(heads: readonly string[]): Uint8Array {
  const out = new Uint8Array(heads.length * HASH_BYTES)
  // Buffer's hex codec, not a parseInt per byte: a heads round at 1,000 nodes names hundreds of concurrent heads.
  const view = Buffer.from(out.buffer, out.byteOffset, out.byteLength)
  heads.forEach((head, i) => {
    if (view.write(head, i * HASH_BYTES, HASH_BYTES, 'hex') !== HASH_BYTES) throw new RangeError(`not a change hash: ${head}`)
  })
  return out
}

/** encodeHeads reversed; undefined when the length is not a whole number of hashes. */
export function decodeHeads(payload: Uint8Array): string[] | undefined {
  if (payload.byteLength % HASH_BYTES !== 0) return undefined
  const bytes = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
  const heads: string[] = []
  for (let at = 0; at < payload.byteLength; at += HASH_BYTES) heads.push(bytes.toString('hex', at, at + HASH_BYTES))
  return heads
}

export function decodeSyncRequest(data: Uint8Array, payloadBytesMax: number): Decoded<SyncRequest> {
  if (data.byteLength > syncFrameBytes(payloadBytesMax)) return { ok: false, reason: 'oversized' }
  if (data.byteLength < HEADER_BYTES || data[0] !== WIRE_VERSION) return { ok: false, reason: 'malformed' }
  const flags = data[1]!
  if ((flags & ~REQUEST_FLAGS) !== 0) return { ok: false, reason: 'malformed' }
  const payload = data.subarray(HEADER_BYTES)
  if ((flags & REQUEST_SNAPSHOT) !== 0 && payload.byteLength === 0) return { ok: false, reason: 'malformed' }
  const heads = (flags & REQUEST_HEADS) !== 0
  if (heads && (flags !== REQUEST_HEADS || payload.byteLength % HASH_BYTES !== 0)) return { ok: false, reason: 'malformed' }
  const epochDocument = (flags & REQUEST_EPOCH_DOCUMENT) !== 0
  if (epochDocument && (flags !== REQUEST_EPOCH_DOCUMENT || payload.byteLength !== 0)) return { ok: false, reason: 'malformed' }
  const value: SyncRequest = { epoch: readEpoch(data, 2), start: (flags & REQUEST_START) !== 0, snapshot: (flags & REQUEST_SNAPSHOT) !== 0, heads, epochDocument, payload }
  if ((flags & REQUEST_EPOCH_GENESIS) !== 0) {
    if (flags !== REQUEST_EPOCH_GENESIS || payload.byteLength !== EPOCH_BYTES) return { ok: false, reason: 'malformed' }
    return { ok: true, value: { ...value, genesisOf: readEpoch(payload, 0), payload: new Uint8Array(0) } }
  }
  return { ok: true, value }
}

export function encodeSyncResponse(epoch: number, kind: ResponseKind, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  return frame(KIND_CODES[kind], epoch, payload)
}

export function encodeSyncError(epoch: number, reason: string): Uint8Array {
  return encodeSyncResponse(epoch, 'error', new TextEncoder().encode(reason.slice(0, 64)))
}

export function decodeSyncResponse(data: Uint8Array, payloadBytesMax: number): Decoded<SyncResponse> {
  if (data.byteLength > syncFrameBytes(payloadBytesMax)) return { ok: false, reason: 'oversized' }
  if (data.byteLength < HEADER_BYTES || data[0] !== WIRE_VERSION) return { ok: false, reason: 'malformed' }
  const kind = KIND_BY_CODE[data[1]!]
  if (kind === undefined) return { ok: false, reason: 'malformed' }
  const payload = data.subarray(HEADER_BYTES)
  if (kind === 'snapshot' && payload.byteLength === 0) return { ok: false, reason: 'malformed' }
  if (kind === 'heads' && payload.byteLength % HASH_BYTES !== 0) return { ok: false, reason: 'malformed' }
  if (kind === 'epoch' && payload.byteLength === 0) return { ok: false, reason: 'malformed' }
  return { ok: true, value: { epoch: readEpoch(data, 2), kind, payload } }
}
