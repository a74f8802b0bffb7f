/**
 * Moving one node's document into the next epoch (docs/ARCHITECTURE.md,
 * "Bounding the history: epochs"): the pure part of the switch, with no
 * store and no index. ClusterState.enterEpoch calls it and persists the
 * result with the epoch record.
 *
 * Two ways in, one outcome: a document of epoch `cut.epoch` holding the
 * genesis of the cut and every change of the old document outside the cut,
 * translated (epoch.ts), written to by a fresh actor.
 * - `planNextEpoch` + `materializePlan`: the node holds the whole cut, so it
 *   builds the genesis from its own document (every node that holds the cut
 *   builds the same bytes, so nothing of the state needs to travel).
 * - `adoptNextEpoch`: the node lacks part of the cut (it was away), so it
 *   takes a peer's document of the new epoch and carries over what it holds
 *   outside the cut, reading the cut from the genesis in that document.
 *   A node more than one epoch behind carries its changes through every
 *   epoch between, one genesis at a time (`intermediate`: the geneses of
 *   the epochs between, which peers keep for a while: persistence.ts).
 */
import * as A from '@automerge/automerge'
import { LatticeError } from '../core/index.ts'
import type { AutomergeEngine } from './automerge-engine.ts'
import { createHandle, loadHandle, type DocHandle } from './doc-handle.ts'
import { LruMap } from './lru.ts'
import { assertHoldsCut, buildEpochGenesis, createEpochTranslator, EPOCH_GENESIS_ACTOR, inCut, parseEpochGenesis, type ChangeMetaLookup, type EpochCut, type EpochGenesis, type EpochTranslations } from './epoch.ts'

export interface NextEpoch {
  /** The new document (owned by the caller: it frees it). */
  doc: DocHandle
  genesis: EpochGenesis
  /** Changes of the old document outside the cut, carried over (translated) into the new one. */
  carried: number
}

/**
 * Changes of one epoch carried through the epochs of `geneses` (each the
 * next one's genesis, in order): translated into the first, then what of
 * that lies outside the next cut into the next, and so on. Each step needs
 * only the actor and seq of the changes it reads: the old document's for
 * the first, the step's own output (and its genesis) for the others.
 */
function translateThrough(geneses: readonly EpochGenesis[], oldMeta: ChangeMetaLookup, changes: readonly Uint8Array[]): Uint8Array[] {
  let current = [...changes]
  let metaOf = oldMeta
  for (const [step, genesis] of geneses.entries()) {
    current = translateOnce(genesis, metaOf, current)
    if (step === geneses.length - 1) break
    const metas = new Map<string, { actor: string; seq: number }>([[genesis.hash, { actor: EPOCH_GENESIS_ACTOR, seq: 1 }]])
    for (const change of current) {
      const decoded = A.decodeChange(change)
      metas.set(decoded.hash, { actor: decoded.actor, seq: decoded.seq })
    }
    metaOf = (hash) => metas.get(hash)
  }
  return current
}

function translateOnce(genesis: EpochGenesis, metaOf: ChangeMetaLookup, outside: readonly Uint8Array[], memo?: EpochTranslations): Uint8Array[] {
  const translator = createEpochTranslator(genesis, metaOf, memo)
  try {
    const carried: Uint8Array[] = []
    for (const change of outside) {
      const next = translator.translate(change)
      if (next !== undefined) carried.push(next)
    }
    return carried
  } finally {
    translator.free()
  }
}

/** What the next epoch holds, built from a document that holds the whole cut: the same for every replica at that document. */
export interface EpochPlan {
  genesis: EpochGenesis
  /** The changes of the old document outside the cut, translated. */
  carried: Uint8Array[]
}

/**
 * The genesis of the cut and the old document's changes outside it,
 * translated in causal order (BAD_REQUEST when `old` lacks part of the cut).
 * Changes Automerge still queues for missing dependencies are not in the
 * history and not carried: their writers hold them and carry them over
 * themselves. `built`: the cut's genesis, already built from another
 * document that holds it; `memo`: translations made with that genesis
 * (the simulator's replicas share both: doc-pool.ts).
 */
export function planNextEpoch(old: DocHandle, cut: EpochCut, built?: EpochGenesis, memo?: EpochTranslations): EpochPlan {
  // A genesis is a function of the cut alone (buildEpochGenesis), so one built from another document holding the cut is this one's too.
  if (built !== undefined) assertHoldsCut(old, cut.heads)
  const genesis = built ?? buildEpochGenesis(old, cut)
  return { genesis, carried: translateOnce(genesis, (hash) => old.getChangeMetaByHash(hash), old.getChanges([...genesis.base.cut]), memo) }
}

/** A new document of the plan, written to by `actor`. */
export function materializePlan(plan: EpochPlan, actor: string, engine?: AutomergeEngine): NextEpoch {
  const doc = createHandle(actor, engine)
  try {
    doc.applyChanges([plan.genesis.change, ...plan.carried])
  } catch (err) {
    doc.free()
    throw err
  }
  return { doc, genesis: plan.genesis, carried: plan.carried.length }
}

/** Geneses whose saves are kept: the current epoch's and the one before, as for the pool's geneses (doc-pool.ts). */
const SAVED_GENESES_MAX = 2

/**
 * Saves made by saveGenesisAlone, by genesis hash: a save is a function of
 * the change, and every replica of a process (the simulator's nodes) saves
 * the same genesis at a switch. Each save is an Automerge load and a deflate
 * of the whole state: at 200 simulated nodes they were a tenth of a chaos run.
 */
const savedGeneses = new LruMap<string, Uint8Array>(SAVED_GENESES_MAX)

/**
 * A genesis as nodes keep it for peers further behind (persistence.ts): a
 * document of it alone, compressed as a save is. Callers treat the bytes as
 * read-only (they may be shared, see savedGeneses).
 */
export function saveGenesisAlone(genesis: Pick<EpochGenesis, 'change' | 'hash'>, engine?: AutomergeEngine): Uint8Array {
  const saved = savedGeneses.get(genesis.hash)
  if (saved !== undefined) return saved
  const alone = createHandle(undefined, engine)
  try {
    alone.applyChanges([genesis.change])
    const bytes = alone.save()
    savedGeneses.set(genesis.hash, bytes)
    return bytes
  } finally {
    alone.free()
  }
}

/** saveGenesisAlone read back; BAD_REQUEST for anything else (the bytes come from a peer). */
export function readGenesisAlone(bytes: Uint8Array): EpochGenesis {
  let handle: DocHandle
  try {
    handle = loadHandle(bytes)
  } catch (err) {
    throw new LatticeError('BAD_REQUEST', `not a kept genesis: ${(err as Error).message}`)
  }
  try {
    const changes = handle.getChanges([])
    if (changes.length !== 1) throw new LatticeError('BAD_REQUEST', `a kept genesis holds one change, not ${changes.length}`)
    return parseEpochGenesis(changes[0]!)
  } finally {
    handle.free()
  }
}

/** The genesis of epoch `epoch` in a document of that epoch (BAD_REQUEST when it has none, or another epoch's). */
export function genesisIn(doc: DocHandle, genesisHash: string, epoch: number): EpochGenesis {
  const change = doc.getChangeByHash(genesisHash)
  if (change === null) throw new LatticeError('BAD_REQUEST', `the document does not hold the epoch genesis ${genesisHash}`)
  const genesis = parseEpochGenesis(change)
  if (genesis.base.epoch !== epoch) throw new LatticeError('BAD_REQUEST', `genesis ${genesisHash} starts epoch ${genesis.base.epoch}, not ${epoch}`)
  return genesis
}

/**
 * The next epoch from a peer's document of it (`snapshot`, Automerge.save
 * bytes; its genesis is `genesisHash`), plus what `old` holds outside the
 * cut. `old` need not hold the cut: only the genesis's base is needed to
 * tell and translate what lies outside it.
 */
export function adoptNextEpoch(
  old: DocHandle,
  snapshot: Uint8Array,
  genesisHash: string,
  epoch: number,
  actor: string,
  engine?: AutomergeEngine,
  intermediate: readonly EpochGenesis[] = [],
): NextEpoch {
  let doc: DocHandle
  try {
    doc = loadHandle(snapshot, actor, engine)
  } catch (err) {
    throw new LatticeError('BAD_REQUEST', `not an Automerge document: ${(err as Error).message}`)
  }
  try {
    const genesis = genesisIn(doc, genesisHash, epoch)
    if (doc.getMissingDeps().length > 0) throw new LatticeError('BAD_REQUEST', 'the document of the new epoch waits for changes it does not hold')
    const chain = [...intermediate, genesis]
    chain.forEach((step, i) => {
      if (step.base.epoch !== epoch - chain.length + 1 + i) throw new LatticeError('BAD_REQUEST', `genesis of epoch ${step.base.epoch} where epoch ${epoch - chain.length + 1 + i} belongs`)
    })
    // Every change of `old` outside the first cut, in causal order; the cut's own are that genesis's.
    const first = chain[0]!
    const outside = old.getChanges([]).filter((change) => {
      const meta = A.decodeChange(change)
      return !inCut(first.base, meta.actor, meta.seq)
    })
    const carried = translateThrough(chain, (hash) => old.getChangeMetaByHash(hash), outside)
    doc.applyChanges(carried)
    return { doc, genesis, carried: carried.length }
  } catch (err) {
    doc.free()
    throw err
  }
}
