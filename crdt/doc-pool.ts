/**
 * Documents shared by the replicas of one process at equal heads: the
 * simulator's hundreds of nodes, which mostly apply the same changes in the
 * same order. An Automerge document is a function of its set of changes, and
 * its heads name that set, so every replica at the same heads can read one
 * handle. A replica that was about to apply changes another replica already
 * applied (gossip delivers each change to every node) takes that replica's
 * result instead: on a 200-node chaos run 89 % of the gossip applies found
 * their result already made.
 *
 * Copy on write: a pooled handle is read by everyone holding it and changed
 * by no one. A holder about to change its document takes it out of the pool
 * when it holds the only reference, and forks it otherwise (Automerge's
 * fork, O(document)). A changed document joins the pool again under its new
 * heads, or is dropped for the pooled one already there.
 *
 * Only documents with nothing queued in Automerge (changes waiting for
 * dependencies) are pooled: two such documents may differ at equal heads.
 * Each handle belongs to one engine (automerge-engine.ts): a pool serves the
 * replicas of one engine.
 *
 * A real node has no pool: it owns its one document.
 */
import type { DocHandle } from './automerge-engine.ts'
import type { EpochGenesis, EpochTranslations } from './epoch.ts'

export interface DocPool {
  /** The heads key of a pooled handle; undefined for a handle the pool does not hold. */
  keyOf(handle: DocHandle): string | undefined
  /** True when a document at these heads is pooled. */
  has(key: string): boolean
  /** A reference to the pooled document at these heads (the caller releases it), if there is one. */
  acquire(key: string): DocHandle | undefined
  /**
   * Pools a handle its caller holds alone (not pooled, nothing queued):
   * answers the handle to keep, which is the one already pooled at the same
   * heads (the given one is then freed) or the given one.
   */
  adopt(handle: DocHandle, key: string): DocHandle
  /** Drops one reference to a pooled handle; the last one frees it. */
  release(handle: DocHandle): void
  /**
   * Values read from a pooled handle, by whoever reads them: a pooled
   * document never changes, so what one replica read (and the index
   * decoded) there holds for every other. Undefined for a handle the pool
   * does not hold; gone once the handle leaves the pool.
   */
  readMemo(handle: DocHandle): Map<string, unknown> | undefined
  /** True when more than one replica holds this pooled handle. */
  shared(handle: DocHandle): boolean
  /** Takes a pooled handle that only its caller holds out of the pool, to change it. */
  detach(handle: DocHandle): void
  /** Counts a fork of a shared handle (for stats). */
  noteFork(): void
  /** Counts an apply answered by a pooled document (for stats). */
  noteReuse(): void
  /**
   * The pooled document that stored bytes with this digest were loaded
   * into (noteLoaded), acquired (the caller releases it), while it is
   * pooled: nodes starting from copies of one store (the simulator's warm
   * registry) load it once.
   */
  acquireLoaded(digest: string): DocHandle | undefined
  /** Records that stored bytes with this digest load into the pooled document at `key`. */
  noteLoaded(digest: string, key: string): void
  /**
   * The genesis of an epoch's cut (key: epoch and sorted heads), built once
   * for every pool sharing `shared`: a genesis is a function of the cut
   * alone, and at a switch each distinct document would build it again (at
   * 500 nodes, the bootstrap epoch's builds were 15 % of a run).
   */
  genesisOf(cutKey: string, build: () => EpochGenesis): EpochGenesis
  /** Translations made with a genesis genesisOf answered, shared the same way (epoch.ts, EpochTranslations). */
  translationsOf(genesis: EpochGenesis): EpochTranslations
  stats(): DocPoolStats
}

export interface DocPoolStats {
  /** Documents pooled now. */
  documents: number
  /** Changes to a pooled document that forked it first (it was shared). */
  forks: number
  /** Applies answered by a document already pooled at the heads they lead to. */
  reused: number
  /** Starts that took the document another node had loaded from the same bytes. */
  loadsShared: number
}

/** What the pools of one process share (one pool per Automerge engine): results that are bytes, not documents. */
export interface DocPoolShared {
  /** Geneses by cut key, the latest GENESES_SHARED_MAX kept. */
  geneses: Map<string, EpochGenesis>
  /** Translations by genesis hash, for the geneses kept. */
  translations: Map<string, EpochTranslations>
}

/** A switch needs its epoch's genesis; two kept cover a replica a step behind. */
export const GENESES_SHARED_MAX = 2

export function createDocPoolShared(): DocPoolShared {
  return { geneses: new Map(), translations: new Map() }
}

/** The heads key of a set of heads: sorted, so that equal sets have one key. */
export function headsKey(heads: readonly string[]): string {
  return heads.length <= 1 ? (heads[0] ?? '') : [...heads].sort().join(',')
}

/**
 * The heads after applying `changes` (each with its hash and dependencies)
 * to a document at `key`, when the changes' dependencies are all in the
 * document or among the changes: the document's heads and the new hashes,
 * less every hash some change depends on.
 */
export function headsKeyAfter(key: string, changes: ReadonlyArray<{ hash: string; deps: readonly string[] }>): string {
  const heads = new Set(key === '' ? [] : key.split(','))
  for (const change of changes) heads.add(change.hash)
  for (const change of changes) for (const dep of change.deps) heads.delete(dep)
  return headsKey([...heads])
}

interface Pooled {
  key: string
  refs: number
  memo?: Map<string, unknown>
}

export function createDocPool(shared: DocPoolShared = createDocPoolShared()): DocPool {
  const byKey = new Map<string, DocHandle>()
  const entries = new Map<DocHandle, Pooled>()
  const loadedInto = new Map<string, string>()
  let forks = 0
  let reused = 0
  let loadsShared = 0
  const entryOf = (handle: DocHandle): Pooled => {
    const entry = entries.get(handle)
    if (entry === undefined) throw new Error('doc pool: a handle the pool does not hold')
    return entry
  }
  return {
    keyOf: (handle) => entries.get(handle)?.key,
    has: (key) => byKey.has(key),
    acquire(key) {
      const handle = byKey.get(key)
      if (handle !== undefined) entryOf(handle).refs++
      return handle
    },
    adopt(handle, key) {
      if (entries.has(handle)) throw new Error('doc pool: adopting a handle already pooled')
      const existing = byKey.get(key)
      if (existing !== undefined) {
        entryOf(existing).refs++
        handle.free()
        return existing
      }
      byKey.set(key, handle)
      entries.set(handle, { key, refs: 1 })
      return handle
    },
    release(handle) {
      const entry = entryOf(handle)
      if (--entry.refs > 0) return
      entries.delete(handle)
      byKey.delete(entry.key)
      handle.free()
    },
    readMemo(handle) {
      const entry = entries.get(handle)
      if (entry === undefined) return undefined
      return (entry.memo ??= new Map())
    },
    shared: (handle) => entryOf(handle).refs > 1,
    detach(handle) {
      const entry = entryOf(handle)
      if (entry.refs > 1) throw new Error('doc pool: detaching a handle others hold')
      entries.delete(handle)
      byKey.delete(entry.key)
    },
    noteFork: () => void forks++,
    noteReuse: () => void reused++,
    acquireLoaded(digest) {
      const key = loadedInto.get(digest)
      const handle = key === undefined ? undefined : byKey.get(key)
      if (handle === undefined) {
        loadedInto.delete(digest)
        return undefined
      }
      entryOf(handle).refs++
      loadsShared++
      return handle
    },
    noteLoaded: (digest, key) => void loadedInto.set(digest, key),
    genesisOf(cutKey, build) {
      let genesis = shared.geneses.get(cutKey)
      if (genesis !== undefined) return genesis
      genesis = build()
      shared.geneses.set(cutKey, genesis)
      for (const [key, old] of shared.geneses) {
        if (shared.geneses.size <= GENESES_SHARED_MAX) break
        shared.geneses.delete(key)
        shared.translations.delete(old.hash)
      }
      return genesis
    },
    translationsOf(genesis) {
      let memo = shared.translations.get(genesis.hash)
      if (memo === undefined && [...shared.geneses.values()].includes(genesis)) shared.translations.set(genesis.hash, (memo = new Map()))
      // A genesis no longer kept: translations made with it are not kept either.
      return memo ?? new Map()
    },
    stats: () => ({ documents: byKey.size, forks, reused, loadsShared }),
  }
}
