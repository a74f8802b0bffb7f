/**
 * The cluster state: one Automerge document every node holds (DESIGN.md §4),
 * persisted in the Store, read through a validated index, written through
 * ClusterStateTx. Each write is ONE Automerge change, durable in the store
 * before its promise resolves; then onLocalChange (for gossip) and onChange
 * fire. Remote changes arrive through applyChanges.
 *
 * The document is held as a bare Automerge handle, never materialized
 * (doc-handle.ts): a materialized Automerge.Doc costs O(document) per change
 * and a JS copy of every value per node. Reads go through the index.
 */
import * as A from '@automerge/automerge'
import { z } from 'zod'
import { LatticeError, type Clock, type DesiredState, type Logger, type Startable, type Store } from '../core/index.ts'
import { defaultEngine, type AutomergeEngine } from './automerge-engine.ts'
import { changeMeta, documentHeads, splitChunks, type ChangeMeta, type Chunk } from './change-chunks.ts'
import { createHandle, draftRoot, forkHandle, generateSyncMessage, isEngineFailure, loadHandle, mapAt, receiveHeldSyncMessage, receiveSyncMessage, type DocHandle } from './doc-handle.ts'
import { headsKey, headsKeyAfter, type DocPool } from './doc-pool.ts'
import { DocIndex, type IndexSnapshot } from './doc-index.ts'
import { INDEX_CACHE_KEY, readIndexCache, writeIndexCache } from './index-cache.ts'
import { GENESIS_HASH, changeTimeSeconds, deriveActorId, genesisChange } from './document.ts'
import { createTx, selfNodeUnchanged, type ClusterStateTx } from './mutations.ts'
import { adoptNextEpoch, materializePlan, planNextEpoch, readGenesisAlone, saveGenesisAlone, type EpochPlan, type NextEpoch } from './epoch-switch.ts'
import { DocPersistence, loadDocument, memoizedHeads, readKeptGenesis, recordBoot, type EpochRecord } from './persistence.ts'
import { buildEpochGenesis, type EpochCut, type EpochGenesis } from './epoch.ts'
import {
  PeerIdSchema,
  type CreateDeploymentInput,
  type DeploymentEntry,
  type NodeEntry,
  type PlacementEntry,
  type PlacementInput,
  type SelfNodeInput,
  type StatusEntry,
  type StatusInput,
} from './schema.ts'

export interface ClusterStateInit {
  /** This node's PeerId: the key of its nodes entry and of its status reports. */
  selfId: string
  /**
   * Chunks written before they are folded into one snapshot. Default 200.
   * Bounds start-up time, which grows with the number of chunks to load one
   * by one (a snapshot loads in one pass); lower compacts more often, costing
   * a full save (tens of ms for a large document) every N writes.
   */
  compactAfterChunks?: number
  /**
   * A stop keeps the validated index in the store (index-cache.ts) when it
   * holds at least this many entries, so that the next start skips reading
   * and validating them; below it a start rebuilds it in a few tens of ms
   * and a stop writes nothing. 0 always keeps it.
   */
  indexCacheEntriesMin?: number
}

export interface ClusterStateComponents {
  store: Store
  clock: Clock
  logger: Logger
  /** The Automerge instance that holds the document (automerge-engine.ts); the default one unless given. */
  automerge?: AutomergeEngine
  /**
   * Documents shared with other replicas of this process at equal heads
   * (doc-pool.ts; the simulator's). Of the same engine as `automerge`.
   * Without one the document is this replica's own.
   */
  docPool?: DocPool
}

export const CLUSTER_STATE_DEFAULTS = {
  compactAfterChunks: 200,
  // ~5,000 entries rebuild in ~60 ms in a new process (12 µs each, cold): below that the cache saves too little to write at every stop.
  indexCacheEntriesMin: 5_000,
} as const

/**
 * One peer's state in the Automerge sync protocol (an Automerge SyncState: a
 * plain value, kept by the caller per peer, replaced by every call).
 */
export type SyncState = A.SyncState

/** What applying peers' changes did. */
export interface ApplyResult {
  /** The heads moved: at least one change was new and applied (not merely queued for its dependencies). */
  applied: boolean
  /**
   * Entries the applied changes left invalid that were valid (or absent)
   * before: they are kept in the history, as every replica must hold the same
   * changes to converge, but left out of every read, on every replica alike.
   */
  invalidEntries: string[][]
}

export interface ClusterChangeEvent {
  /** True for this node's own writes, false for changes applied from peers. */
  local: boolean
  /**
   * Deployments whose entries (deployment, placements or statuses) this
   * change added, changed or removed; 'all' after a bulk merge. Listeners
   * that keep derived state re-read only these instead of every deployment.
   */
  deployments: ReadonlySet<string> | 'all'
  /** The node registry changed. */
  nodes: boolean
}

export interface ClusterStateStats {
  /** Bytes the document occupies in the store (snapshot + chunks). */
  sizeBytes: number
  changeCount: number
  headsCount: number
  /** Chunks since the last snapshot. */
  chunks: number
  /**
   * Entries of the current document that fail validation and are left out
   * of reads. Reading it validates the unchecked entries first (a getter:
   * computed when read, not when stats() is called).
   */
  invalidEntries: number
  /** Persisted blobs (snapshot or chunks) skipped as damaged at the last start. */
  corruptChunks: number
  /**
   * Entries read from the document and validated since this instance was
   * made: every entry at start and on a bulk merge, then only the entries
   * each change touched (a change costs what it touched, not the document).
   * Unchecked entries count once validated. An entry another replica on
   * the same pooled document (the simulator) already checked is taken
   * from it and not counted. Computed when read.
   */
  entriesDecoded: number
  /**
   * Status entries loaded at start and not read since: each is validated
   * when first read (an invalid one is then left out, logged and counted),
   * all of them when invalidEntries is read. Computed when read.
   */
  entriesUnchecked: number
  /** The last start took the validated index from the store (index-cache.ts) instead of reading and validating every entry. */
  indexFromCache: boolean
  /** The epoch the document is in (0 until the history was first cut). */
  epoch: number
}

/** What moving into a new epoch did (enterEpoch, adoptEpoch). */
export interface EpochSwitch {
  epoch: EpochRecord
  /** Changes of the old document outside the cut, carried over into the new one. */
  carried: number
  /** False when this replica's changes could not be carried (adopted from further behind than the kept geneses reach): they were dropped. */
  carriedOver: boolean
  /** Changes in the old document before the switch and in the new one after it. */
  changesBefore: number
  changesAfter: number
}

/** Reads: validated, frozen entries; empty before start. */
export interface ClusterStateReader {
  /** Sorted by peerId. */
  nodes(): NodeEntry[]
  /** PeerIds of the nodes marked draining, sorted. */
  drainingNodes(): readonly string[]
  node(peerId: string): NodeEntry | undefined
  /** Deleted ones included; sorted by createdAtMs, then id. */
  deployments(): DeploymentEntry[]
  deployment(id: string): DeploymentEntry | undefined
  /** Replica index → closed round, in replica order. */
  placements(id: string): ReadonlyMap<number, PlacementEntry>
  placement(id: string, replica: number): PlacementEntry | undefined
  /** All replicas, all reporters; sorted by replica, then peerId. */
  statuses(id: string): StatusEntry[]
  /**
   * Replicas whose current placement record names `peerId` a winner, in no
   * particular order; includes deleted deployments and replicas at or above
   * the replica count (callers filter). Costs the answer, not the document.
   */
  placementsWonBy(peerId: string): Array<{ deploymentId: string; replica: number }>
  /** Replicas `peerId` has a status entry for, in no particular order. */
  statusesReportedBy(peerId: string): Array<{ deploymentId: string; replica: number }>
}

export interface ClusterState extends Startable, ClusterStateReader {
  readonly selfId: string

  // Writes: one change each, durable before they resolve. Errors are
  // LatticeErrors: VALIDATION_FAILED, NOT_FOUND (unknown id), CONFLICT,
  // INTERNAL when not running. If the store write fails the promise rejects;
  // the change stays in memory and goes out with the next successful write.
  upsertSelfNode(entry: SelfNodeInput): Promise<void>
  createDeployment(input: CreateDeploymentInput): Promise<DeploymentEntry>
  setDesired(id: string, desired: DesiredState): Promise<void>
  bumpEpoch(id: string): Promise<void>
  setReplicas(id: string, replicas: number): Promise<void>
  writePlacement(id: string, replica: number, entry: PlacementInput): Promise<void>
  reportStatus(id: string, replica: number, entry: StatusInput): Promise<void>
  clearStatus(id: string, replica: number): Promise<void>
  /** Several writes as one change; `fn` must be synchronous. Nothing is written if it throws. */
  batch<T>(fn: (tx: ClusterStateTx) => T, message?: string): Promise<T>

  /** Fired after every local write and after remote changes are applied; returns unsubscribe. */
  onChange(listener: (event: ClusterChangeEvent) => void): () => void
  /**
   * The bytes of each local change, once it is durable (what gossip
   * publishes), in the current epoch (a change a switch carried over meanwhile
   * is not told: its old bytes belong to no current document); returns
   * unsubscribe.
   */
  onLocalChange(listener: (change: Uint8Array) => void): () => void

  // Sync surface for dissemination and anti-entropy.
  heads(): string[]
  /**
   * Changes not reachable from `heads` (all of them for []). Heads this
   * replica does not know are ignored, so it sends too much, never too
   * little; malformed hashes throw VALIDATION_FAILED.
   */
  changesSince(heads: readonly string[]): Uint8Array[]
  /**
   * Applies peers' changes: idempotent; changes whose dependencies are
   * missing are held by Automerge until they arrive. New changes are
   * validated into the index, persisted, then onChange fires (local: false).
   * Bytes that are not Automerge changes reject with VALIDATION_FAILED and
   * change nothing. `decoded`, when the caller already decoded them
   * (Automerge.decodeChange of each, same order), saves decoding them again.
   */
  applyChanges(changes: readonly Uint8Array[], decoded?: readonly A.DecodedChange[]): Promise<ApplyResult>
  /**
   * Paths (section first, e.g. ['deployments', id]) of the entries these
   * changes (applied here or not) write to, as far as this replica's
   * document tells: for attributing invalid entries when changes from
   * several peers were applied together. Undecodable bytes touch nothing.
   */
  entriesTouchedBy(changes: readonly Uint8Array[]): string[][]
  /** True when every hash is a change in this replica's history (applied, not merely queued). Malformed hashes: false. */
  hasChanges(hashes: readonly string[]): boolean
  /** The hashes among `hashes` that are not changes in this replica's history (unknown, only queued, or malformed): one question for many hashes. */
  missingAmong(hashes: readonly string[]): Set<string>
  /**
   * True when every change in `heads` is known here and in the history of
   * `peerHeads` (a peer that reported `peerHeads` holds them). Peer heads this
   * replica does not know are left out, so it may answer false, never
   * wrongly true.
   */
  coveredBy(heads: readonly string[], peerHeads: readonly string[]): boolean
  /**
   * The Automerge sync protocol (anti-entropy), one call per message: the
   * next message for the peer whose state is `syncState` (null: nothing to
   * send), and that peer's new state. Throws INTERNAL when not running.
   */
  generateSyncMessage(syncState: SyncState): [SyncState, Uint8Array | null]
  /**
   * Applies a peer's sync message as applyChanges does (validated into the
   * index, persisted before it resolves, onChange). Bytes that are not a
   * sync message reject with VALIDATION_FAILED and change nothing.
   */
  receiveSyncMessage(syncState: SyncState, message: Uint8Array): Promise<{ syncState: SyncState; result: ApplyResult }>
  /**
   * Merges a whole document (a peer's saveSnapshot()) as applyChanges does:
   * the fallback when a sync message would exceed its bound. Bytes that are
   * not an Automerge document reject with VALIDATION_FAILED. Parses the
   * document twice (once to check it): the fallback is rare.
   */
  mergeSnapshot(snapshot: Uint8Array): Promise<ApplyResult>
  /** Resolves once everything in memory now is in the store (e.g. before telling a peer our heads). */
  flush(): Promise<void>
  /**
   * Writes the whole document as the snapshot now and drops the chunks,
   * damaged ones included: after a recovery from peers, so the damage is
   * not reported again at the next start.
   */
  compact(): Promise<void>
  /** The whole document (Automerge.save), e.g. for a joining peer. Works after stop; throws before the first start. */
  saveSnapshot(): Uint8Array
  stats(): ClusterStateStats
  /**
   * Why the document is gone, once Automerge itself failed (a WebAssembly
   * trap: out of memory, a bug; every later call into it fails too): every
   * later read or write throws INTERNAL. The store still holds everything
   * persisted, so a restart of the process recovers. Undefined while well.
   */
  failure(): string | undefined
  /** Called once, when the document fails (see failure()). */
  onFailure(listener: (reason: string) => void): () => void

  // Epochs (docs/ARCHITECTURE.md, "Bounding the history").
  /** The epoch the document is in: its number, its genesis, and the cut it started from. */
  epoch(): EpochRecord
  /**
   * Moves to epoch `cut.epoch` (the next one; CONFLICT otherwise) from an
   * agreed cut this replica holds whole (BAD_REQUEST otherwise: adoptEpoch
   * then): the new document is the cut's genesis plus every change here
   * outside the cut, translated, and this replica writes as a fresh actor.
   * Durable (snapshot and epoch record in one batch) before it resolves;
   * then onChange fires for everything, and onEpoch.
   */
  enterEpoch(cut: EpochCut & { acceptors?: readonly string[] }): Promise<EpochSwitch>
  /**
   * Moves to a later epoch from a peer's document of it (Automerge.save
   * bytes) and that epoch's record: for a replica that lacks part of the
   * cut. Changes here outside the cut are carried over. From further than
   * one epoch behind, they are carried through each epoch between, whose
   * geneses (keptGenesis of a peer, in order) `intermediate` holds; without
   * them they cannot be translated and are dropped, with an error logged.
   * BAD_REQUEST when the bytes are not that epoch's document.
   */
  adoptEpoch(snapshot: Uint8Array, record: EpochRecord, intermediate?: readonly Uint8Array[]): Promise<EpochSwitch>
  /** The genesis of epoch `epoch` as this node keeps it (GENESES_KEPT of them), for a peer further behind; undefined when not kept. */
  keptGenesis(epoch: number): Promise<Uint8Array | undefined>
  /** Fired after every move to a new epoch; returns unsubscribe. */
  onEpoch(listener: (record: EpochRecord) => void): () => void
}

const InitSchema = z.object({
  selfId: PeerIdSchema,
  compactAfterChunks: z.number().int().min(1).default(CLUSTER_STATE_DEFAULTS.compactAfterChunks),
  indexCacheEntriesMin: z.number().int().min(0).default(CLUSTER_STATE_DEFAULTS.indexCacheEntriesMin),
})

/** Change messages are stored in every change forever: keep them short. */
const MESSAGE_LENGTH_MAX = 120

/**
 * A sync message of at least this many bytes and at least a quarter of the
 * stored document (a joining node's whole-document message, a long
 * partition's backlog) is not decoded change by change: what it touched is
 * read from Automerge's diff, or every entry is re-read (bulkTouched).
 */
const BULK_BYTES_MIN = 16 * 1024
const BULK_SHARE_DIVISOR = 4
/**
 * …and written as a compaction only when at least this share (1/n) of the
 * stored document: a joining node's first message. A partition's backlog is
 * written as a chunk of its changes like any other, and compacted with the
 * chunks: after a 1,000-node asymmetric partition healed, every node's
 * compaction (a whole-document save, deflated and hashed) was a fifth of the
 * wall in the minute profiled, each node's document being its own.
 */
const BULK_COMPACT_SHARE_DIVISOR = 1
/** A bulk merge's diff naming more than this fraction (1/n) of the index's entries re-reads the whole index instead: past half, one read per section beats one per entry. */
const BULK_DIFF_SHARE_DIVISOR = 2

/** The heads of a node that holds nothing yet: the fixed genesis every epoch-0 document starts from (sent the whole document). */
const JOINING_HEADS: readonly string[] = [GENESIS_HASH]

/** Read-memo key (doc-pool.ts) of a pooled document's answers to "is this change in it?", by hash. */
const HELD_MEMO = 'held'

/** The pool memo key (readMemo) of the index a replica built when it loaded that pooled document (buildLoadedIndex). */
const LOADED_INDEX_MEMO = 'loaded index'

export function createClusterState(init: ClusterStateInit): (components: ClusterStateComponents) => ClusterState {
  const parsed = InitSchema.safeParse(init)
  if (!parsed.success) throw new LatticeError('VALIDATION_FAILED', `invalid cluster state init: ${z.prettifyError(parsed.error)}`)
  const options = parsed.data
  return (components) => new AutomergeClusterState(options, components)
}

type Lifecycle = 'stopped' | 'starting' | 'running' | 'stopping'

/**
 * What a sync message brings, as far as finding the pooled document it
 * leads to needs: its changes' hashes and dependencies (decoded whole when
 * what they touched will be read from their ops), or the heads of the whole
 * document it carries instead.
 */
type Arrival = { kind: 'changes'; metas: readonly ChangeMeta[]; decoded?: readonly A.DecodedChange[] } | { kind: 'document'; heads: readonly string[] }

/** A sync message's changes, offered to applyRemote for a pooled result; `receive` receives the message on that result. */
interface CarriedChanges {
  changes: readonly Uint8Array[]
  arrival: Arrival
  /** The sender's heads: the pooled result must hold each, for the sync state to move as it would here. */
  heads: readonly string[]
  receive(target: DocHandle): void
}

class AutomergeClusterState implements ClusterState {
  readonly selfId: string
  private readonly compactAfterChunks: number
  private readonly indexCacheEntriesMin: number
  private readonly store: Store
  private readonly clock: Clock
  private readonly logger: Logger
  /** Holds the document: every handle of this state is made in it. */
  private readonly engine: AutomergeEngine
  private readonly index: DocIndex
  private readonly changeListeners = new Set<(event: ClusterChangeEvent) => void>()
  private readonly localChangeListeners = new Set<(change: Uint8Array) => void>()
  private readonly failureListeners = new Set<(reason: string) => void>()
  private readonly epochListeners = new Set<(record: EpochRecord) => void>()
  /** The epoch of the document (set at load). */
  private epochRecord: EpochRecord | undefined
  /** This start's number (persistence.ts recordBoot): part of every actor id this start writes as. */
  private boot = 0
  /** The last document seen to hold its epoch's genesis (ensureWritableEpoch): a document only grows. */
  private genesisHeld: DocHandle | undefined
  private failed: string | undefined
  private lifecycle: Lifecycle = 'stopped'
  private starting: Promise<void> | undefined
  private doc: DocHandle | undefined
  private readonly pool: DocPool | undefined
  /** Who this replica's changes are by (this boot's actor id). */
  private actor: string | undefined
  private persistence: DocPersistence | undefined
  private corruptChunks = 0
  /** The last start restored the index from the index cache instead of rebuilding it. */
  private indexFromCache = false

  constructor(options: z.output<typeof InitSchema>, components: ClusterStateComponents) {
    this.selfId = options.selfId
    this.compactAfterChunks = options.compactAfterChunks
    this.indexCacheEntriesMin = options.indexCacheEntriesMin
    this.store = components.store
    this.clock = components.clock
    this.logger = components.logger.child({ component: 'cluster-state' })
    this.engine = components.automerge ?? defaultEngine()
    this.pool = components.docPool
    this.index = new DocIndex(this.logger, (doc) => this.pool?.readMemo(doc))
  }

  // ---- lifecycle ----

  /** Idempotent: a second call while starting shares the first one's outcome. */
  start(): Promise<void> {
    if (this.lifecycle === 'starting' && this.starting !== undefined) return this.starting
    if (this.lifecycle !== 'stopped') return Promise.resolve()
    this.lifecycle = 'starting'
    this.starting = this.load().finally(() => {
      this.starting = undefined
    })
    return this.starting
  }

  private async load(): Promise<void> {
    try {
      await this.store.open()
      const boot = await recordBoot(this.store)
      const actor = deriveActorId(this.selfId, boot, this.clock.nowMs())
      const pool = this.pool
      const loaded = await loadDocument(this.store, actor, this.logger, this.engine, pool === undefined ? undefined : (digest) => pool.acquireLoaded(digest))
      // Idempotent: a loaded document already holds genesis (a shared one was given it by its loader). Only epoch 0's
      // document starts from the fixed genesis; a later epoch's starts from its own, which a damaged store gets back from peers.
      if (!loaded.shared && loaded.epoch.epoch === 0) loaded.doc.applyChanges([genesisChange()])
      this.epochRecord = loaded.epoch
      this.boot = boot
      this.actor = actor
      this.corruptChunks = loaded.corruptBlobs
      this.persistence = new DocPersistence({
        store: this.store,
        logger: this.logger,
        compactAfterChunks: this.compactAfterChunks,
        current: () => this.currentDoc(),
        loaded,
        saveMemo: (doc) => this.pool?.readMemo(doc),
      })
      // Pooled once the persistence read what it needs of the loaded handle: an equal pooled document may replace (and free) it.
      const doc = this.repool(loaded.doc)
      this.doc = doc
      const loadedKey = loaded.shared || loaded.snapshotDigest === undefined ? undefined : pool?.keyOf(doc)
      if (loadedKey !== undefined) pool!.noteLoaded(loaded.snapshotDigest!, loadedKey)
      const heads = memoizedHeads(doc, pool?.readMemo(doc))
      this.indexFromCache = this.restoreIndex(await readIndexCache(this.store, heads, this.logger))
      if (!this.indexFromCache) this.buildLoadedIndex(doc)
      this.index.takeTouched() // the first readers scan everything anyway
      this.lifecycle = 'running'
      this.logger.info(
        { heads: heads.length, changes: doc.stats().numChanges, chunks: loaded.chunks.length, corruptChunks: loaded.corruptBlobs, indexFromCache: this.indexFromCache, epoch: loaded.epoch.epoch },
        'cluster state loaded',
      )
    } catch (err) {
      this.lifecycle = 'stopped'
      await this.store.close().catch(() => undefined)
      throw err
    }
  }

  async stop(): Promise<void> {
    // A stop right after start() (not awaited) stops what that start opens.
    await this.starting?.catch(() => undefined)
    if (this.lifecycle !== 'running') return
    this.lifecycle = 'stopping'
    try {
      await this.persistence?.persist()
      await this.keepIndex()
    } catch (err) {
      this.logger.error({ err }, 'cluster state: final flush failed; the unsaved changes come back from peers')
    } finally {
      await this.store.close()
      this.lifecycle = 'stopped'
      // A pooled document is let go (a stopped replica holding it would make its other holders fork); without a pool it stays readable.
      const doc = this.doc
      if (doc !== undefined && this.pool?.keyOf(doc) !== undefined) {
        this.doc = undefined
        // Once Automerge failed, freeing would fail too (and hide why the engine died): the pool just keeps the dead handle.
        if (this.failed === undefined && this.engine.failure() === undefined) this.pool.release(doc)
      }
    }
  }

  // ---- reads ----

  nodes(): NodeEntry[] {
    return this.index.nodes()
  }

  drainingNodes(): readonly string[] {
    return this.index.drainingNodes()
  }

  node(peerId: string): NodeEntry | undefined {
    return this.index.node(peerId)
  }

  deployments(): DeploymentEntry[] {
    return this.index.deployments()
  }

  deployment(id: string): DeploymentEntry | undefined {
    return this.index.deployment(id)
  }

  placements(id: string): ReadonlyMap<number, PlacementEntry> {
    return this.index.placements(id)
  }

  placement(id: string, replica: number): PlacementEntry | undefined {
    return this.index.placement(id, replica)
  }

  statuses(id: string): StatusEntry[] {
    return this.index.statuses(id)
  }

  placementsWonBy(peerId: string): Array<{ deploymentId: string; replica: number }> {
    return this.index.placementsWonBy(peerId)
  }

  statusesReportedBy(peerId: string): Array<{ deploymentId: string; replica: number }> {
    return this.index.statusesReportedBy(peerId)
  }

  // ---- writes ----

  async upsertSelfNode(entry: SelfNodeInput): Promise<void> {
    this.runningDoc() // refuses a stopped or failed state, as the batch would
    // A restart registers what the node registered before. Answered from the index, that write costs a pooled
    // document no fork (a simulator's every node at every start: O(document) each, O(n²) at a cluster's start).
    if (selfNodeUnchanged(this.index.node(this.selfId), entry, this.selfId)) return
    return this.batch((tx) => tx.upsertSelfNode(entry), `node ${this.selfId}`)
  }

  createDeployment(input: CreateDeploymentInput): Promise<DeploymentEntry> {
    return this.batch((tx) => tx.createDeployment(input), `create ${input.id}`)
  }

  setDesired(id: string, desired: DesiredState): Promise<void> {
    return this.batch((tx) => tx.setDesired(id, desired), `desired ${id} ${desired}`)
  }

  bumpEpoch(id: string): Promise<void> {
    return this.batch((tx) => tx.bumpEpoch(id), `restart ${id}`)
  }

  setReplicas(id: string, replicas: number): Promise<void> {
    return this.batch((tx) => tx.setReplicas(id, replicas), `scale ${id} ${replicas}`)
  }

  writePlacement(id: string, replica: number, entry: PlacementInput): Promise<void> {
    return this.batch((tx) => tx.writePlacement(id, replica, entry), `place ${id}/${replica}`)
  }

  reportStatus(id: string, replica: number, entry: StatusInput): Promise<void> {
    return this.batch((tx) => tx.reportStatus(id, replica, entry), `status ${id}/${replica}`)
  }

  clearStatus(id: string, replica: number): Promise<void> {
    return this.batch((tx) => tx.clearStatus(id, replica), `clear ${id}/${replica}`)
  }

  async batch<T>(fn: (tx: ClusterStateTx) => T, message = 'batch'): Promise<T> {
    this.ensureWritableEpoch()
    const doc = this.writableDoc(true)
    try {
      return await this.batchOn(doc, fn, message)
    } finally {
      this.doc = this.repool(this.doc)
    }
  }

  private async batchOn<T>(doc: DocHandle, fn: (tx: ClusterStateTx) => T, message: string): Promise<T> {
    const persistence = this.persistence!
    // Entries hold whole milliseconds (the schema says so); a virtual clock may stand between two.
    const nowMs = Math.floor(this.clock.nowMs())
    let result: T
    try {
      result = fn(createTx(draftRoot(doc), { selfId: this.selfId, nowMs }))
      if (result instanceof Promise) {
        result.catch(() => undefined) // its writes are refused below; its own failure is moot
        throw new LatticeError('INTERNAL', 'batch callback must be synchronous: it runs inside one Automerge change')
      }
    } catch (err) {
      if (isEngineFailure(err)) this.engineFailed(err, 'making a local change')
      doc.rollback()
      throw err
    }
    if (this.guard('making a local change', () => doc.pendingOps()) === 0) return result // nothing changed: no change, no chunk
    const epoch = this.epochRecord?.epoch
    const change = this.guard('making a local change', () => {
      doc.commit(message.slice(0, MESSAGE_LENGTH_MAX), changeTimeSeconds(nowMs))
      return doc.getLastLocalChange()
    })
    persistence.noteChanges(change === null ? undefined : [change])
    if (change !== null) this.index.update(doc, [A.decodeChange(change)])
    await persistence.persist()
    const touched = this.index.takeTouched()
    // A switch meanwhile carried the change into the new epoch (translated): the old bytes must not be gossiped as the new epoch's.
    if (change !== null && this.epochRecord?.epoch === epoch) this.emit(this.localChangeListeners, change)
    this.emit(this.changeListeners, { local: true, ...touched })
    return result
  }

  // ---- change feed ----

  onChange(listener: (event: ClusterChangeEvent) => void): () => void {
    this.changeListeners.add(listener)
    return () => this.changeListeners.delete(listener)
  }

  onLocalChange(listener: (change: Uint8Array) => void): () => void {
    this.localChangeListeners.add(listener)
    return () => this.localChangeListeners.delete(listener)
  }

  // ---- sync surface ----

  heads(): string[] {
    const doc = this.doc
    return doc === undefined ? [] : this.guard('reading the heads', () => [...memoizedHeads(doc, this.pool?.readMemo(doc))])
  }

  changesSince(heads: readonly string[]): Uint8Array[] {
    const doc = this.doc
    if (doc === undefined) return []
    return this.guard('reading changes', () => {
      try {
        return doc.getChanges([...heads])
      } catch (err) {
        if (isEngineFailure(err)) throw err
        throw new LatticeError('VALIDATION_FAILED', `not change hashes: ${(err as Error).message}`)
      }
    })
  }

  applyChanges(changes: readonly Uint8Array[], decoded?: readonly A.DecodedChange[]): Promise<ApplyResult> {
    // Automerge parses every change before applying any, so on failure `doc` is intact.
    return this.applyRemote('not Automerge changes', (doc) => doc.applyChanges([...changes]), false, changes, decoded?.length === changes.length ? decoded : undefined)
  }

  /**
   * The pooled document these changes lead to from `doc`, when another
   * replica already made it: then nothing needs applying. Only when every
   * dependency of the changes is in `doc` or among them (else Automerge
   * would queue some, and the pooled document holds more than applying
   * would give). Given that, a document whose heads are exactly the ones
   * predicted holds exactly `doc`'s history and the changes, duplicates
   * among them or not.
   */
  private reusable(doc: DocHandle, arrival: Arrival, holding: readonly string[] = []): DocHandle | undefined {
    const pool = this.pool
    const key = pool?.keyOf(doc)
    if (pool === undefined || key === undefined) return undefined
    // A whole document merged into ours gives the pooled one at its heads when that one also holds all of ours.
    const after = arrival.kind === 'document' ? headsKey(arrival.heads) : headsKeyAfter(key, arrival.metas)
    if (after === key || !pool.has(after)) return undefined
    if (arrival.kind === 'changes') {
      const hashes = new Set(arrival.metas.map((change) => change.hash))
      const outside = [...new Set(arrival.metas.flatMap((change) => change.deps))].filter((dep) => !hashes.has(dep))
      // Asked through the pooled document's memo: its receivers ask alike.
      if (outside.length > 0 && (doc === this.doc ? this.missingAmong(outside).size > 0 : doc.getMissingDeps(outside).length > 0)) return undefined
    }
    const target = pool.acquire(after)!
    const held = arrival.kind === 'document' && key !== '' ? [...key.split(','), ...holding] : holding
    if (held.length > 0 && target.getMissingDeps([...held]).length > 0) {
      pool.release(target)
      return undefined
    }
    return target
  }

  /**
   * True when `doc` is this replica's pooled document and holds every change
   * that arrived (or, for a whole document, its heads and so its history)
   * and every head in `holding`: receiving them would change nothing. (The
   * heads a sync message names must be held too: then Automerge takes them
   * as the shared heads, as it does after applying the changes; see
   * receiveHeldSyncMessage.)
   */
  private holdsAll(doc: DocHandle, arrival: Arrival, holding: readonly string[]): boolean {
    if (doc !== this.doc || this.pool?.keyOf(doc) === undefined) return false
    const hashes = arrival.kind === 'document' ? arrival.heads : arrival.metas.map((change) => change.hash)
    return hashes.length > 0 && this.missingAmong([...hashes, ...holding]).size === 0
  }

  /**
   * This replica's document, made safe to change: a pooled one is taken out
   * of the pool when no other replica holds it, and forked otherwise (and
   * for a local change, forked too when it writes as another actor).
   */
  private writableDoc(local: boolean): DocHandle {
    const doc = this.runningDoc()
    const pool = this.pool
    if (pool === undefined) return doc
    const pooled = pool.keyOf(doc) !== undefined
    // A document taken from the pool (or detached from it for a peer's changes) may write as another replica.
    const foreign = local && doc.getActorId() !== this.actor
    if (!pooled && !foreign) return doc
    if (pooled && !foreign && !pool.shared(doc)) {
      pool.detach(doc)
      return doc
    }
    const mine = this.guard('forking a shared document', () => forkHandle(doc, this.actor!))
    pool.noteFork()
    this.doc = mine
    if (pooled) pool.release(doc)
    else doc.free()
    return mine
  }

  /** Puts a document this replica holds alone into the pool (or takes the pooled one at the same heads): answers the one to hold. */
  private repool<T extends DocHandle | undefined>(doc: T): T {
    const pool = this.pool
    if (pool === undefined || doc === undefined || this.failed !== undefined || pool.keyOf(doc) !== undefined) return doc
    return this.guard('pooling the document', () => (doc.getMissingDeps().length > 0 ? doc : (pool.adopt(doc, headsKey(doc.getHeads())) as T)))
  }

  entriesTouchedBy(changes: readonly Uint8Array[]): string[][] {
    const decoded: A.DecodedChange[] = []
    for (const change of changes) {
      try {
        decoded.push(A.decodeChange(change))
      } catch {
        // not a change: touches nothing
      }
    }
    const doc = this.runningDoc()
    return this.guard('reading entries', () => this.index.touchedBy(decoded, doc))
  }

  hasChanges(hashes: readonly string[]): boolean {
    return this.missingAmong(hashes).size === 0
  }

  missingAmong(hashes: readonly string[]): Set<string> {
    const doc = this.doc
    if (doc === undefined) return new Set(hashes)
    if (hashes.length === 0) return new Set()
    // A pooled document never changes: what one replica learned of its change graph holds for
    // every other (a gossiped change is asked about by each of its receivers, most on few documents).
    const memo = this.pool?.readMemo(doc)
    if (memo === undefined) return this.missingIn(doc, hashes)
    // One map of hash → held in the memo: a key per hash made two strings per hash per call.
    let held = memo.get(HELD_MEMO) as Map<string, boolean> | undefined
    if (held === undefined) memo.set(HELD_MEMO, (held = new Map()))
    const known = held
    const unasked = hashes.filter((hash) => !known.has(hash))
    if (unasked.length > 0) {
      const missing = this.missingIn(doc, unasked)
      for (const hash of unasked) known.set(hash, !missing.has(hash))
    }
    return new Set(hashes.filter((hash) => known.get(hash) === false))
  }

  private missingIn(doc: DocHandle, hashes: readonly string[]): Set<string> {
    return this.guard('reading the change graph', () => {
      // getMissingDeps answers from the change graph, one call for all the
      // hashes; getChangeMetaByHash would build each change's metadata as a
      // JS object. It names the given hashes not in the history, except those
      // waiting in Automerge's queue, so those are asked for one by one when
      // the queue is not empty (it rarely holds anything: gossip applies a
      // change only once its dependencies are in).
      let missing: string[]
      try {
        missing = doc.getMissingDeps([...hashes])
      } catch (err) {
        if (isEngineFailure(err)) throw err
        if (hashes.length === 1) return new Set(hashes) // malformed hashes are not in any history
        return new Set(hashes.filter((hash) => this.missingIn(doc, [hash]).size > 0))
      }
      if (missing.length === 0) return new Set()
      const named = new Set(missing)
      const queueEmpty = doc.getMissingDeps().length === 0
      return new Set(hashes.filter((hash) => named.has(hash) || (!queueEmpty && doc.getChangeMetaByHash(hash) === null)))
    })
  }

  coveredBy(heads: readonly string[], peerHeads: readonly string[]): boolean {
    const doc = this.doc
    if (heads.length === 0) return true
    if (doc === undefined || !this.hasChanges(heads)) return false
    const peer = new Set(peerHeads)
    if (heads.every((head) => peer.has(head))) return true
    const known = peerHeads.filter((head) => this.hasChanges([head]))
    if (known.length === 0) return false // nothing of theirs known here: cannot tell, and the walk would be the whole history
    // Everything not reachable from the peer's known heads (usually a few recent changes); ours must not be among it.
    const beyond = new Set(this.guard('reading the change graph', () => doc.getChangesMeta(known)).map((meta) => meta.hash))
    return heads.every((head) => !beyond.has(head))
  }

  generateSyncMessage(syncState: SyncState): [SyncState, Uint8Array | null] {
    const doc = this.runningDoc()
    return this.guard('generating a sync message', () => generateSyncMessage(doc, syncState, JOINING_HEADS))
  }

  async receiveSyncMessage(syncState: SyncState, message: Uint8Array): Promise<{ syncState: SyncState; result: ApplyResult }> {
    const doc = this.runningDoc()
    const pooled = this.pool !== undefined && this.pool.keyOf(doc) !== undefined
    const content = pooled ? syncMessageContent(message) : undefined
    if (content !== undefined && content.changes.length === 0) {
      // Most rounds only compare heads: the sync state moves, the pooled document does not (a fork, or leaving the pool, would be wasted).
      const moved = this.guard('receiving a sync message', () => {
        try {
          return receiveSyncMessage(doc, syncState, message)
        } catch (err) {
          if (isEngineFailure(err)) throw err
          throw new LatticeError('VALIDATION_FAILED', `not an Automerge sync message: ${(err as Error).message}`)
        }
      })
      return { syncState: moved, result: { applied: false, invalidEntries: [] } }
    }
    let next = syncState
    const stored = this.persistence?.sizeBytes ?? 0
    const bulk = message.byteLength >= BULK_BYTES_MIN && message.byteLength * BULK_SHARE_DIVISOR >= stored
    const compact = bulk && message.byteLength * BULK_COMPACT_SHARE_DIVISOR >= stored
    const receive = (target: DocHandle): void => {
      // A message that fails to parse throws before it touches the document.
      next = receiveSyncMessage(target, syncState, message)
    }
    const arrival = content === undefined ? undefined : arrivalOf(content.changes, bulk)
    const carried: CarriedChanges | undefined =
      content === undefined || arrival === undefined
        ? undefined
        : {
            changes: content.changes,
            arrival,
            heads: content.heads,
            // The pooled result holds the message's every change and head: Automerge need not parse the changes again.
            receive: (target) => void (next = receiveHeldSyncMessage(target, syncState, content)),
          }
    const result = await this.applyRemote('not an Automerge sync message', receive, bulk, undefined, undefined, undefined, carried, compact)
    return { syncState: next, result }
  }

  mergeSnapshot(snapshot: Uint8Array): Promise<ApplyResult> {
    let replacement: DocHandle | undefined
    return this.applyRemote(
      'not an Automerge document',
      (doc) => {
        // Loaded on its own first: load refuses damaged or truncated bytes, loadIncremental would skip them.
        const other = loadHandle(snapshot, doc.getActorId(), this.engine)
        // Another epoch's document merged in would add its own genesis and section maps beside ours.
        if (other.getChangeMetaByHash(this.epoch().genesis) === null) {
          other.free()
          throw new Error(`not a document of epoch ${this.epoch().epoch} (it lacks that epoch's genesis)`)
        }
        // A snapshot holding all of this replica (a joining node's first
        // sync) replaces it outright: re-applying its every change costs
        // another load. Not when changes wait here for their dependencies.
        const covers = doc.getHeads().every((head) => other.getChangeMetaByHash(head) !== null)
        if (covers && doc.getMissingDeps().length === 0) return (replacement = other)
        try {
          doc.merge(other)
        } finally {
          other.free()
        }
        return doc
      },
      true,
      undefined,
      undefined,
      // The document now is what these bytes hold: they are written as the snapshot, not saved again.
      (next) => (next === replacement ? snapshot : undefined),
    )
  }

  flush(): Promise<void> {
    this.runningDoc()
    return this.persistence!.persist()
  }

  compact(): Promise<void> {
    this.runningDoc()
    return this.persistence!.compact()
  }

  /**
   * The one path for peers' data into the document: apply (synchronously,
   * so no other write interleaves), re-validate what it touched, persist,
   * then tell listeners. `apply` must leave `doc` intact when it throws;
   * it may return a new handle that replaces `doc` (which is then freed).
   * The entries touched are found from the new changes' ops; with `bulk` (a
   * whole document, or a message as large as a good part of it) from the
   * diff of the state, or by re-reading every entry (bulkTouched), cheaper
   * than decoding most of the history. With `compact` (a whole document, or
   * a sync message as large as what is stored) the
   * whole document is written as the snapshot (a compaction) rather than
   * its new changes as one chunk: a fresh node's first sync would otherwise
   * store every change of the cluster uncompressed (9.7 MB for the crdt
   * bench's 0.24 MB document) and load them one by one at its next start. `savedAs` names Automerge.save
   * bytes of the new document, when there are some, to write as they are.
   */
  private async applyRemote(
    what: string,
    apply: (doc: DocHandle) => DocHandle | void,
    bulk = false,
    given?: readonly Uint8Array[],
    givenDecoded?: readonly A.DecodedChange[],
    savedAs?: (next: DocHandle) => Uint8Array | undefined,
    carried?: CarriedChanges,
    compact = bulk,
  ): Promise<ApplyResult> {
    const current = this.runningDoc()
    const persistence = this.persistence!
    // What the new changes touched comes from the changes given, when they
    // are all that can be new: nothing was queued for missing dependencies
    // (Automerge would apply those too). Cheaper than asking the document
    // for the changes since `before`, which walks the change graph.
    const queueEmpty = current.getMissingDeps().length === 0
    let onlyGiven = given !== undefined && queueEmpty
    let reused: DocHandle | undefined
    let before: string[] | undefined
    // What a reused sync message touched is read from the diff (bulkTouched) when its changes were not decoded.
    let touchedByDiff = bulk
    if (carried !== undefined) {
      // A sync message's changes: its receipt is done on the pooled document they lead to (all duplicates there, so it
      // stays as it is), which moves the sync state as receiving them here would once every head the peer named is held.
      reused = queueEmpty ? this.reusable(current, carried.arrival, carried.heads) : undefined
      if (reused === undefined && queueEmpty && this.holdsAll(current, carried.arrival, carried.heads)) {
        // Only changes this replica holds (a peer's sync round crossing a change it already sent us): the sync
        // state moves as if they were applied, the pooled document stays shared (applying would fork it to no end).
        try {
          carried.receive(current)
        } catch (err) {
          if (isEngineFailure(err)) this.engineFailed(err, 'receiving a sync message')
          throw new LatticeError('VALIDATION_FAILED', `${what}: ${(err as Error).message}`)
        }
        return { applied: false, invalidEntries: [] }
      }
      if (reused !== undefined) {
        try {
          carried.receive(reused)
        } catch (err) {
          this.pool!.release(reused)
          if (isEngineFailure(err)) this.engineFailed(err, 'applying remote changes')
          throw new LatticeError('VALIDATION_FAILED', `${what}: ${(err as Error).message}`)
        }
        const decodedAll = carried.arrival.kind === 'changes' ? carried.arrival.decoded : undefined
        if (decodedAll !== undefined) {
          given = carried.changes
          givenDecoded = decodedAll
          onlyGiven = true
        } else {
          before = current.getHeads()
          touchedByDiff = true
        }
      }
    } else if (onlyGiven && givenDecoded !== undefined) reused = this.reusable(current, { kind: 'changes', metas: givenDecoded, decoded: givenDecoded })
    let next: DocHandle
    if (reused !== undefined) {
      this.pool!.noteReuse()
      this.doc = next = reused
      this.pool!.release(current)
    } else {
      const doc = this.writableDoc(false)
      // The heads are read only when the changes since them will be needed:
      // whether anything was applied shows in the change count, and getHeads
      // (a hex string per head, through WASM) was a tenth of a gossip apply.
      before = onlyGiven ? undefined : doc.getHeads()
      const changesBefore = doc.stats().numChanges
      try {
        next = apply(doc) ?? doc
      } catch (err) {
        // Automerge itself failing is not the sender's fault: blaming it would penalise a healthy peer.
        if (isEngineFailure(err)) this.engineFailed(err, 'applying remote changes')
        this.doc = this.repool(this.doc) // refused input leaves it intact
        throw new LatticeError('VALIDATION_FAILED', `${what}: ${(err as Error).message}`)
      }
      if (next !== doc) {
        this.doc = next
        doc.free()
      }
      const unchanged = next === doc ? doc.stats().numChanges === changesBefore : before !== undefined && sameHeads(before, next.getHeads())
      // Pooled again before anything reads it back: a document at the same heads already pooled replaces this one.
      const inPlace = next === doc
      this.doc = next = this.repool(next)
      if (unchanged) return { applied: false, invalidEntries: [] } // duplicates, or waiting for dependencies
      if (!inPlace) givenDecoded = undefined
      else if (onlyGiven && given !== undefined) givenDecoded ??= given.map((change) => A.decodeChange(change))
    }
    // The new changes are the given ones when applied in place or reused; a replaced document is re-read from `before`.
    const decoded = onlyGiven ? givenDecoded : undefined
    // The given changes are what the store lacks, when each is now in the document (none still queued): a pooled
    // result holds them by construction (reusable), and after an apply an empty queue says Automerge took them all
    // (asking for each change by hash was 3 % of a 200-node simulation).
    const named = decoded !== undefined && (reused !== undefined || next.getMissingDeps().length === 0)
    persistence.noteChanges(named ? given : undefined)
    const invalidEntries = this.index.update(next, touchedByDiff ? this.bulkTouched(next, before) : (decoded ?? next.getChanges(before ?? []).map((change) => A.decodeChange(change))))
    const touched = this.index.takeTouched()
    if (compact) await persistence.compact(savedAs?.(next))
    else await persistence.persist()
    this.emit(this.changeListeners, { local: false, ...touched })
    return { applied: true, invalidEntries }
  }

  /**
   * What a bulk merge touched: the entries Automerge's diff from `before`
   * names, when they are at most a BULK_DIFF_SHARE_DIVISOR-th of the index
   * (a node back from a partition receives many changes to a part of the
   * entries: at 10,000 deployments re-reading and re-validating all 30,000
   * costs ~300 ms), else every entry (a fresh node: the diff would name
   * them all).
   */
  private bulkTouched(next: DocHandle, before: readonly string[] | undefined): 'all' | { paths: string[][] } {
    // An empty index (a document of the genesis alone: a fresh node's first merge) is read whole whatever the diff names.
    const entries = this.index.entryCount()
    if (before === undefined || before.length === 0 || entries === 0) return 'all'
    // Each key a merge added is named by the diff: when they alone pass the share, the diff can only answer 'all'
    // (a node that registered into a nearly empty document, then received the cluster's: 10 % of a 200-node seed).
    if (this.guard('reading what a merge changed', () => this.keysAddedAtLeast(next)) * BULK_DIFF_SHARE_DIVISOR > entries) return 'all'
    // The same merge on a pooled document (replicas back from one partition) is diffed once.
    const memo = this.pool?.readMemo(next)
    const memoKey = `diff ${headsKey(before)}`
    let patches = memo?.get(memoKey) as A.Patch[] | undefined
    if (patches === undefined) {
      patches = this.guard('reading what a merge changed', () => next.diff([...before], next.getHeads()))
      memo?.set(memoKey, patches)
    }
    const paths = this.index.touchedByPatches(patches)
    return paths.length * BULK_DIFF_SHARE_DIVISOR > entries ? 'all' : { paths }
  }

  /**
   * At least how many keys `next` holds that the index (still at the
   * document before the merge) does not account for: per section whose
   * keys are its entries, the keys now there beyond those the index holds
   * or found invalid (deployments, several keys each, are not counted).
   */
  private keysAddedAtLeast(next: DocHandle): number {
    let added = 0
    for (const section of ['nodes', 'placements', 'status'] as const) {
      const map = mapAt(next, '_root', section)
      if (map !== undefined) added += Math.max(0, next.length(map) - this.index.keysAccounted(section))
    }
    return added
  }

  saveSnapshot(): Uint8Array {
    const doc = this.currentDoc()
    return this.guard('saving the document', () => doc.save())
  }

  stats(): ClusterStateStats {
    // After a failure the document cannot be asked anything, and health must still answer.
    const doc = this.doc
    const figures = doc === undefined ? { changeCount: 0, headsCount: 0 } : this.tryGuard('reading statistics', () => ({ changeCount: doc.stats().numChanges, headsCount: memoizedHeads(doc, this.pool?.readMemo(doc)).length }))
    const index = this.index
    return {
      sizeBytes: this.persistence?.sizeBytes ?? 0,
      changeCount: figures?.changeCount ?? 0,
      headsCount: figures?.headsCount ?? 0,
      chunks: this.persistence?.chunkCount ?? 0,
      // Getters: counting invalid entries validates the unchecked ones, which a caller after another figure should not pay for.
      get invalidEntries() {
        return index.invalidCount()
      },
      corruptChunks: this.corruptChunks,
      get entriesDecoded() {
        return index.decoded
      },
      get entriesUnchecked() {
        return index.uncheckedCount()
      },
      indexFromCache: this.indexFromCache,
      epoch: this.epochRecord?.epoch ?? 0,
    }
  }

  // ---- epochs ----

  epoch(): EpochRecord {
    if (this.epochRecord === undefined) throw new LatticeError('INTERNAL', 'cluster state has not started')
    return this.epochRecord
  }

  onEpoch(listener: (record: EpochRecord) => void): () => void {
    this.epochListeners.add(listener)
    return () => this.epochListeners.delete(listener)
  }

  enterEpoch(cut: EpochCut & { acceptors?: readonly string[] }): Promise<EpochSwitch> {
    this.runningDoc()
    const current = this.epoch().epoch
    if (cut.epoch !== current + 1) return Promise.reject(new LatticeError('CONFLICT', `cannot enter epoch ${cut.epoch} from epoch ${current}: only the next one`))
    return this.switchEpoch(cut.epoch, [...(cut.acceptors ?? [])].sort(), true, new Map(), (old, actor) => this.nextEpochFrom(old, cut, actor))
  }

  /**
   * The next epoch from `old`. Replicas at one pooled document (the
   * simulator's) plan it once: the plan is a function of the document and
   * the cut; and a pooled new document at the heads the plan leads to is
   * shared rather than built again (it is written to as another actor,
   * which writableDoc forks on the first local write).
   */
  private nextEpochFrom(old: DocHandle, cut: EpochCut, actor: string): NextEpoch {
    const memo = this.pool?.readMemo(old)
    const cutKey = `${cut.epoch} ${[...cut.heads].sort().join(',')}`
    const key = `epoch plan ${cutKey}`
    let plan = memo?.get(key) as (EpochPlan & { headsKey?: string }) | undefined
    if (plan === undefined) {
      const pool = this.pool
      // Every pool of the process shares the cut's genesis and its translations (doc-pool.ts): distinct documents too.
      const genesis = pool?.genesisOf(cutKey, () => buildEpochGenesis(old, cut))
      plan = planNextEpoch(old, cut, genesis, genesis === undefined ? undefined : pool?.translationsOf(genesis))
      memo?.set(key, plan)
    }
    const pooled = plan.headsKey === undefined ? undefined : this.pool?.acquire(plan.headsKey)
    if (pooled !== undefined) return { doc: pooled, genesis: plan.genesis, carried: plan.carried.length }
    const next = materializePlan(plan, actor, this.engine)
    if (memo !== undefined) plan.headsKey = headsKey(next.doc.getHeads())
    return next
  }

  async keptGenesis(epoch: number): Promise<Uint8Array | undefined> {
    const doc = this.runningDoc()
    const kept = await readKeptGenesis(this.store, epoch)
    const current = this.epoch()
    if (kept !== undefined || epoch !== current.epoch || epoch === 0) return kept
    // The current epoch's genesis is in the document (a node that joined in this epoch never stored it).
    const change = this.guard('reading the genesis', () => doc.getChangeByHash(current.genesis))
    return change === null ? undefined : saveGenesisAlone({ change, hash: current.genesis }, this.engine)
  }

  adoptEpoch(snapshot: Uint8Array, record: EpochRecord, intermediate: readonly Uint8Array[] = []): Promise<EpochSwitch> {
    this.runningDoc()
    const current = this.epoch().epoch
    if (record.epoch <= current) return Promise.reject(new LatticeError('CONFLICT', `cannot adopt epoch ${record.epoch} in epoch ${current}: only a later one`))
    let between: EpochGenesis[] | undefined
    try {
      between = intermediate.map((bytes) => readGenesisAlone(bytes))
    } catch (err) {
      return Promise.reject(err)
    }
    // Without every epoch's genesis between, the cut's base of the new epoch describes another document than this one: nothing here translates.
    const translatable = between.length === record.epoch - current - 1
    // The geneses between are kept too: a peer further behind than this node was may need them from us.
    const keep = new Map(translatable ? intermediate.map((bytes, i) => [current + 1 + i, bytes] as const) : [])
    return this.switchEpoch(record.epoch, record.acceptors, translatable, keep, (old, actor) => {
      const from = translatable ? old : createHandle(undefined, this.engine)
      try {
        const next = adoptNextEpoch(from, snapshot, record.genesis, record.epoch, actor, this.engine, translatable ? between : [])
        if (from !== old) {
          this.logger.error(
            { from: current, to: record.epoch, geneses: intermediate.length, needed: record.epoch - current - 1 },
            'adopted an epoch further ahead than the kept geneses reach: changes made here after the last cut this node saw are dropped',
          )
        }
        if (next.genesis.hash !== record.genesis || !sameHeads(next.genesis.base.cut, [...record.cut].sort())) {
          next.doc.free()
          throw new LatticeError('BAD_REQUEST', `the document's genesis does not match epoch ${record.epoch}'s record`)
        }
        return next
      } finally {
        if (from !== old) from.free()
      }
    })
  }

  /**
   * The switch, in the persistence queue (DocPersistence.switchEpoch): the
   * new document replaces the current one, the index is read from it whole,
   * and its snapshot and record are written in one batch. A refused switch
   * (`make` throws) changes nothing.
   */
  private async switchEpoch(
    epoch: number,
    acceptors: readonly string[],
    carriedOver: boolean,
    between: ReadonlyMap<number, Uint8Array>,
    make: (old: DocHandle, actor: string) => NextEpoch,
  ): Promise<EpochSwitch> {
    const persistence = this.persistence!
    let outcome: EpochSwitch | undefined
    const swap = (): { record: EpochRecord; geneses: ReadonlyMap<number, Uint8Array> } => {
      const old = this.runningDoc()
      const actor = deriveActorId(`${this.selfId}/epoch/${epoch}`, this.boot, this.clock.nowMs())
      const changesBefore = this.guard('reading statistics', () => old.stats().numChanges)
      const next = this.guard('moving to a new epoch', () => make(old, actor))
      const record: EpochRecord = { epoch, genesis: next.genesis.hash, cut: [...next.genesis.base.cut], acceptors: [...acceptors] }
      this.actor = actor
      this.epochRecord = record
      if (this.pool !== undefined && this.pool.keyOf(old) !== undefined) this.pool.release(old)
      else old.free()
      const doc = (this.doc = this.repool(next.doc))
      this.guard('reading the new epoch', () => this.index.rebuild(doc, { deferStatuses: true }))
      outcome = { epoch: record, carried: next.carried, carriedOver, changesBefore, changesAfter: this.guard('reading statistics', () => doc.stats().numChanges) }
      // Kept for peers further behind.
      return { record, geneses: new Map([...between, [epoch, saveGenesisAlone(next.genesis, this.engine)]]) }
    }
    await persistence.switchEpoch(swap)
    const { epoch: record } = outcome!
    this.logger.info({ epoch, carried: outcome!.carried, changesBefore: outcome!.changesBefore, changesAfter: outcome!.changesAfter }, 'cluster state moved to a new epoch')
    this.emit(this.changeListeners, { local: false, ...this.index.takeTouched() })
    this.emit(this.epochListeners, record)
    return outcome!
  }

  // ---- internals ----

  /**
   * Restores the index from the cache a stop kept, if any; false when there
   * is none or it fails (a bug's value the shape checks let through): the
   * caller rebuilds, which replaces whatever the failed restore left.
   */
  private restoreIndex(cached: IndexSnapshot | undefined): boolean {
    if (cached === undefined) return false
    try {
      this.index.restore(cached)
      return true
    } catch (err) {
      this.logger.warn({ err }, 'index cache not used: restoring it failed; the index is rebuilt from the document')
      return false
    }
  }

  /**
   * The index of the document just loaded: read and validated from it, or
   * (pooled) taken from the replica that built it at the same heads. Nodes
   * starting from copies of one stored snapshot (the simulator's warm
   * registry) share one loaded document (acquireLoaded), and each read all
   * of it again: at 1,000 nodes that was 14 % of a run. A snapshot of an
   * index built for a document holds for every replica at that document.
   */
  private buildLoadedIndex(doc: DocHandle): void {
    const memo = this.pool?.readMemo(doc)
    const built = memo?.get(LOADED_INDEX_MEMO) as IndexSnapshot | undefined
    if (built !== undefined && this.restoreIndex(built)) return
    // Statuses are validated when first read: a node reads those of its own replicas, not all of them.
    this.index.rebuild(doc, { deferStatuses: true })
    memo?.set(LOADED_INDEX_MEMO, this.index.exportSnapshot())
  }

  /** At a stop, once the document is persisted: the index for the next start (index-cache.ts), if it is large enough to be worth it. */
  private async keepIndex(): Promise<void> {
    const doc = this.doc
    if (doc === undefined || this.failed !== undefined || this.engine.failure() !== undefined) return
    try {
      if (this.index.entryCount() >= this.indexCacheEntriesMin) await writeIndexCache(this.store, doc.getHeads(), this.index.exportSnapshot())
      // Below the bound, the cache this start used (a stale one was deleted then) is stale now: dropped.
      else if (this.indexFromCache) await this.store.del(INDEX_CACHE_KEY)
    } catch (err) {
      this.logger.warn({ err }, 'cluster state: index cache not written; the next start rebuilds the index')
    }
  }

  failure(): string | undefined {
    return this.failed
  }

  onFailure(listener: (reason: string) => void): () => void {
    this.failureListeners.add(listener)
    return () => this.failureListeners.delete(listener)
  }

  /** Latches the failure (logged and announced once; the engine marked dead for its other documents) and throws INTERNAL. */
  private engineFailed(err: unknown, during: string): never {
    this.latchFailure(`Automerge failed while ${during}: ${(err as Error).message}`)
    throw new LatticeError('INTERNAL', this.failed!)
  }

  private latchFailure(reason: string): void {
    if (this.failed !== undefined) return
    this.failed = reason
    this.engine.markFailed(reason)
    this.logger.error({ reason }, 'Automerge failed: the document is gone; restart the node (it reloads from its store)')
    this.emit(this.failureListeners, reason)
  }

  /** Throws INTERNAL once the document failed, or its engine did (another document trapped in it: all of them are gone). */
  private ensureAlive(): void {
    if (this.failed === undefined) {
      const engineFailure = this.engine.failure()
      if (engineFailure !== undefined) this.latchFailure(`another document of this Automerge engine failed: ${engineFailure}`)
    }
    if (this.failed !== undefined) throw new LatticeError('INTERNAL', `cluster state failed (${this.failed}); restart the node: it reloads from its store`)
  }

  /** A call into Automerge: refused once failed; a trap latches the failure. */
  private guard<T>(during: string, call: () => T): T {
    this.ensureAlive()
    try {
      return call()
    } catch (err) {
      if (isEngineFailure(err)) this.engineFailed(err, during)
      throw err
    }
  }

  /** guard, answering undefined instead of throwing once failed. */
  private tryGuard<T>(during: string, call: () => T): T | undefined {
    try {
      return this.guard(during, call)
    } catch (err) {
      if (this.failed !== undefined) return undefined
      throw err
    }
  }

  /**
   * Refuses a write while the document lacks its epoch's genesis (a later
   * epoch's document lost to damage, not yet back from peers): written
   * into, it would make a second set of section maps that the merge with
   * the genesis's would hide.
   */
  private ensureWritableEpoch(): void {
    const doc = this.runningDoc()
    if (this.genesisHeld === doc) return
    const genesis = this.epoch().genesis
    if (this.guard('reading the change graph', () => doc.getChangeMetaByHash(genesis)) === null) {
      throw new LatticeError('INTERNAL', `the document lacks the genesis of epoch ${this.epoch().epoch}; it comes back from peers by sync`)
    }
    this.genesisHeld = doc
  }

  private runningDoc(): DocHandle {
    this.ensureAlive()
    if (this.lifecycle !== 'running' || this.doc === undefined) {
      throw new LatticeError('INTERNAL', `cluster state is ${this.lifecycle}, not running`)
    }
    return this.doc
  }

  private currentDoc(): DocHandle {
    this.ensureAlive()
    if (this.doc === undefined) throw new LatticeError('INTERNAL', 'cluster state has no document')
    return this.doc
  }

  /** A failing listener is logged; it neither fails the write nor starves the other listeners. */
  private emit<E>(listeners: ReadonlySet<(event: E) => void>, event: E): void {
    for (const listener of [...listeners]) {
      try {
        listener(event)
      } catch (err) {
        this.logger.error({ err }, 'cluster state listener failed')
      }
    }
  }
}

/** A sync message decoded (its changes, or a document chunk in their place, and the heads its sender had); undefined for bytes that do not decode (the full path refuses them). */
function syncMessageContent(message: Uint8Array): A.DecodedSyncMessage | undefined {
  try {
    return A.decodeSyncMessage(message)
  } catch {
    return undefined
  }
}

/**
 * What a sync message's changes lead to (Arrival); undefined when they are
 * none or do not read as whole chunks. A message may join several change
 * chunks in one byte string, or carry one whole document. A bulk message's
 * changes are only hashed: what they touched will come from the diff.
 */
function arrivalOf(changes: readonly Uint8Array[], bulk: boolean): Arrival | undefined {
  const chunks: Chunk[] = []
  for (const bytes of changes) {
    const split = splitChunks(bytes)
    if (split === undefined) return undefined
    chunks.push(...split)
  }
  if (chunks.length === 0) return undefined
  if (chunks.length === 1 && chunks[0]!.type === 'document') {
    const heads = documentHeads(chunks[0]!)
    return heads === undefined || heads.length === 0 ? undefined : { kind: 'document', heads }
  }
  if (!bulk) {
    const decoded = decodeAll(chunks.map((chunk) => chunk.bytes))
    return decoded === undefined ? undefined : { kind: 'changes', metas: decoded, decoded }
  }
  const metas: ChangeMeta[] = []
  for (const chunk of chunks) {
    const meta = changeMeta(chunk)
    if (meta === undefined) return undefined
    metas.push(meta)
  }
  return { kind: 'changes', metas }
}

/** Each of `changes` decoded; undefined when one is not a change (a sync message may carry a whole document instead). */
function decodeAll(changes: readonly Uint8Array[]): A.DecodedChange[] | undefined {
  try {
    return changes.map((change) => A.decodeChange(change))
  } catch {
    return undefined
  }
}

function sameHeads(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((head, i) => head === b[i])
}
