/**
 * The simulator report as CONTRACTS.md defines it (`--json FILE`), loose
 * enough that every scenario's own report type is assignable to it: a figure
 * a scenario does not measure is null.
 */
import type { SimSeries } from './series.ts'

export interface Percentiles {
  p50: number
  p99: number
}

export interface SimFigures {
  joinConvergenceMs: Percentiles | null
  deathDetectionMs: Percentiles | null
  falsePositiveDeaths: number | null
  placeLatencyMs: Percentiles | null
  failoverMs: Percentiles | null
  placementsPerSecond: number | null
  bidsPerPlacement: number | null
  gossipBytesPerNodePerSecond: number | null
  heapBytesPerNode: number | null
}

export interface SimReport {
  seed: number
  nodes: number
  scenario: string
  virtualSeconds: number
  wallSeconds: number
  invariants: { ok: boolean; violations: string[] }
  traceHash: string
  figures: SimFigures
  details?: Record<string, unknown>
  /** Plot data (sim/report/series.ts); optional, every series in it too. */
  series?: SimSeries
}

export type FigureName = keyof SimFigures

/** The figures in the order reports list them. */
export const FIGURE_NAMES: readonly FigureName[] = [
  'joinConvergenceMs',
  'deathDetectionMs',
  'falsePositiveDeaths',
  'placeLatencyMs',
  'failoverMs',
  'placementsPerSecond',
  'bidsPerPlacement',
  'gossipBytesPerNodePerSecond',
  'heapBytesPerNode',
]

/** One number of the figures, named by its path in report.json (`deathDetectionMs.p99`). */
export interface FigureValue {
  path: string
  figure: FigureName
  /** p50 / p99 for percentile figures. */
  part?: 'p50' | 'p99'
  /** null when the scenario does not measure it. */
  value: number | null
}

/** The figures flattened to one number per row, in report order. */
export function figureValues(figures: Partial<Record<FigureName, unknown>>): FigureValue[] {
  const out: FigureValue[] = []
  for (const figure of FIGURE_NAMES) {
    const raw = figures[figure]
    if (raw !== null && typeof raw === 'object') {
      const p = raw as Partial<Percentiles>
      out.push({ path: `${figure}.p50`, figure, part: 'p50', value: typeof p.p50 === 'number' ? p.p50 : null })
      out.push({ path: `${figure}.p99`, figure, part: 'p99', value: typeof p.p99 === 'number' ? p.p99 : null })
    } else if (isPercentileFigure(figure)) {
      out.push({ path: `${figure}.p50`, figure, part: 'p50', value: null })
      out.push({ path: `${figure}.p99`, figure, part: 'p99', value: null })
    } else {
      out.push({ path: figure, figure, value: typeof raw === 'number' ? raw : null })
    }
  }
  return out
}

const PERCENTILE_FIGURES = new Set<FigureName>(['joinConvergenceMs', 'deathDetectionMs', 'placeLatencyMs', 'failoverMs'])

export function isPercentileFigure(figure: FigureName): boolean {
  return PERCENTILE_FIGURES.has(figure)
}
