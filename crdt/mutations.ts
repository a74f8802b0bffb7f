/**
 * The writes of the cluster state, applied to the draft of ONE Automerge
 * change (ClusterStateTx). Inputs are validated with zod first; a thrown
 * error inside the change rolls the whole change back.
 *
 * How each entry is written follows from who writes it:
 * - nodes[self], status[..][self]: single writer; only changed fields are
 *   written, so history grows by what changed.
 * - deployments[id]: any node may change it; field by field, so a concurrent
 *   stop on one node and scale on another both survive the merge.
 * - placements[id][replica]: written whole, as one JSON string, so two
 *   concurrent closes of the same round resolve to one of the two records,
 *   never a mix of both.
 * - Nested maps (placements[id], status[id], status[id][replica]) are made
 *   once, by the writer that introduces the id or replica: two peers each
 *   creating the same map would make two objects, and the merge would hide
 *   one of them with everything written inside it. The one window left is
 *   two nodes scaling the same deployment up concurrently: a report written
 *   into the hidden replica map before the merge is rewritten by the
 *   reporter's next reportStatus, which compares with what is visible.
 */
import { ImmutableString } from '@automerge/automerge'
import type { z } from 'zod'
import { DesiredStateSchema, LatticeError, type DesiredState } from '../core/index.ts'
import { deepFreeze, fromDocValue, isDocMap, jsonEqual, toDocValue, type DocMap, type JsonObject } from './doc-codec.ts'
import { decodeDeployment, decodeNode, decodePlacement, decodeStatus } from './doc-index.ts'
import { replicaKey, type ClusterDoc, type SectionName } from './document.ts'
import {
  CreateDeploymentInputSchema,
  PlacementInputSchema,
  ReplicaCountSchema,
  ReplicaIndexSchema,
  SelfNodeInputSchema,
  StatusInputSchema,
  type CreateDeploymentInput,
  type DeploymentEntry,
  type NodeEntry,
  type PlacementInput,
  type SelfNodeInput,
  type StatusEntry,
  type StatusInput,
} from './schema.ts'

/** The writes, synchronous, all landing in one change (ClusterState.batch). */
export interface ClusterStateTx {
  /** Writes nodes[selfId]; joinedAtMs is kept from the existing entry unless given. */
  upsertSelfNode(entry: SelfNodeInput): void
  /** Throws CONFLICT when the id exists (in any state, deleted included). */
  createDeployment(input: CreateDeploymentInput): DeploymentEntry
  /** stopped → running also bumps the epoch. Leaving `deleted` throws CONFLICT. */
  setDesired(id: string, desired: DesiredState): void
  /** Restart: running containers of an older epoch get replaced. */
  bumpEpoch(id: string): void
  setReplicas(id: string, replicas: number): void
  /** Throws CONFLICT when the stored round has a newer generation. */
  writePlacement(id: string, replica: number, entry: PlacementInput): void
  /** Writes status[id][replica][selfId]; nothing when only updatedAtMs would change. */
  reportStatus(id: string, replica: number, entry: StatusInput): void
  /** Removes status[id][replica][selfId], if present. */
  clearStatus(id: string, replica: number): void
}

export interface TxContext {
  selfId: string
  nowMs: number
}

function validate<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const result = schema.safeParse(value)
  if (!result.success) {
    const reason = result.error.issues.map((issue) => `${issue.path.join('.') || what}: ${issue.message}`).join('; ')
    throw new LatticeError('VALIDATION_FAILED', `invalid ${what}: ${reason}`, result.error.issues)
  }
  return result.data
}

/** An own child (never an inherited property such as `__proto__`). */
function childOf(map: DocMap, key: string): unknown {
  return Object.hasOwn(map, key) ? map[key] : undefined
}

/** The map at map[key], made when missing; a non-map value there is not ours and is replaced. */
function ensureMap(map: DocMap, key: string): DocMap {
  const child = childOf(map, key)
  if (isDocMap(child)) return child
  map[key] = {}
  return map[key] as DocMap
}

/** The section map; genesis made it, so it is only made here for a damaged document. */
function section(draft: ClusterDoc, name: SectionName): DocMap {
  return ensureMap(draft, name)
}

/** Decodes a stored entry (a plain copy of it first), or undefined when absent or invalid. */
function tryDecode<E>(decode: (keys: readonly string[], plain: unknown) => E, keys: readonly string[], raw: unknown): E | undefined {
  if (raw === undefined) return undefined
  try {
    return decode(keys, fromDocValue(raw))
  } catch {
    return undefined
  }
}

/**
 * Writes `next` into `target` touching only what differs: nested maps are
 * recursed into, lists and scalars replaced when unequal. With `removeMissing`,
 * fields of `target` absent from `next` are deleted (a full entry write).
 */
function writeFields(target: DocMap, next: JsonObject, removeMissing: boolean): void {
  if (removeMissing) {
    for (const key of Object.keys(target)) if (next[key] === undefined) delete target[key]
  }
  for (const [key, value] of Object.entries(next)) {
    if (value === undefined) continue
    const current = childOf(target, key)
    if (value !== null && typeof value === 'object' && !Array.isArray(value) && isDocMap(current)) {
      writeFields(current, value, true)
    } else if (!storedEquals(current, value)) {
      target[key] = toDocValue(value)
    }
  }
}

/** Compares a stored value with a plain one (an ImmutableString equals its text). */
function storedEquals(stored: unknown, plain: unknown): boolean {
  if (stored === undefined) return false
  try {
    return jsonEqual(fromDocValue(stored), plain)
  } catch {
    return false // unreadable: rewrite it
  }
}

const withoutUpdatedAt = <E extends { updatedAtMs: number }>(entry: E): Omit<E, 'updatedAtMs'> => {
  const { updatedAtMs: _ignored, ...rest } = entry
  return rest
}

export function createTx(draft: ClusterDoc, context: TxContext): ClusterStateTx {
  const { selfId, nowMs } = context

  const requireDeployment = (id: string): { entry: DeploymentEntry; map: DocMap } => {
    const deployments = draft.deployments
    const raw = isDocMap(deployments) ? childOf(deployments, id) : undefined
    const entry = isDocMap(raw) ? tryDecode(decodeDeployment, [id], raw) : undefined
    // An invalid entry is invisible to readers, so it is not found for writers either.
    if (entry === undefined || !isDocMap(raw)) throw new LatticeError('NOT_FOUND', `deployment ${id} not found`)
    return { entry, map: raw }
  }

  const requireLive = (id: string, action: string): { entry: DeploymentEntry; map: DocMap } => {
    const found = requireDeployment(id)
    if (found.entry.desired === 'deleted') throw new LatticeError('CONFLICT', `cannot ${action} deployment ${id}: it is deleted`)
    return found
  }

  const replicaIndex = (replica: number): string => replicaKey(validate(ReplicaIndexSchema, replica, 'replica index'))

  /** status[id][r] for every r below `replicas`, so reporters never create them concurrently. */
  const ensureReplicaMaps = (id: string, replicas: number): void => {
    const statuses = ensureMap(section(draft, 'status'), id)
    for (let replica = 0; replica < replicas; replica++) ensureMap(statuses, replicaKey(replica))
  }

  return {
    upsertSelfNode(input) {
      const parsed = validate(SelfNodeInputSchema, input, 'node entry')
      const nodes = section(draft, 'nodes')
      const current = childOf(nodes, selfId)
      const existing = tryDecode(decodeNode, [selfId], current)
      const entry: NodeEntry = {
        ...parsed,
        peerId: selfId,
        joinedAtMs: parsed.joinedAtMs ?? existing?.joinedAtMs ?? nowMs,
        updatedAtMs: parsed.updatedAtMs ?? nowMs,
      }
      if (existing !== undefined && jsonEqual(withoutUpdatedAt(existing), withoutUpdatedAt(entry))) return
      if (existing !== undefined && isDocMap(current)) writeFields(current, entry, true)
      else nodes[selfId] = toDocValue(entry)
    },

    createDeployment(input) {
      const { id, spec, owner } = validate(CreateDeploymentInputSchema, input, 'deployment')
      const deployments = section(draft, 'deployments')
      if (childOf(deployments, id) !== undefined) throw new LatticeError('CONFLICT', `deployment ${id} already exists`)
      const entry: DeploymentEntry = {
        id,
        name: spec.name,
        spec,
        specVersion: 1,
        desired: 'running',
        replicas: spec.replicas,
        epoch: 1,
        owner,
        createdAtMs: nowMs,
        updatedAtMs: nowMs,
      }
      // Compact JSON, one immutable scalar per spec version (schema.ts, SpecJsonSchema).
      deployments[id] = toDocValue({ ...entry, spec: JSON.stringify(spec) })
      ensureMap(section(draft, 'placements'), id)
      ensureReplicaMaps(id, entry.replicas)
      return deepFreeze(entry)
    },

    setDesired(id, desired) {
      const next = validate(DesiredStateSchema, desired, 'desired state')
      const { entry, map } = requireDeployment(id)
      if (entry.desired === next) return
      if (entry.desired === 'deleted') throw new LatticeError('CONFLICT', `deployment ${id} is deleted`)
      const restart = entry.desired === 'stopped' && next === 'running'
      writeFields(map, { desired: next, updatedAtMs: nowMs, ...(restart ? { epoch: entry.epoch + 1 } : {}) }, false)
    },

    bumpEpoch(id) {
      const { entry, map } = requireLive(id, 'restart')
      writeFields(map, { epoch: entry.epoch + 1, updatedAtMs: nowMs }, false)
    },

    setReplicas(id, replicas) {
      const count = validate(ReplicaCountSchema, replicas, 'replica count')
      const { entry, map } = requireLive(id, 'scale')
      if (entry.replicas === count) return
      writeFields(map, { replicas: count, updatedAtMs: nowMs }, false)
      ensureReplicaMaps(id, count)
    },

    writePlacement(id, replica, input) {
      const key = replicaIndex(replica)
      const entry = validate(PlacementInputSchema, input, 'placement')
      requireDeployment(id)
      const placements = ensureMap(section(draft, 'placements'), id)
      const existing = tryDecode(decodePlacement, [id, key], childOf(placements, key))
      if (existing !== undefined && existing.generation > entry.generation) {
        throw new LatticeError('CONFLICT', `placement ${id}/${key} is at generation ${existing.generation}, newer than ${entry.generation}`)
      }
      if (existing !== undefined && jsonEqual(existing, entry)) return
      // One immutable scalar of compact JSON (schema.ts, StoredPlacementSchema).
      placements[key] = new ImmutableString(JSON.stringify(entry))
    },

    reportStatus(id, replica, input) {
      const key = replicaIndex(replica)
      const parsed = validate(StatusInputSchema, input, 'status')
      requireDeployment(id)
      const entry: StatusEntry = { ...parsed, peerId: selfId, replica: Number(key), updatedAtMs: parsed.updatedAtMs ?? nowMs }
      const reporters = ensureMap(ensureMap(section(draft, 'status'), id), key)
      const current = childOf(reporters, selfId)
      const existing = tryDecode(decodeStatus, [id, key, selfId], current)
      // Reconcilers report on every pass; a report that changes nothing but
      // its time must not grow the history every node keeps forever.
      if (existing !== undefined && jsonEqual(withoutUpdatedAt(existing), withoutUpdatedAt(entry))) return
      if (existing !== undefined && isDocMap(current)) writeFields(current, entry, true)
      else reporters[selfId] = toDocValue(entry)
    },

    clearStatus(id, replica) {
      const key = replicaIndex(replica)
      requireDeployment(id)
      const statuses = draft.status
      const byReplica = isDocMap(statuses) ? childOf(statuses, id) : undefined
      const reporters = isDocMap(byReplica) ? childOf(byReplica, key) : undefined
      if (isDocMap(reporters) && childOf(reporters, selfId) !== undefined) delete reporters[selfId]
    },
  }
}
