/**
 * Instances of Automerge's WebAssembly module ("engines"). Every document of
 * an engine lives in that engine's one WebAssembly memory, which ends at
 * 4 GiB (wasm32). A node holds one document and uses the default engine, the
 * one `@automerge/automerge` itself loaded. A process holding a thousand
 * documents (the simulator: one per simulated node) outgrows one memory, so
 * it spreads its documents over further engines: each is a fresh evaluation
 * of the same WASM bindings, with its own memory.
 *
 * A document must only meet objects of its own engine (a sync state, a
 * document to merge); doc-handle.ts keeps to that by asking `engineOf`.
 * Bytes (changes, sync messages, saves) are the same for every engine.
 */
import { createRequire } from 'node:module'
import path from 'node:path'
import * as A from '@automerge/automerge'
import { LatticeError } from '../core/index.ts'

export type DocHandle = ReturnType<typeof A.getBackend>
type WasmSyncState = Parameters<DocHandle['receiveSyncMessage']>[0]

interface WasmBindings {
  Automerge: unknown
  create(options?: { actor?: string }): DocHandle
  load(data: Uint8Array, options?: { actor?: string }): DocHandle
  importSyncState(state: A.SyncState): WasmSyncState
  exportSyncState(state: WasmSyncState): A.SyncState
}

export interface AutomergeEngine {
  /** 0 is the default engine; others count up in the order they were made. */
  readonly index: number
  create(options?: { actor?: string }): DocHandle
  load(data: Uint8Array, options?: { actor?: string }): DocHandle
  importSyncState(state: A.SyncState): WasmSyncState
  exportSyncState(state: WasmSyncState): A.SyncState
  /** True for a document this engine made. */
  owns(handle: DocHandle): boolean
  /**
   * Why the engine is dead, once one of its documents trapped (every later
   * call into it answers "Module terminated"): each document of the engine
   * is gone, not only the one that trapped.
   */
  failure(): string | undefined
  markFailed(reason: string): void
  /**
   * Grows the engine's memory to at least `bytes` in all without writing to
   * it, so the new pages stay untouched (not resident) until documents use
   * them: allocates through the module's own allocator until the memory is
   * that large, then frees it all; the allocator keeps the freed space for
   * later allocations. (Asking for an amount to add instead would be served
   * from space an earlier reserve left free, and grow nothing.) Answers
   * false where the module's exports are out of reach (the default engine:
   * Automerge instantiated it before this module could see it).
   */
  growUntouchedTo(bytes: number): boolean
  /** Size of the engine's memory, where its exports are in reach (as for growUntouchedTo). */
  memoryBytes(): number | undefined
}

/** What this module uses of the WebAssembly global (the project's TypeScript lib declares no DOM, hence no WebAssembly values). */
interface WasmMemory {
  readonly buffer: ArrayBuffer
}
interface WasmGlobal {
  Instance: new (module: unknown, imports?: unknown) => { readonly exports: Record<string, unknown> }
  Memory: abstract new (...args: never[]) => WasmMemory
}
const wasmGlobal = (globalThis as unknown as { WebAssembly: WasmGlobal }).WebAssembly

/** The allocator exports of a wasm-bindgen module instance. */
interface WasmAllocator {
  memory: WasmMemory
  __wbindgen_malloc(size: number, align: number): number
  __wbindgen_free(pointer: number, size: number, align: number): void
}

/** Allocation size when growing untouched: a few hundred calls for gigabytes. */
const GROW_BLOCK_BYTES = 4 * 1024 * 1024

const engines: AutomergeEngine[] = []

function bindingsPath(): { require: NodeJS.Require; file: string } {
  const require = createRequire(import.meta.url)
  const entry = require.resolve('@automerge/automerge')
  return { require, file: path.join(path.dirname(entry), '..', 'mjs', 'wasm_bindgen_output', 'nodejs', 'automerge_wasm.cjs') }
}

function wrap(index: number, bindings: WasmBindings, allocator?: WasmAllocator): AutomergeEngine {
  let failed: string | undefined
  return {
    memoryBytes: () => allocator?.memory.buffer.byteLength,
    growUntouchedTo: (bytes) => {
      if (allocator === undefined) return false
      const pointers: number[] = []
      try {
        while (allocator.memory.buffer.byteLength < bytes) {
          // A failed allocation traps (and kills the engine): callers stay below the 4 GiB end.
          pointers.push(allocator.__wbindgen_malloc(GROW_BLOCK_BYTES, 1))
        }
      } finally {
        for (const pointer of pointers) allocator.__wbindgen_free(pointer, GROW_BLOCK_BYTES, 1)
      }
      return true
    },
    failure: () => failed,
    markFailed: (reason) => {
      failed ??= reason
    },
    index,
    create: (options) => bindings.create(options ?? {}),
    load: (data, options) => bindings.load(data, options ?? {}),
    importSyncState: (state) => bindings.importSyncState(state),
    exportSyncState: (state) => bindings.exportSyncState(state),
    owns: (handle) => handle.constructor === bindings.Automerge,
  }
}

/**
 * The bindings Automerge itself loaded (its Node ESM entry imports this
 * CommonJS file, so require() returns the same instance and memory); the
 * package layout is checked at first use.
 */
export function defaultEngine(): AutomergeEngine {
  const existing = engines[0]
  if (existing !== undefined) return existing
  const { require, file } = bindingsPath()
  const bindings = require(file) as WasmBindings
  const probe = A.getBackend(A.init())
  if (typeof bindings.importSyncState !== 'function' || bindings.Automerge !== probe.constructor) {
    throw new LatticeError('INTERNAL', `Automerge WASM bindings not found at ${file}: the Automerge package layout changed`)
  }
  const engine = wrap(0, bindings)
  engines[0] = engine
  return engine
}

/**
 * Engine number `index` of this process, made on first request and kept
 * (an engine's memory never shrinks, so processes that make many clusters
 * reuse engines instead of making new ones). Index 0 is the default engine.
 */
export function automergeEngine(index: number): AutomergeEngine {
  if (!Number.isSafeInteger(index) || index < 0) throw new LatticeError('INTERNAL', `no Automerge engine ${index}`)
  while (engines.length <= index) {
    if (engines.length === 0) {
      defaultEngine()
      continue
    }
    const { require, file } = bindingsPath()
    // Evaluating the file again compiles and instantiates the module again: a new memory.
    const cached = require.cache[file]
    delete require.cache[file]
    const Instance = wasmGlobal.Instance
    let allocator: WasmAllocator | undefined
    // The bindings keep their instance private; seeing it made is the one way to reach its allocator.
    wasmGlobal.Instance = new Proxy(Instance, {
      construct(target, args: ConstructorParameters<WasmGlobal['Instance']>) {
        const instance = new target(...args)
        const exports = instance.exports as Partial<WasmAllocator>
        if (exports.memory instanceof wasmGlobal.Memory && typeof exports.__wbindgen_malloc === 'function' && typeof exports.__wbindgen_free === 'function') allocator = exports as WasmAllocator
        return instance
      },
    })
    try {
      const bindings = require(file) as WasmBindings
      engines.push(wrap(engines.length, bindings, allocator))
    } finally {
      wasmGlobal.Instance = Instance
      if (cached !== undefined) require.cache[file] = cached
      else delete require.cache[file]
    }
  }
  return engines[index]!
}

/** The engine that made `handle`. */
export function engineOf(handle: DocHandle): AutomergeEngine {
  for (const engine of engines) if (engine.owns(handle)) return engine
  throw new LatticeError('INTERNAL', 'a document of an unknown Automerge engine')
}
