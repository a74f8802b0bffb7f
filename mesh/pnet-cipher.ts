/**
 * Makes @libp2p/pnet's cipher safe with many connections in one process.
 *
 * xsalsa20@1.2.0 (pnet's XSalsa20) runs in WASM with ONE memory shared by
 * every cipher in the process, capped at 64 MB. When one cipher grows that
 * memory, every other cipher's view of it goes stale (detached, length 0),
 * and its next write "grows" by its whole offset again — a few rounds of that
 * and the process dies with `WebAssembly.Memory.grow(): Maximum memory size
 * exceeded`, thrown from a socket handler (seen in `npm run bench -- mesh` at
 * 100 nodes; fixed upstream in js-libp2p PR #3585, not released in
 * @libp2p/pnet 3.0.27). Its pure-JS fallback has no such limit but made
 * gossip 40× slower in the same benchmark.
 *
 * So: keep the WASM cipher and patch its `update` once, for every cipher,
 * (1) to refresh a stale view before use, and (2) to feed large inputs in
 * 64 KiB chunks so the shared scratch area stays small. The patch checks the
 * shape it expects and leaves the library alone (and says so) otherwise.
 * Remove it when @libp2p/pnet ships the upstream fix.
 */
import { createRequire } from 'node:module'

interface WasmCipher {
  _memory: Uint8Array
  realloc(size: number): void
  update(input: Uint8Array, output: Uint8Array): void
}

type XSalsa20 = (nonce: Uint8Array, key: Uint8Array) => { _xor: WasmCipher; update(input: Uint8Array, output?: Uint8Array): Uint8Array; finalize(): void }

const CHUNK_BYTES = 64 * 1024
const PATCHED = Symbol.for('lattice.xsalsa20.patched')

function patch(): 'patched' | 'js-fallback' | 'unexpected-shape' {
  const xsalsa20 = createRequire(import.meta.url)('xsalsa20') as XSalsa20
  const probe = xsalsa20(new Uint8Array(24), new Uint8Array(32))
  const cipher = probe._xor as Partial<WasmCipher> & { constructor: { name: string; prototype: Record<PropertyKey, unknown> } }
  const prototype = cipher.constructor.prototype
  try {
    if (cipher.constructor.name === 'Fallback') return 'js-fallback'
    if (cipher.constructor.name !== 'WASM' || typeof prototype.update !== 'function' || typeof prototype.realloc !== 'function' || !(cipher._memory instanceof Uint8Array)) return 'unexpected-shape'
    if (prototype[PATCHED] === true) return 'patched'
    const original = prototype.update as WasmCipher['update']
    prototype.update = function update(this: WasmCipher, input: Uint8Array, output: Uint8Array): void {
      for (let offset = 0; offset < input.length; offset += CHUNK_BYTES) {
        // A detached view has length 0; realloc(0) grows by nothing and takes a fresh view.
        if (this._memory.length === 0) this.realloc(0)
        original.call(this, input.subarray(offset, offset + CHUNK_BYTES), output.subarray(offset, offset + CHUNK_BYTES))
      }
    }
    prototype[PATCHED] = true
    return 'patched'
  } finally {
    probe.finalize()
  }
}

/** What was done to pnet's cipher: 'patched' is the expected answer (a test checks it). */
export const PNET_CIPHER_STATE = patch()
if (PNET_CIPHER_STATE === 'unexpected-shape') {
  console.warn('lattice: xsalsa20 is not the version mesh/pnet-cipher.ts patches; many pnet connections may exhaust its WASM memory')
}
