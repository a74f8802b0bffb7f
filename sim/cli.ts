/**
 * `lattice sim …` (and `npm run sim -- …`, `tsx sim/main.ts …`):
 *
 *   lattice sim (--scenario NAME | --scenario-file FILE) [--nodes N] [--seed S] [--duration-s T]
 *               [--deployments M] [--deploy-spread-ms MS] [--loss F] [--kill F] [--kill-mode crash|vanish] [--partition]
 *               [--network sim|libp2p|both] [--json FILE] [--report DIR] [--trace FILE] [--quiet | --verbose]
 *
 * A scenario is a file (YAML or JSON, sim/scenario-file.ts) — a library one
 * by name (`--scenario chaos`, sim/scenarios/library/) or any file
 * (`--scenario-file F`). Flags override the file's values. Everything is
 * validated with zod. Prints the report as JSON on stdout (progress on
 * stderr); `--json FILE` also writes it to FILE, `--report DIR` writes
 * report.json, report.md and plots, `--trace FILE` the event trace as JSON
 * lines. Exit code 0 when every invariant held, 1 when one failed (the
 * command that replays the run is printed on stderr), 2 on bad flags or a
 * bad scenario file.
 */
import { writeFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { z } from 'zod'
import { createProgressLine } from './progress.ts'
import { libraryNames, loadLibraryScenario, loadScenarioFile, ScenarioFileSchema, type ScenarioSpec } from './scenario-file.ts'
import { runClusterScenario, type ClusterScenarioReport } from './scenarios/cluster.ts'
import { runMembershipScenario, type MembershipScenarioReport } from './scenarios/membership.ts'
import { runScheduledScenario, type ScheduledScenarioReport } from './scenarios/scheduled.ts'
import { createTraceFile } from './trace.ts'
// The report's charts (vega) and the real network (libp2p) are imported when a run asks for them: the bundle keeps
// them in chunks of their own (package.json's build), and most runs (a campaign's seeds) need neither.
import { LIBP2P_SCENARIO_NODES_MAX } from './network-libp2p/limits.ts'

/** The scripted scenarios that existed before scenario files; the library (sim/scenarios/library/) adds `churn` and `chaos`. */
export const SCENARIOS = ['membership', 'state', 'placement', 'failover', 'partition'] as const

/** `--partition` on a scheduled scenario whose file has no partition fault turns it on with this probability per tick: about one partition a minute and a half. */
export const PARTITION_FLAG_PROBABILITY = 0.01

/**
 * `--network`: `sim` is the simulated network in virtual time; `libp2p` runs
 * the membership scenario on real libp2p nodes in this process (loopback,
 * wall clock, sim/network-libp2p/); `both` runs the two one after the other
 * and prints their figures side by side — how far the simulated network's
 * figures are from the real stack's.
 */
export const NETWORKS = ['sim', 'libp2p', 'both'] as const

const Fraction = z.coerce.number().min(0).max(1)

/** The flags as given (nothing defaulted but the booleans: the scenario file supplies the rest). */
const RawFlagsSchema = z.strictObject({
  scenario: z.string().min(1).optional(),
  scenarioFile: z.string().min(1).optional(),
  nodes: z.coerce.number().int().min(3).max(5_000).optional(),
  seed: z.coerce.number().int().min(0).max(0xffff_ffff).default(1),
  durationS: z.coerce.number().min(0).max(24 * 3600).optional(),
  loss: Fraction.optional(),
  kill: Fraction.optional(),
  killMode: z.enum(['crash', 'vanish']).optional(),
  partition: z.boolean().optional(),
  /** Deployments created by the cluster scenarios. */
  deployments: z.coerce.number().int().min(1).max(100_000).optional(),
  /** Virtual ms over which the scripted cluster scenarios submit their deployments; 0 submits them all at once. */
  deploySpreadMs: z.coerce.number().int().min(0).max(600_000).optional(),
  network: z.enum(NETWORKS).default('sim'),
  json: z.string().min(1).optional(),
  /** Writes report.json, report.md and SVG plots into this directory. */
  report: z.string().min(1).optional(),
  /** Writes the run's event trace (JSON lines) to this file. */
  trace: z.string().min(1).optional(),
  quiet: z.boolean().default(false),
  verbose: z.boolean().default(false),
  /** Scheduled scenarios: the initial nodes start with the registry in their stores (scenario field warmRegistry). */
  warmRegistry: z.boolean().optional(),
  /** Cluster scenarios: a new epoch every this many document changes (scenario field epochChangesMin). */
  epochChanges: z.coerce.number().int().min(1).max(10_000_000).optional(),
})

/** The resolved run: the scenario (file + flags) and the run's own settings. */
export interface SimFlags {
  /** The scenario's name (a library name, or the file's `name`). */
  scenario: string
  /** Absolute path of the scenario file when given with --scenario-file. */
  scenarioFile?: string
  script: ScenarioSpec['script']
  nodes: number
  seed: number
  durationS: number
  /** Scripted: loss of each message copy during the faults. Scheduled: the baseline loss (`network.loss`). */
  loss: number
  /** Scripted: fraction of nodes crashed. Scheduled: probability of a crash per fault tick (`faults.kill.probability`). */
  kill: number
  killMode: 'crash' | 'vanish'
  /** Scripted: add the partition phase. Scheduled: the partition fault is on. */
  partition: boolean
  deployments: number
  network: (typeof NETWORKS)[number]
  json?: string
  report?: string
  trace?: string
  quiet: boolean
  verbose: boolean
  /** Scheduled scenarios: started with a warm registry (--warm-registry or the file's warmRegistry). */
  warmRegistry: boolean
  /** The scenario after the flags' overrides, validated. */
  spec: ScenarioSpec
}

const USAGE = [
  'usage: lattice sim (--scenario NAME | --scenario-file FILE) [--nodes N] [--seed S] [--duration-s T] [--deployments M] [--deploy-spread-ms MS] [--loss F] [--kill F] [--kill-mode crash|vanish] [--partition] [--network sim|libp2p|both] [--warm-registry] [--epoch-changes N] [--json FILE] [--report DIR] [--trace FILE] [--quiet | --verbose]',
  `       scenarios: ${libraryNames().join(', ')} (sim/scenarios/library/), or any YAML/JSON file (docs/simulator-reports.md)`,
  '       lattice sim campaign --seeds N (--scenario NAME | --scenario-file FILE) [--nodes N] [--duration-s T] [--concurrency C] [--report DIR]',
].join('\n')

const FLAG_NAMES: Record<string, string> = { durationS: 'duration-s', killMode: 'kill-mode', scenarioFile: 'scenario-file', deploySpreadMs: 'deploy-spread-ms', warmRegistry: 'warm-registry', epochChanges: 'epoch-changes' }
const flagName = (key: string): string => FLAG_NAMES[key] ?? key

type Parsed = { ok: true; flags: SimFlags } | { ok: false; error: string }

/** Parses argv (the words after `sim`; a leading `sim` is skipped), loads the scenario and applies the flags. */
export function parseSimFlags(argv: readonly string[]): Parsed {
  const args = argv[0] === 'sim' ? argv.slice(1) : [...argv]
  let values: Record<string, unknown>
  try {
    const parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        scenario: { type: 'string' },
        'scenario-file': { type: 'string' },
        nodes: { type: 'string' },
        seed: { type: 'string' },
        'duration-s': { type: 'string' },
        loss: { type: 'string' },
        kill: { type: 'string' },
        'kill-mode': { type: 'string' },
        partition: { type: 'boolean' },
        deployments: { type: 'string' },
        'deploy-spread-ms': { type: 'string' },
        network: { type: 'string' },
        json: { type: 'string' },
        report: { type: 'string' },
        trace: { type: 'string' },
        quiet: { type: 'boolean' },
        verbose: { type: 'boolean' },
        'warm-registry': { type: 'boolean' },
        'epoch-changes': { type: 'string' },
      },
    })
    values = parsed.values
  } catch (err) {
    return { ok: false, error: (err as Error).message }
  }
  const { 'duration-s': durationS, 'kill-mode': killMode, 'scenario-file': scenarioFile, 'deploy-spread-ms': deploySpreadMs, 'warm-registry': warmRegistry, 'epoch-changes': epochChanges, ...rest } = values
  const result = RawFlagsSchema.safeParse({ ...rest, durationS, killMode, scenarioFile, deploySpreadMs, warmRegistry, epochChanges })
  if (!result.success) {
    const issue = result.error.issues[0]
    return { ok: false, error: `--${flagName(String(issue?.path[0] ?? '?'))}: ${issue?.message ?? 'invalid'}` }
  }
  const raw = result.data
  if (raw.scenario !== undefined && raw.scenarioFile !== undefined) return { ok: false, error: '--scenario-file: give either --scenario NAME or --scenario-file FILE, not both' }
  if (raw.scenario === undefined && raw.scenarioFile === undefined) return { ok: false, error: `--scenario: required (one of ${libraryNames().join(', ')}), or --scenario-file FILE` }

  let spec: ScenarioSpec
  try {
    spec = raw.scenarioFile !== undefined ? loadScenarioFile(raw.scenarioFile) : loadLibraryScenario(raw.scenario as string)
  } catch (err) {
    return { ok: false, error: `--${raw.scenarioFile !== undefined ? 'scenario-file' : 'scenario'}: ${(err as Error).message}` }
  }
  const applied = applyFlags(spec, raw)
  if (typeof applied === 'string') return { ok: false, error: applied }
  spec = applied
  if (raw.network !== 'sim') {
    const refusal = libp2pRefusal(spec, raw)
    if (refusal !== undefined) return { ok: false, error: `--network ${raw.network}: ${refusal}` }
  }
  const common = {
    scenario: spec.name,
    ...(raw.scenarioFile === undefined ? {} : { scenarioFile: resolve(raw.scenarioFile) }),
    script: spec.script,
    nodes: spec.nodes,
    seed: raw.seed,
    durationS: spec.durationS,
    network: raw.network,
    ...(raw.json === undefined ? {} : { json: raw.json }),
    ...(raw.report === undefined ? {} : { report: raw.report }),
    ...(raw.trace === undefined ? {} : { trace: raw.trace }),
    quiet: raw.quiet,
    verbose: raw.verbose,
    warmRegistry: spec.script === 'scheduled' && spec.warmRegistry,
  }
  const flags: SimFlags =
    spec.script === 'scheduled'
      ? { ...common, loss: spec.network.loss, kill: spec.faults.kill.probability, killMode: 'crash', partition: spec.faults.partition.probability > 0, deployments: spec.deployments.count, spec }
      : { ...common, loss: spec.knobs.loss, kill: spec.knobs.kill, killMode: spec.knobs.killMode, partition: spec.knobs.partition, deployments: spec.deployments.count, spec }
  return { ok: true, flags }
}

/** Why the real-network runner cannot run this scenario, or undefined when it can. */
function libp2pRefusal(spec: ScenarioSpec, raw: z.output<typeof RawFlagsSchema>): string | undefined {
  if (spec.script !== 'membership') return `runs the membership scenario only (scenario "${spec.name}" is ${spec.script}); use --network sim`
  if (spec.nodes > LIBP2P_SCENARIO_NODES_MAX) return `at most ${LIBP2P_SCENARIO_NODES_MAX} real nodes in one process (asked for ${spec.nodes})`
  if (spec.knobs.partition) return 'a partition cannot be made on loopback TCP from inside the process; drop --partition'
  if (spec.knobs.killMode === 'vanish') return 'kill mode vanish cannot be made on loopback TCP; use --kill-mode crash'
  if (raw.trace !== undefined || raw.report !== undefined) return '--trace and --report describe virtual-time runs; use --json FILE'
  return undefined
}

/** The scenario with the flags' values in place of the file's, validated again. Returns the spec or an error line. */
function applyFlags(spec: ScenarioSpec, raw: z.output<typeof RawFlagsSchema>): ScenarioSpec | string {
  const next = structuredClone(spec) as ScenarioSpec
  if (raw.nodes !== undefined) next.nodes = raw.nodes
  if (raw.durationS !== undefined) next.durationS = raw.durationS
  if (raw.epochChanges !== undefined) next.epochChangesMin = raw.epochChanges
  if (next.script === 'membership' && next.epochChangesMin !== undefined) return `--epoch-changes: applies to the cluster scenarios only (scenario "${spec.name}" holds no document)`
  if (next.script === 'scheduled') {
    if (raw.killMode !== undefined) return `--kill-mode: applies to the membership scenario only (scenario "${spec.name}" is scheduled)`
    if (raw.deploySpreadMs !== undefined) return `--deploy-spread-ms: applies to the scripted cluster scenarios only (scenario "${spec.name}" is scheduled)`
    if (raw.warmRegistry === true) next.warmRegistry = true
    if (raw.deployments !== undefined) next.deployments.count = raw.deployments
    if (raw.loss !== undefined) next.network.loss = raw.loss
    if (raw.kill !== undefined) next.faults.kill.probability = raw.kill
    if (raw.partition === true) next.faults.partition.probability = Math.max(next.faults.partition.probability, PARTITION_FLAG_PROBABILITY)
  } else {
    if (raw.warmRegistry === true) return `--warm-registry: applies to scheduled scenarios only (scenario "${spec.name}" is ${spec.script})`
    if (raw.deployments !== undefined) next.deployments.count = raw.deployments
    if (raw.deploySpreadMs !== undefined) next.deployments.spreadMs = raw.deploySpreadMs
    if (raw.loss !== undefined) next.knobs.loss = raw.loss
    if (raw.kill !== undefined) next.knobs.kill = raw.kill
    if (raw.killMode !== undefined) next.knobs.killMode = raw.killMode
    if (raw.partition === true) next.knobs.partition = true
  }
  const checked = ScenarioFileSchema.safeParse(next)
  if (!checked.success) {
    const issue = checked.error.issues[0]
    return `scenario "${spec.name}" with these flags: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`
  }
  return checked.data
}

const shellWord = (word: string): string => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`)

/** The command that replays a run with these flags (the scenario file included, by absolute path). */
export function replayCommand(flags: SimFlags): string {
  const parts = ['npm run sim --', flags.scenarioFile !== undefined ? `--scenario-file ${shellWord(flags.scenarioFile)}` : `--scenario ${flags.scenario}`, `--nodes ${flags.nodes}`, `--seed ${flags.seed}`, `--duration-s ${flags.durationS}`, `--loss ${flags.loss}`, `--kill ${flags.kill}`]
  if (flags.script !== 'scheduled') parts.push(`--kill-mode ${flags.killMode}`)
  if (flags.partition) parts.push('--partition')
  if (flags.script !== 'membership') parts.push(`--deployments ${flags.deployments}`)
  if (flags.spec.script !== 'scheduled' && flags.spec.deployments.spreadMs !== undefined) parts.push(`--deploy-spread-ms ${flags.spec.deployments.spreadMs}`)
  if (flags.network !== 'sim') parts.push(`--network ${flags.network}`)
  if (flags.warmRegistry) parts.push('--warm-registry')
  if (flags.spec.epochChangesMin !== undefined) parts.push(`--epoch-changes ${flags.spec.epochChangesMin}`)
  return parts.join(' ')
}

export type AnySimReport = MembershipScenarioReport | ClusterScenarioReport | ScheduledScenarioReport

export interface RunHooks {
  onProgress?: (sample: { virtualMs: number; events: number; violations: number; note?: string }) => void
  traceSink?: (line: { tMs: number; observer: number; subject: number; event: string }) => void
}

export async function runScenario(flags: SimFlags, log: (line: string) => void, hooks: RunHooks = {}): Promise<AnySimReport> {
  const spec = flags.spec
  const extra = { ...(hooks.onProgress === undefined ? {} : { onProgress: hooks.onProgress }), ...(hooks.traceSink === undefined ? {} : { traceSink: hooks.traceSink }) }
  switch (spec.script) {
    case 'scheduled':
      return runScheduledScenario({ spec, seed: flags.seed, log, ...extra })
    case 'membership':
      return runMembershipScenario({ nodes: flags.nodes, seed: flags.seed, durationS: flags.durationS, loss: flags.loss, kill: flags.kill, killMode: flags.killMode, partition: flags.partition, verbose: flags.verbose, log, ...extra })
    case 'state':
    case 'placement':
    case 'failover':
    case 'partition':
      return runClusterScenario({ scenario: spec.script, nodes: flags.nodes, seed: flags.seed, deployments: flags.deployments, ...(spec.deployments.spreadMs === undefined ? {} : { deploySpreadMs: spec.deployments.spreadMs }), kill: flags.kill, loss: flags.loss, durationS: flags.durationS, partition: flags.partition, ...(spec.epochChangesMin === undefined ? {} : { epochChangesMin: spec.epochChangesMin }), log, ...extra })
  }
}

/** `--network libp2p|both`: the membership scenario on real libp2p (and, with `both`, on the simulated network too). */
async function runOnLibp2p(flags: SimFlags, log: (line: string) => void): Promise<number> {
  const options = { nodes: flags.nodes, seed: flags.seed, durationS: flags.durationS, loss: flags.loss, kill: flags.kill, killMode: flags.killMode, partition: false, verbose: flags.verbose, log }
  const { formatMembershipComparison, runMembershipComparison, runMembershipScenarioLibp2p } = await import('./network-libp2p/index.ts')
  let reports: MembershipScenarioReport[]
  let output: unknown
  if (flags.network === 'both') {
    const comparison = await runMembershipComparison(options)
    process.stderr.write(`${formatMembershipComparison(comparison)}\n`)
    reports = [comparison.simulated, comparison.libp2p]
    output = comparison
  } else {
    const report = await runMembershipScenarioLibp2p(options)
    reports = [report]
    output = report
  }
  const text = JSON.stringify(output, null, 2)
  process.stdout.write(`${text}\n`)
  if (flags.json !== undefined) await writeFile(flags.json, `${text}\n`)
  const violations = reports.flatMap((report) => report.invariants.violations)
  if (violations.length > 0) {
    process.stderr.write(`lattice sim: ${violations.length} invariant(s) failed:\n`)
    for (const violation of violations) process.stderr.write(`  - ${violation}\n`)
    process.stderr.write(`rerun: ${replayCommand(flags)} (wall-clock runs do not replay exactly)\n`)
    return 1
  }
  return 0
}

export async function runSimCommand(argv: string[]): Promise<number> {
  const parsed = parseSimFlags(argv)
  if (!parsed.ok) {
    process.stderr.write(`lattice sim: ${parsed.error}\n${USAGE}\n`)
    return 2
  }
  const flags = parsed.flags
  const log = flags.quiet ? () => {} : (line: string) => process.stderr.write(`${line}\n`)
  if (flags.network !== 'sim') return runOnLibp2p(flags, log)
  const progress = createProgressLine({ label: `${flags.scenario} n=${flags.nodes} seed=${flags.seed}`, enabled: !flags.quiet })
  let traceFile: ReturnType<typeof createTraceFile> | undefined
  try {
    traceFile = flags.trace === undefined ? undefined : createTraceFile(flags.trace)
  } catch (err) {
    process.stderr.write(`lattice sim: --trace: cannot write ${flags.trace} (${(err as Error).message})\n`)
    return 2
  }
  let report: AnySimReport
  try {
    report = await runScenario(flags, log, {
      onProgress: (sample) => progress.update(sample),
      ...(traceFile === undefined ? {} : { traceSink: traceFile.sink }),
    })
  } finally {
    traceFile?.close()
  }
  progress.done()
  const text = JSON.stringify(report, null, 2)
  process.stdout.write(`${text}\n`)
  if (flags.json !== undefined) await writeFile(flags.json, `${text}\n`)
  if (flags.trace !== undefined) log(`trace written to ${flags.trace} (${traceFile?.lines() ?? 0} lines)`)
  if (flags.report !== undefined) {
    const { writeReport } = await import('./report/index.ts')
    const written = await writeReport(flags.report, report, { replay: replayCommand(flags) })
    log(`report written to ${written.dir}`)
  }
  if (!report.invariants.ok) {
    process.stderr.write(`lattice sim: ${report.invariants.violations.length} invariant(s) failed:\n`)
    for (const violation of report.invariants.violations) process.stderr.write(`  - ${violation}\n`)
    process.stderr.write(`replay: ${replayCommand(flags)}\n`)
    return 1
  }
  return 0
}

