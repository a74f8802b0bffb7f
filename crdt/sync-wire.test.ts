import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { decodeHeads, encodeHeads } from './sync-wire.ts'

const hash = (i: number): string => createHash('sha256').update(String(i)).digest('hex')

describe('heads on the sync wire', () => {
  it('32 bytes per head, in order, and back to the same lowercase hex', () => {
    const heads = Array.from({ length: 300 }, (_, i) => hash(i))
    const bytes = encodeHeads(heads)
    expect(bytes.byteLength).toBe(300 * 32)
    expect(Buffer.from(bytes.subarray(32, 64)).toString('hex')).toBe(heads[1])
    expect(decodeHeads(bytes)).toEqual(heads)
    // A payload inside a larger frame decodes from its own offset.
    const framed = new Uint8Array(5 + bytes.byteLength)
    framed.set(bytes, 5)
    expect(decodeHeads(framed.subarray(5))).toEqual(heads)
    expect(decodeHeads(new Uint8Array(0))).toEqual([])
  })

  it('a payload that is not whole hashes decodes to nothing; a string that is not a hash is not encoded', () => {
    expect(decodeHeads(new Uint8Array(33))).toBeUndefined()
    expect(() => encodeHeads(['abc'])).toThrow(RangeError)
    expect(() => encodeHeads(['zz'.repeat(32)])).toThrow(RangeError)
  })
})
