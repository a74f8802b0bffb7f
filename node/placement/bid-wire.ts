/**
 * The bid a shortlisted node sends to the round's closers: what it offers and
 * the figures its score was computed from, so a closer can check the score.
 * Parsed with zod and a byte bound; anything else is dropped and counted.
 */
import { z } from 'zod'

export const BID_PROTOCOL = '/lattice/placement/bid/1.0.0'
export const BID_BYTES_MAX = 2_048

const FiguresSchema = z.object({
  cpu: z.number().min(0).max(4096),
  memoryMB: z.number().min(0).max(2 ** 32),
  diskMB: z.number().min(0).max(2 ** 40),
  gpus: z.number().int().min(0).max(256),
})

export const BidMessageSchema = z.strictObject({
  v: z.literal(1),
  deploymentId: z.string().min(1).max(128),
  replica: z.number().int().min(0).max(63),
  generation: z.number().int().min(1).max(2 ** 31),
  wave: z.number().int().min(0).max(64),
  peerId: z.string().min(1).max(128),
  score: z.number().int().min(0).max(1000),
  capacity: FiguresSchema,
  free: FiguresSchema,
  atMs: z.number().int().min(0),
})
export type BidMessage = z.infer<typeof BidMessageSchema>

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

export function encodeBid(bid: BidMessage): Uint8Array {
  return encoder.encode(JSON.stringify(bid))
}

export type BidDecodeResult = { ok: true; bid: BidMessage } | { ok: false; reason: 'too_large' | 'malformed' | 'invalid' }

export function decodeBid(bytes: Uint8Array): BidDecodeResult {
  if (bytes.byteLength > BID_BYTES_MAX) return { ok: false, reason: 'too_large' }
  let json: unknown
  try {
    json = JSON.parse(decoder.decode(bytes))
  } catch {
    return { ok: false, reason: 'malformed' }
  }
  const parsed = BidMessageSchema.safeParse(json)
  return parsed.success ? { ok: true, bid: parsed.data } : { ok: false, reason: 'invalid' }
}
