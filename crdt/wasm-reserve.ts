/**
 * Automerge's WebAssembly memory, grown ahead of need for processes that hold
 * many documents (the simulator: one per simulated node).
 *
 * Every document of a process lives in one WebAssembly memory, which the
 * allocator inside grows a few 64 KiB pages at a time as documents grow. V8
 * accounts each growth as a new external allocation of the whole memory and
 * reacts as to memory pressure: it starts a full garbage collection, or, when
 * one is running, forces marking steps. A 150-node simulation grew the memory
 * hundreds of times a minute and spent most of its time marking the JS heap
 * (GC and allocation-site marking steps were over half of its CPU).
 *
 * Writing values of a throwaway document and freeing it grows the memory once
 * by about the requested size; the allocator keeps the freed space and later
 * documents take their memory from it without growing the memory again. A
 * real node holds one document and does not need this.
 */
import * as A from '@automerge/automerge'

/** Size of each throwaway value (bytes: copied into WASM with one memcpy; a string went through a JS loop, ~25 MB/s): few calls, each a plain allocation. */
const BLOCK_BYTES = 4 * 1024 * 1024
/** Memory grown per byte of values written (the value is held twice while the change is pending; measured 2.1–2.4). */
const GROWTH_PER_VALUE_BYTE = 2

let reserved = 0

/**
 * Grows Automerge's memory so that about `bytes` in total were reserved by
 * this process (calls asking for less than earlier ones do nothing). Returns
 * the total reserved so far. Takes ~2 ms per MB, once.
 */
export function reserveAutomergeMemory(bytes: number): number {
  const wanted = Math.max(0, bytes - reserved)
  if (wanted <= 0) return reserved
  const doc = A.init()
  try {
    const backend = A.getBackend(doc)
    const block = new Uint8Array(BLOCK_BYTES)
    const blocks = Math.ceil(wanted / GROWTH_PER_VALUE_BYTE / BLOCK_BYTES)
    for (let i = 0; i < blocks; i++) backend.put('_root', `r${i}`, block)
  } finally {
    A.free(doc)
  }
  reserved = Math.max(reserved, bytes)
  return reserved
}
