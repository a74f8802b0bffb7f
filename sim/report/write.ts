/**
 * writeReport(dir, report): report.json (the report as is), one SVG per plot
 * whose series the report carries, and report.md linking them. report.json is
 * written first, so a plot that fails to render never costs the data.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { renderMarkdown, type PlotOutcome } from './markdown.ts'
import { PLOTS, renderSvg } from './plots.ts'
import type { SimReport } from './types.ts'

export interface WriteReportOptions {
  /** The command that replays the run; report.md prints it. */
  replay?: string
}

export interface WrittenReport {
  dir: string
  /** Absolute or dir-joined paths of every file written. */
  files: string[]
  plots: PlotOutcome[]
}

export async function writeReport(dir: string, report: SimReport, options: WriteReportOptions = {}): Promise<WrittenReport> {
  await mkdir(dir, { recursive: true })
  const files: string[] = []
  const jsonFile = join(dir, 'report.json')
  await writeFile(jsonFile, `${JSON.stringify(report, null, 2)}\n`)
  files.push(jsonFile)

  const plots: PlotOutcome[] = []
  for (const plot of PLOTS) {
    const base = { file: plot.file, title: plot.title, series: plot.series, howToRead: plot.howToRead }
    const spec = plot.spec(report)
    if ('skip' in spec) {
      plots.push({ ...base, written: false, skipped: spec.skip })
      continue
    }
    try {
      const svg = await renderSvg(spec)
      const file = join(dir, plot.file)
      await writeFile(file, svg)
      files.push(file)
      plots.push({ ...base, written: true })
    } catch (err) {
      plots.push({ ...base, written: false, skipped: `rendering failed (${(err as Error).message})` })
    }
  }

  const mdFile = join(dir, 'report.md')
  await writeFile(mdFile, renderMarkdown(report, { replay: options.replay, plots }))
  files.push(mdFile)
  return { dir, files, plots }
}
