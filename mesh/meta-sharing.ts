/**
 * One frozen metadata object per member and metadata seq for the whole
 * process, whoever adopted it. In the simulator a thousand nodes each adopt
 * every member's metadata (from a push-pull record, a pull's answer, or a
 * `free` delta merged onto their copy): without sharing, each built its own
 * equal object, and a push-pull, which writes out every member's metadata,
 * found none of them already written (membership-wire's text memo is by
 * object) — at 1,000 nodes that JSON was 5 % of a chaos run, and the copies
 * a large part of its garbage. A real node adopts each version once and
 * keeps its own objects; the lookup costs it one map read.
 *
 * An object is shared only when it is equal to the one already held for
 * that member and seq: sharing must not change what any node reads.
 */
import type { MemberMeta } from './membership-types.ts'
import type { WireMeta } from './membership-wire.ts'

/** Past this many members the table starts over: it is a cache, and a cleared one only shares less. */
const SHARED_MEMBERS_MAX = 65_536

const sharedMetas = new Map<string, { seq: number; meta: WireMeta }>()

/**
 * The metadata to keep for `peerId` at `seq`: the object already shared for
 * that member and seq when it is equal to `meta`, else `meta` itself, frozen
 * deeply and shared from now on.
 */
export function shareMeta(peerId: string, seq: number, meta: WireMeta): WireMeta {
  const held = sharedMetas.get(peerId)
  if (held !== undefined && held.seq === seq && (held.meta === meta || metaEqual(held.meta, meta))) return held.meta
  freezeMeta(meta)
  if (held === undefined && sharedMetas.size >= SHARED_MEMBERS_MAX) sharedMetas.clear()
  // A newer seq replaces the entry; an older one (a node behind the others) or an unequal twin does not.
  if (held === undefined || seq > held.seq) sharedMetas.set(peerId, { seq, meta })
  return meta
}

/** Metadata is replaced whole, never changed in place; frozen, every view can share it. */
export function freezeMeta<M extends MemberMeta | WireMeta>(meta: M): M {
  if (Object.isFrozen(meta)) return meta
  Object.freeze(meta.capacity)
  Object.freeze(meta.free)
  Object.freeze(meta.labels)
  Object.freeze(meta.addresses)
  return Object.freeze(meta)
}

/** Equal field by field (key order aside: a decoded record's follows the schema's). */
export function metaEqual(a: WireMeta, b: WireMeta): boolean {
  return (
    a.load === b.load &&
    a.version === b.version &&
    resourcesEqual(a.capacity, b.capacity) &&
    resourcesEqual(a.free, b.free) &&
    labelsEqual(a.labels, b.labels) &&
    addressesEqual(a.addresses, b.addresses)
  )
}

function resourcesEqual(a: WireMeta['free'], b: WireMeta['free']): boolean {
  return a === b || (a.cpu === b.cpu && a.memoryMB === b.memoryMB && a.diskMB === b.diskMB && a.gpus === b.gpus)
}

function labelsEqual(a: WireMeta['labels'], b: WireMeta['labels']): boolean {
  if (a === b) return true
  const keys = Object.keys(a)
  const otherKeys = Object.keys(b)
  if (keys.length !== otherKeys.length) return false
  // Key order matters too: the shared object's JSON must be the one this node would have written.
  for (let i = 0; i < keys.length; i++) if (keys[i] !== otherKeys[i] || a[keys[i]!] !== b[keys[i]!]) return false
  return true
}

function addressesEqual(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
