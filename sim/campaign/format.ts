/**
 * A campaign's tables, as plain text for the terminal and as Markdown for
 * campaign.md: pass/fail per seed, then each figure's spread across seeds.
 * Numbers are printed as report.json holds them.
 */
import { percentile } from '../bench/stats.ts'
import { figureValues, type SimReport } from '../report/types.ts'

export interface CampaignRow {
  seed: number
  /** The run exited 0 and its report says every invariant held. */
  ok: boolean
  /** The child's exit code (null when killed by a signal). */
  exitCode: number | null
  /** Wall seconds of the child process (start-up included). */
  processWallSeconds: number
  /** The run's report, when it wrote one. */
  report: SimReport | null
  /** Invariant violations, or the crash / timeout reason when there is no report. */
  violations: string[]
  /** Set when the run crashed, timed out or wrote no report. */
  error?: string
  /** The command that replays this seed. */
  replay: string
}

export interface FigureDistribution {
  /** Path in report.json (`figures.<path>`), or `wallSeconds` / `virtualSeconds`. */
  path: string
  /** Seeds with a value (not null). */
  count: number
  min: number
  p50: number
  p99: number
  max: number
}

/** Each figure's min / p50 / p99 / max across the rows that have a report and a value. */
export function figureDistributions(rows: readonly CampaignRow[]): FigureDistribution[] {
  const reports = rows.flatMap((row) => (row.report === null ? [] : [row.report]))
  const byPath = new Map<string, number[]>()
  const add = (path: string, value: number | null): void => {
    if (value === null || !Number.isFinite(value)) return
    const list = byPath.get(path) ?? []
    list.push(value)
    byPath.set(path, list)
  }
  for (const report of reports) {
    for (const figure of figureValues(report.figures)) add(figure.path, figure.value)
    add('wallSeconds', report.wallSeconds)
    add('virtualSeconds', report.virtualSeconds)
  }
  return [...byPath.entries()].map(([path, values]) => ({
    path,
    count: values.length,
    min: Math.min(...values),
    p50: percentile(values, 0.5),
    p99: percentile(values, 0.99),
    max: Math.max(...values),
  }))
}

/** Columns: right-aligned numbers, left-aligned text, two spaces apart. */
export function textTable(headers: readonly string[], rows: readonly string[][], rightAligned: readonly boolean[]): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)))
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, column) => (rightAligned[column] === true ? cell.padStart(widths[column] ?? 0) : cell.padEnd(widths[column] ?? 0)))
      .join('  ')
      .trimEnd()
  return [line(headers), ...rows.map(line)].join('\n')
}

const SEED_HEADERS = ['seed', 'result', 'virtual s', 'wall s', 'violations', 'traceHash'] as const

function seedCells(row: CampaignRow): string[] {
  return [
    String(row.seed),
    row.ok ? 'pass' : row.error !== undefined ? 'error' : 'FAIL',
    row.report === null ? '-' : String(row.report.virtualSeconds),
    row.report === null ? String(round1(row.processWallSeconds)) : String(row.report.wallSeconds),
    String(row.violations.length),
    row.report === null ? '-' : row.report.traceHash.slice(0, 12),
  ]
}

const DISTRIBUTION_HEADERS = ['figure', 'seeds', 'min', 'p50', 'p99', 'max'] as const
const distributionCells = (d: FigureDistribution): string[] => [d.path, String(d.count), String(d.min), String(d.p50), String(d.p99), String(d.max)]

export interface CampaignSummaryInput {
  scenario: string
  nodes: number
  rows: readonly CampaignRow[]
  distributions: readonly FigureDistribution[]
  wallSeconds: number
}

export function campaignText(input: CampaignSummaryInput): string {
  const failed = input.rows.filter((row) => !row.ok)
  const out: string[] = []
  out.push(`campaign: scenario ${input.scenario}, ${input.nodes} nodes, ${input.rows.length} seeds, wall ${round1(input.wallSeconds)} s`, '')
  out.push(textTable(SEED_HEADERS, input.rows.map(seedCells), [true, false, true, true, true, false]), '')
  if (input.distributions.length > 0) {
    out.push('figures across seeds:', textTable(DISTRIBUTION_HEADERS, input.distributions.map(distributionCells), [false, true, true, true, true, true]), '')
  }
  if (failed.length === 0) {
    out.push(`${input.rows.length}/${input.rows.length} seeds passed`)
  } else {
    out.push(`${failed.length}/${input.rows.length} seeds failed; replay with:`)
    for (const row of failed) {
      out.push(`  ${row.replay}`)
      for (const violation of row.violations.slice(0, 3)) out.push(`      - ${violation}`)
      if (row.violations.length > 3) out.push(`      … ${row.violations.length - 3} more`)
    }
  }
  return out.join('\n')
}

export function campaignMarkdown(input: CampaignSummaryInput & { figuresPlot?: string; seedReportDir?: (seed: number) => string }): string {
  const failed = input.rows.filter((row) => !row.ok)
  const out: string[] = []
  out.push(`# Simulator campaign: ${input.scenario}, ${input.nodes} nodes, ${input.rows.length} seeds`, '')
  out.push(failed.length === 0 ? `**PASS**: all ${input.rows.length} seeds held every invariant.` : `**FAIL**: ${failed.length} of ${input.rows.length} seeds failed.`, '')
  out.push('## Seeds', '')
  out.push(`| ${SEED_HEADERS.join(' | ')} | report |`, `| ${SEED_HEADERS.map((_, i) => (i === 1 || i === 5 ? '---' : '---:')).join(' | ')} | --- |`)
  for (const row of input.rows) {
    const link = input.seedReportDir === undefined || row.report === null ? '' : `[report](${input.seedReportDir(row.seed)}/report.md)`
    out.push(`| ${seedCells(row).join(' | ')} | ${link} |`)
  }
  out.push('')
  if (input.distributions.length > 0) {
    out.push('## Figures across seeds', '', 'Nearest-rank percentiles over the seeds that measured the figure; values as in each seed\'s report.json.', '')
    out.push(`| ${DISTRIBUTION_HEADERS.join(' | ')} |`, `| --- | ${DISTRIBUTION_HEADERS.slice(1).map(() => '---:').join(' | ')} |`)
    for (const d of input.distributions) out.push(`| \`${d.path}\` | ${distributionCells(d).slice(1).join(' | ')} |`)
    out.push('')
    if (input.figuresPlot !== undefined) out.push(`![Figures across seeds](${input.figuresPlot})`, '', 'One strip per figure, one tick per seed (red: the seed failed); a tick far from the others is the seed to look at.', '')
  }
  if (failed.length > 0) {
    out.push('## Failing seeds', '')
    for (const row of failed) {
      out.push(`### seed ${row.seed}`, '', '```sh', row.replay, '```', '')
      for (const violation of row.violations) out.push(`- ${violation.replace(/\s*\n\s*/g, ' ')}`)
      out.push('')
    }
  }
  return out.join('\n')
}

const round1 = (x: number): number => Math.round(x * 10) / 10
