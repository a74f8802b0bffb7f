/**
 * The document as a bare Automerge handle (the WASM `Automerge` object), never
 * as a materialized `Automerge.Doc`.
 *
 * Why: `Automerge.Doc` keeps a JS copy of the whole document and, on every
 * change, rebuilds the path to what changed by shallow-copying each map on
 * it, and computes patches whose paths cost a walk of the parent map. Our
 * sections hold one key per deployment, so applying one status change cost
 * O(deployments) in copies and garbage (9 ms at 10,000 deployments), and
 * loading materialized every value (seconds). The read model is the
 * validated index (doc-index.ts) anyway: here nothing is materialized, the
 * patch log stays off, and what a change touched is read from its ops.
 *
 * This module is the only one that knows the handle's API:
 * - createHandle / loadHandle, and the sync-protocol glue (the WASM sync
 *   state import/export Automerge's own receiveSyncMessage uses);
 * - draftRoot: a map view over the handle for ClusterStateTx, with the
 *   reading and writing semantics of Automerge.change's proxies (an
 *   ImmutableString stays one scalar; integers are ints);
 * - readValue / plainCopy: a bounded plain copy of one stored value (a map
 *   or list in one materialize call).
 */
import { createRequire } from 'node:module'
import path from 'node:path'
import * as A from '@automerge/automerge'
import { LatticeError } from '../core/index.ts'
import { DocReadError, READ_DEPTH_MAX, READ_PLAIN, READ_VALUES_MAX, isDocMap, type DocMap } from './doc-codec.ts'

export type DocHandle = ReturnType<typeof A.getBackend>
type WasmSyncState = Parameters<DocHandle['receiveSyncMessage']>[0]

interface WasmApi {
  load(data: Uint8Array, options?: { actor?: string }): DocHandle
  importSyncState(state: A.SyncState): WasmSyncState
  exportSyncState(state: WasmSyncState): A.SyncState
}

/**
 * The WASM bindings Automerge itself loaded (its Node ESM entry imports this
 * CommonJS file, so require() returns the same instance and memory). Only
 * the sync state conversions and load live there; checked at first use.
 */
let wasm: WasmApi | undefined
function wasmApi(): WasmApi {
  if (wasm === undefined) {
    const require = createRequire(import.meta.url)
    const entry = require.resolve('@automerge/automerge')
    const bindings = path.join(path.dirname(entry), '..', 'mjs', 'wasm_bindgen_output', 'nodejs', 'automerge_wasm.cjs')
    const api = require(bindings) as WasmApi & { Automerge?: unknown }
    const probe = A.getBackend(A.init())
    if (typeof api.importSyncState !== 'function' || api.Automerge !== probe.constructor) {
      throw new LatticeError('INTERNAL', `Automerge WASM bindings not found at ${bindings}: the Automerge package layout changed`)
    }
    wasm = api
  }
  return wasm
}

/** The handle records no patches: nothing here reads them, and recording costs O(parent map) per op. */
function quiet(handle: DocHandle): DocHandle {
  handle.resetDiffCursor()
  return handle
}

export function createHandle(actor?: string): DocHandle {
  return quiet(A.getBackend(A.init(actor === undefined ? {} : { actor })))
}

/** Loads a whole document (Automerge.save); throws on bytes that are not one, truncated ones included. */
export function loadHandle(bytes: Uint8Array, actor?: string): DocHandle {
  const handle = wasmApi().load(bytes, actor === undefined ? {} : { actor })
  registerDatatypes(handle)
  return quiet(handle)
}

/** As Automerge.init/load do: `str` scalars read back as ImmutableString. */
function registerDatatypes(handle: DocHandle): void {
  handle.registerDatatype(
    'str',
    (value: string) => new A.ImmutableString(value),
    (value: unknown) => (A.isImmutableString(value) ? value.val : undefined),
  )
}

export function generateSyncMessage(handle: DocHandle, state: A.SyncState): [A.SyncState, Uint8Array | null] {
  const api = wasmApi()
  const sync = api.importSyncState(state)
  try {
    const message = handle.generateSyncMessage(sync)
    return [api.exportSyncState(sync), message]
  } finally {
    sync.free()
  }
}

/** Throws (leaving the handle intact) when `message` is not a sync message. */
export function receiveSyncMessage(handle: DocHandle, state: A.SyncState, message: Uint8Array): A.SyncState {
  const api = wasmApi()
  const sync = api.importSyncState(state)
  try {
    handle.receiveSyncMessage(sync, message)
    return api.exportSyncState(sync)
  } finally {
    sync.free()
  }
}

// ---- reading ----

export type ObjId = string
type FullValue = [string, unknown]

function fullValue(handle: DocHandle, obj: ObjId, prop: string | number): FullValue | null {
  return handle.getWithType(obj, prop) as FullValue | null
}

/**
 * A plain copy of the value at obj[prop] (undefined when absent): strings
 * for str and text, numbers, booleans, null, arrays, plain objects; other
 * scalars (counters, bytes, dates) as Automerge returns them, for zod to
 * reject. `onObject` sees the id of every object read. Throws DocReadError
 * when the value is deeper or larger than any valid entry.
 */
export function readValue(handle: DocHandle, obj: ObjId, prop: string | number, onObject?: (id: ObjId) => void): unknown {
  const value = fullValue(handle, obj, prop)
  if (value === null) return undefined
  if (onObject === undefined && (value[0] === 'map' || value[0] === 'list')) return plainCopy(handle.materialize(value[1] as ObjId))
  return readFull(handle, value, onObject)
}

/**
 * The plain copy readFull makes, of a value Automerge materialized (one call
 * into Automerge for a whole map instead of one per field): `str` scalars
 * (ImmutableString) become strings, texts already are; the same bounds
 * apply. Throws DocReadError when the value is deeper or larger than any
 * valid entry.
 */
export function plainCopy(materialized: unknown): unknown {
  let budget = READ_VALUES_MAX
  const convert = (value: unknown, depth: number): unknown => {
    if (--budget < 0) throw new DocReadError(`more than ${READ_VALUES_MAX} values`)
    if (depth > READ_DEPTH_MAX) throw new DocReadError(`nested deeper than ${READ_DEPTH_MAX}`)
    if (A.isImmutableString(value)) return value.val
    if (Array.isArray(value)) return value.map((item) => convert(item, depth + 1))
    if (!isDocMap(value)) return value // strings, numbers, booleans, null, counters, bytes, dates: as Automerge gives them
    const out: DocMap = {}
    for (const [key, child] of Object.entries(value)) out[key] = convert(child, depth + 1)
    return out
  }
  return convert(materialized, 0)
}

/** readValue of a value already fetched with getWithType. */
function readFull(handle: DocHandle, top: FullValue, onObject?: (id: ObjId) => void): unknown {
  let budget = READ_VALUES_MAX
  const read = (value: FullValue, depth: number): unknown => {
    if (--budget < 0) throw new DocReadError(`more than ${READ_VALUES_MAX} values`)
    if (depth > READ_DEPTH_MAX) throw new DocReadError(`nested deeper than ${READ_DEPTH_MAX}`)
    const [datatype, raw] = value
    switch (datatype) {
      case 'map': {
        const id = raw as ObjId
        onObject?.(id)
        const out: DocMap = {}
        for (const key of handle.keys(id)) {
          const child = fullValue(handle, id, key)
          if (child !== null) out[key] = read(child, depth + 1)
        }
        return out
      }
      case 'list': {
        const id = raw as ObjId
        onObject?.(id)
        const items: unknown[] = []
        const length = handle.length(id)
        for (let i = 0; i < length; i++) {
          const child = fullValue(handle, id, i)
          items.push(child === null ? null : read(child, depth + 1))
        }
        return items
      }
      case 'text':
        onObject?.(raw as ObjId)
        return handle.text(raw as ObjId)
      case 'str':
        return A.isImmutableString(raw) ? raw.val : raw
      case 'null':
        return null
      case 'counter':
        return new A.Counter(raw as number)
      default:
        return raw
    }
  }
  return read(top, 0)
}

/** The id of the map at obj[prop], or undefined when absent or not a map. */
export function mapAt(handle: DocHandle, obj: ObjId, prop: string): ObjId | undefined {
  const value = fullValue(handle, obj, prop)
  return value !== null && value[0] === 'map' ? (value[1] as ObjId) : undefined
}

// ---- writing (inside a transaction: only calls that keep it open) ----

/**
 * A map of the document as ClusterStateTx sees it, over the open
 * transaction of `handle`: reads see the writes made so far; child maps
 * are views too; lists and scalars read as plain copies (ImmutableString
 * for str); assigning a plain value writes it as Automerge.change would.
 */
export function draftRoot(handle: DocHandle): DocMap {
  return draftMap(handle, '_root')
}

function draftMap(handle: DocHandle, obj: ObjId): DocMap {
  const get = (key: string): unknown => {
    const value = fullValue(handle, obj, key)
    if (value === null) return undefined
    if (value[0] === 'map') return draftMap(handle, value[1] as ObjId)
    const plain = readFull(handle, value)
    return value[0] === 'str' && typeof plain === 'string' ? new A.ImmutableString(plain) : plain
  }
  // fromDocValue of a draft map reads it in one pass instead of key by key through the traps.
  const readPlain = (): unknown => readFull(handle, ['map', obj])
  return new Proxy<DocMap>(
    {},
    {
      get: (_target, key) => (key === READ_PLAIN ? readPlain : typeof key === 'string' ? get(key) : undefined),
      has: (_target, key) => typeof key === 'string' && fullValue(handle, obj, key) !== null,
      ownKeys: () => handle.keys(obj),
      getOwnPropertyDescriptor: (_target, key) => {
        if (typeof key !== 'string') return undefined
        const value = get(key)
        return value === undefined ? undefined : { value, writable: true, enumerable: true, configurable: true }
      },
      set: (_target, key, value: unknown) => {
        if (typeof key !== 'string' || key === '__proto__') return false
        writeValue(handle, obj, key, value)
        return true
      },
      deleteProperty: (_target, key) => {
        if (typeof key === 'string') handle.delete(obj, key)
        return true
      },
      defineProperty: () => false,
      setPrototypeOf: () => false,
    },
  )
}

function writeValue(handle: DocHandle, obj: ObjId, key: string, value: unknown): void {
  if (A.isImmutableString(value)) handle.put(obj, key, value.val, 'str')
  else if (typeof value === 'string') handle.put(obj, key, value, 'str')
  else if (typeof value === 'number') handle.put(obj, key, value, Number.isInteger(value) ? 'int' : 'f64')
  else if (typeof value === 'boolean') handle.put(obj, key, value, 'boolean')
  else if (value === null) handle.put(obj, key, null, 'null')
  else if (Array.isArray(value) || isDocMap(value)) handle.putObjectFromHydrate(obj, key, value)
  else throw new LatticeError('INTERNAL', `cannot store ${Object.prototype.toString.call(value)} at ${key}`)
}
