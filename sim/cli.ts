/**
 * `lattice sim …` (and `npm run sim -- …`, `tsx sim/main.ts …`):
 *
 *   lattice sim --scenario membership --nodes N --seed S [--duration-s T]
 *               [--loss F] [--kill F] [--kill-mode crash|vanish] [--partition] [--json FILE] [--quiet | --verbose]
 *
 * Flags are validated with zod. Prints the report as JSON on stdout (progress
 * on stderr); `--json FILE` also writes it to FILE. Exit code 0 when every
 * invariant held, 1 when one failed (the command that replays the run is
 * printed on stderr), 2 on bad flags.
 */
import { writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { z } from 'zod'
import { writeReport } from './report/index.ts'
import { runClusterScenario, type ClusterScenarioReport } from './scenarios/cluster.ts'
import { runMembershipScenario, type MembershipScenarioReport } from './scenarios/membership.ts'

/** `membership` runs the membership code alone; the others run the whole node core (sim/scenarios/cluster.ts). */
export const SCENARIOS = ['membership', 'state', 'placement', 'failover', 'partition'] as const

const Fraction = z.coerce.number().min(0).max(1)

export const SimFlagsSchema = z.strictObject({
  scenario: z.enum(SCENARIOS),
  nodes: z.coerce.number().int().min(3).max(5_000).default(100),
  seed: z.coerce.number().int().min(0).max(0xffff_ffff).default(1),
  durationS: z.coerce.number().min(0).max(24 * 3600).default(600),
  loss: Fraction.default(0.1),
  kill: Fraction.default(0.01),
  killMode: z.enum(['crash', 'vanish']).default('crash'),
  partition: z.boolean().default(false),
  /** Deployments created by the cluster scenarios. */
  deployments: z.coerce.number().int().min(1).max(100_000).default(50),
  json: z.string().min(1).optional(),
  /** Writes report.json, report.md and SVG plots into this directory. */
  report: z.string().min(1).optional(),
  quiet: z.boolean().default(false),
  verbose: z.boolean().default(false),
})
export type SimFlags = z.output<typeof SimFlagsSchema>

const USAGE = 'usage: lattice sim --scenario membership|state|placement|failover|partition --nodes N --seed S [--duration-s T] [--deployments M] [--loss F] [--kill F] [--kill-mode crash|vanish] [--partition] [--json FILE] [--report DIR] [--quiet | --verbose]\n       lattice sim campaign --seeds N --scenario S --nodes N [--duration-s T] [--concurrency C] [--report DIR]'

/** Parses argv (the words after `sim`; a leading `sim` is skipped). Returns flags or a one-line error. */
export function parseSimFlags(argv: readonly string[]): { ok: true; flags: SimFlags } | { ok: false; error: string } {
  const args = argv[0] === 'sim' ? argv.slice(1) : [...argv]
  let values: Record<string, unknown>
  try {
    const parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        scenario: { type: 'string' },
        nodes: { type: 'string' },
        seed: { type: 'string' },
        'duration-s': { type: 'string' },
        loss: { type: 'string' },
        kill: { type: 'string' },
        'kill-mode': { type: 'string' },
        partition: { type: 'boolean' },
        deployments: { type: 'string' },
        json: { type: 'string' },
        report: { type: 'string' },
        quiet: { type: 'boolean' },
        verbose: { type: 'boolean' },
      },
    })
    values = parsed.values
  } catch (err) {
    return { ok: false, error: (err as Error).message }
  }
  const { 'duration-s': durationS, 'kill-mode': killMode, ...rest } = values
  const result = SimFlagsSchema.safeParse({ ...rest, ...(durationS === undefined ? {} : { durationS }), ...(killMode === undefined ? {} : { killMode }) })
  if (!result.success) {
    const issue = result.error.issues[0]
    const flag = String(issue?.path[0] ?? '?').replace('durationS', 'duration-s').replace('killMode', 'kill-mode')
    return { ok: false, error: `--${flag}: ${issue?.message ?? 'invalid'}` }
  }
  return { ok: true, flags: result.data }
}

/** The command that replays a run with these flags. */
export function replayCommand(flags: SimFlags): string {
  const parts = ['npm run sim --', `--scenario ${flags.scenario}`, `--nodes ${flags.nodes}`, `--seed ${flags.seed}`, `--duration-s ${flags.durationS}`, `--loss ${flags.loss}`, `--kill ${flags.kill}`, `--kill-mode ${flags.killMode}`]
  if (flags.partition) parts.push('--partition')
  if (flags.scenario !== 'membership') parts.push(`--deployments ${flags.deployments}`)
  return parts.join(' ')
}

export async function runScenario(flags: SimFlags, log: (line: string) => void): Promise<MembershipScenarioReport | ClusterScenarioReport> {
  switch (flags.scenario) {
    case 'membership':
      return runMembershipScenario({ nodes: flags.nodes, seed: flags.seed, durationS: flags.durationS, loss: flags.loss, kill: flags.kill, killMode: flags.killMode, partition: flags.partition, verbose: flags.verbose, log })
    case 'state':
    case 'placement':
    case 'failover':
    case 'partition':
      return runClusterScenario({ scenario: flags.scenario, nodes: flags.nodes, seed: flags.seed, deployments: flags.deployments, kill: flags.kill, loss: flags.loss, durationS: flags.durationS, partition: flags.partition, log })
  }
}

export async function runSimCommand(argv: string[]): Promise<number> {
  const parsed = parseSimFlags(argv)
  if (!parsed.ok) {
    process.stderr.write(`lattice sim: ${parsed.error}\n${USAGE}\n`)
    return 2
  }
  const flags = parsed.flags
  const log = flags.quiet ? () => {} : (line: string) => process.stderr.write(`${line}\n`)
  const report = await runScenario(flags, log)
  const text = JSON.stringify(report, null, 2)
  process.stdout.write(`${text}\n`)
  if (flags.json !== undefined) await writeFile(flags.json, `${text}\n`)
  if (flags.report !== undefined) {
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
