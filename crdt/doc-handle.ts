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
 * - readValue / plainValue: one stored value as plain JSON-like data (a map
 *   or list in one materialize call), within READ_* bounds.
 */
import * as A from '@automerge/automerge'
import { LatticeError } from '../core/index.ts'
import { defaultEngine, engineOf, type AutomergeEngine, type DocHandle } from './automerge-engine.ts'
import { DocReadError, READ_DEPTH_MAX, READ_PLAIN, READ_VALUES_MAX, isDocMap, type DocMap } from './doc-codec.ts'

export type { DocHandle } from './automerge-engine.ts'

/** The handle records no patches: nothing here reads them, and recording costs O(parent map) per op. */
function quiet(handle: DocHandle): DocHandle {
  handle.resetDiffCursor()
  return handle
}

/**
 * True when `err` is Automerge's WebAssembly failing (a trap: out of memory,
 * a bug), not its refusal of bad input. After a trap wasm-bindgen answers
 * every later call with "Module terminated": the process's documents are
 * gone, whatever the input.
 */
export function isEngineFailure(err: unknown): boolean {
  // WebAssembly.RuntimeError is named so (the lib types of this project have no WebAssembly namespace).
  return err instanceof Error && (err.name === 'RuntimeError' || err.message === 'Module terminated')
}

/** A new document in `engine` (automerge-engine.ts: the default one unless a process holds more documents than one memory fits). */
export function createHandle(actor?: string, engine: AutomergeEngine = defaultEngine()): DocHandle {
  const handle = engine.create(actor === undefined ? {} : { actor })
  registerDatatypes(handle)
  return quiet(handle)
}

/**
 * Loads a whole document (Automerge.save); throws on bytes that are not one,
 * truncated ones included. Checked (Automerge verifies the heads it rebuilds
 * against the saved ones): `unchecked` measured no faster on our documents,
 * and a peer's snapshot is input.
 */
export function loadHandle(bytes: Uint8Array, actor?: string, engine: AutomergeEngine = defaultEngine()): DocHandle {
  const handle = engine.load(bytes, actor === undefined ? {} : { actor })
  registerDatatypes(handle)
  return quiet(handle)
}

/** A copy of `handle` (same engine, same history) that writes as `actor`. */
export function forkHandle(handle: DocHandle, actor: string): DocHandle {
  const fork = handle.fork(actor)
  registerDatatypes(fork)
  return quiet(fork)
}

/**
 * Counters read back as Automerge.Counter (as Automerge.init/load do), so
 * that zod refuses one where a number belongs. `str` scalars are NOT
 * wrapped in ImmutableString, unlike Automerge.load: materialize would call
 * back into JS for every string of the document (it doubled the time to
 * read a section of 10,000 deployments), and readers want plain strings.
 * getWithType still says `str`, which draftMap turns into ImmutableString;
 * writes never hand Automerge an ImmutableString to convert (writeValue).
 */
function registerDatatypes(handle: DocHandle): void {
  handle.registerDatatype(
    'counter',
    (value: number) => new A.Counter(value),
    (value: unknown) => (value instanceof A.Counter ? value.value : undefined),
  )
}

/** Automerge's name for the capability to receive a whole document in place of changes. */
const WHOLE_DOCUMENT_CAPABILITY = 'message-v2'

/**
 * The sync state as generateSyncMessage should see it: a peer that holds
 * more than `startHeads` is sent changes, never the whole document.
 * Automerge (3.x) answers a peer that supports "message-v2" and lacks over a
 * third of the changes with the whole document, saved anew for each message
 * (deflate and SHA-256 over everything: a sixth of a 1,000-node partition
 * heal, where an epoch's short history makes nearly every catch-up that
 * large), and the receiver loads and merges all of it. A peer at
 * `startHeads` (nothing, or the genesis every node starts from: a join)
 * still gets the document in one piece.
 */
function changesForPeerWithHistory(state: A.SyncState, startHeads: readonly string[]): A.SyncState {
  const capabilities = (state as { theirCapabilities?: readonly string[] }).theirCapabilities
  if (capabilities === undefined || !capabilities.includes(WHOLE_DOCUMENT_CAPABILITY)) return state
  const theirHeads = state.theirHeads ?? []
  if (theirHeads.every((head) => startHeads.includes(head))) return state
  return { ...state, theirCapabilities: capabilities.filter((capability) => capability !== WHOLE_DOCUMENT_CAPABILITY) } as A.SyncState
}

/** `startHeads`: the heads of a peer that holds nothing yet (changesForPeerWithHistory). */
export function generateSyncMessage(handle: DocHandle, state: A.SyncState, startHeads: readonly string[] = []): [A.SyncState, Uint8Array | null] {
  const api = engineOf(handle)
  const sync = api.importSyncState(changesForPeerWithHistory(state, startHeads))
  try {
    const message = handle.generateSyncMessage(sync)
    return [api.exportSyncState(sync), message]
  } finally {
    sync.free()
  }
}

/** Throws (leaving the handle intact) when `message` is not a sync message. */
export function receiveSyncMessage(handle: DocHandle, state: A.SyncState, message: Uint8Array): A.SyncState {
  const api = engineOf(handle)
  const sync = api.importSyncState(state)
  try {
    handle.receiveSyncMessage(sync, message)
    return api.exportSyncState(sync)
  } finally {
    sync.free()
  }
}

/**
 * Receives a sync message whose changes `handle` already holds, with every
 * head the sender named: the same sync state as receiving it whole, without
 * Automerge parsing those changes again (a whole document, in a joining
 * node's sync). The message goes in without its changes; the one field that
 * then moves otherwise is lastSentHeads (Automerge sets it from a message
 * with no changes whose heads equal ours), so it is kept as it was.
 */
export function receiveHeldSyncMessage(handle: DocHandle, state: A.SyncState, message: A.DecodedSyncMessage): A.SyncState {
  const stripped = A.encodeSyncMessage({ ...message, changes: [] })
  const next = receiveSyncMessage(handle, state, stripped)
  // A message with no heads resets lastSentHeads either way (a peer that lost its data).
  return message.changes.length === 0 || message.heads.length === 0 ? next : { ...next, lastSentHeads: state.lastSentHeads }
}

// ---- reading ----

export type ObjId = string
type FullValue = [string, unknown]

function fullValue(handle: DocHandle, obj: ObjId, prop: string | number): FullValue | null {
  return handle.getWithType(obj, prop) as FullValue | null
}

/**
 * The value at obj[prop] as plain data (undefined when absent): strings for
 * str and text, numbers, booleans, null, arrays, plain objects; other
 * scalars (counters, bytes, dates) as Automerge returns them, for zod to
 * reject. Throws DocReadError when the value is deeper or larger than any
 * valid entry.
 */
export function readValue(handle: DocHandle, obj: ObjId, prop: string | number): unknown {
  const value = fullValue(handle, obj, prop)
  if (value === null) return undefined
  if (value[0] === 'map' || value[0] === 'list') return plainValue(handle.materialize(value[1] as ObjId))
  return readFull(handle, value)
}

/**
 * A map holding a key named `__proto__` with a map in it materializes as an
 * object whose prototype is that map, not as a property: its fields would
 * read as inherited ones. plainValue refuses such a value.
 */
const HIJACKED_PROTOTYPE = 'a key named __proto__ holds a map'

/**
 * A value Automerge materialized (one call into Automerge for a whole map
 * instead of one per field), checked against the READ_* bounds and returned
 * as it is: with no `str` datatype registered (registerDatatypes) it is
 * already plain data, so nothing is copied. Throws DocReadError when it is
 * deeper or larger than any valid entry.
 */
export function plainValue(materialized: unknown): unknown {
  // A scalar (most entries are one JSON string) is within every bound: no walk.
  if (materialized === null || typeof materialized !== 'object') return materialized
  let budget = READ_VALUES_MAX
  const check = (value: unknown, depth: number): void => {
    if (--budget < 0) throw new DocReadError(`more than ${READ_VALUES_MAX} values`)
    if (depth > READ_DEPTH_MAX) throw new DocReadError(`nested deeper than ${READ_DEPTH_MAX}`)
    if (value === null || typeof value !== 'object') return
    if (Array.isArray(value)) {
      for (const item of value) check(item, depth + 1)
    } else if (isDocMap(value)) {
      for (const key of Object.keys(value)) check(value[key], depth + 1)
    } else if (!(value instanceof A.Counter || ArrayBuffer.isView(value) || value instanceof Date)) {
      throw new DocReadError(HIJACKED_PROTOTYPE)
    }
  }
  check(materialized, 0)
  return materialized
}

/** A plain copy of a value already fetched with getWithType, read field by field (bounded as plainValue). */
function readFull(handle: DocHandle, top: FullValue): unknown {
  let budget = READ_VALUES_MAX
  const read = (value: FullValue, depth: number): unknown => {
    if (--budget < 0) throw new DocReadError(`more than ${READ_VALUES_MAX} values`)
    if (depth > READ_DEPTH_MAX) throw new DocReadError(`nested deeper than ${READ_DEPTH_MAX}`)
    const [datatype, raw] = value
    switch (datatype) {
      case 'map': {
        const id = raw as ObjId
        const out: DocMap = {}
        for (const key of handle.keys(id)) {
          const child = fullValue(handle, id, key)
          if (child !== null) out[key] = read(child, depth + 1)
        }
        return out
      }
      case 'list': {
        const id = raw as ObjId
        const items: unknown[] = []
        const length = handle.length(id)
        for (let i = 0; i < length; i++) {
          const child = fullValue(handle, id, i)
          items.push(child === null ? null : read(child, depth + 1))
        }
        return items
      }
      case 'text':
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

function writeValue(handle: DocHandle, obj: ObjId, key: string | number, value: unknown, insert = false): void {
  const scalar = scalarOf(value)
  if (scalar !== undefined) {
    if (insert) handle.insert(obj, key as number, scalar[0], scalar[1])
    else handle.put(obj, key, scalar[0], scalar[1])
    return
  }
  // Containers are made empty and filled value by value: putObjectFromHydrate
  // would store an ImmutableString as a map, `str` having no datatype here.
  if (Array.isArray(value)) {
    const list = insert ? handle.insertObject(obj, key as number, []) : handle.putObject(obj, key, [])
    value.forEach((item: unknown, index) => writeValue(handle, list, index, item, true))
  } else if (isDocMap(value)) {
    const map = insert ? handle.insertObject(obj, key as number, {}) : handle.putObject(obj, key, {})
    for (const [field, child] of Object.entries(value)) if (child !== undefined) writeValue(handle, map, field, child)
  } else {
    throw new LatticeError('INTERNAL', `cannot store ${Object.prototype.toString.call(value)} at ${String(key)}`)
  }
}

type Scalar = [string | number | boolean | null, 'str' | 'int' | 'f64' | 'boolean' | 'null']

function scalarOf(value: unknown): Scalar | undefined {
  if (A.isImmutableString(value) && !Array.isArray(value)) return [value.val, 'str']
  if (typeof value === 'string') return [value, 'str']
  if (typeof value === 'number') return [value, Number.isInteger(value) ? 'int' : 'f64']
  if (typeof value === 'boolean') return [value, 'boolean']
  if (value === null) return [null, 'null']
  return undefined
}
