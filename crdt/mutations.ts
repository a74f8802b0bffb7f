/**
 * The writes of the cluster state, applied to the draft of ONE Automerge
 * change (ClusterStateTx). Inputs are validated with zod first; a thrown
 * error inside the change rolls the whole change back.
 *
 * How each entry is written follows from who writes it, and from what a
 * document costs to load: Automerge's load time and memory grow with its
 * ops, so whatever one writer writes whole is ONE string of compact JSON
 * (one op), and only what several writers change concurrently is split into
 * fields (docs/ARCHITECTURE.md, "Document layout"):
 * - nodes[self]: single writer, a map of fields; only changed fields are
 *   written, so history grows by what changed. Few entries, written rarely.
 * - deployments[id]: the definition (id, spec, specVersion, owner,
 *   createdAtMs), one JSON string written once, by the node that creates
 *   it (a new spec version would replace it whole). desired, replicas,
 *   epoch and updatedAtMs, which any node may change, each have their own
 *   key "<id>/<field>", written when they change: a concurrent stop on one
 *   node and scale on another both survive the merge. Until first written
 *   a field holds its default, so a deployment nobody changed costs one op.
 * - placements["<id>/<replica>"]: written whole, one JSON string, so two
 *   concurrent closes of the same round resolve to one of the two records,
 *   never a mix of both.
 * - status["<id>/<replica>/<self>"]: single writer (the reporter, whose
 *   peer id is in the key), written whole as one JSON string when anything
 *   but its time changed.
 * - Everything sits directly in its section: the only maps below one are
 *   nodes' own entries, each made by its node, so no two peers can each
 *   make "the same" map and have the merge hide one of them with
 *   everything written inside it (there is no map to make before a first
 *   status report, or after a scale up).
 */
import { ImmutableString } from '@automerge/automerge'
import type { z } from 'zod'
import { DesiredStateSchema, LatticeError, type DesiredState } from '../core/index.ts'
import { deepFreeze, fromDocValue, isDocMap, jsonEqual, toDocValue, type DocMap, type JsonObject } from './doc-codec.ts'
import { decodeDeployment, decodeNode, decodePlacement, decodeStatus } from './doc-index.ts'
import {
  DEPLOYMENT_FIELDS,
  deploymentFieldKey,
  gatherDeployment,
  placementKey,
  replicaKey,
  statusKey,
  type ClusterDoc,
  type DeploymentField,
  type SectionName,
} from './document.ts'
import {
  CreateDeploymentInputSchema,
  PlacementInputSchema,
  ReplicaCountSchema,
  ReplicaIndexSchema,
  SelfNodeInputSchema,
  StatusInputSchema,
  type CreateDeploymentInput,
  type DeploymentDefinition,
  type DeploymentEntry,
  type NodeEntry,
  type PlacementInput,
  type SelfNodeInput,
  type StatusBody,
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
  /** Writes status[id/replica/selfId]; nothing when only updatedAtMs would change. */
  reportStatus(id: string, replica: number, entry: StatusInput): void
  /** Removes status[id/replica/selfId], if present. */
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

/** The node entry a node writes about itself, given what its entry holds now (the first join's time stays). */
function selfNodeEntry(parsed: z.output<typeof SelfNodeInputSchema>, existing: NodeEntry | undefined, selfId: string, nowMs: number): NodeEntry {
  const { founder, ...rest } = parsed
  // Founding is a fact about the mesh's past: a registration without the flag keeps it.
  const founded = founder === true || existing?.founder === true
  return { ...rest, ...(founded ? { founder: true as const } : {}), peerId: selfId, joinedAtMs: parsed.joinedAtMs ?? existing?.joinedAtMs ?? nowMs, updatedAtMs: parsed.updatedAtMs ?? nowMs }
}

/** Equal but for the update time: writing the entry again would change nothing worth a change. */
function sameNodeEntry(existing: NodeEntry, entry: NodeEntry): boolean {
  return jsonEqual(withoutUpdatedAt(existing), withoutUpdatedAt(entry))
}

/**
 * True when upsertSelfNode(input) would write nothing over `existing` (the
 * entry as the index decoded it): a node re-registering what it registered
 * before. Invalid input answers false, so the write reports it.
 */
export function selfNodeUnchanged(existing: NodeEntry | undefined, input: SelfNodeInput, selfId: string): boolean {
  if (existing === undefined) return false
  const parsed = SelfNodeInputSchema.safeParse(input)
  return parsed.success && sameNodeEntry(existing, selfNodeEntry(parsed.data, existing, selfId, existing.updatedAtMs))
}

export function createTx(draft: ClusterDoc, context: TxContext): ClusterStateTx {
  const { selfId, nowMs } = context

  const requireDeployment = (id: string): DeploymentEntry => {
    const deployments = draft.deployments
    const stored = isDocMap(deployments) ? gatherDeployment(id, (key) => childOf(deployments, key)) : undefined
    const entry = tryDecode(decodeDeployment, [id], stored)
    // An invalid entry is invisible to readers, so it is not found for writers either.
    if (entry === undefined) throw new LatticeError('NOT_FOUND', `deployment ${id} not found`)
    return entry
  }

  const requireLive = (id: string, action: string): DeploymentEntry => {
    const entry = requireDeployment(id)
    if (entry.desired === 'deleted') throw new LatticeError('CONFLICT', `cannot ${action} deployment ${id}: it is deleted`)
    return entry
  }

  /** Writes each of `fields` under its own key "<id>/<field>", where the stored value differs. */
  const writeDeploymentFields = (id: string, fields: Partial<Pick<DeploymentEntry, DeploymentField>>): void => {
    const deployments = section(draft, 'deployments')
    for (const field of DEPLOYMENT_FIELDS) {
      const value = fields[field]
      if (value === undefined) continue
      const key = deploymentFieldKey(id, field)
      if (!storedEquals(childOf(deployments, key), value)) deployments[key] = toDocValue(value)
    }
  }

  const replicaIndex = (replica: number): number => validate(ReplicaIndexSchema, replica, 'replica index')

  return {
    upsertSelfNode(input) {
      const parsed = validate(SelfNodeInputSchema, input, 'node entry')
      const nodes = section(draft, 'nodes')
      const current = childOf(nodes, selfId)
      const existing = tryDecode(decodeNode, [selfId], current)
      const entry = selfNodeEntry(parsed, existing, selfId, nowMs)
      if (existing !== undefined && sameNodeEntry(existing, entry)) return
      if (existing !== undefined && isDocMap(current)) writeFields(current, entry, true)
      else nodes[selfId] = toDocValue(entry)
    },

    createDeployment(input) {
      const { id, spec, owner } = validate(CreateDeploymentInputSchema, input, 'deployment')
      const deployments = section(draft, 'deployments')
      // Taken when anything is stored under the id, a field included: a new deployment must not inherit it.
      if (gatherDeployment(id, (key) => childOf(deployments, key)) !== undefined) {
        throw new LatticeError('CONFLICT', `deployment ${id} already exists`)
      }
      const definition: DeploymentDefinition = { id, spec, specVersion: 1, owner, createdAtMs: nowMs }
      // schema.ts, StoredDeploymentSchema: the definition is one immutable scalar of compact JSON; the
      // fields others may change keep their defaults (running, spec.replicas, epoch 1) until first written.
      deployments[id] = new ImmutableString(JSON.stringify(definition))
      const entry: DeploymentEntry = { ...definition, name: spec.name, desired: 'running', replicas: spec.replicas, epoch: 1, updatedAtMs: nowMs }
      return deepFreeze(entry)
    },

    setDesired(id, desired) {
      const next = validate(DesiredStateSchema, desired, 'desired state')
      const entry = requireDeployment(id)
      if (entry.desired === next) return
      if (entry.desired === 'deleted') throw new LatticeError('CONFLICT', `deployment ${id} is deleted`)
      const restart = entry.desired === 'stopped' && next === 'running'
      writeDeploymentFields(id, { desired: next, updatedAtMs: nowMs, ...(restart ? { epoch: entry.epoch + 1 } : {}) })
    },

    bumpEpoch(id) {
      const entry = requireLive(id, 'restart')
      writeDeploymentFields(id, { epoch: entry.epoch + 1, updatedAtMs: nowMs })
    },

    setReplicas(id, replicas) {
      const count = validate(ReplicaCountSchema, replicas, 'replica count')
      const entry = requireLive(id, 'scale')
      if (entry.replicas === count) return
      writeDeploymentFields(id, { replicas: count, updatedAtMs: nowMs })
    },

    writePlacement(id, replica, input) {
      const index = replicaIndex(replica)
      const entry = validate(PlacementInputSchema, input, 'placement')
      requireDeployment(id)
      const placements = section(draft, 'placements')
      const key = placementKey(id, index)
      const existing = tryDecode(decodePlacement, [id, replicaKey(index)], childOf(placements, key))
      if (existing !== undefined && existing.generation > entry.generation) {
        throw new LatticeError('CONFLICT', `placement ${key} is at generation ${existing.generation}, newer than ${entry.generation}`)
      }
      if (existing !== undefined && jsonEqual(existing, entry)) return
      // schema.ts, StoredPlacementSchema: one immutable scalar of compact JSON.
      placements[key] = new ImmutableString(JSON.stringify(entry))
    },

    reportStatus(id, replica, input) {
      const index = replicaIndex(replica)
      const parsed = validate(StatusInputSchema, input, 'status')
      requireDeployment(id)
      const body: StatusBody = { ...parsed, updatedAtMs: parsed.updatedAtMs ?? nowMs }
      const statuses = section(draft, 'status')
      const key = statusKey(id, index, selfId)
      const existing = tryDecode(decodeStatus, [id, replicaKey(index), selfId], childOf(statuses, key))
      // Reconcilers report on every pass; a report that changes nothing but
      // its time must not grow the history every node keeps forever.
      if (existing !== undefined && jsonEqual(withoutUpdatedAt(existing), withoutUpdatedAt({ ...body, peerId: selfId, replica: index }))) return
      // schema.ts, StoredStatusSchema: one immutable scalar of compact JSON; peerId and replica are in the key.
      statuses[key] = new ImmutableString(JSON.stringify(body))
    },

    clearStatus(id, replica) {
      const index = replicaIndex(replica)
      requireDeployment(id)
      const statuses = draft.status
      const key = statusKey(id, index, selfId)
      if (isDocMap(statuses) && childOf(statuses, key) !== undefined) delete statuses[key]
    },
  }
}
