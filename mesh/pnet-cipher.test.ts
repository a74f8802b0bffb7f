import { createRequire } from 'node:module'
import { describe, expect, it } from 'vitest'
import { PNET_CIPHER_STATE } from './pnet-cipher.ts'

type Cipher = { update(input: Uint8Array, output?: Uint8Array): Uint8Array }
const xsalsa20 = createRequire(import.meta.url)('xsalsa20') as (nonce: Uint8Array, key: Uint8Array) => Cipher

describe("pnet's xsalsa20 cipher", () => {
  it('is patched in place', () => {
    expect(PNET_CIPHER_STATE).toBe('patched')
  })

  it('survives many ciphers and large writes that exhaust the unpatched shared WASM memory, and still encrypts correctly', () => {
    const key = new Uint8Array(32).fill(7)
    const ciphers = Array.from({ length: 400 }, (_, i) => xsalsa20(new Uint8Array(24).fill(i % 251), key))
    const big = new Uint8Array(1024 * 1024).map((_, i) => i % 256)
    for (let round = 0; round < 4; round++) for (const cipher of ciphers) cipher.update(round === 0 ? big : big.subarray(0, 1000))
    // Same nonce and key, fed in different chunkings: the same stream.
    const a = xsalsa20(new Uint8Array(24).fill(9), key)
    const b = xsalsa20(new Uint8Array(24).fill(9), key)
    const whole = a.update(big)
    const parts = new Uint8Array(big.length)
    parts.set(b.update(big.subarray(0, 100_003)), 0)
    parts.set(b.update(big.subarray(100_003)), 100_003)
    expect(Buffer.compare(Buffer.from(whole), Buffer.from(parts))).toBe(0)
    expect(Buffer.compare(Buffer.from(whole), Buffer.from(big))).not.toBe(0)
  })
})
