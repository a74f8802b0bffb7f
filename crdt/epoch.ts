/**
 * Epochs: how the document's history can be cut off (docs/ARCHITECTURE.md,
 * "Bounding the history"). Automerge keeps every change ever made, so the
 * cluster would, at an agreed cut (heads of the current document), start a
 * new document, the next epoch, whose history begins where the cut is:
 *
 * - **Genesis** (`buildEpochGenesis`): one change holding the state at the
 *   cut, written from a fixed actor and time with keys in order, so every
 *   node that holds the cut makes the same bytes and the same hash. Its
 *   message carries the cut's *base*: the cut's heads, its clock (per actor,
 *   the last seq and op counter the cut holds: the cut's history is exactly
 *   the changes at or below it) and which object of the old document became
 *   which object of the new one.
 * - **Translation** (`createEpochTranslator`): a change of the old epoch
 *   outside the cut (made while the cut was agreed on, or by a node that was
 *   away) is rewritten as a change of the new epoch, by any node that holds
 *   it, to the same bytes. Its actor stays; its seq counts from the cut; its
 *   op counters move above the genesis's; its dependencies in the cut become
 *   the genesis, the others their translations; references to objects and
 *   values of the cut become the genesis's. Changes outside the cut thus
 *   apply on top of the cut's state in their own causal order, and conflicts
 *   among them resolve as they did in the old document. A write concurrent
 *   with the value the cut shows at a key resolves against it as Automerge
 *   resolved it there (the higher op id wins): the genesis records which old
 *   op each of its values stands for, and a write that lost goes to the
 *   orphans map. The new document shows what the old one would.
 *
 * Only the base is needed to translate, so a node that was away for several
 * epochs' worth of time translates its own changes from the new epoch's
 * genesis alone, without the old document's history.
 *
 * An op that cannot keep its meaning in the new document (it edits a list
 * element or object of the cut that the cut's state no longer shows) is
 * written, with the same op counter, into the `epochOrphans` map, which no
 * reader looks at: op counters stay aligned, so later ops that refer to it
 * still translate. Our own writes never make such ops (lists and nested
 * maps are always written whole).
 *
 * Agreeing on the cut is crdt/epoch-agreement.ts; deciding when is
 * crdt/epoch-keeper.ts; moving a node's document is crdt/epoch-switch.ts
 * and ClusterState.enterEpoch / adoptEpoch.
 */
import * as A from '@automerge/automerge'
import { z } from 'zod'
import { LatticeError } from '../core/index.ts'
import { changeMeta, splitChunks } from './change-chunks.ts'
import { createHandle, type DocHandle } from './doc-handle.ts'

/** The actor of every epoch's genesis ("LatticeEpoch" + padding): a fixed actor makes every node's genesis the same bytes. */
export const EPOCH_GENESIS_ACTOR = '4c617474696365457063680000000000'

/** The root key of the map that takes ops which lost their target at the cut (see the module comment). */
export const EPOCH_ORPHANS_KEY = 'epochOrphans'

/** What every node agrees on before a new epoch starts: its number and the heads of the old document it starts from. */
export interface EpochCut {
  epoch: number
  heads: readonly string[]
}

/** Per actor, the last seq and the last op counter the cut's history holds. */
export type CutClock = Readonly<Record<string, readonly [seq: number, lastOp: number]>>

/** What translating a change of the old epoch needs to know about the cut, carried in the genesis change's message. */
export interface EpochBase {
  epoch: number
  cut: string[]
  clock: CutClock
  /** Object id in the old document (shown at the cut) → its id in the new one. */
  objects: Readonly<Record<string, string>>
  /**
   * Which op of the old document each map value of the genesis stands for
   * (the winner at its key at the cut), as flat triples: the genesis op's
   * counter (as the step from the previous triple's: mostly 1, short in the
   * message), the old op's counter, the old op's actor as an index into the
   * clock's actors in order. A change outside the cut that wrote a key
   * concurrently with that op then resolves against it as Automerge
   * resolved it in the old document (the higher op id wins), not as if it
   * came after it.
   */
  winners: readonly number[]
}

export interface EpochGenesis {
  change: Uint8Array
  hash: string
  base: EpochBase
  /** Ops in the genesis change: op counters of translated changes move up by this much. */
  opCount: number
}

const HASH = z.string().regex(/^[0-9a-f]{64}$/)
const ACTOR = z.string().regex(/^[0-9a-f]+$/)
const OBJ_ID = z.string().regex(/^(_root|\d+@[0-9a-f]+)$/)
const COUNT = z.number().int().nonnegative()

const EpochBaseSchema = z.object({
  lattice: z.literal('epoch'),
  epoch: z.number().int().positive(),
  cut: z.array(HASH).min(1),
  clock: z.record(ACTOR, z.tuple([z.number().int().positive(), COUNT])),
  objects: z.record(OBJ_ID, OBJ_ID),
  winners: z.array(COUNT).refine((triples) => triples.length % 3 === 0, 'winners come in triples'),
})

// ------------------------------------------------------------------ genesis

/** Throws BAD_REQUEST unless `handle` holds every head of a cut (and so, Automerge applying causally, the whole cut). */
export function assertHoldsCut(handle: DocHandle, heads: readonly string[]): void {
  for (const head of heads) {
    if (handle.getChangeMetaByHash(head) === null) throw new LatticeError('BAD_REQUEST', `the document does not hold the cut's head ${head}`)
  }
}

/**
 * The clock of the history of `heads` (which `handle` must hold whole): the
 * changes the cut holds are, for each actor, seqs 1..clock[actor][0], with
 * op counters up to clock[actor][1] (one actor's changes follow each other).
 */
export function cutClock(handle: DocHandle, heads: readonly string[]): Record<string, [number, number]> {
  assertHoldsCut(handle, heads)
  const after = new Set(handle.getChangesMeta([...heads]).map((meta) => meta.hash))
  const found = new Map<string, [number, number]>()
  for (const meta of handle.getChangesMeta([])) {
    if (after.has(meta.hash)) continue
    const held = found.get(meta.actor)
    if (held === undefined || held[0] < meta.seq) found.set(meta.actor, [meta.seq, meta.maxOp])
  }
  // Actors in order: the clock goes into the genesis's message, whose bytes must not depend on the order this replica received the history in.
  const clock: Record<string, [number, number]> = {}
  for (const actor of [...found.keys()].sort()) clock[actor] = found.get(actor)!
  return clock
}

type FullValue = [string, unknown]
type ScalarIn = Parameters<DocHandle['put']>[2]
type DatatypeIn = Parameters<DocHandle['put']>[3]
type ObjectIn = Parameters<DocHandle['putObject']>[2]

/**
 * The first change of epoch `cut.epoch`: the state of `handle` at `cut.heads`
 * (every map, list, text and scalar with its datatype), written by
 * EPOCH_GENESIS_ACTOR at time 0 in key order, plus the base in its message.
 * Every node holding the cut builds the same bytes.
 */
export function buildEpochGenesis(handle: DocHandle, cut: EpochCut): EpochGenesis {
  if (!Number.isInteger(cut.epoch) || cut.epoch < 1) throw new LatticeError('BAD_REQUEST', `epoch must be a positive integer, got ${cut.epoch}`)
  const heads = [...new Set(cut.heads)].sort()
  if (heads.length === 0) throw new LatticeError('BAD_REQUEST', 'a cut needs at least one head')
  const clock = cutClock(handle, heads)
  const out = createHandle(EPOCH_GENESIS_ACTOR)
  const objects: Record<string, string> = {}
  const actorIndex = new Map(Object.keys(clock).map((actor, i) => [actor, i]))
  const winners: number[] = []
  let lastMade = 0
  const copyMap = (from: string, to: string): void => {
    for (const key of handle.keys(from, heads)) {
      // The previous epoch's orphans stay behind: every epoch starts a fresh map for its own.
      if (from === '_root' && key === EPOCH_ORPHANS_KEY) continue
      const value = handle.getWithType(from, key, heads) as FullValue | null
      if (value === null) continue
      // Recorded before the copy recurses: the genesis op for this key is made first.
      const old = winningOp(handle.getAll(from, key, heads) as unknown[][])
      copyValue(value, (made) => out.putObject(to, key, made), (scalar, datatype) => out.put(to, key, scalar as ScalarIn, datatype as DatatypeIn), () => {
        const made = winningOp(out.getAll(to, key) as unknown[][])
        const actor = old === undefined ? undefined : actorIndex.get(old.actor)
        if (made !== undefined && old !== undefined && actor !== undefined) {
          winners.push(made.counter - lastMade, old.counter, actor)
          lastMade = made.counter
        }
      })
    }
  }
  const copyList = (from: string, to: string): void => {
    const length = handle.length(from, heads)
    for (let index = 0; index < length; index++) {
      const value = handle.getWithType(from, index, heads) as FullValue | null
      if (value === null) continue
      const at = out.length(to)
      copyValue(value, (made) => out.insertObject(to, at, made), (scalar, datatype) => out.insert(to, at, scalar as ScalarIn, datatype as DatatypeIn), () => undefined)
    }
  }
  /** Copies one value; `made` runs right after the op that holds it at its key is made (before a map's contents). */
  const copyValue = (value: FullValue, makeObject: (empty: ObjectIn) => string, putScalar: (value: unknown, datatype: string) => void, made: () => void): void => {
    const [datatype, raw] = value
    switch (datatype) {
      case 'map': {
        const id = makeObject({})
        made()
        objects[raw as string] = id
        copyMap(raw as string, id)
        return
      }
      case 'list': {
        const id = makeObject([])
        made()
        objects[raw as string] = id
        copyList(raw as string, id)
        return
      }
      case 'text': {
        const id = makeObject(handle.text(raw as string, heads))
        made()
        objects[raw as string] = id
        return
      }
      case 'str':
        putScalar(A.isImmutableString(raw) ? raw.val : raw, 'str')
        break
      case 'counter':
        putScalar(raw instanceof A.Counter ? raw.value : raw, 'counter')
        break
      default:
        putScalar(raw, datatype)
    }
    made()
  }
  copyMap('_root', '_root')
  out.putObject('_root', EPOCH_ORPHANS_KEY, {})
  const base: EpochBase = { epoch: cut.epoch, cut: heads, clock, objects, winners }
  out.commit(JSON.stringify({ lattice: 'epoch', ...base }), 0)
  const change = out.getLastLocalChange()
  out.free()
  if (change === null) throw new LatticeError('INTERNAL', 'the epoch genesis made no change')
  return parseEpochGenesis(change)
}

/** Reads an epoch genesis change back (its base from the message); throws when `change` is not one. */
export function parseEpochGenesis(change: Uint8Array): EpochGenesis {
  let decoded: A.DecodedChange
  try {
    decoded = A.decodeChange(change)
  } catch (err) {
    throw new LatticeError('BAD_REQUEST', `not an Automerge change: ${String(err)}`)
  }
  if (decoded.actor !== EPOCH_GENESIS_ACTOR || decoded.seq !== 1 || decoded.deps.length !== 0 || decoded.message === null) {
    throw new LatticeError('BAD_REQUEST', 'not an epoch genesis change')
  }
  let message: unknown
  try {
    message = JSON.parse(decoded.message)
  } catch {
    throw new LatticeError('BAD_REQUEST', 'an epoch genesis message is not JSON')
  }
  const parsed = EpochBaseSchema.safeParse(message)
  if (!parsed.success) throw new LatticeError('BAD_REQUEST', `invalid epoch base: ${parsed.error.issues[0]?.message ?? 'unknown'}`)
  const { lattice: _tag, ...base } = parsed.data
  return { change, hash: decoded.hash, base, opCount: decoded.ops.length }
}

/** True when the change (actor, seq) of the old epoch is in the cut's history. */
export function inCut(base: EpochBase, actor: string, seq: number): boolean {
  const held = base.clock[actor]
  return held !== undefined && seq <= held[0]
}

// -------------------------------------------------------------- translation

export interface EpochTranslator {
  readonly genesis: EpochGenesis
  /**
   * The change of the old epoch rewritten for the new one, or undefined when
   * the cut holds it (the genesis has its effect). Its dependencies outside
   * the cut must have been translated first (throws otherwise): translate in
   * causal order, as Automerge lists changes.
   */
  translate(change: Uint8Array | A.DecodedChange): Uint8Array | undefined
  /** The new hash of an old change translated so far. */
  translatedHash(oldHash: string): string | undefined
  /** Releases the copy of the genesis it reads from (WebAssembly memory); translate fails after. */
  free(): void
}

interface OpRef {
  counter: number
  actor: string
}

function parseOpId(id: string): OpRef | undefined {
  const at = id.indexOf('@')
  if (at <= 0) return undefined
  const counter = Number(id.slice(0, at))
  return Number.isInteger(counter) && counter > 0 ? { counter, actor: id.slice(at + 1) } : undefined
}

/** Op actions whose op makes an object that later ops may refer to. */
const MAKE_ACTIONS = new Set(['makeMap', 'makeList', 'makeText', 'makeTable'])

type WireOp = A.DecodedChange['ops'][number] & { elemId?: string; insert?: boolean }

/** The actor and seq of a change of the old epoch, by hash (the old document's getChangeMetaByHash). */
export type ChangeMetaLookup = (hash: string) => { actor: string; seq: number } | null | undefined

/**
 * Translations made with one genesis, by old change hash: what a
 * translation yields is a function of the genesis, the change and its
 * causal past (which ops of that past went to the orphans map), and a hash
 * fixes the change and its past. Replicas on distinct documents translating
 * the same changes (the simulator's, at a switch) share one
 * (crdt/doc-pool.ts); only changes translated, never those the cut holds.
 */
export type EpochTranslations = Map<string, { bytes: Uint8Array; hash: string; orphaned: readonly string[] }>

/**
 * `metaOf` tells which of a change's dependencies the cut holds: the caller
 * holds the change, hence its dependencies, in its old document. `memo`:
 * translations to take and to add to (EpochTranslations).
 */
export function createEpochTranslator(genesis: EpochGenesis, metaOf: ChangeMetaLookup, memo?: EpochTranslations): EpochTranslator {
  const { base, opCount } = genesis
  const translated = new Map<string, string>()
  /** Ops of the old epoch outside the cut that went to the orphans map: later ops naming them as an element follow them there. */
  const orphaned = new Set<string>()
  /** Ops the change being translated sent to the orphans map (for the memo). */
  let orphanedNow: string[] = []
  // The genesis's value op at each key of each object (what a translated op overwrites when it overwrote the cut's value).
  const shown = createHandle()
  shown.applyChanges([genesis.change])
  const orphansId = (shown.getWithType('_root', EPOCH_ORPHANS_KEY) as FullValue | null)?.[1] as string | undefined
  if (orphansId === undefined) throw new LatticeError('BAD_REQUEST', 'an epoch genesis without its orphans map')

  const opInCut = (ref: OpRef): boolean => {
    const held = base.clock[ref.actor]
    return held !== undefined && ref.counter <= held[1]
  }
  const moved = (ref: OpRef): string => `${ref.counter + opCount}@${ref.actor}`
  /** The new id of an object; undefined when the cut's state does not show it. */
  const objectId = (id: string): string | undefined => {
    if (id === '_root') return id
    const ref = parseOpId(id)
    if (ref === undefined) return undefined
    return opInCut(ref) ? base.objects[id] : moved(ref)
  }
  const genesisObjects = new Set(Object.values(base.objects))
  // Genesis op counter → the old op it stands for (the key's winner at the cut).
  const actors = Object.keys(base.clock)
  const standsFor = new Map<number, string>()
  let made = 0
  for (let i = 0; i + 2 < base.winners.length; i += 3) {
    made += base.winners[i]!
    const actor = actors[base.winners[i + 2]!]
    if (actor !== undefined) standsFor.set(made, `${base.winners[i + 1]!}@${actor}`)
  }
  /** The old op whose value the genesis shows at (obj, key), when the genesis has one there. */
  const cutWinner = (obj: string, key: string): string | undefined => {
    for (const id of genesisOps(obj, key)) {
      const ref = parseOpId(id)
      const old = ref === undefined ? undefined : standsFor.get(ref.counter)
      if (old !== undefined) return old
    }
    return undefined
  }
  const genesisOps = (obj: string, key: string): string[] => {
    if (obj !== '_root' && !genesisObjects.has(obj)) return []
    return (shown.getAll(obj, key) as unknown[][]).map((entry) => entry[entry.length - 1] as string)
  }

  const translateOp = (op: WireOp, ownId: string): WireOp => {
    const orphan = (): WireOp => {
      orphaned.add(ownId)
      orphanedNow.push(ownId)
      const action = MAKE_ACTIONS.has(op.action) ? op.action : 'set'
      const redirected: WireOp = { action, obj: orphansId, key: ownId, pred: [] }
      if (action === 'set') redirected.value = null as unknown as string
      return redirected
    }
    const obj = objectId(op.obj)
    if (obj === undefined) return orphan()
    let elemId = op.elemId
    if (elemId !== undefined && elemId !== '_head') {
      const ref = parseOpId(elemId)
      // An element of the cut's list: the genesis rewrote the list, so it has no id to point at.
      if (ref === undefined || opInCut(ref) || orphaned.has(elemId)) return orphan()
      elemId = moved(ref)
    }
    const pred: string[] = []
    let overwroteCut = false
    const winner = op.key !== undefined && elemId === undefined ? cutWinner(obj, op.key) : undefined
    let overwroteWinner = false
    for (const id of op.pred) {
      const ref = parseOpId(id)
      if (ref === undefined || orphaned.has(id)) continue
      if (opInCut(ref)) {
        overwroteCut = true
        if (id === winner) overwroteWinner = true
      } else pred.push(moved(ref))
    }
    if (winner !== undefined) {
      // Resolved against the value the cut shows as the old document resolved it: an op concurrent with that
      // value and below it in Automerge's order lost there, and is kept out of sight here too.
      if (overwroteWinner) pred.push(...genesisOps(obj, op.key!))
      else if (compareOpIds(ownId, winner) < 0) return orphan()
    } else if (overwroteCut && op.key !== undefined && elemId === undefined) pred.push(...genesisOps(obj, op.key))
    // A delete of something no longer there deletes nothing; Automerge wants it to name what it deletes.
    if (op.action === 'del' && pred.length === 0) return orphan()
    const next: WireOp = { ...op, obj, pred: [...new Set(pred)].sort(compareOpIds) }
    if (elemId !== undefined) next.elemId = elemId
    return next
  }

  return {
    genesis,
    translatedHash: (oldHash) => translated.get(oldHash),
    free: () => shown.free(),
    translate(change) {
      // A change translated before with this genesis: its hash (read from the header, not decoded) finds it.
      const header = memo === undefined || !(change instanceof Uint8Array) ? undefined : singleChangeMeta(change)
      const remembered = header === undefined ? undefined : memo?.get(header.hash)
      if (header !== undefined && remembered !== undefined) {
        newDeps(header.hash, header.deps)
        translated.set(header.hash, remembered.hash)
        for (const id of remembered.orphaned) orphaned.add(id)
        return remembered.bytes
      }
      const decoded = change instanceof Uint8Array ? A.decodeChange(change) : change
      if (inCut(base, decoded.actor, decoded.seq)) return undefined
      const deps = newDeps(decoded.hash, decoded.deps)
      orphanedNow = []
      const ops = decoded.ops.map((op, index) => translateOp(op as WireOp, `${decoded.startOp + index}@${decoded.actor}`))
      const rewritten = {
        actor: decoded.actor,
        author: decoded.author ?? null,
        seq: decoded.seq - (base.clock[decoded.actor]?.[0] ?? 0),
        startOp: decoded.startOp + opCount,
        time: decoded.time,
        message: decoded.message,
        deps: [...deps].sort(),
        ops,
      }
      const bytes = A.encodeChange(rewritten as unknown as A.DecodedChange)
      const hash = A.decodeChange(bytes).hash
      translated.set(decoded.hash, hash)
      memo?.set(decoded.hash, { bytes, hash, orphaned: orphanedNow })
      return bytes
    },
  }

  /** The new dependencies of a change outside the cut (throws when it was translated already, or a dependency is neither in the cut nor translated). */
  function newDeps(hash: string, oldDeps: readonly string[]): Set<string> {
    const known = translated.get(hash)
    if (known !== undefined) throw new LatticeError('CONFLICT', `change ${hash} was already translated (to ${known})`)
    const deps = new Set<string>()
    for (const dep of oldDeps) {
      const next = translated.get(dep)
      if (next !== undefined) deps.add(next)
      else if (cutHolds(dep)) deps.add(genesis.hash)
      else throw new LatticeError('BAD_REQUEST', `change ${hash} depends on ${dep}, which is neither in the cut nor translated yet`)
    }
    return deps
  }

  function cutHolds(dep: string): boolean {
    const meta = metaOf(dep)
    return meta !== null && meta !== undefined && inCut(base, meta.actor, meta.seq)
  }
}

/** Hash and dependencies of bytes holding exactly one change, from its header; undefined otherwise. */
function singleChangeMeta(bytes: Uint8Array): { hash: string; deps: readonly string[] } | undefined {
  const chunks = splitChunks(bytes)
  return chunks?.length === 1 ? changeMeta(chunks[0]!) : undefined
}

/** The op with the highest id among a key's values (getAll entries end with their op id): the one Automerge shows. */
function winningOp(entries: readonly unknown[][]): OpRef | undefined {
  let best: OpRef | undefined
  for (const entry of entries) {
    const ref = parseOpId(entry[entry.length - 1] as string)
    if (ref !== undefined && (best === undefined || ref.counter > best.counter || (ref.counter === best.counter && ref.actor > best.actor))) best = ref
  }
  return best
}

/** Op ids in Automerge's order: by counter, then actor. */
function compareOpIds(a: string, b: string): number {
  const left = parseOpId(a)
  const right = parseOpId(b)
  if (left === undefined || right === undefined) return a < b ? -1 : a > b ? 1 : 0
  return left.counter - right.counter || (left.actor < right.actor ? -1 : left.actor > right.actor ? 1 : 0)
}
