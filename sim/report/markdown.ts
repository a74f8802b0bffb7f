/**
 * report.md: the human summary of one run. Every number it shows is printed
 * exactly as report.json holds it (String(value), no rounding, no thousands
 * separators), next to the path that finds it there, so the two never
 * disagree.
 */
import type { SeriesName } from './series.ts'
import { meets, targetFor } from './targets.ts'
import { figureValues, type SimReport } from './types.ts'

export interface PlotOutcome {
  file: string
  title: string
  series: SeriesName
  howToRead: string
  /** Set when the SVG was written. */
  written: boolean
  /** Why it was not, when it was not. */
  skipped?: string
}

export interface MarkdownOptions {
  /** The command that replays the run (sim/cli.ts replayCommand). */
  replay?: string
  plots: readonly PlotOutcome[]
}

/** Rows of the details table at most (scalars of `details`; the rest stays in report.json). */
export const DETAILS_ROWS_MAX = 40

export function renderMarkdown(report: SimReport, options: MarkdownOptions): string {
  const lines: string[] = []
  lines.push(`# Simulator report: ${report.scenario}, ${report.nodes} nodes, seed ${report.seed}`, '')
  if (report.invariants.ok) {
    lines.push('**PASS**: every invariant held.', '')
  } else {
    lines.push(`**FAIL**: ${report.invariants.violations.length} invariant violation(s):`, '')
    for (const violation of report.invariants.violations) lines.push(`- ${oneLine(violation)}`)
    lines.push('')
  }

  lines.push('| run | value |', '| --- | --- |')
  lines.push(`| scenario | ${cell(report.scenario)} |`)
  lines.push(`| seed | ${report.seed} |`)
  lines.push(`| nodes | ${report.nodes} |`)
  lines.push(`| virtualSeconds | ${report.virtualSeconds} |`)
  lines.push(`| wallSeconds | ${report.wallSeconds} |`)
  lines.push(`| traceHash | \`${cell(report.traceHash)}\` |`, '')

  lines.push('Replay this run (same seed and flags, same traceHash):', '', '```sh')
  lines.push(options.replay ?? `npm run sim -- --scenario ${report.scenario} --nodes ${report.nodes} --seed ${report.seed}   # plus the run's other flags`)
  lines.push('```', '')

  lines.push('## Figures', '')
  lines.push('Values exactly as in report.json (`figures.<path>`); "n/a" means the scenario does not measure it. Targets come from the project plan and hold at the scale named.', '')
  lines.push('| figure | value | target | target set at | met |', '| --- | ---: | --- | --- | :---: |')
  for (const figure of figureValues(report.figures)) {
    const target = targetFor(figure.path)
    const met = meets(target, figure.value)
    lines.push(`| \`${figure.path}\` | ${figure.value === null ? 'n/a' : String(figure.value)} | ${target?.text ?? '—'} | ${target?.at ?? ''} | ${met === undefined ? '' : met ? 'yes' : '**no**'} |`)
  }
  lines.push('')

  lines.push('## Plots', '')
  for (const plot of options.plots) {
    lines.push(`### ${plot.title}`, '')
    if (!plot.written) {
      lines.push(`Not plotted: ${plot.skipped ?? 'no data'}.`, '')
      continue
    }
    lines.push(`![${plot.title}](${plot.file})`, '', plot.howToRead, '')
    const kept = report.series?.[plot.series]
    const total = report.series?.totals?.[plot.series]
    if (Array.isArray(kept) && total !== undefined && total > kept.length) {
      lines.push(`Sampled: ${kept.length} of ${total} points kept (an even sample over the whole run; the recorder bounds each series).`, '')
    }
  }

  const details = Object.entries(report.details ?? {}).filter(([, value]) => value === null || ['number', 'string', 'boolean'].includes(typeof value))
  if (details.length > 0) {
    lines.push('## Details', '', 'Scalar details; nested ones are in report.json (`details`).', '', '| detail | value |', '| --- | ---: |')
    for (const [key, value] of details.slice(0, DETAILS_ROWS_MAX)) lines.push(`| \`${cell(key)}\` | ${cell(String(value))} |`)
    if (details.length > DETAILS_ROWS_MAX) lines.push(`| … | ${details.length - DETAILS_ROWS_MAX} more in report.json |`)
    lines.push('')
  }
  return lines.join('\n')
}

const oneLine = (text: string): string => text.replace(/\s*\n\s*/g, ' ')
const cell = (text: string): string => oneLine(text).replace(/\|/g, '\\|')
