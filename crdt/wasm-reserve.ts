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
 * Allocating and freeing through the module's allocator grows the memory
 * once to the requested size; the allocator keeps the freed space and
 * later documents take their memory from it without growing the memory
 * again. The pages are not written, so they cost no RAM until documents use
 * them. The default engine's allocator is out of reach (automerge-engine.ts):
 * there, values of a throwaway document are written and freed instead, which
 * makes the reserve resident. A real node holds one document and does not
 * need this.
 */
import { defaultEngine, type AutomergeEngine } from './automerge-engine.ts'

/** Size of each throwaway value (bytes: copied into WASM with one memcpy; a string went through a JS loop, ~25 MB/s): few calls, each a plain allocation. */
const BLOCK_BYTES = 4 * 1024 * 1024
/** Memory grown per byte of values written (the value is held twice while the change is pending; measured 2.1–2.4). */
const GROWTH_PER_VALUE_BYTE = 2

/** Bytes reserved so far, per engine index. */
const reserved = new Map<number, number>()

/**
 * Grows the memory of `engine` (the default one unless given) so that about
 * `bytes` in total were reserved in it by this process (calls asking for
 * less than earlier ones do nothing). Returns the total reserved so far in
 * that engine. Takes ~2 ms per MB where it writes, far less where it need not.
 */
export function reserveAutomergeMemory(bytes: number, engine: AutomergeEngine = defaultEngine()): number {
  const before = reserved.get(engine.index) ?? 0
  const wanted = Math.max(0, bytes - before)
  if (wanted <= 0) return before
  if (engine.growUntouchedTo(bytes)) {
    reserved.set(engine.index, bytes)
    return bytes
  }
  const doc = engine.create()
  try {
    const block = new Uint8Array(BLOCK_BYTES)
    const blocks = Math.ceil(wanted / GROWTH_PER_VALUE_BYTE / BLOCK_BYTES)
    for (let i = 0; i < blocks; i++) doc.put('_root', `r${i}`, block)
  } finally {
    doc.free()
  }
  const total = Math.max(before, bytes)
  reserved.set(engine.index, total)
  return total
}
