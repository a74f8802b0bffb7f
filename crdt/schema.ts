/**
 * The cluster-state document's entries as zod schemas (DESIGN.md §4). Every
 * entry read back from the document passes through one of these before any
 * code sees it: the document is written by every peer, so its content is
 * input, not truth.
 *
 * Entry schemas are `z.object` (unknown keys stripped, not rejected) so that
 * a newer node may add a field without older nodes dropping its entries.
 * Every string, list and map has a bound (SCHEMA_LIMITS) so that one bad
 * writer cannot make every reader allocate without limit.
 */
import { z } from 'zod'
import { declareStoredJson } from '../core/fast-accept.ts'
import { DeploymentSpecSchema, DesiredStateSchema, LABEL_KEY_PATTERN, ReplicaStateSchema, SPEC_LIMITS } from '../core/index.ts'

export const SCHEMA_LIMITS = {
  idLengthMax: 128,
  nodeNameLengthMax: 128,
  versionLengthMax: 64,
  addressesMax: 32,
  addressLengthMax: 512,
  labelsMax: 32,
  labelValueLengthMax: 63,
  /** A machine with more than this many cores or GPUs is a typo, not a node. */
  cpuMax: 4096,
  gpusMax: 256,
  memoryMBMax: 2 ** 32,
  diskMBMax: 2 ** 40,
  winnersMax: 64,
  bidsMax: 256,
  shortlistMax: 256,
  /** Placement history kept per replica; writers keep the newest entries. */
  placementHistoryMax: 32,
  reasonLengthMax: 512,
  containerIdLengthMax: 128,
  errorLengthMax: 4096,
  hostPortsMax: 2 * SPEC_LIMITS.portsMax,
  /** Guards JSON.parse of a stored deployment definition (its spec); far above any spec SPEC_LIMITS allows in practice. */
  definitionJsonLengthMax: 4 * 1024 * 1024,
  /** Guards JSON.parse of a stored placement; a full one (256 bids, 32 history entries) is ~60 KB. */
  placementJsonLengthMax: 1024 * 1024,
  /** Guards JSON.parse of a stored status; a full one (4 KB error, 32 host ports) is under 6 KB. */
  statusJsonLengthMax: 16 * 1024,
} as const

/**
 * Deployment ids and peer ids: map keys in the document and parts of
 * container names, so no separators, no spaces. libp2p PeerIds (base58btc or
 * base32) fit.
 */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/
export const IdSchema = z.string().max(SCHEMA_LIMITS.idLengthMax).regex(ID_PATTERN, 'id: letters, digits, . _ -, starting with a letter or digit')
export const PeerIdSchema = IdSchema

/** Replica indexes are map keys in the document, written as canonical decimal strings. */
export const ReplicaIndexSchema = z.number().int().min(0).max(SPEC_LIMITS.replicasMax - 1)
export const REPLICA_KEY_PATTERN = /^(0|[1-9][0-9]{0,3})$/
export const ReplicaCountSchema = z.number().int().min(0).max(SPEC_LIMITS.replicasMax)

const TimeMsSchema = z.number().int().min(0)
const CountSchema = z.number().int().min(0)

const LabelsSchema = z
  .record(z.string().regex(LABEL_KEY_PATTERN), z.string().max(SCHEMA_LIMITS.labelValueLengthMax))
  .refine((labels) => Object.keys(labels).length <= SCHEMA_LIMITS.labelsMax, `at most ${SCHEMA_LIMITS.labelsMax} labels`)

export const NodeCapacitySchema = z.object({
  cpu: z.number().min(0).max(SCHEMA_LIMITS.cpuMax),
  memoryMB: z.number().int().min(0).max(SCHEMA_LIMITS.memoryMBMax),
  diskMB: z.number().int().min(0).max(SCHEMA_LIMITS.diskMBMax),
  gpus: z.number().int().min(0).max(SCHEMA_LIMITS.gpusMax),
})

/** nodes[peerId]: the registry entry a node writes about itself. */
export const NodeEntrySchema = z.object({
  peerId: PeerIdSchema,
  name: z.string().min(1).max(SCHEMA_LIMITS.nodeNameLengthMax),
  addresses: z.array(z.string().min(1).max(SCHEMA_LIMITS.addressLengthMax)).max(SCHEMA_LIMITS.addressesMax),
  labels: LabelsSchema,
  capacity: NodeCapacitySchema,
  version: z.string().min(1).max(SCHEMA_LIMITS.versionLengthMax),
  /** Set by `lattice drain`: placement moves this node's replicas away and it takes no new ones. */
  draining: z.boolean().optional(),
  /**
   * The node that created the mesh (its key): the one acceptor of the first
   * epoch agreement (crdt/epoch-keeper.ts). One per mesh, as a mesh key is
   * made once and copied by invites; once set, kept.
   */
  founder: z.literal(true).optional(),
  joinedAtMs: TimeMsSchema,
  updatedAtMs: TimeMsSchema,
})
export type NodeEntry = z.output<typeof NodeEntrySchema>

/**
 * A deployment as readers see it: what the cluster should run. Never
 * removed; `deleted` is a tombstone. Stored as StoredDeploymentSchema.
 */
export const DeploymentEntrySchema = z.object({
  id: IdSchema,
  name: z.string().min(1).max(SPEC_LIMITS.nameLengthMax),
  spec: DeploymentSpecSchema,
  specVersion: z.number().int().min(1),
  desired: DesiredStateSchema,
  /** Current desired replica count; starts at spec.replicas, scale changes it. */
  replicas: ReplicaCountSchema,
  /** Bumped by start and restart so that running containers get replaced. */
  epoch: z.number().int().min(1),
  /** PeerId of the node whose API accepted the deploy. */
  owner: PeerIdSchema,
  createdAtMs: TimeMsSchema,
  updatedAtMs: TimeMsSchema,
})
export type DeploymentEntry = z.output<typeof DeploymentEntrySchema>

export const BidSchema = z.object({
  peerId: PeerIdSchema,
  score: z.number(),
  atMs: TimeMsSchema,
})
export type Bid = z.output<typeof BidSchema>

export const PlacementHistoryEntrySchema = z.object({
  generation: CountSchema,
  winners: z.array(PeerIdSchema).max(SCHEMA_LIMITS.winnersMax),
  closedBy: PeerIdSchema,
  closedAtMs: TimeMsSchema,
  reason: z.string().max(SCHEMA_LIMITS.reasonLengthMax),
})
export type PlacementHistoryEntry = z.output<typeof PlacementHistoryEntrySchema>

/** A replica's closed bidding round (DESIGN.md §5), kept for audit. Stored as StoredPlacementSchema. */
export const PlacementEntrySchema = z.object({
  generation: CountSchema,
  winners: z.array(PeerIdSchema).max(SCHEMA_LIMITS.winnersMax),
  bids: z.array(BidSchema).max(SCHEMA_LIMITS.bidsMax),
  shortlist: z.array(PeerIdSchema).max(SCHEMA_LIMITS.shortlistMax),
  closedBy: PeerIdSchema,
  openedAtMs: TimeMsSchema,
  closedAtMs: TimeMsSchema,
  history: z.array(PlacementHistoryEntrySchema).max(SCHEMA_LIMITS.placementHistoryMax),
  /** Set (with no winners) when no alive node could take the replica; the round is retried when capacity changes. */
  unschedulableReason: z.string().max(SCHEMA_LIMITS.reasonLengthMax).optional(),
})
export type PlacementEntry = z.output<typeof PlacementEntrySchema>

const HostPortKeySchema = z.string().regex(/^[0-9]{1,5}(\/(tcp|udp))?$/, 'host port key: "80" or "80/udp"')

/** What a node reports about a replica it runs. Stored as StoredStatusSchema, peerId and replica in its key. */
export const StatusEntrySchema = z.object({
  peerId: PeerIdSchema,
  replica: ReplicaIndexSchema,
  generation: CountSchema,
  epoch: CountSchema,
  state: ReplicaStateSchema,
  containerId: z.string().min(1).max(SCHEMA_LIMITS.containerIdLengthMax).optional(),
  hostPorts: z
    .record(HostPortKeySchema, z.number().int().min(1).max(65_535))
    .refine((ports) => Object.keys(ports).length <= SCHEMA_LIMITS.hostPortsMax, `at most ${SCHEMA_LIMITS.hostPortsMax} host ports`),
  startedAtMs: TimeMsSchema.optional(),
  error: z.string().max(SCHEMA_LIMITS.errorLengthMax).optional(),
  restarts: CountSchema,
  updatedAtMs: TimeMsSchema,
})
export type StatusEntry = z.output<typeof StatusEntrySchema>

// ---- entries as stored (docs/ARCHITECTURE.md, "Document layout") ----

/**
 * A value stored as ONE string of compact JSON, validated with `schema`
 * once parsed. An entry written whole by one writer at a time costs one op
 * this way instead of one per field and one per nested map or list: the
 * document's load time and memory grow with its ops.
 */
function storedJson<S extends z.ZodType>(schema: S, lengthMax: number, what: string) {
  const stored = z
    .string()
    .max(lengthMax)
    .transform((json, ctx): unknown => {
      try {
        return JSON.parse(json) as unknown
      } catch {
        ctx.addIssue({ code: 'custom', message: `${what} is not valid JSON` })
        return z.NEVER
      }
    })
    .pipe(schema)
  declareStoredJson(stored, schema, lengthMax)
  return stored
}

/**
 * What a deployment is, fixed when it is created: deployments[id].definition.
 * A new spec version would replace it whole, so two concurrent replacements
 * resolve to one of them, never to a mix.
 */
export const DeploymentDefinitionSchema = z.object({
  id: IdSchema,
  spec: DeploymentSpecSchema,
  specVersion: z.number().int().min(1),
  owner: PeerIdSchema,
  createdAtMs: TimeMsSchema,
})
export type DeploymentDefinition = z.output<typeof DeploymentDefinitionSchema>

/**
 * A deployment as stored (document.ts, gatherDeployment): deployments[id],
 * the definition as JSON, and the fields any node may change, each from
 * its own key "<id>/<field>" and absent until first changed (defaults:
 * running, spec.replicas, epoch 1, updated when created).
 */
export const StoredDeploymentSchema = z.object({
  definition: storedJson(DeploymentDefinitionSchema, SCHEMA_LIMITS.definitionJsonLengthMax, 'definition'),
  desired: DeploymentEntrySchema.shape.desired.optional(),
  replicas: DeploymentEntrySchema.shape.replicas.optional(),
  epoch: DeploymentEntrySchema.shape.epoch.optional(),
  updatedAtMs: DeploymentEntrySchema.shape.updatedAtMs.optional(),
})

/** placements["<id>/<replica>"] as stored: the closed round, written whole. */
export const StoredPlacementSchema = storedJson(PlacementEntrySchema, SCHEMA_LIMITS.placementJsonLengthMax, 'placement')

/** What a status holds beyond its key (which names the replica and the reporter). */
export const StatusBodySchema = StatusEntrySchema.omit({ peerId: true, replica: true })
export type StatusBody = z.output<typeof StatusBodySchema>

/** status["<id>/<replica>/<peerId>"] as stored: written whole, by that peer only. */
export const StoredStatusSchema = storedJson(StatusBodySchema, SCHEMA_LIMITS.statusJsonLengthMax, 'status')

// ---- inputs of the writes (ClusterState) ----

/** What a node says about itself; peerId is implied, times default to now / first join. */
export const SelfNodeInputSchema = NodeEntrySchema.omit({ peerId: true, joinedAtMs: true, updatedAtMs: true }).extend({
  joinedAtMs: TimeMsSchema.optional(),
  updatedAtMs: TimeMsSchema.optional(),
})
export type SelfNodeInput = z.input<typeof SelfNodeInputSchema>

/** A status report; peerId and replica are implied, updatedAtMs defaults to now. */
export const StatusInputSchema = StatusEntrySchema.omit({ peerId: true, replica: true, updatedAtMs: true }).extend({
  updatedAtMs: TimeMsSchema.optional(),
})
export type StatusInput = z.input<typeof StatusInputSchema>

/** Placements are written whole; a longer history is trimmed to its newest entries. */
export const PlacementInputSchema = PlacementEntrySchema.extend({
  history: z.array(PlacementHistoryEntrySchema).transform((history) => history.slice(-SCHEMA_LIMITS.placementHistoryMax)),
})
export type PlacementInput = z.input<typeof PlacementInputSchema>

/** A new deployment: its id (chosen by the accepting node), spec as the user wrote it, and that node. */
export const CreateDeploymentInputSchema = z.object({
  id: IdSchema,
  spec: DeploymentSpecSchema,
  owner: PeerIdSchema,
})
export type CreateDeploymentInput = z.input<typeof CreateDeploymentInputSchema>
