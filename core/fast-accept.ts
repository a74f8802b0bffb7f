/**
 * A fast path in front of zod for the entries the index validates by the
 * ten thousand (doc-index.ts): zod's machinery (a payload and issue list per
 * value, a copy of every object and array) was most of the time a node took
 * to load a large document, and most of its garbage.
 *
 * It can only ACCEPT, never reject: `fastAccept(schema, value)` returns the
 * value zod would return, or ASK_ZOD whenever it is not certain, and the
 * caller then runs zod itself. So every entry still goes through exactly
 * zod's accept/reject decision (and its reasons): the fast path decides
 * nothing zod would decide differently, it only skips zod where zod would
 * accept and return the input unchanged.
 *
 * It is compiled from the zod schema itself (its definition: types, checks,
 * shapes), so it follows the schema when the schema changes. What it
 * understands: object (every key of the input in the shape, in the shape's
 * order, no `__proto__`), optional (absent key), default (present value
 * only: a default would change the output), string, number, boolean, enum,
 * literal, discriminated union,
 * array, record with string keys, the checks min/max length (conservatively:
 * this zod counts code points near the bounds, the fast path only accepts
 * where units and code points agree), regex, safe integer, greater/less
 * than, refine; and JSON stored as a string (declareStoredJson), whose
 * output is the parsed value. Anything else (a transform, a pipe, another
 * check or format, coercion) compiles to "ask zod", never to a guess.
 * crdt/fast-accept.test.ts and mesh/membership-wire.test.ts check it
 * against zod on valid values and on many mutations of them.
 */
import type { z } from 'zod'

/** The fast path is not certain: run zod. */
export const ASK_ZOD: unique symbol = Symbol('fast-accept: ask zod')
type AskZod = typeof ASK_ZOD

/** Returns what zod would return for `value`, or ASK_ZOD. */
type Accept = (value: unknown) => unknown

interface StoredJson {
  inner: z.ZodType
  lengthMax: number
}

const storedJson = new WeakMap<z.ZodType, StoredJson>()

/**
 * Declares `schema` as z.string().max(lengthMax), then JSON.parse, then
 * `inner` (schema.ts, storedJson): the fast path parses the JSON itself and
 * checks the result against `inner`.
 */
export function declareStoredJson(schema: z.ZodType, inner: z.ZodType, lengthMax: number): void {
  storedJson.set(schema, { inner, lengthMax })
}

const compiled = new WeakMap<z.ZodType, Accept>()

/** zod's output for `value` when the fast path is certain zod accepts it; otherwise ASK_ZOD. */
export function fastAccept<S extends z.ZodType>(schema: S, value: unknown): z.output<S> | AskZod {
  return acceptorOf(schema)(value) as z.output<S> | AskZod
}

/** True when the fast path can accept anything at all for `schema` (for tests: a schema it cannot read compiles to "always ask zod"). */
export function understands(schema: z.ZodType): boolean {
  return acceptorOf(schema) !== askZod
}

function acceptorOf(schema: z.ZodType): Accept {
  let accept = compiled.get(schema)
  if (accept === undefined) {
    accept = compile(schema)
    compiled.set(schema, accept)
  }
  return accept
}

const askZod: Accept = () => ASK_ZOD

// The parts of zod's definitions read here (zod 4 core: schema._zod.def, check._zod.def).
interface Def {
  type: string
  checks?: Array<{ _zod: { def: CheckDef } }>
  coerce?: boolean
  format?: string
  shape?: Record<string, z.ZodType>
  catchall?: z.ZodType
  element?: z.ZodType
  keyType?: z.ZodType
  valueType?: z.ZodType
  innerType?: z.ZodType
  mode?: string
  /** A literal's values. */
  values?: unknown[]
  /** A union's options, and a discriminated union's key. */
  options?: z.ZodType[]
  discriminator?: string
  unionFallback?: boolean
}

interface CheckDef {
  type?: string
  check: string
  minimum?: number
  maximum?: number
  value?: unknown
  inclusive?: boolean
  format?: string
  pattern?: RegExp
  fn?: (value: unknown) => unknown
}

const defOf = (schema: z.ZodType): Def => (schema as unknown as { _zod: { def: Def } })._zod.def

/** A value check: true when zod's check certainly passes. */
type Test = (value: never) => boolean

/**
 * The checks of a schema as one test, or undefined when one of them is not
 * understood. `lengthUnit`: the checks apply to strings (code-point
 * counting) or to arrays (length).
 */
function compileChecks(def: Def, lengthUnit: 'string' | 'array' | 'none'): Test | undefined {
  const tests: Test[] = []
  for (const check of def.checks ?? []) {
    const c = check._zod.def
    switch (c.check) {
      case 'max_length': {
        if (lengthUnit === 'none' || typeof c.maximum !== 'number') return undefined
        // zod counts code points only when the units exceed the maximum; at most `maximum` units is at most that many code points.
        const max = c.maximum
        tests.push((v: { length: number }) => v.length <= max)
        break
      }
      case 'min_length': {
        if (lengthUnit === 'none' || typeof c.minimum !== 'number') return undefined
        const min = c.minimum
        // Strings: zod counts code points for lengths in [min, 2·min); at least 2·min units are at least min code points.
        if (lengthUnit === 'string') tests.push((v: string) => v.length >= 2 * min)
        else tests.push((v: unknown[]) => v.length >= min)
        break
      }
      case 'string_format': {
        if (lengthUnit !== 'string' || c.format !== 'regex' || !(c.pattern instanceof RegExp)) return undefined
        const pattern = c.pattern
        tests.push((v: string) => {
          pattern.lastIndex = 0
          return pattern.test(v)
        })
        break
      }
      case 'number_format': {
        if (c.format !== 'safeint') return undefined
        tests.push((v: number) => Number.isSafeInteger(v))
        break
      }
      case 'greater_than': {
        if (typeof c.value !== 'number') return undefined
        const min = c.value
        tests.push(c.inclusive === true ? (v: number) => v >= min : (v: number) => v > min)
        break
      }
      case 'less_than': {
        if (typeof c.value !== 'number') return undefined
        const max = c.value
        tests.push(c.inclusive === true ? (v: number) => v <= max : (v: number) => v < max)
        break
      }
      case 'custom': {
        // A refine: its function, given the output (here the input itself), must say yes (a promise is not a yes).
        const fn = c.fn
        if (c.type !== 'custom' || typeof fn !== 'function') return undefined
        tests.push((v: unknown) => {
          const result = fn(v)
          return !(result instanceof Promise) && Boolean(result)
        })
        break
      }
      default:
        return undefined
    }
  }
  if (tests.length === 0) return () => true
  if (tests.length === 1) return tests[0]
  return (v: never) => {
    for (const test of tests) if (!test(v)) return false
    return true
  }
}

function isPlainRecord(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false
  return Object.getPrototypeOf(value) === Object.prototype
}

function compile(schema: z.ZodType): Accept {
  const json = storedJson.get(schema)
  if (json !== undefined) return compileStoredJson(json)
  const def = defOf(schema)
  if (def.coerce === true || def.format !== undefined) return askZod
  switch (def.type) {
    case 'string': {
      const test = compileChecks(def, 'string')
      if (test === undefined) return askZod
      return (v) => (typeof v === 'string' && test(v as never) ? v : ASK_ZOD)
    }
    case 'number': {
      const test = compileChecks(def, 'none')
      if (test === undefined) return askZod
      return (v) => (typeof v === 'number' && Number.isFinite(v) && test(v as never) ? v : ASK_ZOD)
    }
    case 'boolean': {
      const test = compileChecks(def, 'none')
      if (test === undefined) return askZod
      return (v) => (typeof v === 'boolean' && test(v as never) ? v : ASK_ZOD)
    }
    case 'enum': {
      const values = (schema as unknown as { _zod: { values?: Set<unknown> } })._zod.values
      const test = compileChecks(def, 'none')
      if (!(values instanceof Set) || test === undefined) return askZod
      return (v) => (values.has(v) && test(v as never) ? v : ASK_ZOD)
    }
    case 'literal': {
      const values = def.values
      const test = compileChecks(def, 'none')
      if (!Array.isArray(values) || test === undefined) return askZod
      // zod compares with a Set (SameValueZero), as includes does.
      return (v) => (values.includes(v) && test(v as never) ? v : ASK_ZOD)
    }
    case 'union':
      return compileDiscriminatedUnion(def)
    case 'default':
    case 'optional': {
      // Absence is handled by the object holding the key; a present value is the inner schema's.
      const inner = def.innerType === undefined ? askZod : acceptorOf(def.innerType)
      const test = compileChecks(def, 'none')
      if (test === undefined || inner === askZod) return askZod
      return (v) => {
        if (v === undefined) return ASK_ZOD
        const out = inner(v)
        return out !== ASK_ZOD && test(out as never) ? out : ASK_ZOD
      }
    }
    case 'array':
      return compileArray(def)
    case 'record':
      return compileRecord(def)
    case 'object':
      return compileObject(def)
    default:
      return askZod
  }
}

/**
 * A discriminated union (a plain union is left to zod: it takes the first
 * option that accepts, which the fast path cannot tell from one it is
 * unsure of): zod parses the one option the key's value names, so the fast
 * path does the same. An option it does not understand asks zod for its
 * values only.
 */
function compileDiscriminatedUnion(def: Def): Accept {
  const key = def.discriminator
  const test = compileChecks(def, 'none')
  if (typeof key !== 'string' || def.unionFallback === true || def.options === undefined || test === undefined) return askZod
  const byValue = new Map<unknown, Accept>()
  for (const option of def.options) {
    const optionDef = defOf(option)
    const tag = optionDef.type === 'object' ? optionDef.shape?.[key] : undefined
    const values = tag === undefined ? undefined : defOf(tag).type === 'literal' ? defOf(tag).values : undefined
    if (values === undefined) return askZod
    const accept = acceptorOf(option)
    for (const value of values) {
      if (byValue.has(value)) return askZod // zod refuses such a schema; not ours to guess
      byValue.set(value, accept)
    }
  }
  return (v) => {
    if (!isPlainRecord(v)) return ASK_ZOD
    const accept = byValue.get(v[key])
    if (accept === undefined) return ASK_ZOD
    const out = accept(v)
    return out !== ASK_ZOD && test(out as never) ? out : ASK_ZOD
  }
}

function compileStoredJson({ inner, lengthMax }: StoredJson): Accept {
  const accept = acceptorOf(inner)
  if (accept === askZod) return askZod
  return (v) => {
    if (typeof v !== 'string' || v.length > lengthMax) return ASK_ZOD
    let parsed: unknown
    try {
      parsed = JSON.parse(v)
    } catch {
      return ASK_ZOD
    }
    return accept(parsed)
  }
}

function compileArray(def: Def): Accept {
  const element = def.element === undefined ? askZod : acceptorOf(def.element)
  const test = compileChecks(def, 'array')
  if (element === askZod || test === undefined) return askZod
  return (v) => {
    if (!Array.isArray(v)) return ASK_ZOD
    for (let i = 0; i < v.length; i++) {
      // An element the element schema would change is left to zod (as is a hole: no acceptor accepts undefined).
      if (element(v[i]) !== v[i]) return ASK_ZOD
    }
    return test(v as never) ? v : ASK_ZOD
  }
}

function compileRecord(def: Def): Accept {
  if (def.mode !== undefined && def.mode !== 'strict') return askZod
  // Only a key schema with no enumerable set of keys (a string with checks): zod then checks every own key against it.
  if (def.keyType === undefined || def.valueType === undefined || defOf(def.keyType).type !== 'string') return askZod
  const key = acceptorOf(def.keyType)
  const value = acceptorOf(def.valueType)
  const test = compileChecks(def, 'none')
  if (key === askZod || value === askZod || test === undefined) return askZod
  return (v) => {
    if (!isPlainRecord(v)) return ASK_ZOD
    for (const k in v) {
      if (k === '__proto__' || key(k) !== k || value(v[k]) !== v[k]) return ASK_ZOD
    }
    return test(v as never) ? v : ASK_ZOD
  }
}

/**
 * An object whose keys are all in the shape, in the shape's order (zod
 * builds its output in that order), each accepted; absent keys only where
 * the shape has a plain optional. The input itself is the output unless a
 * field's output differs (stored JSON): then a copy with those outputs.
 */
function compileObject(def: Def): Accept {
  const shape = def.shape
  const test = compileChecks(def, 'none')
  if (shape === undefined || test === undefined) return askZod
  const keys = Object.keys(shape)
  if (Object.getOwnPropertySymbols(shape).length > 0 || keys.includes('__proto__')) return askZod
  const fields: Accept[] = []
  const mayBeAbsent: boolean[] = []
  for (const key of keys) {
    const field = shape[key]!
    const accept = acceptorOf(field)
    if (accept === askZod) return askZod
    fields.push(accept)
    const fieldDef = defOf(field)
    mayBeAbsent.push(fieldDef.type === 'optional' && fieldDef.innerType !== undefined && defOf(fieldDef.innerType).type !== 'default')
  }
  const position = new Map(keys.map((key, i) => [key, i]))
  return (v) => {
    if (!isPlainRecord(v)) return ASK_ZOD
    let next = 0
    let changed: Array<[string, unknown]> | undefined
    for (const key in v) {
      const at = position.get(key)
      if (at === undefined || at < next) return ASK_ZOD // unknown (stripped or refused by zod), or out of zod's order
      for (; next < at; next++) if (!mayBeAbsent[next]) return ASK_ZOD
      next = at + 1
      const input = v[key]
      const out = fields[at]!(input)
      if (out === ASK_ZOD) return ASK_ZOD
      if (out !== input) (changed ??= []).push([key, out])
    }
    for (; next < keys.length; next++) if (!mayBeAbsent[next]) return ASK_ZOD
    let result: Record<string, unknown> = v
    if (changed !== undefined) {
      result = { ...v }
      for (const [key, out] of changed) result[key] = out
    }
    return test(result as never) ? result : ASK_ZOD
  }
}
