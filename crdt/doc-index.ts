/**
 * The validated read model of the document. Every entry is decoded and
 * checked with zod once, when it changes, and kept frozen in a PathTrie per
 * section: reads never touch Automerge, and a change costs the entries it
 * touched (found from Automerge's patches), not the size of the document.
 * That matters in the simulator, where every node applies every change.
 *
 * An invalid entry is left out of every read, logged once with its path
 * (again only if its reason changes) and counted while it stays invalid.
 */
import type { Patch, Prop } from '@automerge/automerge'
import type { z } from 'zod'
import type { Logger } from '../core/index.ts'
import { deepFreeze, fromDocValue, isDocMap } from './doc-codec.ts'
import { ENTRY_DEPTH, SECTIONS, isSectionName, type ClusterDoc, type SectionName } from './document.ts'
import { PathTrie } from './path-trie.ts'
import {
  NodeEntrySchema,
  PlacementEntrySchema,
  REPLICA_KEY_PATTERN,
  ReplicaIndexSchema,
  StatusEntrySchema,
  StoredDeploymentSchema,
  type DeploymentEntry,
  type NodeEntry,
  type PlacementEntry,
  type StatusEntry,
} from './schema.ts'

const REASON_LENGTH_MAX = 500

class InvalidEntryError extends Error {}

/** Decodes one stored entry: plain copy, zod, then the entry must agree with its own path. */
function parseEntry<S extends z.ZodType>(schema: S, raw: unknown): z.output<S> {
  let plain: unknown
  try {
    plain = fromDocValue(raw)
  } catch (err) {
    throw new InvalidEntryError((err as Error).message)
  }
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

function parseReplicaKey(key: string): number {
  const replica = REPLICA_KEY_PATTERN.test(key) ? Number(key) : Number.NaN
  if (!ReplicaIndexSchema.safeParse(replica).success) throw new InvalidEntryError(`replica key ${key} is not a replica index`)
  return replica
}

export function decodeNode(keys: readonly string[], raw: unknown): NodeEntry {
  const entry = parseEntry(NodeEntrySchema, raw)
  expectKey(entry.peerId, keys[0]!, 'peerId')
  return entry
}

export function decodeDeployment(keys: readonly string[], raw: unknown): DeploymentEntry {
  const entry = parseEntry(StoredDeploymentSchema, raw)
  expectKey(entry.id, keys[0]!, 'id')
  return entry
}

export function decodePlacement(keys: readonly string[], raw: unknown): PlacementEntry {
  parseReplicaKey(keys[1]!)
  return parseEntry(PlacementEntrySchema, raw)
}

export function decodeStatus(keys: readonly string[], raw: unknown): StatusEntry {
  const replica = parseReplicaKey(keys[1]!)
  const entry = parseEntry(StatusEntrySchema, raw)
  expectKey(entry.replica, String(replica), 'replica')
  expectKey(entry.peerId, keys[2]!, 'peerId')
  return entry
}

interface InvalidEntry {
  path: string[]
  reason: string
}

/** One section's entries, keyed by their path below the section name. */
class SectionIndex<E> {
  readonly trie = new PathTrie<E>()
  /** Bumped on every change, so sorted views know when to rebuild. */
  version = 0

  constructor(private readonly decode: (keys: readonly string[], raw: unknown) => E) {}

  /** Stores the decoded entry at `keys` or removes it; returns why it is invalid, if it is. */
  refresh(keys: readonly string[], raw: unknown): string | undefined {
    this.version++
    if (raw === undefined) {
      this.trie.delete(keys)
      return undefined
    }
    try {
      this.trie.set(keys, deepFreeze(this.decode(keys, raw)))
      return undefined
    } catch (err) {
      if (!(err instanceof InvalidEntryError)) throw err
      this.trie.delete(keys)
      return err.message
    }
  }

  deleteSubtree(prefix: readonly string[]): void {
    this.version++
    this.trie.deleteSubtree(prefix)
  }
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
      this.cached = [...this.section.trie.entries()].map(([, entry]) => entry).sort(this.compare)
      this.version = this.section.version
    }
    return [...this.cached]
  }
}

const byString = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

export class DocIndex {
  private readonly sections = {
    nodes: new SectionIndex(decodeNode),
    deployments: new SectionIndex(decodeDeployment),
    placements: new SectionIndex(decodePlacement),
    status: new SectionIndex(decodeStatus),
  } as const
  private readonly invalid = new Map<string, InvalidEntry>()
  private readonly sortedNodes = new SortedView(this.sections.nodes, (a, b) => byString(a.peerId, b.peerId))
  private readonly sortedDeployments = new SortedView(
    this.sections.deployments,
    (a, b) => a.createdAtMs - b.createdAtMs || byString(a.id, b.id),
  )

  constructor(private readonly logger: Logger) {}

  // ---- reads ----

  node(peerId: string): NodeEntry | undefined {
    return this.sections.nodes.trie.get([peerId])
  }

  /** Sorted by peerId. */
  nodes(): NodeEntry[] {
    return this.sortedNodes.get()
  }

  deployment(id: string): DeploymentEntry | undefined {
    return this.sections.deployments.trie.get([id])
  }

  /** Every deployment, deleted ones included, sorted by createdAtMs then id. */
  deployments(): DeploymentEntry[] {
    return this.sortedDeployments.get()
  }

  /** Replica index → placement, in replica order. */
  placements(id: string): Map<number, PlacementEntry> {
    const entries = [...this.sections.placements.trie.entries([id])].map(([path, entry]) => [Number(path[1]), entry] as const)
    return new Map(entries.sort((a, b) => a[0] - b[0]))
  }

  placement(id: string, replica: number): PlacementEntry | undefined {
    return this.sections.placements.trie.get([id, String(replica)])
  }

  /** Every replica's reports from every reporter, sorted by replica then peerId. */
  statuses(id: string): StatusEntry[] {
    return [...this.sections.status.trie.entries([id])]
      .map(([, entry]) => entry)
      .sort((a, b) => a.replica - b.replica || byString(a.peerId, b.peerId))
  }

  /** Entries of the current document that failed validation. */
  invalidCount(): number {
    return this.invalid.size
  }

  // ---- maintenance ----

  /** Re-reads the whole document (after a load). */
  rebuild(doc: ClusterDoc): void {
    for (const section of SECTIONS) this.refreshSubtree(doc, section, [])
  }

  /**
   * Re-reads the entries that `patches` touched (every entry for 'all': one
   * pass over the document beats Automerge's patches when a merge touches
   * most of it). Returns the paths of the entries this update found invalid
   * that were not invalid before it: what a peer's change broke, for the
   * sync layer to count and attribute.
   */
  update(doc: ClusterDoc, patches: readonly Patch[] | 'all'): string[][] {
    const before = new Set(this.invalid.keys())
    const touched = new Map<string, Prop[]>()
    let whole = patches === 'all'
    for (const patch of whole ? [] : (patches as readonly Patch[])) {
      const [section] = patch.path
      if (section === undefined) {
        whole = true
        break
      }
      // Sections this version does not know (a newer node's) are not read.
      if (!isSectionName(section)) continue
      const path = patch.path.slice(0, 1 + ENTRY_DEPTH[section])
      touched.set(JSON.stringify(path), path)
    }
    if (whole) this.rebuild(doc)
    else for (const path of touched.values()) this.refreshPath(doc, path)
    const broken: string[][] = []
    for (const [key, entry] of this.invalid) if (!before.has(key)) broken.push(entry.path)
    return broken
  }

  private refreshPath(doc: ClusterDoc, path: readonly Prop[]): void {
    const section = path[0] as SectionName
    const keys = path.slice(1).map(String)
    if (keys.length === ENTRY_DEPTH[section]) this.refreshEntry(section, keys, readAt(doc, path))
    else this.refreshSubtree(doc, section, keys)
  }

  /** Forgets everything under section/prefix, then reads it again from the document. */
  private refreshSubtree(doc: ClusterDoc, section: SectionName, prefix: string[]): void {
    this.sections[section].deleteSubtree(prefix)
    const scope = JSON.stringify([section, ...prefix]).slice(0, -1)
    for (const key of this.invalid.keys()) {
      if (key === `${scope}]` || key.startsWith(`${scope},`)) this.invalid.delete(key)
    }
    const walk = (raw: unknown, keys: string[]): void => {
      if (raw === undefined) return
      if (keys.length === ENTRY_DEPTH[section]) this.refreshEntry(section, keys, raw)
      else if (!isDocMap(raw)) this.markInvalid([section, ...keys], 'expected a map')
      else for (const key of Object.keys(raw)) walk(raw[key], [...keys, key])
    }
    walk(readAt(doc, [section, ...prefix]), prefix)
  }

  private refreshEntry(section: SectionName, keys: string[], raw: unknown): void {
    const reason = this.sections[section].refresh(keys, raw)
    if (reason === undefined) this.invalid.delete(JSON.stringify([section, ...keys]))
    else this.markInvalid([section, ...keys], reason)
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

/** The value at `path` in the document, or undefined when any step is missing or not a container. */
function readAt(doc: ClusterDoc, path: readonly Prop[]): unknown {
  let current: unknown = doc
  for (const prop of path) {
    if (Array.isArray(current) && typeof prop === 'number') current = current[prop]
    else if (isDocMap(current) && typeof prop === 'string') current = current[prop]
    else return undefined
  }
  return current
}
