/**
 * The Store port over abstract-level: `level` (LevelDB on disk) for real
 * nodes, `memory-level` for tests and the simulator. One class serves both,
 * because both speak the same abstract-level API; an adapter that passes
 * test/suites/store-suite.ts is interchangeable with the other.
 *
 * Keys are stored as UTF-8 bytes ('view' encoding) rather than strings so a
 * prefix scan can use an exact byte-level upper bound (see prefixUpperBound);
 * the resulting order is UTF-8 byte order, which equals code point order.
 */
import { Level } from 'level'
import { MemoryLevel } from 'memory-level'
import type { AbstractLevel } from 'abstract-level'
import { LatticeError, type Store, type StoreEntry, type StoreOp } from '../core/index.ts'

type BytesLevel = AbstractLevel<string | Uint8Array | Buffer, Uint8Array, Uint8Array>

export interface LevelStoreInit {
  /** Directory of the LevelDB database; created when missing. */
  path: string
}

const BYTES = { keyEncoding: 'view', valueEncoding: 'view' } as const
const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** A Store on disk (LevelDB). Call open() before use (ClusterState.start does). */
export function createLevelStore(init: LevelStoreInit): Store {
  return new AbstractLevelStore(new Level<Uint8Array, Uint8Array>(init.path, BYTES))
}

/** A Store in memory: survives close()/open() of the same instance, not the process. */
export function createMemoryStore(): Store {
  return new AbstractLevelStore(new MemoryLevel<Uint8Array, Uint8Array>(BYTES))
}

class AbstractLevelStore implements Store {
  constructor(private readonly db: BytesLevel) {}

  async open(): Promise<void> {
    await this.db.open()
  }

  async close(): Promise<void> {
    await this.db.close()
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const value = await this.db.get(encodeKey(key))
    return value === undefined ? undefined : copy(value)
  }

  async put(key: string, value: Uint8Array): Promise<void> {
    await this.db.put(encodeKey(key), checkedCopy(value))
  }

  async del(key: string): Promise<void> {
    await this.db.del(encodeKey(key))
  }

  async batch(ops: readonly StoreOp[]): Promise<void> {
    // Every op is checked before anything is written, so a bad op fails the
    // whole batch. The array form is atomic and applies in order; unlike a
    // chained batch on a fresh sublevel it needs no explicit open (STACK-NOTES).
    const encoded = ops.map((op) => {
      switch (op.type) {
        case 'put': return { type: 'put' as const, key: encodeKey(op.key), value: checkedCopy(op.value) }
        case 'del': return { type: 'del' as const, key: encodeKey(op.key) }
        default: throw new LatticeError('BAD_REQUEST', `unknown store op type ${String((op as { type: unknown }).type)}`)
      }
    })
    if (encoded.length === 0) return
    await this.db.batch(encoded)
  }

  async list(prefix: string, options?: { limit?: number }): Promise<StoreEntry[]> {
    const limit = options?.limit
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 0)) {
      throw new LatticeError('BAD_REQUEST', `list limit must be a non-negative integer, got ${limit}`)
    }
    if (limit === 0) return []
    const gte = encodeKey(prefix)
    const lt = prefixUpperBound(gte)
    const entries = await this.db
      .iterator(lt === undefined ? { gte, limit: limit ?? -1 } : { gte, lt, limit: limit ?? -1 })
      .all()
    return entries.map(([key, value]) => ({ key: decoder.decode(key), value: copy(value) }))
  }
}

const LONE_SURROGATE = /\p{Cs}/u

/**
 * A lone surrogate has no UTF-8 form: TextEncoder would silently turn it into
 * U+FFFD, so two different keys could collide. Reject it instead.
 */
function encodeKey(key: string): Uint8Array {
  if (typeof key !== 'string' || LONE_SURROGATE.test(key)) {
    throw new LatticeError('BAD_REQUEST', 'store key must be a well-formed string')
  }
  return encoder.encode(key)
}

function checkedCopy(value: Uint8Array): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new LatticeError('BAD_REQUEST', 'store value must be a Uint8Array')
  return copy(value)
}

/**
 * The smallest byte string greater than every string starting with `prefix`:
 * drop trailing 0xff bytes, then increment the last byte. Undefined when no
 * such bound exists (empty prefix or all 0xff), i.e. the scan is unbounded.
 */
function prefixUpperBound(prefix: Uint8Array): Uint8Array | undefined {
  let end = prefix.length
  while (end > 0 && prefix[end - 1] === 0xff) end--
  if (end === 0) return undefined
  const bound = prefix.slice(0, end)
  bound[end - 1] = bound[end - 1]! + 1
  return bound
}

/**
 * Values are copied at the boundary both ways: classic-level reads the input
 * buffer later on its own thread and memory-level keeps the very buffer it is
 * given, so a caller reusing its array would otherwise change stored data; and
 * both may return Buffers that share memory with the database.
 */
function copy(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes)
}
