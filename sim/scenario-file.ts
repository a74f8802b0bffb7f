/**
 * Scenarios as files (YAML or JSON — YAML is a superset — validated with zod)
 * and the library of named ones shipped in sim/scenarios/library/.
 *
 * A scenario names its `script`:
 * - `scheduled` (churn, chaos, any new file): the whole node core, M
 *   deployments of a resource mix, then a safety phase of `durationS` under a
 *   fault schedule (sim/faults.ts), then a liveness phase with faults off
 *   (sim/scenarios/scheduled.ts).
 * - `membership`, `state`, `placement`, `failover`, `partition`: the scripted
 *   scenarios that existed before files (sim/scenarios/membership.ts and
 *   cluster.ts). Their file holds the same knobs as their flags
 *   (`script: { loss, kill, killMode, partition }`); a fault schedule is not
 *   theirs, and a file that gives them one is refused.
 *
 * Each fault of a schedule is a probability per fault tick plus a minimum
 * duration (TigerBeetle VOPR / FoundationDB style): at every tick each fault
 * starts with its probability (if under its concurrency bound) and lasts a
 * duration drawn in [minDurationS, maxDurationS] from the run's one seeded Rng.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { basename, extname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml } from 'yaml'
import { z } from 'zod'

export const SCRIPTED = ['membership', 'state', 'placement', 'failover', 'partition'] as const
export type ScriptedName = (typeof SCRIPTED)[number]
export const SCRIPTS = ['scheduled', ...SCRIPTED] as const
export type ScriptName = (typeof SCRIPTS)[number]

/**
 * Where the named scenarios live, found from the checkout's root: this
 * module (sim/) and the bundle `npm ci` builds (dist/lattice.js) both sit
 * one level below it. Relative to the module alone, the bundle looked in
 * dist/scenarios/ and found no scenario at all.
 */
export const LIBRARY_DIR = fileURLToPath(new URL('../sim/scenarios/library/', import.meta.url))

const Fraction = z.number().min(0).max(1)
const Seconds = z.number().min(0).max(24 * 3600)

/** A fault: probability per tick, a minimum duration, and (default 2 × min) a maximum. */
const faultFields = {
  /** Chance that one instance starts at a fault tick (0 disables the fault). */
  probability: Fraction.default(0),
  /** An instance lasts at least this long (virtual seconds). */
  minDurationS: Seconds.default(5),
  /** …and at most this long; default 2 × minDurationS. */
  maxDurationS: Seconds.optional(),
}
const fault = <S extends z.ZodRawShape>(extra: S) => z.strictObject({ ...faultFields, ...extra })

/** The longest an instance of `f` lasts: maxDurationS, or 2 × minDurationS when not given. */
export function maxDurationS(f: { minDurationS: number; maxDurationS?: number | undefined }): number {
  return f.maxDurationS ?? f.minDurationS * 2
}

const LatencyRange = z.strictObject({ min: z.number().min(0).max(60_000), max: z.number().min(0).max(60_000) }).refine((l) => l.max >= l.min, { message: 'latency max must be ≥ min' })

export const FAULT_KINDS = ['kill', 'restart', 'pause', 'partition', 'loss', 'delay', 'duplicate', 'clockSkew', 'clockJump', 'containers'] as const
export type FaultKind = (typeof FAULT_KINDS)[number]

export const FaultScheduleSchema = z.strictObject({
  /** Virtual ms between two fault ticks (draws). Default 1,000: one draw per fault per virtual second. */
  tickMs: z.number().int().min(100).max(600_000).default(1_000),
  /** At most this fraction of the nodes under a node fault (kill, restart, pause, clock, containers) at once. Default 0.2: a clear majority stays healthy. */
  maxFaultyFraction: Fraction.default(0.2),
  /** Crash one node (silent stop, containers keep running); it comes back on its store after the drawn duration. */
  kill: fault({}).default({ probability: 0, minDurationS: 10 }),
  /** Restart one node: crash, then start again on its store after the (short) drawn duration — a process restart. */
  restart: fault({}).default({ probability: 0, minDurationS: 1 }),
  /** Pause one node: its timers and message handling freeze, its state stays, then it resumes. */
  pause: fault({}).default({ probability: 0, minDurationS: 2 }),
  /** Partition the network: `halves` (two equal sides), `isolate` (one node alone), `asymmetric` (one side cannot reach the other; the other way works). */
  partition: fault({ kinds: z.array(z.enum(['halves', 'isolate', 'asymmetric'])).min(1).default(['halves', 'isolate', 'asymmetric']) }).default({ probability: 0, minDurationS: 10, kinds: ['halves', 'isolate', 'asymmetric'] }),
  /** Extra loss on every gossip copy for the duration. */
  loss: fault({ rate: Fraction.default(0.2) }).default({ probability: 0, minDurationS: 5, rate: 0.2 }),
  /** Slower, jittery links for the duration (one-way latency drawn in the range). */
  delay: fault({ latencyMs: LatencyRange.default({ min: 20, max: 400 }) }).default({ probability: 0, minDurationS: 5, latencyMs: { min: 20, max: 400 } }),
  /** Duplicated gossip copies for the duration. */
  duplicate: fault({ rate: Fraction.default(0.1) }).default({ probability: 0, minDurationS: 5, rate: 0.1 }),
  /** One node's clock runs ahead or behind by up to maxOffsetMs for the duration. */
  clockSkew: fault({ maxOffsetMs: z.number().int().min(0).max(24 * 3600 * 1000).default(30_000) }).default({ probability: 0, minDurationS: 10, maxOffsetMs: 30_000 }),
  /** One node's clock steps by up to ±maxJumpMs, and steps back after the duration (an NTP correction). */
  clockJump: fault({ maxJumpMs: z.number().int().min(0).max(24 * 3600 * 1000).default(60_000) }).default({ probability: 0, minDurationS: 10, maxJumpMs: 60_000 }),
  /** One node's container starts fail with failureRate or are slow (slowRate, slowDelayMs longer) for the duration. Default slowDelayMs 3 s: a slow start; several in one reconcile pass must stay below the unwon-run grace (10 s), see the docs. */
  containers: fault({ failureRate: Fraction.default(0.5), slowRate: Fraction.default(0.5), slowDelayMs: z.number().int().min(0).max(600_000).default(3_000) }).default({ probability: 0, minDurationS: 10, failureRate: 0.5, slowRate: 0.5, slowDelayMs: 3_000 }),
  /** Brand-new nodes join and nodes leave gracefully at these rates (per virtual minute); leaves stop at minNodesFraction of the initial size. */
  churn: z
    .strictObject({ joinPerMinute: z.number().min(0).max(10_000).default(0), leavePerMinute: z.number().min(0).max(10_000).default(0), minNodesFraction: Fraction.default(0.5) })
    .default({ joinPerMinute: 0, leavePerMinute: 0, minNodesFraction: 0.5 }),
}).superRefine((schedule, ctx) => {
  for (const kind of FAULT_KINDS) {
    const f = schedule[kind]
    if (f.maxDurationS !== undefined && f.maxDurationS < f.minDurationS) ctx.addIssue({ code: 'custom', path: [kind, 'maxDurationS'], message: 'maxDurationS must be ≥ minDurationS' })
  }
})
export type FaultSchedule = z.output<typeof FaultScheduleSchema>

const ResourceMixEntry = z.strictObject({ cpu: z.number().positive().max(256), memoryMB: z.number().int().positive().max(1_048_576), weight: z.number().positive().default(1) })

export const DeploymentsSchema = z
  .strictObject({
    count: z.number().int().min(0).max(100_000).default(20),
    replicas: z.strictObject({ min: z.number().int().min(1).max(100), max: z.number().int().min(1).max(100) }).refine((r) => r.max >= r.min, { message: 'replicas max must be ≥ min' }).default({ min: 1, max: 3 }),
    /** Resource mix: each deployment draws one entry, by weight. */
    mix: z.array(ResourceMixEntry).min(1).default([
      { cpu: 0.1, memoryMB: 32, weight: 2 },
      { cpu: 0.25, memoryMB: 64, weight: 2 },
      { cpu: 0.5, memoryMB: 128, weight: 1 },
      { cpu: 1, memoryMB: 256, weight: 1 },
    ]),
    strategy: z.enum(['spread', 'binpack', 'mixed']).default('mixed'),
    /** Deploys are spread over this many virtual seconds at the start of the safety phase. */
    spreadS: Seconds.default(10),
  })
  .default({ count: 20, replicas: { min: 1, max: 3 }, mix: [{ cpu: 0.1, memoryMB: 32, weight: 2 }, { cpu: 0.25, memoryMB: 64, weight: 2 }, { cpu: 0.5, memoryMB: 128, weight: 1 }, { cpu: 1, memoryMB: 256, weight: 1 }], strategy: 'mixed', spreadS: 10 })

export const NetworkSchema = z
  .strictObject({
    /** One-way latency of a message when no delay fault is on. */
    latencyMs: LatencyRange.default({ min: 1, max: 10 }),
    /** Loss of every gossip copy during the safety phase (faults add to it). */
    loss: Fraction.default(0),
    duplicate: Fraction.default(0),
  })
  .default({ latencyMs: { min: 1, max: 10 }, loss: 0, duplicate: 0 })

const ScriptKnobs = z
  .strictObject({
    loss: Fraction.default(0.1),
    kill: Fraction.default(0.01),
    killMode: z.enum(['crash', 'vanish']).default('crash'),
    partition: z.boolean().default(false),
  })
  .default({ loss: 0.1, kill: 0.01, killMode: 'crash', partition: false })

const common = {
  name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'lower-case letters, digits and dashes'),
  description: z.string().max(2_000).optional(),
  nodes: z.number().int().min(3).max(5_000).default(100),
  durationS: Seconds.default(600),
  /**
   * Cluster scenarios: a new epoch is proposed once the document holds this
   * many changes (the node's epochChangesMin, 50,000 unless set, which short
   * runs never reach). Low values make a run cross epochs under its faults.
   * The membership scenario holds no document and refuses it.
   */
  epochChangesMin: z.number().int().min(1).max(10_000_000).optional(),
}

export const ScenarioFileSchema = z.discriminatedUnion('script', [
  z.strictObject({
    ...common,
    script: z.literal('scheduled'),
    deployments: DeploymentsSchema,
    network: NetworkSchema,
    faults: FaultScheduleSchema.default(FaultScheduleSchema.parse({})),
    liveness: z.strictObject({ budgetS: Seconds.default(180) }).default({ budgetS: 180 }),
    /** Virtual ms between two safety checks during the faults. Default 1,000. */
    checkEveryMs: z.number().int().min(100).max(600_000).default(1_000),
    /**
     * The initial nodes' stores already hold every initial node's registry
     * entry (a cluster that ran before; sim/warm-registry.ts); membership still
     * joins from nothing. Default false: each node registers as it starts,
     * which costs O(n³) in Automerge for the whole join (~20 min of CPU
     * extrapolated at 1,000 nodes).
     */
    warmRegistry: z.boolean().default(false),
    invariants: z
      .strictObject({
        /**
         * How long (running, unpaused time) a node may run a generation it did not win before it is a violation.
         * Default 10 s: reconcile interval 1 s + stop timeout 2 s + a few state-sync rounds. The reconciler awaits
         * each container start in turn, so a slow start longer than this holds back the removal (see the docs).
         */
        unwonRunGraceS: Seconds.default(10),
      })
      .default({ unwonRunGraceS: 10 }),
  }),
  z.strictObject({
    ...common,
    script: z.enum(SCRIPTED),
    deployments: z
      .strictObject({
        count: z.number().int().min(1).max(100_000).default(50),
        /**
         * Virtual ms over which the deployments are submitted, evenly. Absent: 5 ms each, at most 10 s (a steady
         * stream). 0 submits them all at once: the offered load then exceeds what the mesh places, so
         * placementsPerSecond measures its throughput rather than the arrival rate.
         */
        spreadMs: z.number().int().min(0).max(600_000).optional(),
      })
      .default({ count: 50 }),
    knobs: ScriptKnobs,
  }),
])
export type ScenarioSpec = z.output<typeof ScenarioFileSchema>
export type ScheduledSpec = Extract<ScenarioSpec, { script: 'scheduled' }>

/** Names of the library's scenarios (file names without extension). */
export function libraryNames(): string[] {
  if (!existsSync(LIBRARY_DIR)) return []
  return readdirSync(LIBRARY_DIR).filter((f) => /\.(ya?ml|json)$/.test(f)).map((f) => basename(f, extname(f))).sort()
}

export function libraryFile(name: string): string | undefined {
  for (const ext of ['.yaml', '.yml', '.json']) {
    const file = join(LIBRARY_DIR, `${name}${ext}`)
    if (existsSync(file)) return file
  }
  return undefined
}

/** Parses and validates scenario text; throws Error with a one-line reason naming the field. */
export function parseScenarioText(text: string, source: string): ScenarioSpec {
  let raw: unknown
  try {
    raw = parseYaml(text)
  } catch (err) {
    throw new Error(`${source}: not YAML or JSON (${(err as Error).message.split('\n')[0]})`)
  }
  const result = ScenarioFileSchema.safeParse(raw)
  if (!result.success) {
    const issue = result.error.issues[0]
    const path = issue?.path.join('.') ?? ''
    throw new Error(`${source}: ${path === '' ? '' : `${path}: `}${issue?.message ?? 'invalid'}`)
  }
  return result.data
}

export function loadScenarioFile(file: string): ScenarioSpec {
  const path = resolve(file)
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new Error(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
  return parseScenarioText(text, file)
}

/** A library scenario by name; throws with the known names when there is none. */
export function loadLibraryScenario(name: string): ScenarioSpec {
  const file = libraryFile(name)
  if (file === undefined) throw new Error(`unknown scenario "${name}"; the library has ${libraryNames().join(', ')} (or give --scenario-file FILE)`)
  return loadScenarioFile(file)
}

/** Whether the schedule injects only network noise (loss, delay, duplication), container faults and churn (graceful leaves, joins): then no healthy node may be declared dead. */
export function onlyNetworkNoise(spec: ScheduledSpec): boolean {
  const f = spec.faults
  return f.kill.probability === 0 && f.restart.probability === 0 && f.pause.probability === 0 && f.partition.probability === 0 && f.clockSkew.probability === 0 && f.clockJump.probability === 0
}
