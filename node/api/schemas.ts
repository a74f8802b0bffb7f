/**
 * Zod schemas of every HTTP route's inputs and outputs. They validate
 * requests, shape responses and generate /openapi.json — one source of truth.
 */
import { z } from 'zod'
import { DeploymentSpecSchema, DesiredStateSchema, ReplicaStateSchema, SPEC_LIMITS } from '../../core/index.ts'

export const ErrorSchema = z.object({
  error: z.object({
    code: z.string().describe('Stable SNAKE_CASE code; assert on this, not the message'),
    message: z.string(),
    details: z.unknown().optional(),
  }),
})

export const RuntimeHealthSchema = z.union([
  z.object({ available: z.literal(true), engine: z.string(), version: z.string() }),
  z.object({ available: z.literal(false), reason: z.string(), hint: z.string() }),
])

export const HealthSchema = z.object({
  ok: z.boolean().describe('false once the cluster document failed (see stateFailure): the node must be restarted'),
  stateFailure: z.string().optional().describe('why the cluster document is gone (Automerge itself failed); a restart reloads it from the store'),
  peerId: z.string(),
  name: z.string(),
  version: z.string(),
  uptimeMs: z.number(),
  runtime: RuntimeHealthSchema.nullable().describe('null until the first reconcile pass has probed the engine'),
  document: z.object({ headsCount: z.number(), sizeBytes: z.number(), changeCount: z.number(), epoch: z.number() }),
})

const ResourceFiguresSchema = z.object({ cpu: z.number(), memoryMB: z.number(), diskMB: z.number(), gpus: z.number() })

export const NodeViewSchema = z.object({
  peerId: z.string(),
  name: z.string(),
  state: z.enum(['alive', 'suspect', 'dead', 'left']),
  self: z.boolean(),
  capacity: ResourceFiguresSchema,
  free: ResourceFiguresSchema,
  labels: z.record(z.string(), z.string()),
  addresses: z.array(z.string()),
  version: z.string(),
  lastSeenMs: z.number().describe('Milliseconds since this node last heard from the peer'),
})
export const NodesResponseSchema = z.object({ nodes: z.array(NodeViewSchema) })

export const IdParamsSchema = z.object({ id: z.string().min(1).max(128).describe('Deployment id, or its name') })
export const IdResponseSchema = z.object({ id: z.string() })
export const CreateQuerySchema = z.object({
  ack: z.enum(['1', 'true', '0', 'false']).optional().describe('1: answer 201 only once another peer holds the deployment too'),
})
export const AckTimeoutResponseSchema = z.object({ id: z.string(), note: z.string() })

export const ReplicaViewSchema = z.object({
  index: z.number().int(),
  generation: z.number().int(),
  nodeId: z.string().nullable(),
  state: ReplicaStateSchema,
  hostPorts: z.record(z.string(), z.number()),
  containerId: z.string().nullable(),
  error: z.string().nullable(),
  restarts: z.number().int(),
  startedAtMs: z.number().nullable(),
  updatedAtMs: z.number().nullable(),
})

export const PlacementRecordSchema = z.object({
  generation: z.number(),
  winners: z.array(z.string()),
  bids: z.array(z.object({ peerId: z.string(), score: z.number(), atMs: z.number() })),
  shortlist: z.array(z.string()),
  closedBy: z.string(),
  openedAtMs: z.number(),
  closedAtMs: z.number(),
  history: z.array(z.object({ generation: z.number(), winners: z.array(z.string()), closedBy: z.string(), closedAtMs: z.number(), reason: z.string() })),
  unschedulableReason: z.string().optional(),
})

export const DeploymentViewSchema = z.object({
  id: z.string(),
  name: z.string(),
  spec: DeploymentSpecSchema,
  desired: DesiredStateSchema,
  phase: z.enum(['pending', 'deploying', 'running', 'degraded', 'stopped', 'failed', 'deleted', 'unschedulable']),
  replicas: z.array(ReplicaViewSchema),
  placement: z.record(z.string(), PlacementRecordSchema).describe('Placement record per replica index: generation, bids, winners, closer'),
  owner: z.string(),
  epoch: z.number().int(),
  createdAtMs: z.number(),
  updatedAtMs: z.number(),
})
export const DeploymentListSchema = z.object({ deployments: z.array(DeploymentViewSchema) })
export const ListQuerySchema = z.object({
  all: z.enum(['true', 'false']).optional().describe('true also lists deleted deployments'),
})

export const ScaleBodySchema = z.strictObject({ replicas: z.number().int().min(0).max(SPEC_LIMITS.replicasMax) })

export const LogsQuerySchema = z.object({
  follow: z.enum(['true', 'false', '1', '0']).optional(),
  tail: z.coerce.number().int().min(0).optional(),
  replica: z.coerce.number().int().min(0).optional().describe('Only this replica; default all replicas on this node'),
})

export const EventsQuerySchema = z.object({
  since: z.coerce.number().int().min(0).optional().describe('Replay buffered events with seq greater than this'),
})
