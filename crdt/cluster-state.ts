/**
 * The cluster state: one Automerge document every node holds (DESIGN.md §4),
 * persisted in the Store, read through a validated index, written through
 * ClusterStateTx. Each write is ONE Automerge change, durable in the store
 * before its promise resolves; then onLocalChange (for gossip) and onChange
 * fire. Remote changes arrive through applyChanges.
 *
 * Only the newest document value is kept: Automerge 3 outdates the old value
 * on every change, so no other module ever holds one.
 */
import * as A from '@automerge/automerge'
import { z } from 'zod'
import { LatticeError, type Clock, type DesiredState, type Logger, type Startable, type Store } from '../core/index.ts'
import { DocIndex } from './doc-index.ts'
import { changeTimeSeconds, deriveActorId, genesisChange, type ClusterDoc } from './document.ts'
import { createTx, type ClusterStateTx } from './mutations.ts'
import { DocPersistence, loadDocument, recordBoot } from './persistence.ts'
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
}

export interface ClusterStateComponents {
  store: Store
  clock: Clock
  logger: Logger
}

export const CLUSTER_STATE_DEFAULTS = {
  compactAfterChunks: 200,
} as const

export interface ClusterChangeEvent {
  /** True for this node's own writes, false for changes applied from peers. */
  local: boolean
}

export interface ClusterStateStats {
  /** Bytes the document occupies in the store (snapshot + chunks). */
  sizeBytes: number
  changeCount: number
  headsCount: number
  /** Chunks since the last snapshot. */
  chunks: number
  /** Entries of the current document that fail validation and are left out of reads. */
  invalidEntries: number
  /** Persisted blobs (snapshot or chunks) skipped as damaged at the last start. */
  corruptChunks: number
}

/** Reads: validated, frozen entries; empty before start. */
export interface ClusterStateReader {
  /** Sorted by peerId. */
  nodes(): NodeEntry[]
  node(peerId: string): NodeEntry | undefined
  /** Deleted ones included; sorted by createdAtMs, then id. */
  deployments(): DeploymentEntry[]
  deployment(id: string): DeploymentEntry | undefined
  /** Replica index → closed round, in replica order. */
  placements(id: string): Map<number, PlacementEntry>
  placement(id: string, replica: number): PlacementEntry | undefined
  /** All replicas, all reporters; sorted by replica, then peerId. */
  statuses(id: string): StatusEntry[]
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
  /** The bytes of each local change, once it is durable (what gossip publishes); returns unsubscribe. */
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
   * change nothing.
   */
  applyChanges(changes: readonly Uint8Array[]): Promise<void>
  /** The whole document (Automerge.save), e.g. for a joining peer. Works after stop; throws before the first start. */
  saveSnapshot(): Uint8Array
  stats(): ClusterStateStats
}

const InitSchema = z.object({
  selfId: PeerIdSchema,
  compactAfterChunks: z.number().int().min(1).default(CLUSTER_STATE_DEFAULTS.compactAfterChunks),
})

/** Change messages are stored in every change forever: keep them short. */
const MESSAGE_LENGTH_MAX = 120

export function createClusterState(init: ClusterStateInit): (components: ClusterStateComponents) => ClusterState {
  const parsed = InitSchema.safeParse(init)
  if (!parsed.success) throw new LatticeError('VALIDATION_FAILED', `invalid cluster state init: ${z.prettifyError(parsed.error)}`)
  const options = parsed.data
  return (components) => new AutomergeClusterState(options, components)
}

type Lifecycle = 'stopped' | 'starting' | 'running' | 'stopping'

class AutomergeClusterState implements ClusterState {
  readonly selfId: string
  private readonly compactAfterChunks: number
  private readonly store: Store
  private readonly clock: Clock
  private readonly logger: Logger
  private readonly index: DocIndex
  private readonly changeListeners = new Set<(event: ClusterChangeEvent) => void>()
  private readonly localChangeListeners = new Set<(change: Uint8Array) => void>()
  private lifecycle: Lifecycle = 'stopped'
  private starting: Promise<void> | undefined
  private doc: A.Doc<ClusterDoc> | undefined
  private persistence: DocPersistence | undefined
  private corruptChunks = 0

  constructor(options: z.output<typeof InitSchema>, components: ClusterStateComponents) {
    this.selfId = options.selfId
    this.compactAfterChunks = options.compactAfterChunks
    this.store = components.store
    this.clock = components.clock
    this.logger = components.logger.child({ component: 'cluster-state' })
    this.index = new DocIndex(this.logger)
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
      const loaded = await loadDocument(this.store, actor, this.logger)
      // Idempotent: a loaded document already holds genesis.
      const [doc] = A.applyChanges(loaded.doc, [genesisChange()])
      this.doc = doc
      this.corruptChunks = loaded.corruptBlobs
      this.persistence = new DocPersistence({
        store: this.store,
        logger: this.logger,
        compactAfterChunks: this.compactAfterChunks,
        current: () => this.currentDoc(),
        loaded,
      })
      this.index.rebuild(doc)
      this.lifecycle = 'running'
      this.logger.info(
        { heads: A.getHeads(doc).length, changes: A.stats(doc).numChanges, chunks: loaded.chunks.length, corruptChunks: loaded.corruptBlobs },
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
    } catch (err) {
      this.logger.error({ err }, 'cluster state: final flush failed; the unsaved changes come back from peers')
    } finally {
      await this.store.close()
      this.lifecycle = 'stopped'
    }
  }

  // ---- reads ----

  nodes(): NodeEntry[] {
    return this.index.nodes()
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

  placements(id: string): Map<number, PlacementEntry> {
    return this.index.placements(id)
  }

  placement(id: string, replica: number): PlacementEntry | undefined {
    return this.index.placement(id, replica)
  }

  statuses(id: string): StatusEntry[] {
    return this.index.statuses(id)
  }

  // ---- writes ----

  upsertSelfNode(entry: SelfNodeInput): Promise<void> {
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
    const doc = this.runningDoc()
    const persistence = this.persistence!
    const nowMs = this.clock.nowMs()
    const before = A.getHeads(doc)
    const patches: A.Patch[] = []
    let result: T | undefined
    const next = A.change(
      doc,
      {
        message: message.slice(0, MESSAGE_LENGTH_MAX),
        time: changeTimeSeconds(nowMs),
        patchCallback: (batch) => patches.push(...batch),
      },
      (draft) => {
        result = fn(createTx(draft, { selfId: this.selfId, nowMs }))
        if (result instanceof Promise) {
          result.catch(() => undefined) // its writes are refused below; its own failure is moot
          throw new LatticeError('INTERNAL', 'batch callback must be synchronous: it runs inside one Automerge change')
        }
      },
    )
    this.doc = next
    if (sameHeads(before, A.getHeads(next))) return result as T // nothing changed: no change, no chunk
    this.index.update(next, patches)
    const change = A.getLastLocalChange(next)
    await persistence.persist()
    if (change !== undefined) this.emit(this.localChangeListeners, change)
    this.emit(this.changeListeners, { local: true })
    return result as T
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
    return this.doc === undefined ? [] : A.getHeads(this.doc)
  }

  changesSince(heads: readonly string[]): Uint8Array[] {
    if (this.doc === undefined) return []
    try {
      return A.getChangesSince(this.doc, [...heads])
    } catch (err) {
      throw new LatticeError('VALIDATION_FAILED', `not change hashes: ${(err as Error).message}`)
    }
  }

  async applyChanges(changes: readonly Uint8Array[]): Promise<void> {
    const doc = this.runningDoc()
    const persistence = this.persistence!
    const before = A.getHeads(doc)
    const patches: A.Patch[] = []
    let next: A.Doc<ClusterDoc>
    try {
      ;[next] = A.applyChanges(doc, [...changes], { patchCallback: (batch) => patches.push(...batch) })
    } catch (err) {
      // Automerge parses every change before applying any, so `doc` is intact.
      throw new LatticeError('VALIDATION_FAILED', `not Automerge changes: ${(err as Error).message}`)
    }
    this.doc = next
    if (sameHeads(before, A.getHeads(next))) return // duplicates, or waiting for dependencies
    this.index.update(next, patches)
    await persistence.persist()
    this.emit(this.changeListeners, { local: false })
  }

  saveSnapshot(): Uint8Array {
    return A.save(this.currentDoc())
  }

  stats(): ClusterStateStats {
    const doc = this.doc
    return {
      sizeBytes: this.persistence?.sizeBytes ?? 0,
      changeCount: doc === undefined ? 0 : A.stats(doc).numChanges,
      headsCount: doc === undefined ? 0 : A.getHeads(doc).length,
      chunks: this.persistence?.chunkCount ?? 0,
      invalidEntries: this.index.invalidCount(),
      corruptChunks: this.corruptChunks,
    }
  }

  // ---- internals ----

  private runningDoc(): A.Doc<ClusterDoc> {
    if (this.lifecycle !== 'running' || this.doc === undefined) {
      throw new LatticeError('INTERNAL', `cluster state is ${this.lifecycle}, not running`)
    }
    return this.doc
  }

  private currentDoc(): A.Doc<ClusterDoc> {
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

function sameHeads(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((head, i) => head === b[i])
}
