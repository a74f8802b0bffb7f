/**
 * Keeps the document in the Store. Layout:
 *   doc/snapshot                  Automerge.save() of the whole document
 *   doc/chunk/<12-digit seq>      changes saved since the snapshot, in order
 *   doc/boots                     how many times this node has started
 *   doc/index-cache               the validated index at a stop (index-cache.ts)
 *   doc/epoch                     the epoch the document is in (absent: epoch 0)
 *   doc/genesis/<12-digit epoch>  the genesis of each of the last GENESES_KEPT
 *                                 epochs (Automerge.save of a document of it
 *                                 alone), for peers further behind
 * Snapshot, chunks and the epoch record are wrapped in a checksummed envelope
 * (envelope.ts). The epoch record changes only together with the snapshot,
 * in one batch (switchEpoch): a crash leaves the old epoch's document with its
 * record or the new one's with its own.
 *
 * Writes go through one serial queue, so chunks land in order and a
 * compaction never interleaves with a chunk write. Each chunk holds the
 * changes since the last *successful* write: the bytes of the changes the
 * document noted (noteChanges) since then, or, when it could not name them
 * (a sync message, a merge) or a write failed, Automerge.saveSince from the
 * persisted heads — never saveIncremental, which forgets changes whose write
 * failed: a failed put is retried by the next one, never lost. saveSince
 * walks the history (milliseconds at a few thousand deployments, on every
 * node for every change), the noted bytes cost nothing to find.
 */
import type { Heads } from '@automerge/automerge'
import { createHash } from 'node:crypto'
import { z } from 'zod'
import { parseJsonOrUndefined, type Logger, type Store, type StoreOp } from '../core/index.ts'
import type { AutomergeEngine } from './automerge-engine.ts'
import { createHandle, loadHandle, type DocHandle } from './doc-handle.ts'
import { GENESIS_HASH } from './document.ts'
import { seal, unseal } from './envelope.ts'
import { EPOCH_GENESIS_ACTOR, parseEpochGenesis } from './epoch.ts'
import { EPOCH_ACCEPTORS_MAX } from './epoch-paxos.ts'

export const SNAPSHOT_KEY = 'doc/snapshot'
export const CHUNK_PREFIX = 'doc/chunk/'
export const BOOTS_KEY = 'doc/boots'
export const EPOCH_KEY = 'doc/epoch'
export const GENESIS_PREFIX = 'doc/genesis/'
/**
 * Geneses a node keeps, its current epoch's included. A node that comes
 * back further behind than this cannot carry its own changes over (the
 * epochs between are gone) and drops them, logged: at an epoch per
 * ~50,000 changes, sixteen epochs are months of a busy cluster.
 */
export const GENESES_KEPT = 16

export function genesisKey(epoch: number): string {
  return `${GENESIS_PREFIX}${String(epoch).padStart(SEQ_DIGITS, '0')}`
}

/** A kept genesis (Automerge.save of a document holding it alone), or undefined when not kept or damaged. */
export async function readKeptGenesis(store: Store, epoch: number): Promise<Uint8Array | undefined> {
  const blob = await store.get(genesisKey(epoch))
  if (blob === undefined) return undefined
  const opened = unseal(blob)
  return 'damaged' in opened ? undefined : opened.payload
}

const HASH = z.string().regex(/^[0-9a-f]{64}$/)

/**
 * Which epoch a document is in: its number, the hash of its genesis, the
 * cut of the previous epoch it starts from (none for epoch 0), and the
 * acceptors of the agreement on the next epoch's cut, decided with this
 * one's (empty: not known here, so this node does not propose).
 */
export const EpochRecordSchema = z.object({
  epoch: z.number().int().nonnegative(),
  genesis: HASH,
  cut: z.array(HASH),
  acceptors: z.array(z.string().min(1).max(128)).max(EPOCH_ACCEPTORS_MAX).default([]),
})
export type EpochRecord = z.output<typeof EpochRecordSchema>

/** Epoch 0: the document every cluster starts with, from the fixed genesis of document.ts. Its next acceptors are the founder (epoch-keeper.ts). */
export const EPOCH_ZERO: EpochRecord = Object.freeze({ epoch: 0, genesis: GENESIS_HASH, cut: [] as string[], acceptors: [] as string[] })

export function encodeEpochRecord(record: EpochRecord): Uint8Array {
  return seal(new TextEncoder().encode(JSON.stringify(record)))
}

/**
 * The epoch a document shows by its own history: the epoch genesis it holds
 * (a change of EPOCH_GENESIS_ACTOR without dependencies), or undefined
 * (epoch 0, or a document without its genesis).
 */
export function epochShownBy(doc: DocHandle): EpochRecord | undefined {
  for (const meta of doc.getChangesMeta([])) {
    if (meta.actor !== EPOCH_GENESIS_ACTOR || meta.deps.length > 0) continue
    const change = doc.getChangeByHash(meta.hash)
    if (change === null) continue
    try {
      const genesis = parseEpochGenesis(change)
      // The acceptors were decided beside the cut, not written into the document: unknown from it alone.
      return { epoch: genesis.base.epoch, genesis: genesis.hash, cut: genesis.base.cut, acceptors: [] }
    } catch {
      continue // not a genesis after all
    }
  }
  return undefined
}
const SEQ_DIGITS = 12

export function chunkKey(seq: number): string {
  return `${CHUNK_PREFIX}${String(seq).padStart(SEQ_DIGITS, '0')}`
}

/** Counts this start in the store and returns its number (1 for the first). */
export async function recordBoot(store: Store): Promise<number> {
  const raw = await store.get(BOOTS_KEY)
  const previous = raw === undefined ? 0 : Number(new TextDecoder().decode(raw))
  const boot = Number.isSafeInteger(previous) && previous >= 0 ? previous + 1 : 1
  await store.put(BOOTS_KEY, new TextEncoder().encode(String(boot)))
  return boot
}

interface PersistedChunk {
  key: string
  bytes: number
}

export interface LoadedDocument {
  doc: DocHandle
  /** Blobs (snapshot or chunks) that were damaged or that Automerge refused; each was skipped. */
  corruptBlobs: number
  chunks: PersistedChunk[]
  nextSeq: number
  sizeBytes: number
  /** SHA-256 of the stored snapshot, when the store held a sound one and no chunks and `elsewhere` was given: the document is a function of these bytes. */
  snapshotDigest?: string
  /** True when `doc` is one another holder loaded from the same bytes (`shared`), not loaded here. */
  shared: boolean
  /** The epoch the store says the document is in (EPOCH_ZERO when it says nothing). */
  epoch: EpochRecord
}

/**
 * The stored epoch record. A damaged one is reported and answered from the
 * document's own genesis once loaded (undefined here); a store without one
 * (epoch 0 never writes it) is epoch 0.
 */
async function readEpochRecord(store: Store, report: (key: string, reason: string) => void): Promise<EpochRecord | undefined> {
  const raw = await store.get(EPOCH_KEY)
  if (raw === undefined) return EPOCH_ZERO
  const opened = unseal(raw)
  if ('damaged' in opened) {
    report(EPOCH_KEY, opened.damaged)
    return undefined
  }
  const parsed = EpochRecordSchema.safeParse(parseJsonOrUndefined(new TextDecoder().decode(opened.payload)))
  if (!parsed.success) {
    report(EPOCH_KEY, 'not an epoch record')
    return undefined
  }
  return parsed.data
}

/**
 * Where a document loaded from the same stored bytes may already be held
 * (doc-pool.ts: simulated nodes starting from copies of one store): the
 * holder's handle for a snapshot digest, acquired, or undefined.
 */
export type LoadedElsewhere = (snapshotDigest: string) => DocHandle | undefined

/**
 * Loads the snapshot, then every chunk in order. A damaged blob is logged
 * with its key and skipped: the node still starts, and what it lost comes
 * back from its peers by sync.
 */
export async function loadDocument(store: Store, actor: string, logger: Logger, engine?: AutomergeEngine, elsewhere?: LoadedElsewhere): Promise<LoadedDocument> {
  let doc = createHandle(actor, engine)
  let corruptBlobs = 0
  let sizeBytes = 0
  const report = (key: string, reason: string): void => {
    corruptBlobs++
    logger.error({ key, reason }, 'cluster-state blob is damaged; skipped, peers will supply what it held')
  }

  const recorded = await readEpochRecord(store, report)
  // Without a sound record the document's own genesis tells; with neither, the node starts in epoch 0, is told the
  // cluster's epoch by its first sync, and adopts that epoch's document from a peer (nothing it wrote is lost by that).
  const epochOf = (loaded: DocHandle): EpochRecord => {
    if (recorded !== undefined) return recorded
    const shown = epochShownBy(loaded)
    if (shown === undefined) logger.error({ key: EPOCH_KEY }, 'the epoch record is damaged and the document shows no epoch genesis: starting in epoch 0; peers will tell the current epoch')
    return shown ?? EPOCH_ZERO
  }
  const snapshot = await store.get(SNAPSHOT_KEY)
  const stored = await store.list(CHUNK_PREFIX)
  let snapshotDigest: string | undefined
  if (snapshot !== undefined) {
    sizeBytes += snapshot.length
    const opened = unseal(snapshot)
    if ('damaged' in opened) {
      report(SNAPSHOT_KEY, opened.damaged)
    } else {
      const digest = stored.length === 0 && elsewhere !== undefined ? createHash('sha256').update(snapshot).digest('hex') : undefined
      const held = digest === undefined ? undefined : elsewhere?.(digest)
      if (held !== undefined) {
        doc.free()
        return { doc: held, corruptBlobs, chunks: [], nextSeq: 1, sizeBytes, snapshotDigest: digest, shared: true, epoch: epochOf(held) }
      }
      try {
        doc.free()
        doc = loadHandle(opened.payload, actor, engine)
        snapshotDigest = digest
      } catch (err) {
        doc = createHandle(actor, engine)
        report(SNAPSHOT_KEY, (err as Error).message)
      }
    }
  }

  const chunks: PersistedChunk[] = []
  let lastSeq = 0
  for (const { key, value } of stored) {
    sizeBytes += value.length
    // Damaged chunks stay listed so that the next compaction deletes them.
    chunks.push({ key, bytes: value.length })
    const seq = Number(key.slice(CHUNK_PREFIX.length))
    if (Number.isSafeInteger(seq)) lastSeq = Math.max(lastSeq, seq)
    const opened = unseal(value)
    if ('damaged' in opened) {
      report(key, opened.damaged)
      continue
    }
    try {
      doc.loadIncremental(opened.payload)
    } catch (err) {
      // A failed loadIncremental parses before it applies, so `doc` is intact.
      report(key, (err as Error).message)
    }
  }
  return { doc, corruptBlobs, chunks, nextSeq: lastSeq + 1, sizeBytes, ...(snapshotDigest === undefined ? {} : { snapshotDigest }), shared: false, epoch: epochOf(doc) }
}

export interface DocPersistenceOptions {
  store: Store
  logger: Logger
  compactAfterChunks: number
  /** The newest document value: tasks run later than they are queued, and older values are outdated. */
  current: () => DocHandle
  loaded: LoadedDocument
  /**
   * Where Automerge's save bytes of an unchanging document may be kept for
   * other writers of that same document (doc-pool.ts's readMemo: in the
   * simulator, replicas at equal heads share one document and compact at
   * about the same time), if anywhere.
   */
  saveMemo?: (doc: DocHandle) => Map<string, unknown> | undefined
}

/**
 * doc.getHeads(), taken from `memo` when another reader of the same
 * unchanging document asked (a hex string per head, through WASM: 2 % of a
 * 200-node simulation, every chunk write asking). The array is shared: read
 * it, never change it.
 */
export function memoizedHeads(doc: DocHandle, memo: Map<string, unknown> | undefined): Heads {
  const kept = memo?.get('heads')
  if (kept !== undefined) return kept as Heads
  const heads = doc.getHeads()
  memo?.set('heads', heads)
  return heads
}

/** doc.save(), or saveSince(heads), taken from `memo` when another writer of the same document made it. */
function memoizedSave(doc: DocHandle, memo: Map<string, unknown> | undefined, since?: Heads): Uint8Array {
  const key = since === undefined ? 'save' : `saveSince ${since.join(',')}`
  const kept = memo?.get(key)
  if (kept instanceof Uint8Array) return kept
  const bytes = since === undefined ? doc.save() : doc.saveSince(since)
  memo?.set(key, bytes)
  return bytes
}

export class DocPersistence {
  private readonly store: Store
  private readonly logger: Logger
  private readonly compactAfterChunks: number
  private readonly current: () => DocHandle
  private readonly saveMemo: (doc: DocHandle) => Map<string, unknown> | undefined
  private persistedHeads: Heads
  private chunks: PersistedChunk[]
  private nextSeq: number
  private bytes: number
  /** Changes made since the last write began, in order; undefined when some are not known (saveSince finds them). */
  private unsaved: Uint8Array[] | undefined = undefined
  private compactionQueued = false
  private tail: Promise<void> = Promise.resolve()

  constructor(options: DocPersistenceOptions) {
    this.store = options.store
    this.logger = options.logger
    this.compactAfterChunks = options.compactAfterChunks
    this.current = options.current
    this.saveMemo = options.saveMemo ?? (() => undefined)
    // Only what was loaded is on disk; anything added since (genesis) goes into the next chunk.
    this.persistedHeads = memoizedHeads(options.loaded.doc, this.saveMemo(options.loaded.doc))
    this.chunks = [...options.loaded.chunks]
    this.nextSeq = options.loaded.nextSeq
    this.bytes = options.loaded.sizeBytes
  }

  /** Chunks in the store since the last snapshot. */
  get chunkCount(): number {
    return this.chunks.length
  }

  /** Bytes the document occupies in the store (snapshot + chunks). */
  get sizeBytes(): number {
    return this.bytes
  }

  /**
   * The bytes of changes just added to the document, in order (undefined:
   * some were added that the caller cannot name). Call synchronously with
   * the change, before anything else can change the document.
   */
  noteChanges(changes: readonly Uint8Array[] | undefined): void {
    if (changes === undefined || this.unsaved === undefined) this.unsaved = undefined
    else this.unsaved.push(...changes)
  }

  /** Resolves once every change made so far is in the store. */
  persist(): Promise<void> {
    return this.enqueue(() => this.writeChunk())
  }

  /**
   * Moves the store to another epoch's document: in the write queue, after
   * every write queued before it, `swap()` makes the new document current
   * (synchronously, so no write lands between) and answers its epoch, then
   * its snapshot, that epoch record and the removal of every chunk go in one
   * batch. A swap that throws changes nothing. Writes
   * noted before the swap belong to the old document: the new one carried
   * them over (translated), so they are not written again.
   */
  switchEpoch(swap: () => { record: EpochRecord; geneses: ReadonlyMap<number, Uint8Array> }): Promise<void> {
    return this.enqueue(async () => {
      const kept = await this.store.list(GENESIS_PREFIX)
      const { record, geneses } = swap()
      this.unsaved = []
      const recent = (epoch: number): boolean => epoch > record.epoch - GENESES_KEPT && epoch <= record.epoch
      const ops: StoreOp[] = [...geneses].filter(([epoch]) => recent(epoch)).map(([epoch, bytes]): StoreOp => ({ type: 'put', key: genesisKey(epoch), value: seal(bytes) }))
      for (const { key } of kept) {
        const epoch = Number(key.slice(GENESIS_PREFIX.length))
        if (!(Number.isSafeInteger(epoch) && recent(epoch))) ops.push({ type: 'del', key })
      }
      await this.writeSnapshot(undefined, record, ops)
    })
  }

  /**
   * Writes the whole document as the snapshot and drops the chunks, in one
   * atomic batch. `saved`: Automerge.save bytes of exactly the current
   * document (a peer's snapshot that replaced it), written as they are
   * instead of saving again.
   */
  compact(saved?: Uint8Array): Promise<void> {
    const savedHeads = saved === undefined ? undefined : this.current().getHeads()
    // Tasks run later than they are queued: the bytes serve only if nothing changed since.
    const stillCurrent = (): boolean => savedHeads !== undefined && sameHeads(this.current().getHeads(), savedHeads)
    return this.enqueue(() => this.writeSnapshot(stillCurrent() ? saved : undefined))
  }

  private enqueue(task: () => Promise<void>): Promise<void> {
    const run = this.tail.then(task)
    // The queue goes on after a failure; the failure belongs to the caller of that task.
    this.tail = run.catch(() => undefined)
    return run
  }

  private async writeChunk(): Promise<void> {
    const doc = this.current()
    const heads = memoizedHeads(doc, this.saveMemo(doc))
    const noted = this.unsaved
    this.unsaved = []
    let blob: Uint8Array
    if (noted !== undefined && noted.length > 0) blob = sealedChanges(noted)
    else if (noted !== undefined && sameHeads(heads, this.persistedHeads)) return
    else {
      const bytes = memoizedSave(doc, this.saveMemo(doc), this.persistedHeads)
      if (bytes.length === 0) return
      blob = seal(bytes)
    }
    const key = chunkKey(this.nextSeq++)
    try {
      await this.store.put(key, blob)
    } catch (err) {
      this.unsaved = undefined // the next write finds what this one held with saveSince
      throw err
    }
    this.persistedHeads = heads
    this.chunks.push({ key, bytes: blob.length })
    this.bytes += blob.length
    if (this.chunks.length >= this.compactAfterChunks && !this.compactionQueued) {
      // Queued behind this write rather than awaited by it: the writer's
      // promise resolves as soon as its own change is durable.
      this.compactionQueued = true
      this.compact().catch((err: unknown) => {
        this.logger.error({ err }, 'cluster-state compaction failed; chunks kept, will retry after the next write')
      })
    }
  }

  private async writeSnapshot(saved?: Uint8Array, epoch?: EpochRecord, extra: readonly StoreOp[] = []): Promise<void> {
    this.compactionQueued = false
    const doc = this.current()
    const heads = memoizedHeads(doc, this.saveMemo(doc))
    const snapshot = seal(saved ?? memoizedSave(doc, this.saveMemo(doc)))
    this.unsaved = []
    const dropped = this.chunks
    // One batch: a crash leaves either the old snapshot with every chunk or
    // the new snapshot without them, never a snapshot missing a chunk's data.
    const ops: StoreOp[] = [
      { type: 'put', key: SNAPSHOT_KEY, value: snapshot },
      ...dropped.map((chunk): StoreOp => ({ type: 'del', key: chunk.key })),
      ...(epoch === undefined ? [] : [{ type: 'put', key: EPOCH_KEY, value: encodeEpochRecord(epoch) } satisfies StoreOp]),
      ...extra,
    ]
    try {
      await this.store.batch(ops)
    } catch (err) {
      this.unsaved = undefined
      throw err
    }
    this.chunks = []
    this.bytes = snapshot.length
    this.persistedHeads = heads
    this.logger.debug({ chunks: dropped.length, snapshotBytes: snapshot.length }, 'cluster-state compacted')
  }
}

/**
 * Chunks sealed from exactly these change objects, by the first one: in the
 * simulator gossip hands every node the same change bytes (decoded once per
 * message, sync-wire.ts), mostly in the same batches, and each node sealed
 * them again (checksum and copy: ~4 % of a 1,000-node partition storm
 * in a live profile). The blob is never changed after sealing (the store copies what it
 * keeps). A real node's changes are its own objects: the memo costs it one
 * lookup per chunk.
 */
const sealedBatches = new WeakMap<Uint8Array, { parts: readonly Uint8Array[]; blob: Uint8Array }>()

function sealedChanges(parts: readonly Uint8Array[]): Uint8Array {
  const first = parts[0]!
  const known = sealedBatches.get(first)
  if (known !== undefined && known.parts.length === parts.length && known.parts.every((part, i) => part === parts[i])) return known.blob
  const blob = seal(concat(parts))
  sealedBatches.set(first, { parts: [...parts], blob })
  return blob
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0))
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}

function sameHeads(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((head, i) => head === b[i])
}
