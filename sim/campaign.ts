/**
 * Campaigns: one scenario over many seeds, each seed in its own child process
 * (`node bin/lattice.js sim … --seed S --json FILE --quiet`: the bundle when fresh), as many
 * at once as there are cores. Collects every run's report, prints pass/fail
 * per seed and each figure's spread across seeds, and names the command that
 * replays every failing seed.
 *
 *   lattice sim campaign --seeds 100 --scenario chaos --nodes 200 [--duration-s T]
 *                        [--concurrency C] [--report DIR] [--first-seed S | --seed-list 3,17]
 *                        [--timeout-s T] [--quiet] [any other `lattice sim` flag]
 *
 * Flags other than the campaign's own are the sim's, passed to every run and
 * validated by the sim's own parser (sim/cli.ts) before anything starts.
 * Exit 0 when every seed passed, 1 when any failed, 2 on bad flags.
 * `--report DIR` writes DIR/campaign.{json,md}, DIR/figures.svg and each
 * seed's full report under DIR/seed-<S>/.
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { z } from 'zod'
import { LatticeError } from '../core/index.ts'
import { campaignMarkdown, campaignText, figureDistributions, type CampaignRow, type FigureDistribution } from './campaign/format.ts'
import { parseSimFlags, replayCommand, type SimFlags } from './cli.ts'
// The report's charts (vega) are imported only when a report is asked for (--report): see sim/cli.ts.
import type { CampaignFigurePoint, SimReport } from './report/index.ts'
import { figureValues } from './report/types.ts'

export type { CampaignRow, FigureDistribution } from './campaign/format.ts'

/** Seeds in one campaign at most. */
export const CAMPAIGN_SEEDS_MAX = 10_000
/** Bytes of a child's stderr kept for the error message of a crashed run. */
const STDERR_TAIL_BYTES = 8_192

export interface CampaignProgress {
  /** The run that just finished. */
  row: CampaignRow
  done: number
  total: number
  running: number
}

export interface CampaignOptions {
  /** A library scenario by name (ignored when `scenarioFile` is given). */
  scenario: string
  /** A scenario file (YAML or JSON) instead of a library name. */
  scenarioFile?: string
  /** How many seeds (firstSeed, firstSeed + 1, …) or the seeds themselves. */
  seeds: number | readonly number[]
  /** First seed when `seeds` is a count. Default 1. */
  firstSeed?: number
  nodes: number
  durationS?: number
  /** Further `lattice sim` flags for every run: `{ loss: 0.2, partition: true }` → `--loss 0.2 --partition`. */
  flags?: Readonly<Record<string, string | number | boolean>>
  /** Runs at once. Default os.availableParallelism(). */
  concurrency?: number
  /** Wall seconds one run may take before it is killed and counted failed. Default 3,600. */
  timeoutS?: number
  /** Write campaign.{json,md}, figures.svg and per-seed reports here. */
  reportDir?: string
  /** Called as each run finishes. */
  onProgress?: (progress: CampaignProgress) => void
  /** Where the summary tables go; false prints nothing. Default stdout. */
  print?: ((text: string) => void) | false
  /** How one run is started, given its sim argv. Default: `lattice sim` from this checkout (defaultCommand). */
  command?: (simArgv: readonly string[]) => { file: string; args: string[]; cwd?: string }
}

export interface CampaignResult {
  ok: boolean
  scenario: string
  nodes: number
  /** One per seed, in seed order. */
  rows: CampaignRow[]
  failingSeeds: Array<{ seed: number; replay: string; violations: string[] }>
  distributions: FigureDistribution[]
  wallSeconds: number
  /** What was printed. */
  summary: string
}

/** The checkout's root: sim/campaign.ts and a bundle in dist/ both sit one level below it. */
const ROOT = fileURLToPath(new URL('..', import.meta.url))

/**
 * V8 flags for a simulator run's process. A young generation of 128 MB
 * semi-spaces (V8's default tops out at 16): a run makes mostly short-lived
 * garbage (messages, events, decoded changes) at a high rate, and what
 * survives a scavenge is promoted and then marked with the whole old
 * generation (1.5 GB at 1,000 nodes). 64 MB against 16 cut 200-node chaos
 * seeds by 5–9 %; 128 against 64 cut a 1,000-node run by 14 % (222 s →
 * 192 s) and 200-node seeds by ~5 %, for ~120 MB more RSS. `npm run sim`
 * passes the same.
 */
export const SIM_PROCESS_FLAGS: readonly string[] = ['--max-semi-space-size=128']

/**
 * Node's arguments for one `lattice sim` run from the checkout: through
 * bin/lattice.js, which runs the bundle when it is fresh (as after `npm ci`)
 * and the sources through tsx otherwise. A 200-node chaos seed took 4–7 %
 * longer through tsx (its loader transpiling every module at start, and
 * source maps on), which a 100-seed campaign pays a hundred times.
 */
export function simProcessArgs(simArgv: readonly string[], v8Flags: readonly string[] = SIM_PROCESS_FLAGS): string[] {
  return [...v8Flags, join(ROOT, 'bin', 'lattice.js'), 'sim', ...simArgv]
}

/** Default way to start one run: `lattice sim` from the checkout (simProcessArgs). */
export function defaultCommand(simArgv: readonly string[]): { file: string; args: string[]; cwd: string } {
  return { file: process.execPath, args: simProcessArgs(simArgv), cwd: ROOT }
}

/** Sim flags a campaign sets itself per run; a caller may not. */
const CONTROLLED_SIM_FLAGS = new Set(['seed', 'json', 'report', 'quiet', 'verbose', 'trace'])

export async function runCampaign(options: CampaignOptions): Promise<CampaignResult> {
  const simArgv = [...(options.scenarioFile !== undefined ? ['--scenario-file', resolve(options.scenarioFile)] : ['--scenario', options.scenario]), '--nodes', String(options.nodes)]
  if (options.durationS !== undefined) simArgv.push('--duration-s', String(options.durationS))
  for (const [name, value] of Object.entries(options.flags ?? {})) {
    const flag = kebab(name)
    if (value === false) continue
    simArgv.push(`--${flag}`)
    if (value !== true) simArgv.push(String(value))
  }
  const seeds = typeof options.seeds === 'number' ? range(options.firstSeed ?? 1, options.seeds) : [...options.seeds]
  return executeCampaign(simArgv, seeds, options)
}

type CampaignSettings = Omit<CampaignOptions, 'scenario' | 'seeds' | 'firstSeed' | 'nodes' | 'durationS' | 'flags'>

/** Runs `simArgv` once per seed. Throws LatticeError VALIDATION_FAILED for flags the sim rejects. */
async function executeCampaign(simArgv: readonly string[], seeds: readonly number[], settings: CampaignSettings): Promise<CampaignResult> {
  const started = performance.now()
  const flags = validateSimArgv(simArgv, seeds)
  if (typeof flags === 'string') throw new LatticeError('VALIDATION_FAILED', flags)
  const print = settings.print === false ? () => {} : (settings.print ?? ((text: string) => void process.stdout.write(`${text}\n`)))
  const command = settings.command ?? defaultCommand
  const concurrency = Math.max(1, Math.min(settings.concurrency ?? availableParallelism(), seeds.length))
  const timeoutMs = (settings.timeoutS ?? 3_600) * 1000
  const reportDir = settings.reportDir
  if (reportDir !== undefined) await mkdir(reportDir, { recursive: true })

  const scratch = await mkdtemp(join(tmpdir(), 'lattice-campaign-'))
  const rows: CampaignRow[] = new Array(seeds.length)
  let next = 0
  let done = 0
  let running = 0
  try {
    const worker = async (): Promise<void> => {
      for (;;) {
        const index = next++
        if (index >= seeds.length) return
        const seed = seeds[index] as number
        running++
        const replay = replayCommand({ ...flags, seed })
        const jsonFile = join(scratch, `seed-${seed}.json`)
        const row = await runOne([...simArgv, '--seed', String(seed), '--json', jsonFile, '--quiet'], seed, jsonFile, replay, command, timeoutMs)
        if (reportDir !== undefined && row.report !== null) {
          const { writeReport } = await import('./report/index.ts')
          await writeReport(join(reportDir, seedDir(seed)), row.report, { replay })
        }
        rows[index] = row
        running--
        done++
        settings.onProgress?.({ row, done, total: seeds.length, running })
      }
    }
    await Promise.all(Array.from({ length: concurrency }, () => worker()))
  } finally {
    await rm(scratch, { recursive: true, force: true })
  }

  const distributions = figureDistributions(rows)
  const wallSeconds = (performance.now() - started) / 1000
  const summaryInput = { scenario: flags.scenario, nodes: flags.nodes, rows, distributions, wallSeconds }
  const summary = campaignText(summaryInput)
  print(summary)
  if (reportDir !== undefined) await writeCampaignReport(reportDir, summaryInput, simArgv)
  const failing = rows.filter((row) => !row.ok)
  return {
    ok: failing.length === 0,
    scenario: flags.scenario,
    nodes: flags.nodes,
    rows,
    failingSeeds: failing.map((row) => ({ seed: row.seed, replay: row.replay, violations: row.violations })),
    distributions,
    wallSeconds,
    summary,
  }
}

/** The sim's own parser judges the flags (with a seed of the campaign); returns them or the error. */
function validateSimArgv(simArgv: readonly string[], seeds: readonly number[]): SimFlags | string {
  if (seeds.length === 0) return 'a campaign needs at least one seed'
  if (seeds.length > CAMPAIGN_SEEDS_MAX) return `at most ${CAMPAIGN_SEEDS_MAX} seeds`
  for (const word of simArgv) {
    const name = word.startsWith('--') ? word.slice(2).split('=')[0] : undefined
    if (name !== undefined && CONTROLLED_SIM_FLAGS.has(name)) return `--${name} is set by the campaign for each run`
  }
  let flags: SimFlags | undefined
  for (const seed of seeds) {
    const parsed = parseSimFlags([...simArgv, '--seed', String(seed)])
    if (!parsed.ok) return parsed.error
    flags ??= parsed.flags
  }
  return flags as SimFlags
}

async function runOne(
  simArgv: string[],
  seed: number,
  jsonFile: string,
  replay: string,
  command: NonNullable<CampaignOptions['command']>,
  timeoutMs: number,
): Promise<CampaignRow> {
  const started = performance.now()
  const { file, args, cwd } = command(simArgv)
  const outcome = await new Promise<{ exitCode: number | null; signal: NodeJS.Signals | null; stderr: string; timedOut: boolean; spawnError?: Error }>((resolve) => {
    const child = spawn(file, args, { cwd: cwd ?? ROOT, stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    let timedOut = false
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-STDERR_TAIL_BYTES)
    })
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, timeoutMs)
    child.on('error', (err) => {
      clearTimeout(timer)
      resolve({ exitCode: null, signal: null, stderr, timedOut, spawnError: err })
    })
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer)
      resolve({ exitCode, signal, stderr, timedOut })
    })
  })
  const processWallSeconds = (performance.now() - started) / 1000
  const report = existsSync(jsonFile) ? await readReport(jsonFile) : null
  const base = { seed, exitCode: outcome.exitCode, processWallSeconds, report, replay }
  let error: string | undefined
  if (outcome.spawnError !== undefined) error = `could not start: ${outcome.spawnError.message}`
  else if (outcome.timedOut) error = `timed out after ${Math.round(timeoutMs / 1000)} s (killed)`
  else if (report === null) error = `exited ${outcome.exitCode ?? outcome.signal} without a report${stderrTail(outcome.stderr)}`
  else if (outcome.exitCode !== 0 && outcome.exitCode !== 1) error = `exited ${outcome.exitCode ?? outcome.signal}${stderrTail(outcome.stderr)}`
  if (error !== undefined) return { ...base, ok: false, violations: [...(report?.invariants.violations ?? []), error], error }
  const held = report !== null && report.invariants.ok && outcome.exitCode === 0
  const violations = report?.invariants.violations ?? []
  if (!held && violations.length === 0) return { ...base, ok: false, violations: [`exit code ${outcome.exitCode} but the report lists no violation`] }
  return { ...base, ok: held, violations }
}

async function readReport(file: string): Promise<SimReport | null> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as SimReport
  } catch {
    return null
  }
}

const stderrTail = (stderr: string): string => {
  const lines = stderr.trim().split('\n').slice(-5).join(' | ')
  return lines === '' ? '' : `: ${lines}`
}

async function writeCampaignReport(dir: string, input: Parameters<typeof campaignText>[0], simArgv: readonly string[]): Promise<void> {
  const points: CampaignFigurePoint[] = input.rows.flatMap((row) =>
    row.report === null ? [] : figureValues(row.report.figures).flatMap((f) => (f.value === null ? [] : [{ seed: row.seed, figure: f.path, value: f.value, ok: row.ok }])),
  )
  let figuresPlot: string | undefined
  if (points.length > 0) {
    const { campaignFiguresSpec, renderSvg } = await import('./report/index.ts')
    await writeFile(join(dir, 'figures.svg'), await renderSvg(campaignFiguresSpec(input.scenario, input.nodes, points)))
    figuresPlot = 'figures.svg'
  }
  const json = {
    scenario: input.scenario,
    nodes: input.nodes,
    simArgv,
    ok: input.rows.every((row) => row.ok),
    wallSeconds: Math.round(input.wallSeconds * 10) / 10,
    rows: input.rows.map((row) => ({
      seed: row.seed,
      ok: row.ok,
      exitCode: row.exitCode,
      processWallSeconds: Math.round(row.processWallSeconds * 10) / 10,
      violations: row.violations,
      error: row.error,
      replay: row.replay,
      traceHash: row.report?.traceHash ?? null,
      virtualSeconds: row.report?.virtualSeconds ?? null,
      wallSeconds: row.report?.wallSeconds ?? null,
      figures: row.report?.figures ?? null,
      report: row.report === null ? null : `${seedDir(row.seed)}/report.json`,
    })),
    distributions: input.distributions,
  }
  await writeFile(join(dir, 'campaign.json'), `${JSON.stringify(json, null, 2)}\n`)
  await writeFile(join(dir, 'campaign.md'), campaignMarkdown({ ...input, seedReportDir: seedDir, ...(figuresPlot === undefined ? {} : { figuresPlot }) }))
}

const seedDir = (seed: number): string => `seed-${seed}`

// ---- the command

const CAMPAIGN_USAGE =
  'usage: lattice sim campaign --seeds N (--scenario S | --scenario-file F) --nodes N [--duration-s T] [--concurrency C] [--report DIR] [--first-seed S | --seed-list 3,17] [--timeout-s T] [--quiet] [other sim flags]'

/** The campaign's own flags (the rest are the sim's). */
export const CampaignFlagsSchema = z
  .strictObject({
    seeds: z.coerce.number().int().min(1).max(CAMPAIGN_SEEDS_MAX).optional(),
    seedList: z
      .string()
      .regex(/^\d+(,\d+)*$/, 'expected comma-separated seeds, e.g. 3,17,42')
      .transform((text) => text.split(',').map(Number))
      .pipe(z.array(z.number().int().min(0).max(0xffff_ffff)).max(CAMPAIGN_SEEDS_MAX))
      .optional(),
    firstSeed: z.coerce.number().int().min(0).max(0xffff_ffff).default(1),
    concurrency: z.coerce.number().int().min(1).max(256).optional(),
    report: z.string().min(1).optional(),
    timeoutS: z.coerce.number().positive().max(7 * 24 * 3600).default(3_600),
    quiet: z.boolean().default(false),
  })
  .refine((flags) => (flags.seeds === undefined) !== (flags.seedList === undefined), { message: 'give exactly one of --seeds N and --seed-list a,b,c', path: ['seeds'] })
export type CampaignFlags = z.output<typeof CampaignFlagsSchema>

const CAMPAIGN_VALUE_FLAGS: Record<string, keyof CampaignFlags> = {
  seeds: 'seeds',
  'seed-list': 'seedList',
  'first-seed': 'firstSeed',
  concurrency: 'concurrency',
  report: 'report',
  'timeout-s': 'timeoutS',
}
const CAMPAIGN_BOOLEAN_FLAGS: Record<string, keyof CampaignFlags> = { quiet: 'quiet' }

/** Splits argv (after `sim campaign`) into the campaign's flags and the sim's; validates both. */
export function parseCampaignArgv(argv: readonly string[]): { ok: true; flags: CampaignFlags; simArgv: string[]; seeds: number[] } | { ok: false; error: string } {
  const words = [...argv]
  if (words[0] === 'sim') words.shift()
  if (words[0] === 'campaign') words.shift()
  const own: Record<string, unknown> = {}
  const simArgv: string[] = []
  for (let i = 0; i < words.length; i++) {
    const word = words[i] as string
    const match = /^--([^=]+)(?:=(.*))?$/.exec(word)
    const name = match?.[1]
    if (match === null || name === undefined) {
      simArgv.push(word)
      continue
    }
    const valueKey = CAMPAIGN_VALUE_FLAGS[name]
    const booleanKey = CAMPAIGN_BOOLEAN_FLAGS[name]
    if (name === 'scenario-file') {
      // Each run starts in the checkout's root: pass the file by absolute path.
      const value = match[2] ?? words[++i]
      if (value === undefined || (match[2] === undefined && value.startsWith('--'))) return { ok: false, error: `--${name}: needs a value` }
      simArgv.push('--scenario-file', resolve(value))
    } else if (valueKey !== undefined) {
      const value = match[2] ?? words[++i]
      if (value === undefined || (match[2] === undefined && value.startsWith('--'))) return { ok: false, error: `--${name}: needs a value` }
      own[valueKey] = value
    } else if (booleanKey !== undefined) {
      own[booleanKey] = true
    } else {
      simArgv.push(word)
    }
  }
  const parsed = CampaignFlagsSchema.safeParse(own)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const key = String(issue?.path[0] ?? '?')
    const flag = Object.entries({ ...CAMPAIGN_VALUE_FLAGS, ...CAMPAIGN_BOOLEAN_FLAGS }).find(([, k]) => k === key)?.[0] ?? key
    return { ok: false, error: `--${flag}: ${issue?.message ?? 'invalid'}` }
  }
  const flags = parsed.data
  const seeds = flags.seedList ?? range(flags.firstSeed, flags.seeds ?? 0)
  const checked = validateSimArgv(simArgv, seeds)
  if (typeof checked === 'string') return { ok: false, error: checked }
  return { ok: true, flags, simArgv, seeds }
}

/** `lattice sim campaign …`: exit 0 when every seed passed, 1 when any failed, 2 on bad flags. */
export async function runCampaignCommand(argv: readonly string[]): Promise<number> {
  const parsed = parseCampaignArgv(argv)
  if (!parsed.ok) {
    process.stderr.write(`lattice sim campaign: ${parsed.error}\n${CAMPAIGN_USAGE}\n`)
    return 2
  }
  const { flags, simArgv, seeds } = parsed
  const progress = (p: CampaignProgress): void => {
    const { row } = p
    const result = row.ok ? 'pass' : row.error !== undefined ? 'error' : 'FAIL'
    process.stderr.write(`seed ${row.seed}: ${result} in ${row.processWallSeconds.toFixed(1)} s (${p.done}/${p.total} done, ${p.running} running)\n`)
  }
  const result = await executeCampaign(simArgv, seeds, {
    ...(flags.concurrency === undefined ? {} : { concurrency: flags.concurrency }),
    ...(flags.report === undefined ? {} : { reportDir: flags.report }),
    timeoutS: flags.timeoutS,
    ...(flags.quiet ? {} : { onProgress: progress }),
  })
  if (flags.report !== undefined) process.stderr.write(`report: ${join(flags.report, 'campaign.md')}\n`)
  return result.ok ? 0 : 1
}

function range(first: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => first + i)
}

const kebab = (name: string): string => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
