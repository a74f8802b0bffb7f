/**
 * Reads the headers of Automerge's binary chunks without loading them: which
 * changes a sync message carries (hash and dependencies) or, when it carries
 * a whole document, that document's heads. Enough to tell whether another
 * replica already made the document these lead to (doc-pool.ts), at a small
 * fraction of the cost of decoding or applying them.
 *
 * Automerge's storage format (automerge.org, "Binary Document Format"): a
 * chunk is the magic bytes, a 4-byte checksum, a type byte, a LEB128 body
 * length and the body. A change's hash is the SHA-256 of everything after
 * the checksum, whose first 4 bytes are the checksum. A change body starts
 * with its dependencies (a count, then 32-byte hashes); a document body with
 * its actors (a count, then length-prefixed ids) and then its heads. A sync
 * message may carry several chunks joined in one byte string.
 *
 * Anything unexpected answers undefined: the caller then takes the full
 * path, where Automerge itself parses (and refuses) the bytes.
 */
import { createHash } from 'node:crypto'
import * as A from '@automerge/automerge'

const MAGIC = [0x85, 0x6f, 0x4a, 0x83] as const
const HEADER_BYTES = 8 // magic and checksum
const HASH_BYTES = 32

export type ChunkType = 'document' | 'change' | 'compressed-change' | 'bundle'
const CHUNK_TYPES: readonly ChunkType[] = ['document', 'change', 'compressed-change', 'bundle']

/** A change as a receiver needs it to predict heads: its hash and the hashes it depends on. */
export interface ChangeMeta {
  hash: string
  deps: readonly string[]
}

export interface Chunk {
  type: ChunkType
  /** The whole chunk, header included. */
  bytes: Uint8Array
  /** Where the body starts in `bytes`. */
  bodyStart: number
}

/** The chunks joined in `bytes`, in order; undefined when the bytes are not whole chunks. */
export function splitChunks(bytes: Uint8Array): Chunk[] | undefined {
  const chunks: Chunk[] = []
  let at = 0
  while (at < bytes.length) {
    if (bytes.length - at < HEADER_BYTES + 2) return undefined
    for (let i = 0; i < MAGIC.length; i++) if (bytes[at + i] !== MAGIC[i]) return undefined
    const type = CHUNK_TYPES[bytes[at + HEADER_BYTES]!]
    if (type === undefined) return undefined
    const length = readUleb(bytes, at + HEADER_BYTES + 1)
    if (length === undefined) return undefined
    const end = length.next + length.value
    if (end > bytes.length) return undefined
    chunks.push({ type, bytes: bytes.subarray(at, end), bodyStart: length.next - at })
    at = end
  }
  return chunks
}

/**
 * Hash and dependencies of a change chunk, its checksum verified; a
 * compressed change is decoded by Automerge (its hash covers the
 * uncompressed bytes). Undefined for anything else or damaged bytes.
 */
export function changeMeta(chunk: Chunk): ChangeMeta | undefined {
  if (chunk.type === 'compressed-change') {
    try {
      const decoded = A.decodeChange(chunk.bytes)
      return { hash: decoded.hash, deps: decoded.deps }
    } catch {
      return undefined
    }
  }
  if (chunk.type !== 'change') return undefined
  const hash = verifiedHash(chunk)
  if (hash === undefined) return undefined
  const deps = readHashes(chunk.bytes, chunk.bodyStart)
  return deps === undefined ? undefined : { hash, deps: deps.hashes }
}

/** The heads of a document chunk (its checksum verified); undefined for anything else or damaged bytes. */
export function documentHeads(chunk: Chunk): string[] | undefined {
  if (chunk.type !== 'document' || verifiedHash(chunk) === undefined) return undefined
  const bytes = chunk.bytes
  const actors = readUleb(bytes, chunk.bodyStart)
  if (actors === undefined) return undefined
  let at = actors.next
  for (let i = 0; i < actors.value; i++) {
    const length = readUleb(bytes, at)
    if (length === undefined) return undefined
    at = length.next + length.value
  }
  return readHashes(bytes, at)?.hashes
}

/**
 * Chunks hashed lately, by checksum and length: one change reaches a node
 * in gossip and again in several peers' sync messages (and, in the
 * simulator, every node), and comparing bytes is far cheaper than SHA-256
 * (hashing sync messages' changes was ~4 % of a 1,000-node partition storm).
 */
const recentHashes = new Map<string, { bytes: Uint8Array; hash: string }>()
let recentBytes = 0
/** Bytes the remembered chunks may hold in all: thousands of changes in flight at a storm, while a whole document (a sync message may carry one) is never kept. */
const RECENT_HASHES_BYTES_MAX = 8 * 1024 * 1024
const RECENT_HASH_CHUNK_BYTES_MAX = 64 * 1024

/** The SHA-256 of a chunk after its checksum, hex, when the checksum matches it. */
function verifiedHash(chunk: Chunk): string | undefined {
  const bytes = chunk.bytes
  const key = `${Buffer.from(bytes.buffer, bytes.byteOffset + 4, 4).readUInt32BE(0)}:${bytes.length}`
  const recent = recentHashes.get(key)
  if (recent !== undefined && Buffer.from(recent.bytes.buffer, recent.bytes.byteOffset, recent.bytes.byteLength).equals(bytes)) return recent.hash
  const digest = createHash('sha256').update(bytes.subarray(HEADER_BYTES)).digest()
  for (let i = 0; i < 4; i++) if (digest[i] !== bytes[4 + i]) return undefined
  const hash = digest.toString('hex')
  if (bytes.length > RECENT_HASH_CHUNK_BYTES_MAX) return hash
  // A copy: the caller's bytes may be a view into a buffer that is reused. Replaces another chunk with this checksum and length, if any.
  if (recent !== undefined) recentBytes -= recent.bytes.length
  recentHashes.set(key, { bytes: bytes.slice(), hash })
  recentBytes += bytes.length
  for (const [oldest, entry] of recentHashes) {
    if (recentBytes <= RECENT_HASHES_BYTES_MAX) break
    recentHashes.delete(oldest)
    recentBytes -= entry.bytes.length
  }
  return hash
}

/** A LEB128 count followed by that many 32-byte hashes, hex. */
function readHashes(bytes: Uint8Array, at: number): { hashes: string[]; next: number } | undefined {
  const count = readUleb(bytes, at)
  if (count === undefined) return undefined
  const end = count.next + count.value * HASH_BYTES
  if (end > bytes.length) return undefined
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const hashes: string[] = []
  for (let start = count.next; start < end; start += HASH_BYTES) hashes.push(view.toString('hex', start, start + HASH_BYTES))
  return { hashes, next: end }
}

/** An unsigned LEB128 integer (up to 2^53) at `at`. */
function readUleb(bytes: Uint8Array, at: number): { value: number; next: number } | undefined {
  let value = 0
  let scale = 1
  for (let i = at; i < bytes.length && i < at + 8; i++) {
    const byte = bytes[i]!
    value += (byte & 0x7f) * scale
    if ((byte & 0x80) === 0) return Number.isSafeInteger(value) ? { value, next: i + 1 } : undefined
    scale *= 128
  }
  return undefined
}
