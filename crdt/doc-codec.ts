/**
 * Plain JSON values ⇄ values stored in the Automerge document.
 *
 * Writing: every string becomes an ImmutableString. None of our strings is
 * ever edited character by character, and an ImmutableString is one scalar
 * op instead of a text object with one op per character (≈5× smaller saves,
 * STACK-NOTES).
 *
 * Reading: the reverse, into plain values that zod then validates. A peer can
 * write anything, so reading is bounded in depth and size and never trusts
 * shapes: non-JSON values (counters, bytes, dates) are passed through
 * unchanged for zod to reject.
 */
import { ImmutableString, isImmutableString } from '@automerge/automerge'

export type JsonValue = string | number | boolean | null | JsonValue[] | JsonObject
export interface JsonObject {
  [key: string]: JsonValue | undefined
}

/** A map object in the document (or a change's draft of one). */
export type DocMap = { [key: string]: unknown }

/** Entries are at most a few levels deep; anything deeper is not ours. */
export const READ_DEPTH_MAX = 16
/** Scalars + containers copied per read; far above any valid entry (a spec is one scalar). */
export const READ_VALUES_MAX = 20_000

/**
 * A map view that can copy itself (doc-handle.ts's draft maps): fromDocValue
 * calls it rather than reading key by key through the view.
 */
export const READ_PLAIN: unique symbol = Symbol('lattice.readPlain')

export class DocReadError extends Error {
  override readonly name = 'DocReadError'
}

/** A JSON value as the document should hold it. Undefined object fields are omitted (Automerge rejects them). */
export function toDocValue(value: JsonValue): unknown {
  if (typeof value === 'string') return new ImmutableString(value)
  if (Array.isArray(value)) return value.map(toDocValue)
  if (value !== null && typeof value === 'object') {
    const out: DocMap = {}
    for (const [key, field] of Object.entries(value)) {
      if (field !== undefined) out[key] = toDocValue(field)
    }
    return out
  }
  return value
}

/** A plain copy of a document value; throws DocReadError when it is too deep or too large. */
export function fromDocValue(value: unknown): unknown {
  let budget = READ_VALUES_MAX
  const read = (current: unknown, depth: number): unknown => {
    if (--budget < 0) throw new DocReadError(`more than ${READ_VALUES_MAX} values`)
    if (depth > READ_DEPTH_MAX) throw new DocReadError(`nested deeper than ${READ_DEPTH_MAX}`)
    if (isStoredString(current)) return current.val
    if (Array.isArray(current)) {
      // Indexed reads: a list proxy inside a change does not implement map().
      const items: unknown[] = []
      for (let i = 0; i < current.length; i++) items.push(read(current[i], depth + 1))
      return items
    }
    if (isDocMap(current)) {
      const readPlain = current[READ_PLAIN as unknown as string]
      if (typeof readPlain === 'function') return (readPlain as () => unknown)()
      const out: DocMap = {}
      for (const key of Object.keys(current)) out[key] = read(current[key], depth + 1)
      return out
    }
    return current
  }
  return read(value, 0)
}

/**
 * True for an ImmutableString. Inside a change, Automerge 3.5's list proxy
 * claims every own property, so isImmutableString alone says true for lists.
 */
export function isStoredString(value: unknown): value is ImmutableString {
  return !Array.isArray(value) && isImmutableString(value)
}

/** True for a document map (not a list, string, counter, bytes or date). */
export function isDocMap(value: unknown): value is DocMap {
  if (value === null || typeof value !== 'object') return false
  if (Array.isArray(value) || isStoredString(value) || ArrayBuffer.isView(value) || value instanceof Date) return false
  const proto = Object.getPrototypeOf(value) as unknown
  // Materialized maps are plain objects; inside a change they are proxies over plain objects.
  return proto === Object.prototype || proto === null
}

/** Structural equality of plain JSON values, ignoring key order. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((item, i) => jsonEqual(item, b[i]))
  }
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object' || Array.isArray(b)) return false
  const left = a as DocMap
  const right = b as DocMap
  const keys = Object.keys(left).filter((key) => left[key] !== undefined)
  const otherKeys = Object.keys(right).filter((key) => right[key] !== undefined)
  return keys.length === otherKeys.length && keys.every((key) => jsonEqual(left[key], right[key]))
}

/** Freezes a decoded entry so readers cannot change what the index hands out. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    // Loops rather than Object.values: the index freezes every entry it decodes, ~a million values at a large start.
    if (Array.isArray(value)) for (const item of value as unknown[]) deepFreeze(item)
    else for (const key in value) deepFreeze((value as Record<string, unknown>)[key])
    Object.freeze(value)
  }
  return value
}
