/**
 * The validated read model of the document. Every entry is decoded and
 * checked with zod once, when it changes, and kept frozen in a PathTrie per
 * section, keyed by the parts of its key (id, replica, peer): reads never
 * touch Automerge, and a change costs the entries it touched, not the size
 * of the document. That matters in the simulator, where every node applies
 * every change.
 *
 * Every entry sits directly in its section (document.ts), so what a change
 * touched is read from its ops, not from Automerge patches (whose paths
 * cost a walk of the parent map, i.e. of every deployment): an op on a
 * section map touches the entry at its key; an op on any other object
 * touches the entry that object lies in, located by its path in the
 * document (objInfo). An object with no path is one no read can see (the
 * losing side of a conflict, or inside a deleted value): visibility only
 * ever changes through an op on a visible parent's key. Entries are read
 * with one materialize call each, and a whole section at once on a rebuild.
 *
 * An invalid entry is left out of every read, logged once with its path
 * (section and key; again only if its reason changes) and counted while it
 * stays invalid.
 */
import type { DecodedChange, Patch } from '@automerge/automerge'
import type { z } from 'zod'
import type { Logger } from '../core/index.ts'
import { DocReadError, deepFreeze, type DocMap } from './doc-codec.ts'
import { mapAt, plainValue, readValue, type DocHandle, type ObjId } from './doc-handle.ts'
import { ENTRY_KEY_PARTS, KEY_SEPARATOR, SECTIONS, entryKeyOf, gatherDeployment, gatherDeployments, isSectionName, splitEntryKey, type SectionName } from './document.ts'
import { ASK_ZOD, fastAccept } from '../core/fast-accept.ts'
import { PathTrie } from './path-trie.ts'
import {
  IdSchema,
  NodeEntrySchema,
  PeerIdSchema,
  REPLICA_KEY_PATTERN,
  ReplicaIndexSchema,
  StoredDeploymentSchema,
  StoredPlacementSchema,
  StoredStatusSchema,
  type DeploymentEntry,
  type NodeEntry,
  type PlacementEntry,
  type StatusEntry,
} from './schema.ts'

const REASON_LENGTH_MAX = 500
const PROTO_KEY = '__proto__'

export class InvalidEntryError extends Error {}

/**
 * Validates one stored entry (plain data, see readValue) with zod; the
 * decoders then check it against its key. The fast path (fast-accept.ts)
 * returns zod's output where it is certain zod accepts; zod decides the rest.
 */
function parseEntry<S extends z.ZodType>(schema: S, plain: unknown): z.output<S> {
  const fast = fastAccept(schema, plain)
  if (fast !== ASK_ZOD) return fast
  const result = schema.safeParse(plain)
  if (!result.success) {
    const reason = result.error.issues.map((issue) => `${issue.path.join('.') || '(entry)'}: ${issue.message}`).join('; ')
    throw new InvalidEntryError(reason)
  }
  return result.data
}

function expectKey(actual: string | number, key: string, field: string): void {
  if (String(actual) !== key) throw new InvalidEntryError(`${field} ${String(actual)} does not match its key ${key}`)
}

/** A deployment id or peer id taken from an entry's key (where nothing else states it). */
function parseKeyId(schema: z.ZodType<string>, key: string, what: string): string {
  if (fastAccept(schema, key) === ASK_ZOD && !schema.safeParse(key).success) throw new InvalidEntryError(`${what} ${key} in the key is not an id`)
  return key
}

function parseReplicaKey(key: string): number {
  const replica = REPLICA_KEY_PATTERN.test(key) ? Number(key) : Number.NaN
  if (fastAccept(ReplicaIndexSchema, replica) === ASK_ZOD && !ReplicaIndexSchema.safeParse(replica).success) throw new InvalidEntryError(`replica ${key} in the key is not a replica index`)
  return replica
}

// The decoders take the parts of the entry's key (splitEntryKey) and what is stored there, as plain data.

export function decodeNode(keys: readonly string[], raw: unknown): NodeEntry {
  const entry = parseEntry(NodeEntrySchema, raw)
  expectKey(entry.peerId, keys[0]!, 'peerId')
  return entry
}

/** `raw`: the deployment's keys gathered (document.ts, gatherDeployment); fields never written take their defaults. */
export function decodeDeployment(keys: readonly string[], raw: unknown): DeploymentEntry {
  const stored = parseEntry(StoredDeploymentSchema, raw)
  const { definition } = stored
  expectKey(definition.id, keys[0]!, 'id')
  return {
    ...definition,
    name: definition.spec.name,
    desired: stored.desired ?? 'running',
    replicas: stored.replicas ?? definition.spec.replicas,
    epoch: stored.epoch ?? 1,
    updatedAtMs: stored.updatedAtMs ?? definition.createdAtMs,
  }
}

export function decodePlacement(keys: readonly string[], raw: unknown): PlacementEntry {
  parseKeyId(IdSchema, keys[0]!, 'deployment id')
  parseReplicaKey(keys[1]!)
  return parseEntry(StoredPlacementSchema, raw)
}

export function decodeStatus(keys: readonly string[], raw: unknown): StatusEntry {
  parseKeyId(IdSchema, keys[0]!, 'deployment id')
  const replica = parseReplicaKey(keys[1]!)
  const peerId = parseKeyId(PeerIdSchema, keys[2]!, 'peer id')
  return { peerId, replica, ...parseEntry(StoredStatusSchema, raw) }
}

interface InvalidEntry {
  path: string[]
  reason: string
}

/** One entry of an IndexSnapshot: its key's parts, whether it is unchecked, and its decoded value (or, unchecked, what was read). */
export type SnapshotEntry = [keys: string[], unchecked: 0 | 1, value: unknown]

/**
 * A DocIndex as plain data, to restore without reading the document or
 * validating anything (index-cache.ts keeps one in the store).
 */
export interface IndexSnapshot {
  sections: Record<SectionName, SnapshotEntry[]>
  invalid: InvalidEntry[]
}

/**
 * An entry read from the document at load and not validated yet: validated
 * (and replaced by its decoded value, or dropped as invalid) the first time
 * anything reads it. Only status entries are deferred: a node reads the
 * statuses of the replicas it runs, and of a deployment when asked about it,
 * not the whole section, and they are a third of a large document.
 */
class Unchecked {
  constructor(readonly raw: unknown) {}
}

/**
 * Called when the entry at `keys` is replaced or removed (before and after:
 * undefined when absent). An Unchecked one counts as present: an invalid
 * one is removed (and the listener told) when it is found out.
 */
type EntryListener<E> = (keys: readonly string[], before: E | Unchecked | undefined, after: E | Unchecked | undefined, foundInvalid: boolean) => void

/** An entry as checked: decoded and frozen (undefined when absent or invalid), and why it is invalid. Immutable: replicas share it. */
interface CheckedEntry<E> {
  readonly entry: E | undefined
  readonly reason: string | undefined
}

/** One section's entries, keyed by their path below the section name. */
class SectionIndex<E> {
  readonly trie = new PathTrie<E | Unchecked>()
  /** Bumped on every change, so sorted views know when to rebuild. */
  version = 0
  /** Bumped by clear() alone: the one change the entry listener is not told of. */
  clears = 0
  /** Unchecked entries in the trie. */
  unchecked = 0
  /** Unchecked entries validated so far (each once). */
  resolved = 0

  constructor(
    private readonly decode: (keys: readonly string[], raw: unknown) => E,
    private readonly onEntry: EntryListener<E>,
    /** Told of each unchecked entry found invalid when it is first read (resolve). */
    private readonly onFoundInvalid: (keys: readonly string[], reason: string) => void = () => undefined,
  ) {}

  /** The validated entry at `keys` (resolving an unchecked one). */
  get(keys: readonly string[]): E | undefined {
    return this.resolve(keys, this.trie.get(keys))
  }

  /** Validated entries under `prefix`, with their keys (resolving unchecked ones). */
  entries(prefix: readonly string[] = []): Array<[string[], E]> {
    const out: Array<[string[], E]> = []
    for (const [keys, found] of [...this.trie.entries(prefix)]) {
      const entry = this.resolve(keys, found)
      if (entry !== undefined) out.push([keys, entry])
    }
    return out
  }

  /** Validates every unchecked entry. */
  resolveAll(): void {
    if (this.unchecked > 0) this.entries()
  }

  /** `raw` at `keys` checked: the decoded, frozen entry, or why it is invalid. Changes nothing. */
  checked(keys: readonly string[], raw: unknown): CheckedEntry<E> {
    const entry = this.check(keys, raw)
    return { entry, reason: this.reason }
  }

  /**
   * Stores what `checked` gave (for the same raw value, perhaps in another
   * replica's index) at `keys`, or removes the entry; returns why it is
   * invalid, if it is. `absent`: nothing is stored at `keys` (a section
   * being read anew), so there is nothing to look up and replace.
   */
  store(keys: readonly string[], checked: CheckedEntry<E>, absent = false): string | undefined {
    this.replace(keys, checked.entry, absent)
    return checked.reason
  }

  /** Stores an entry already decoded and frozen (an index cache's): trusted, not checked again. */
  put(keys: readonly string[], entry: E): void {
    this.replace(keys, entry, true)
  }

  /** Entries held, unchecked ones included. */
  size(): number {
    return this.held
  }

  /** Kept by every write: a bulk merge asks for the count, and walking the trie for it was a fifth of what a healed partition's nodes allocated. */
  private held = 0

  /** Every entry as stored: decoded, or Unchecked. */
  stored(): Array<[string[], E | Unchecked]> {
    return [...this.trie.entries()]
  }

  /** Stores `raw` at `keys` unchecked: validated when first read (resolve). */
  defer(keys: readonly string[], raw: unknown, absent = false): void {
    this.replace(keys, new Unchecked(raw), absent)
  }

  /**
   * The entry `found` at `keys`, validated: an Unchecked one is checked now
   * and replaced by its decoded value, or removed and reported.
   */
  private resolve(keys: readonly string[], found: E | Unchecked | undefined): E | undefined {
    if (!(found instanceof Unchecked)) return found
    const entry = this.check(keys, found.raw)
    const reason = this.reason
    this.unchecked--
    this.resolved++
    if (entry === undefined) {
      this.trie.delete(keys)
      this.held--
      this.version++
      this.onEntry(keys, found, undefined, true)
    } else {
      this.trie.set(keys, entry) // the same entry as far as readers can tell: no version bump, no listener
    }
    if (reason !== undefined) this.onFoundInvalid(keys, reason)
    return entry
  }

  /** Forgets every entry without telling the listener (whoever clears a section clears what it fed too). */
  clear(): void {
    this.version++
    this.clears++
    this.unchecked = 0
    this.held = 0
    this.trie.deleteSubtree([])
  }

  deleteSubtree(prefix: readonly string[]): void {
    this.version++
    for (const [keys, entry] of [...this.trie.entries(prefix)]) {
      if (entry instanceof Unchecked) this.unchecked--
      this.held--
      this.onEntry(keys, entry, undefined, false)
    }
    this.trie.deleteSubtree(prefix)
  }

  /** Why the last entry check() refused is invalid (undefined: valid, or absent). A field, not a result object: check runs per entry by the ten thousand. */
  private reason: string | undefined

  /** The decoded, frozen entry, or undefined (absent, or invalid: then this.reason says why). */
  private check(keys: readonly string[], raw: unknown): E | undefined {
    this.reason = undefined
    if (raw instanceof DocReadError) {
      this.reason = raw.message
      return undefined
    }
    if (raw === undefined) return undefined
    try {
      return deepFreeze(this.decode(keys, raw))
    } catch (err) {
      if (!(err instanceof InvalidEntryError)) throw err
      this.reason = err.message
      return undefined
    }
  }

  private replace(keys: readonly string[], after: E | Unchecked | undefined, absent: boolean): void {
    this.version++
    const before = absent ? undefined : this.trie.get(keys)
    if (before instanceof Unchecked) this.unchecked--
    if (after instanceof Unchecked) this.unchecked++
    this.held += (after === undefined ? 0 : 1) - (before === undefined ? 0 : 1)
    if (after === undefined) this.trie.delete(keys)
    else this.trie.set(keys, after)
    this.onEntry(keys, before, after, false)
  }
}

/** Replica keys (`id/replica`) per peer, for "what does this peer hold or report" without a scan. */
class ReplicasByPeer {
  private readonly byPeer = new Map<string, Map<string, { deploymentId: string; replica: number }>>()

  add(peerId: string, deploymentId: string, replica: number): void {
    let held = this.byPeer.get(peerId)
    if (held === undefined) this.byPeer.set(peerId, (held = new Map()))
    held.set(`${deploymentId}/${replica}`, { deploymentId, replica })
  }

  remove(peerId: string, deploymentId: string, replica: number): void {
    const held = this.byPeer.get(peerId)
    if (held === undefined) return
    held.delete(`${deploymentId}/${replica}`)
    if (held.size === 0) this.byPeer.delete(peerId)
  }

  clear(): void {
    this.byPeer.clear()
  }

  of(peerId: string): Array<{ deploymentId: string; replica: number }> {
    return [...(this.byPeer.get(peerId)?.values() ?? [])]
  }
}

/** What changed since the last `takeTouched`: deployment ids (any of their sections) and whether the registry did. */
export interface TouchedEntries {
  deployments: Set<string> | 'all'
  nodes: boolean
}

/** A sorted array view of a section, rebuilt only when the section changed. */
class SortedView<E> {
  private cached: E[] = []
  private version = -1

  constructor(
    private readonly section: SectionIndex<E>,
    private readonly compare: (a: E, b: E) => number,
  ) {}

  get(): E[] {
    if (this.version !== this.section.version) {
      this.cached = this.section.entries().map(([, entry]) => entry).sort(this.compare)
      this.version = this.section.version
    }
    return [...this.cached]
  }
}

/** What `read` returns, or the DocReadError it throws (an entry too deep or too large to read: invalid). */
function docRead(read: () => unknown): unknown {
  try {
    return read()
  } catch (err) {
    if (!(err instanceof DocReadError)) throw err
    return err
  }
}

/** A value materialize returned, checked against the read bounds (plainValue), or the DocReadError it throws. */
function plainRead(materialized: unknown): unknown {
  try {
    return plainValue(materialized)
  } catch (err) {
    if (!(err instanceof DocReadError)) throw err
    return err
  }
}

/**
 * Where checked entries are shared (a pooled document's read memo), and how
 * their raw values were read: a whole section's materialize and an entry's
 * own reads bound a deployment's fields differently (plainValue's budget
 * per read), so each way shares only with itself.
 */
interface SharedCheck {
  memo: Map<string, unknown>
  read: 'entry' | 'section'
}

/** What refreshSection reads of a section: its entries' raw values by key, in document order. */
type SectionRead = 'absent' | 'not a map' | { protoKey: boolean; entries: ReadonlyArray<readonly [key: string, raw: unknown]> }

function readSectionFrom(doc: DocHandle, section: SectionName): SectionRead {
  const top = doc.getWithType('_root', section) as [string, unknown] | null
  if (top === null) return 'absent'
  if (top[0] !== 'map') return 'not a map'
  const entries = doc.materialize(top[1] as ObjId) as DocMap
  // Never an entry (no id starts with "_"), and not an own property of what materialize returns: reported by the caller.
  const protoKey = doc.getWithType(top[1] as ObjId, PROTO_KEY) !== null
  if (section === 'deployments') return { protoKey, entries: [...gatherDeployments(entries)].map(([id, stored]) => [id, plainRead(stored)] as const) }
  return { protoKey, entries: Object.keys(entries).map((key) => [key, plainRead(entries[key])] as const) }
}

const winnersOf = (entry: PlacementEntry | Unchecked | undefined): readonly string[] =>
  entry === undefined || entry instanceof Unchecked ? [] : entry.winners

const byString = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

export class DocIndex {
  /** PeerIds of the node entries marked draining, kept as entries change: placement asks on every registry change. */
  private readonly draining = new Set<string>()
  private drainingSorted: readonly string[] | undefined
  private readonly winners = new ReplicasByPeer()
  private readonly reporters = new ReplicasByPeer()
  private touched: TouchedEntries = { deployments: new Set(), nodes: false }
  private readonly touch = (keys: readonly string[]): void => {
    if (this.touched.deployments !== 'all') this.touched.deployments.add(keys[0]!)
  }
  /** placements(id)'s answers by deployment; the placements section's listener drops a deployment's on any change. */
  private readonly placementsCache = new Map<string, ReadonlyMap<number, PlacementEntry>>()
  private placementsClears = 0
  private readonly sections = {
    nodes: new SectionIndex(decodeNode, (keys, _before, after) => {
      this.touched.nodes = true
      const peerId = keys[0]!
      const drains = after !== undefined && !(after instanceof Unchecked) && after.draining === true
      if (drains === this.draining.has(peerId)) return
      if (drains) this.draining.add(peerId)
      else this.draining.delete(peerId)
      this.drainingSorted = undefined
    }),
    deployments: new SectionIndex(decodeDeployment, this.touch),
    placements: new SectionIndex<PlacementEntry>(decodePlacement, (keys, before, after) => {
      this.touch(keys)
      this.placementsCache.delete(keys[0]!)
      const replica = Number(keys[1])
      for (const peer of winnersOf(before)) this.winners.remove(peer, keys[0]!, replica)
      for (const peer of winnersOf(after)) this.winners.add(peer, keys[0]!, replica)
    }),
    // A status's peer and replica are its key's (decodeStatus), so an unchecked entry is listed by its reporter too.
    status: new SectionIndex<StatusEntry>(
      decodeStatus,
      (keys, before, after, foundInvalid) => {
        if (!foundInvalid) this.touch(keys) // an unchecked entry found invalid was never read: nothing changed for readers
        const replica = Number(keys[1])
        if (before !== undefined) this.reporters.remove(keys[2]!, keys[0]!, replica)
        if (after !== undefined) this.reporters.add(keys[2]!, keys[0]!, replica)
      },
      (keys, reason) => this.markInvalid(['status', keys.join(KEY_SEPARATOR)], reason),
    ),
  } as const
  private readonly invalid = new Map<string, InvalidEntry>()
  /** Entries read and validated by a refresh (not counting unchecked entries validated on first read). */
  private refreshed = 0
  /**
   * Where objects lie, by object id, kept across updates: [section] for a
   * section map, [section, key] for an object inside an entry (a node's
   * map and the maps in it). In the simulator objInfo was a fifth of
   * applying a peer's change. An object never moves: it stays under the key
   * it was made at, so a remembered place can only have become invisible
   * (overwritten, deleted, a conflict's losing side), and an op on it then
   * costs one needless re-read of that entry, never a missed one. A write on
   * the root (a section replaced) clears it all the same. Its size follows
   * the objects made, a few per node entry. Objects made by the changes
   * being indexed are placed from the op that makes them.
   */
  private readonly objectPlaces = new Map<string, string[]>()
  private readonly sortedNodes = new SortedView(this.sections.nodes, (a, b) => byString(a.peerId, b.peerId))
  private readonly sortedDeployments = new SortedView(
    this.sections.deployments,
    (a, b) => a.createdAtMs - b.createdAtMs || byString(a.id, b.id),
  )

  /**
   * `readMemo`: where values read from a document may be kept for other
   * readers of the same unchanging document (doc-pool.ts), if anywhere.
   */
  constructor(
    private readonly logger: Logger,
    private readonly readMemo: (doc: DocHandle) => Map<string, unknown> | undefined = () => undefined,
  ) {}

  // ---- reads ----

  node(peerId: string): NodeEntry | undefined {
    return this.sections.nodes.get([peerId])
  }

  /** Sorted by peerId. */
  nodes(): NodeEntry[] {
    return this.sortedNodes.get()
  }

  /** PeerIds of the nodes marked draining, sorted; without sorting every node (a 1,000-node join re-sorted them on each registration). */
  drainingNodes(): readonly string[] {
    this.drainingSorted ??= Object.freeze([...this.draining].sort(byString))
    return this.drainingSorted
  }

  deployment(id: string): DeploymentEntry | undefined {
    return this.sections.deployments.get([id])
  }

  /** Every deployment, deleted ones included, sorted by createdAtMs then id. */
  deployments(): DeploymentEntry[] {
    return this.sortedDeployments.get()
  }

  /** Replica index → placement, in replica order. */
  placements(id: string): ReadonlyMap<number, PlacementEntry> {
    // Shared until one of the deployment's records changes (the section's listener drops it) or the section is
    // cleared: the placer reads a deployment's records for each candidate and each scan, and rebuilding them from
    // the trie was a tenth of what a partition's nodes allocated.
    const section = this.sections.placements
    if (this.placementsClears !== section.clears) {
      this.placementsCache.clear()
      this.placementsClears = section.clears
    }
    let cached = this.placementsCache.get(id)
    if (cached === undefined) {
      const entries = section.entries([id]).map(([path, entry]) => [Number(path[1]), entry] as const)
      cached = new Map(entries.sort((a, b) => a[0] - b[0]))
      this.placementsCache.set(id, cached)
    }
    return cached
  }

  placement(id: string, replica: number): PlacementEntry | undefined {
    return this.sections.placements.get([id, String(replica)])
  }

  /** Every replica's reports from every reporter, sorted by replica then peerId. */
  statuses(id: string): StatusEntry[] {
    return this.sections.status
      .entries([id])
      .map(([, entry]) => entry)
      .sort((a, b) => a.replica - b.replica || byString(a.peerId, b.peerId))
  }

  /** Replicas whose current placement record names `peerId` among its winners (any deployment state, any replica index). */
  placementsWonBy(peerId: string): Array<{ deploymentId: string; replica: number }> {
    return this.winners.of(peerId)
  }

  /** Replicas `peerId` has a valid status entry for. */
  statusesReportedBy(peerId: string): Array<{ deploymentId: string; replica: number }> {
    const listed = this.reporters.of(peerId)
    if (this.sections.status.unchecked === 0) return listed
    // Unchecked entries are listed by their key: validate them, which unlists the invalid ones.
    for (const { deploymentId, replica } of listed) this.sections.status.get([deploymentId, String(replica), peerId])
    return this.reporters.of(peerId)
  }

  /** What changed since the previous call (a rebuild counts as every deployment). */
  takeTouched(): TouchedEntries {
    const touched = this.touched
    this.touched = { deployments: new Set(), nodes: false }
    return touched
  }

  /** Entries of the current document that failed validation (validating the unchecked ones first). */
  invalidCount(): number {
    this.resolveUnchecked()
    return this.invalid.size
  }

  /** Status entries loaded by rebuild(doc, { deferStatuses }) and not read since: not validated yet. */
  uncheckedCount(): number {
    return this.sections.status.unchecked
  }

  // ---- maintenance ----

  /**
   * Keys of `section` this index accounts for: its entries (unchecked ones
   * included) and its invalid entries. Every key the section held in the
   * document last indexed is one of them.
   */
  keysAccounted(section: SectionName): number {
    const scope = JSON.stringify([section]).slice(0, -1)
    let invalid = 0
    for (const key of this.invalid.keys()) if (key.startsWith(`${scope},`)) invalid++
    return this.sections[section].size() + invalid
  }

  /** Entries held, unchecked ones included (not the invalid ones). */
  entryCount(): number {
    let count = 0
    for (const section of SECTIONS) count += this.sections[section].size()
    return count
  }

  /** Empties the index: every section, the by-peer indexes, invalid entries and object places. */
  private clear(): void {
    this.touched = { deployments: 'all', nodes: true }
    this.objectPlaces.clear()
    this.invalid.clear()
    this.winners.clear()
    this.reporters.clear()
    this.draining.clear()
    this.drainingSorted = undefined
    for (const section of SECTIONS) this.sections[section].clear()
  }

  /** Everything this index holds, as plain data (restore takes it back). */
  exportSnapshot(): IndexSnapshot {
    const sections = {} as Record<SectionName, SnapshotEntry[]>
    for (const section of SECTIONS) {
      sections[section] = this.sections[section].stored().map(([keys, entry]) => (entry instanceof Unchecked ? [keys, 1, entry.raw] : [keys, 0, entry]))
    }
    return { sections, invalid: [...this.invalid.values()] }
  }

  /**
   * Replaces everything with `snapshot`, which exportSnapshot gave for a
   * document with the same heads: nothing is read or validated (its entries
   * were when they were indexed; unchecked ones stay unchecked). Invalid
   * entries are kept with their reasons and logged once, as a count.
   */
  restore(snapshot: IndexSnapshot): void {
    this.clear()
    try {
      for (const section of SECTIONS) {
        const index = this.sections[section] as SectionIndex<unknown>
        for (const [keys, unchecked, value] of snapshot.sections[section]) {
          if (unchecked === 1) index.defer(keys, value, true)
          else index.put(keys, deepFreeze(value))
        }
      }
    } catch (err) {
      this.clear() // nothing half restored stays: a rebuild starts from empty
      throw err
    }
    for (const entry of snapshot.invalid) this.invalid.set(JSON.stringify(entry.path), entry)
    if (this.invalid.size > 0) this.logger.warn({ invalidEntries: this.invalid.size }, 'invalid cluster-state entries skipped (as found when the restored index was built)')
  }

  /** Entries decoded and validated since creation: what a change costs, for tests and metrics. */
  get decoded(): number {
    let count = this.refreshed
    for (const section of SECTIONS) count += this.sections[section].resolved
    return count
  }

  /**
   * Re-reads the whole document (after a load, or a merge that touched most
   * of it). With `deferStatuses` (a node's start), status entries are stored
   * unchecked and validated when first read (or counted: invalidCount);
   * every other entry is validated now.
   */
  rebuild(doc: DocHandle, options: { deferStatuses?: boolean } = {}): void {
    this.touched = { deployments: 'all', nodes: true }
    // The document may be another one (a new epoch's), whose object ids name other objects.
    this.objectPlaces.clear()
    for (const section of SECTIONS) this.refreshSection(doc, section, section === 'status' && options.deferStatuses === true)
  }

  /** Validates every unchecked entry: before anything needs to know which entries are invalid. */
  private resolveUnchecked(): void {
    for (const section of SECTIONS) this.sections[section].resolveAll()
  }

  /**
   * Re-reads the entries that `changes` (just applied to `doc`) touched, or
   * every entry for 'all'. Returns the paths of the entries this update
   * found invalid that were not invalid before it: what a peer's change
   * broke, for the sync layer to count and attribute.
   */
  update(doc: DocHandle, changes: readonly DecodedChange[] | 'all' | { paths: readonly string[][] }): string[][] {
    if (changes === 'all') this.objectPlaces.clear()
    const paths = changes === 'all' ? undefined : 'paths' in changes ? changes.paths : this.touchedBy(changes, doc)
    // An unchecked entry that was already invalid is not one these changes broke: validate what they touch first.
    if (paths === undefined) this.resolveUnchecked()
    else for (const path of paths) this.resolvePath(path)
    const before = new Set(this.invalid.keys())
    if (paths === undefined) this.rebuild(doc)
    else for (const path of paths) this.refreshPath(doc, path)
    const broken: string[][] = []
    for (const [key, entry] of this.invalid) if (!before.has(key)) broken.push(entry.path)
    return broken
  }

  /**
   * Paths of the entries whose visible values a diff of the document
   * (Automerge's patches between two heads) changed: a patch's path starts
   * with the section and the key in it. For a merge too large to decode
   * change by change: the diff costs what changed in the state, not the
   * history that led there.
   */
  touchedByPatches(patches: readonly Patch[]): string[][] {
    const touched = new Map<string, string[]>()
    for (const patch of patches) {
      const [section, key] = patch.path
      if (typeof section !== 'string' || !isSectionName(section)) continue
      // A section put or deleted whole: its objects are new.
      if (key === undefined) this.objectPlaces.clear()
      const path = key === undefined ? [section] : [section, entryKeyOf(section, String(key))]
      touched.set(JSON.stringify(path), path)
    }
    return [...touched.values()]
  }

  /**
   * Paths ([section] or [section, key]) of the entries the ops of `changes`
   * may have changed, located in `doc`: an op on the root names a section;
   * an op on a section map names the entry at its key; an op on any other
   * object names the entry that object lies in, found by the object's path
   * in the document (Automerge's objInfo). An object with no path is not
   * visible (the losing side of a conflict, or inside a deleted value):
   * visibility only ever changes through an op on a visible parent's key.
   */
  touchedBy(changes: readonly DecodedChange[], doc: DocHandle): string[][] {
    const touched = new Map<string, string[]>()
    const add = (path: string[]): void => {
      touched.set(JSON.stringify(path), path)
    }
    if (changes.some((change) => change.ops.some((op) => op.obj === '_root'))) this.objectPlaces.clear()
    const paths = new Map<string, string[] | null>()
    const memo = this.readMemo(doc)
    const pathOf = (obj: string): string[] | null => {
      let path = this.objectPlaces.get(obj) ?? paths.get(obj)
      if (path === undefined) {
        path = memo?.get(`obj ${obj}`) as string[] | null | undefined
        if (path === undefined) {
          try {
            path = doc.objInfo(obj).path?.map(String) ?? null
          } catch {
            path = null // an object this document does not hold
          }
          memo?.set(`obj ${obj}`, path)
        }
        paths.set(obj, path)
        if (path !== null && isSectionName(path[0])) this.objectPlaces.set(obj, path.slice(0, 2))
      }
      return path
    }
    for (const change of changes) {
      change.ops.forEach((op, index) => {
        // An object made here is placed where it is made: its id is implicit
        // in the change (startOp + the op's index), so later ops on it need
        // no objInfo walk.
        const made = op.action.startsWith('make') ? `${change.startOp + index}@${change.actor}` : undefined
        if (op.obj === '_root') {
          // Sections this version does not know (a newer node's) are not read.
          if (isSectionName(op.key)) {
            add([op.key])
            if (made !== undefined) this.objectPlaces.set(made, [op.key])
          }
          return
        }
        const path = pathOf(op.obj)
        if (path === null || !isSectionName(path[0])) return
        const section = path[0]
        if (path.length >= 2) {
          add([section, entryKeyOf(section, path[1]!)])
          if (made !== undefined) this.objectPlaces.set(made, path.slice(0, 2))
        } else if (typeof op.key === 'string') {
          add([section, entryKeyOf(section, op.key)])
          if (made !== undefined) this.objectPlaces.set(made, [section, op.key])
        } else add([section]) // a section that is a list: not ours, re-read to report it
      })
    }
    return [...touched.values()]
  }

  /** Validates the unchecked entries at `path` ([section] or [section, key]). */
  private resolvePath(path: readonly string[]): void {
    const section = this.sections[path[0] as SectionName]
    if (section.unchecked === 0) return
    if (path.length === 1) {
      section.resolveAll()
      return
    }
    const parts = splitEntryKey(path[0] as SectionName, path[1]!)
    if (parts !== undefined) section.get(parts)
  }

  private refreshPath(doc: DocHandle, path: readonly string[]): void {
    const section = path[0] as SectionName
    if (path.length === 1) {
      this.refreshSection(doc, section)
      return
    }
    const key = path[1]!
    const memo = this.readMemo(doc)
    const memoKey = `entry ${section} ${key}`
    if (memo?.has(memoKey) === true) {
      this.refreshEntry(section, key, memo.get(memoKey), false, false, memo && { memo, read: 'entry' })
      return
    }
    const parent = mapAt(doc, '_root', section)
    let raw: unknown
    if (parent === undefined) raw = undefined
    else if (section === 'deployments') raw = docRead(() => gatherDeployment(key, (at) => readValue(doc, parent, at)))
    else raw = docRead(() => readValue(doc, parent, key))
    memo?.set(memoKey, raw)
    this.refreshEntry(section, key, raw, false, false, memo && { memo, read: 'entry' })
  }

  /**
   * Forgets everything in `section`, then reads it again from the document:
   * the whole section in one call into Automerge (materialize), then entry
   * by entry from what it returned.
   */
  private refreshSection(doc: DocHandle, section: SectionName, defer = false): void {
    this.sections[section].deleteSubtree([])
    const scope = JSON.stringify([section]).slice(0, -1)
    for (const key of this.invalid.keys()) {
      if (key === `${scope}]` || key.startsWith(`${scope},`)) this.invalid.delete(key)
    }
    const read = this.readSection(doc, section)
    if (read === 'absent') return
    if (read === 'not a map') {
      this.markInvalid([section], 'expected a map')
      return
    }
    if (read.protoKey) this.markInvalid([section, PROTO_KEY], 'a key named __proto__')
    // Every entry is new to the section, just emptied: nothing to look up and replace.
    const { entries } = read
    const memo = this.readMemo(doc)
    const shared = memo && { memo, read: 'section' as const }
    for (let i = 0; i < entries.length; i++) this.refreshEntry(section, entries[i]![0], entries[i]![1], true, defer, shared)
  }

  /**
   * A section's entries as read from `doc` (raw: plainRead's output), kept
   * in the document's read memo: the replicas that rebuild on one pooled
   * document (nodes joining from the same peer, or back from one partition)
   * materialize it once. Raw values are never changed by whoever decodes
   * them, so one list serves them all.
   */
  private readSection(doc: DocHandle, section: SectionName): SectionRead {
    const memo = this.readMemo(doc)
    const memoKey = `section ${section}`
    const memoized = memo?.get(memoKey) as SectionRead | undefined
    if (memoized !== undefined) return memoized
    const read = readSectionFrom(doc, section)
    memo?.set(memoKey, read)
    return read
  }

  /**
   * Takes the entry read at section[key] (`raw`: undefined when absent, a
   * DocReadError when unreadable) and stores it decoded under its key's
   * parts, or marks it invalid (with a key that does not split into the
   * section's parts, it is never stored). `absent`: the section holds
   * nothing at that key yet. With `defer`, a present entry is stored
   * unchecked, validated when first read.
   */
  private refreshEntry(section: SectionName, key: string, raw: unknown, absent = false, defer = false, shared?: SharedCheck): void {
    const parts = splitEntryKey(section, key)
    if (defer && parts !== undefined && raw !== undefined) {
      this.sections[section].defer(parts, raw, absent)
      if (this.invalid.size > 0) this.invalid.delete(JSON.stringify([section, key]))
      return
    }
    let reason: string | undefined
    if (parts !== undefined) reason = (this.sections[section] as SectionIndex<unknown>).store(parts, this.checkedEntry(section, key, parts, raw, shared), absent)
    else if (raw !== undefined) reason = `key ${key} does not have ${ENTRY_KEY_PARTS[section]} parts separated by ${KEY_SEPARATOR}`
    if (reason !== undefined) this.markInvalid([section, key], reason)
    else if (this.invalid.size > 0) this.invalid.delete(JSON.stringify([section, key]))
  }

  /**
   * The entry at section[key] checked, or taken from the document's read
   * memo where another replica on the same pooled document checked it: the
   * entry at a key of one unchanging document is one raw value, so one
   * check serves every replica (most of a gossip apply in the simulator was
   * each node decoding the same entry).
   */
  private checkedEntry(section: SectionName, key: string, parts: readonly string[], raw: unknown, shared: SharedCheck | undefined): CheckedEntry<unknown> {
    const check = (): CheckedEntry<unknown> => {
      this.refreshed++
      return (this.sections[section] as SectionIndex<unknown>).checked(parts, raw)
    }
    if (shared === undefined) return check() // a node with its own document (every real one): nothing to share
    const memoKey = `checked ${shared.read} ${section} ${key}`
    let checked = shared.memo.get(memoKey) as CheckedEntry<unknown> | undefined
    if (checked === undefined) shared.memo.set(memoKey, (checked = check()))
    return checked
  }

  private markInvalid(path: string[], reason: string): void {
    const key = JSON.stringify(path)
    const bounded = reason.length > REASON_LENGTH_MAX ? `${reason.slice(0, REASON_LENGTH_MAX)}…` : reason
    if (this.invalid.get(key)?.reason !== bounded) {
      this.logger.warn({ path, reason: bounded }, 'invalid cluster-state entry skipped')
    }
    this.invalid.set(key, { path, reason: bounded })
  }
}
