/**
 * The deployment spec of CONTRACTS.md as a zod schema: the one boundary every
 * deploy crosses (HTTP body, CLI file, CRDT entry read back). Bounds are
 * deliberately tight; widen them with a reason, never silently.
 */
import { z } from 'zod'

export const SPEC_LIMITS = {
  nameLengthMax: 63,
  imageLengthMax: 255,
  commandArgsMax: 64,
  commandArgBytesMax: 4096,
  envEntriesMax: 128,
  envValueBytesMax: 16_384,
  portsMax: 16,
  replicasMax: 64,
  cpuMin: 0.01,
  cpuMax: 64,
  memoryMBMin: 6,
  memoryMBMax: 1_048_576,
  labelsMax: 32,
  capAddMax: 16,
} as const

/** DNS-label style, so names work as container names and hostnames. */
export const NAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/
export const ENV_KEY_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/
export const LABEL_KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/
const IMAGE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._\-/:@]*$/
const CAPABILITY_PATTERN = /^[A-Z_]{2,32}$/

export const PortSpecSchema = z.strictObject({
  container: z.number().int().min(1).max(65_535),
  protocol: z.enum(['tcp', 'udp']).default('tcp'),
})

export const ResourcesSchema = z.strictObject({
  cpu: z.number().min(SPEC_LIMITS.cpuMin).max(SPEC_LIMITS.cpuMax).default(0.5),
  memoryMB: z.number().int().min(SPEC_LIMITS.memoryMBMin).max(SPEC_LIMITS.memoryMBMax).default(128),
})

export const RestartPolicySchema = z.enum(['always', 'on-failure', 'never'])
export const StrategySchema = z.enum(['spread', 'binpack'])

export const ConstraintsSchema = z.strictObject({
  labels: z
    .record(z.string().regex(LABEL_KEY_PATTERN, 'label key: letters, digits, . _ / -'), z.string().max(63))
    .refine((labels) => Object.keys(labels).length <= SPEC_LIMITS.labelsMax, `at most ${SPEC_LIMITS.labelsMax} labels`)
    .default({}),
})

export const DeploymentSpecSchema = z.strictObject({
  name: z.string().regex(NAME_PATTERN, 'name: lowercase letters, digits and -, 1–63 characters, starting and ending with a letter or digit'),
  image: z.string().min(1).max(SPEC_LIMITS.imageLengthMax).regex(IMAGE_PATTERN, 'image: a Docker image reference'),
  command: z.array(z.string().max(SPEC_LIMITS.commandArgBytesMax)).max(SPEC_LIMITS.commandArgsMax).optional(),
  env: z
    .record(z.string().regex(ENV_KEY_PATTERN, 'env key: letters, digits and _, not starting with a digit'), z.string().max(SPEC_LIMITS.envValueBytesMax))
    .refine((env) => Object.keys(env).length <= SPEC_LIMITS.envEntriesMax, `at most ${SPEC_LIMITS.envEntriesMax} env entries`)
    .default({}),
  ports: z
    .array(PortSpecSchema)
    .max(SPEC_LIMITS.portsMax)
    .refine((ports) => new Set(ports.map((p) => `${p.container}/${p.protocol}`)).size === ports.length, 'ports: duplicate container port')
    .default([]),
  resources: ResourcesSchema.default({ cpu: 0.5, memoryMB: 128 }),
  replicas: z.number().int().min(0).max(SPEC_LIMITS.replicasMax).default(1),
  restart: RestartPolicySchema.default('always'),
  constraints: ConstraintsSchema.default({ labels: {} }),
  strategy: StrategySchema.default('spread'),
  capAdd: z.array(z.string().regex(CAPABILITY_PATTERN, 'capability: e.g. NET_BIND_SERVICE')).max(SPEC_LIMITS.capAddMax).default([]),
})

/** A spec as a user writes it (defaults may be omitted). */
export type DeploymentSpecInput = z.input<typeof DeploymentSpecSchema>
/** A spec with every default filled in, as stored. */
export type DeploymentSpec = z.output<typeof DeploymentSpecSchema>

export const DesiredStateSchema = z.enum(['running', 'stopped', 'deleted'])
export type DesiredState = z.infer<typeof DesiredStateSchema>

export const ReplicaStateSchema = z.enum(['pending', 'placing', 'building', 'starting', 'running', 'stopped', 'failed', 'unschedulable'])
export type ReplicaState = z.infer<typeof ReplicaStateSchema>
