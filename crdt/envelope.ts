/**
 * A checksummed envelope around every blob the document persists (snapshot
 * and chunks). Automerge 3.5 does not reject a damaged change chunk: a bit
 * flip makes `loadIncremental` silently load nothing or only part of it, so a
 * node would start with holes it cannot see. With the envelope, damage is
 * detected before Automerge reads a byte, reported, and the blob skipped.
 *
 * Layout: 4 bytes magic "LTC" + format version 1, 8 bytes of SHA-256 of the
 * payload, then the payload.
 */
import { createHash } from 'node:crypto'

const MAGIC = Uint8Array.from([0x4c, 0x54, 0x43, 0x01])
const CHECKSUM_BYTES = 8
const HEADER_BYTES = MAGIC.length + CHECKSUM_BYTES

function checksum(payload: Uint8Array): Uint8Array {
  return createHash('sha256').update(payload).digest().subarray(0, CHECKSUM_BYTES)
}

export function seal(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + payload.length)
  out.set(MAGIC, 0)
  out.set(checksum(payload), MAGIC.length)
  out.set(payload, HEADER_BYTES)
  return out
}

/** The payload, or a reason why the blob is damaged. */
export function unseal(blob: Uint8Array): { payload: Uint8Array } | { damaged: string } {
  if (blob.length < HEADER_BYTES) return { damaged: `shorter than the ${HEADER_BYTES}-byte header` }
  if (!MAGIC.every((byte, i) => blob[i] === byte)) return { damaged: 'unknown magic or format version' }
  const payload = blob.subarray(HEADER_BYTES)
  const expected = checksum(payload)
  if (!expected.every((byte, i) => blob[MAGIC.length + i] === byte)) return { damaged: 'checksum mismatch' }
  return { payload }
}
