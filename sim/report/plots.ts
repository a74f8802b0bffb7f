/**
 * The report's plots: Vega-Lite specs built from a report's `series`,
 * compiled to Vega and rendered to SVG headless (`View.toSVG`, renderer
 * "none": no browser, no canvas, no DOM). Each plot names the series it
 * needs; a report without that series skips the plot with the reason.
 */
import { Error as VEGA_LOG_ERROR, parse, View } from 'vega'
import { compile, type TopLevelSpec } from 'vega-lite'
import type { SeriesName } from './series.ts'
import { targetFor } from './targets.ts'
import type { SimReport } from './types.ts'

/** At most this many observers' alive counts are drawn (a few lines, not hundreds). */
export const PLOT_OBSERVERS_MAX = 6
/** At most this many rows (killed nodes, moved replicas) in a timeline; the earliest kills. */
export const PLOT_TIMELINE_ROWS_MAX = 40

const WIDTH = 640
const HEIGHT = 240
const CONFIG = {
  background: 'white',
  font: 'Helvetica, Arial, sans-serif',
  axis: { labelFontSize: 11, titleFontSize: 12, grid: true, gridOpacity: 0.5 },
  legend: { labelFontSize: 11, titleFontSize: 11, labelLimit: 320 },
  title: { fontSize: 14, anchor: 'start' as const },
}
const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json'

export interface PlotDefinition {
  /** File name in the report dir. */
  file: string
  title: string
  /** The series it is drawn from. */
  series: SeriesName
  /** One or two sentences: how to read it (report.md prints them under the plot). */
  howToRead: string
  /** The spec, or a reason to skip the plot (e.g. the series is empty). */
  spec(report: SimReport): TopLevelSpec | { skip: string }
}

const seconds = (ms: number): number => Math.round(ms) / 1000

const absent = (report: SimReport, name: SeriesName): { skip: string } | undefined => {
  const data = report.series?.[name]
  if (data === undefined) return { skip: `the run recorded no \`series.${name}\`` }
  if (Array.isArray(data) && data.length === 0) return { skip: `\`series.${name}\` is empty` }
  return undefined
}

export const PLOTS: readonly PlotDefinition[] = [
  {
    file: 'alive.svg',
    title: 'Alive members per observer',
    series: 'aliveCount',
    howToRead:
      'Each line is one observer\'s count of members it holds alive, over virtual time. Lines should rise together during the join, step down shortly after each kill (the detection delay), and never dip for a node that was not killed (a dip that recovers is a false suspicion or death).',
    spec: (report) => {
      const skip = absent(report, 'aliveCount')
      if (skip) return skip
      const points = report.series?.aliveCount ?? []
      const observers = [...new Set(points.map((p) => p.observer))].slice(0, PLOT_OBSERVERS_MAX)
      const keep = new Set(observers)
      const values = points.filter((p) => keep.has(p.observer)).map((p) => ({ t: seconds(p.tMs), alive: p.alive, observer: p.observer }))
      return {
        $schema: SCHEMA,
        title: `Alive members per observer (${report.nodes} nodes)`,
        width: WIDTH,
        height: HEIGHT,
        config: CONFIG,
        data: { values },
        mark: { type: 'line', interpolate: 'step-after', strokeWidth: 1.5 },
        encoding: {
          x: { field: 't', type: 'quantitative', title: 'virtual time (s)' },
          y: { field: 'alive', type: 'quantitative', title: 'alive members', scale: { zero: false } },
          color: { field: 'observer', type: 'nominal', title: 'observer', sort: observers },
        },
      }
    },
  },
  {
    file: 'detections.svg',
    title: 'Death detection timeline',
    series: 'detections',
    howToRead:
      'One row per killed node, in kill order: the red cross is the kill, each blue dot is one observer marking it dead, the grey bar spans kill → last observer. A short bar means fast detection; a long tail means some observer learned late.',
    spec: (report) => {
      const skip = absent(report, 'detections')
      if (skip) return skip
      const points = report.series?.detections ?? []
      const bySubject = new Map<string, { killedAtMs: number; lastAtMs: number }>()
      for (const p of points) {
        const row = bySubject.get(p.subject)
        if (row === undefined) bySubject.set(p.subject, { killedAtMs: p.killedAtMs, lastAtMs: p.detectedAtMs })
        else row.lastAtMs = Math.max(row.lastAtMs, p.detectedAtMs)
      }
      const subjects = [...bySubject.entries()].sort((a, b) => a[1].killedAtMs - b[1].killedAtMs || a[0].localeCompare(b[0])).slice(0, PLOT_TIMELINE_ROWS_MAX)
      const order = subjects.map(([subject]) => subject)
      const shown = new Set(order)
      return timeline({
        title: `Death detection: kill → each observer marks it dead (${shown.size} of ${bySubject.size} killed nodes)`,
        rowTitle: 'killed node',
        order,
        spans: subjects.map(([subject, row]) => ({ row: subject, start: seconds(row.killedAtMs), end: seconds(row.lastAtMs) })),
        marks: [
          ...subjects.map(([subject, row]) => ({ row: subject, t: seconds(row.killedAtMs), what: 'killed' })),
          ...points.filter((p) => shown.has(p.subject)).map((p) => ({ row: p.subject, t: seconds(p.detectedAtMs), what: 'marked dead by an observer' })),
        ],
        legend: [
          ['killed', '#d62728', 'cross'],
          ['marked dead by an observer', '#1f77b4', 'circle'],
        ],
      })
    },
  },
  {
    file: 'failovers.svg',
    title: 'Failover timeline',
    series: 'failovers',
    howToRead: 'One row per replica that lost its node, in kill order: red cross at the kill, green dot when the replacement runs on another node. The bar length is that replica\'s failover time.',
    spec: (report) => {
      const skip = absent(report, 'failovers')
      if (skip) return skip
      const points = [...(report.series?.failovers ?? [])].sort((a, b) => a.killedAtMs - b.killedAtMs || a.replica.localeCompare(b.replica))
      // A replica may move more than once: each move is its own row.
      const rows = points.slice(0, PLOT_TIMELINE_ROWS_MAX).map((p, i) => ({ ...p, row: `${p.replica} #${i + 1}` }))
      return timeline({
        title: `Failover: kill → replacement running (${rows.length} of ${points.length} moves)`,
        rowTitle: 'replica',
        order: rows.map((r) => r.row),
        spans: rows.map((r) => ({ row: r.row, start: seconds(r.killedAtMs), end: seconds(r.runningAtMs) })),
        marks: [...rows.map((r) => ({ row: r.row, t: seconds(r.killedAtMs), what: 'node killed' })), ...rows.map((r) => ({ row: r.row, t: seconds(r.runningAtMs), what: 'replacement running' }))],
        legend: [
          ['node killed', '#d62728', 'cross'],
          ['replacement running', '#2ca02c', 'circle'],
        ],
      })
    },
  },
  {
    file: 'place-latency-cdf.svg',
    title: 'Placement latency CDF',
    series: 'placeLatenciesMs',
    howToRead: 'The fraction of placements (y) that ran within a given latency (x), accept → running. The dashed lines are the report\'s p50 and p99; the steeper and further left the curve, the better.',
    spec: (report) => {
      const skip = absent(report, 'placeLatenciesMs')
      if (skip) return skip
      const sorted = [...(report.series?.placeLatenciesMs ?? [])].sort((a, b) => a - b)
      const values = sorted.map((ms, i) => ({ ms, fraction: (i + 1) / sorted.length }))
      const marks: Array<{ ms: number; label: string }> = []
      const figure = report.figures.placeLatencyMs
      if (figure !== null) marks.push({ ms: figure.p50, label: `p50 ${figure.p50} ms` }, { ms: figure.p99, label: `p99 ${figure.p99} ms` })
      const total = report.series?.totals?.placeLatenciesMs
      return {
        $schema: SCHEMA,
        title: `Placement latency CDF (${sorted.length}${total !== undefined && total > sorted.length ? ` sampled of ${total}` : ''} placements)`,
        width: WIDTH,
        height: HEIGHT,
        config: CONFIG,
        layer: [
          {
            data: { values },
            mark: { type: 'line', interpolate: 'step-after', strokeWidth: 1.5 },
            encoding: {
              x: { field: 'ms', type: 'quantitative', title: 'accept → running (ms)' },
              y: { field: 'fraction', type: 'quantitative', title: 'fraction of placements', scale: { domain: [0, 1] } },
            },
          },
          ...verticalMarkers(marks, 'ms'),
        ],
      }
    },
  },
  {
    file: 'gossip-bytes.svg',
    title: 'Gossip bytes per node per second',
    series: 'gossipBytes',
    howToRead: 'Bytes each alive node received per second, over virtual time (all gossip, requests and responses). The dashed red line is the target; spikes line up with joins, kills and heals.',
    spec: (report) => {
      const skip = absent(report, 'gossipBytes')
      if (skip) return skip
      const values = (report.series?.gossipBytes ?? []).map((p) => ({ t: seconds(p.tMs), bytes: p.bytesPerNodePerSecond }))
      const target = targetFor('gossipBytesPerNodePerSecond')
      return {
        $schema: SCHEMA,
        title: 'Gossip bytes per node per second',
        width: WIDTH,
        height: HEIGHT,
        config: CONFIG,
        layer: [
          {
            data: { values },
            mark: { type: 'line', strokeWidth: 1.5 },
            encoding: {
              x: { field: 't', type: 'quantitative', title: 'virtual time (s)' },
              y: { field: 'bytes', type: 'quantitative', title: 'bytes / node / s' },
            },
          },
          ...(target === undefined ? [] : horizontalTarget(target.value, `target ${target.text}`)),
        ],
      }
    },
  },
  {
    file: 'heads.svg',
    title: 'Document heads convergence',
    series: 'heads',
    howToRead: 'How many distinct document heads the alive nodes hold, over virtual time. 1 means every node has the same document; after a partition heals or writes stop, the line must come back to 1 within the liveness budget.',
    spec: (report) => {
      const skip = absent(report, 'heads')
      if (skip) return skip
      const values = (report.series?.heads ?? []).map((p) => ({ t: seconds(p.tMs), heads: p.distinctHeads }))
      return {
        $schema: SCHEMA,
        title: 'Distinct document heads across alive nodes',
        width: WIDTH,
        height: HEIGHT,
        config: CONFIG,
        layer: [
          {
            data: { values },
            mark: { type: 'line', interpolate: 'step-after', strokeWidth: 1.5 },
            encoding: {
              x: { field: 't', type: 'quantitative', title: 'virtual time (s)' },
              y: { field: 'heads', type: 'quantitative', title: 'distinct heads', axis: { tickMinStep: 1 }, scale: { domainMin: 0 } },
            },
          },
          ...horizontalTarget(1, 'converged'),
        ],
      }
    },
  },
]

interface TimelineInput {
  title: string
  rowTitle: string
  order: string[]
  spans: Array<{ row: string; start: number; end: number }>
  marks: Array<{ row: string; t: number; what: string }>
  /** [label, colour, shape] in legend order. */
  legend: Array<[string, string, string]>
}

function timeline(input: TimelineInput): TopLevelSpec {
  const y = { field: 'row', type: 'nominal' as const, title: input.rowTitle, sort: input.order }
  return {
    $schema: SCHEMA,
    title: input.title,
    width: WIDTH,
    height: { step: 18 },
    config: CONFIG,
    layer: [
      {
        data: { values: input.spans },
        mark: { type: 'rule', color: '#bbbbbb', strokeWidth: 3 },
        encoding: { x: { field: 'start', type: 'quantitative', title: 'virtual time (s)', scale: { zero: false } }, x2: { field: 'end' }, y },
      },
      {
        data: { values: input.marks },
        mark: { type: 'point', filled: true, size: 36, opacity: 0.8 },
        encoding: {
          x: { field: 't', type: 'quantitative' },
          y,
          color: { field: 'what', type: 'nominal', title: null, scale: { domain: input.legend.map((l) => l[0]), range: input.legend.map((l) => l[1]) } },
          shape: { field: 'what', type: 'nominal', title: null, scale: { domain: input.legend.map((l) => l[0]), range: input.legend.map((l) => l[2]) } },
        },
      },
    ],
  }
}

function verticalMarkers(marks: Array<{ ms: number; label: string }>, field: string): NonNullable<Extract<TopLevelSpec, { layer: unknown }>['layer']> {
  if (marks.length === 0) return []
  return [
    { data: { values: marks }, mark: { type: 'rule', strokeDash: [4, 3], color: '#555555' }, encoding: { x: { field, type: 'quantitative' } } },
    { data: { values: marks }, mark: { type: 'text', align: 'left', dx: 3, dy: -4, baseline: 'bottom', color: '#333333' }, encoding: { x: { field, type: 'quantitative' }, y: { datum: 0.05 }, text: { field: 'label' } } },
  ]
}

function horizontalTarget(value: number, label: string): NonNullable<Extract<TopLevelSpec, { layer: unknown }>['layer']> {
  const data = { values: [{ y: value, label }] }
  return [
    { data, mark: { type: 'rule', strokeDash: [6, 4], color: '#d62728' }, encoding: { y: { field: 'y', type: 'quantitative' } } },
    { data, mark: { type: 'text', align: 'right', baseline: 'bottom', dy: -2, color: '#d62728' }, encoding: { y: { field: 'y', type: 'quantitative' }, x: { value: WIDTH }, text: { field: 'label' } } },
  ]
}

/** Rows of the campaign plot: one figure value of one seed. */
export interface CampaignFigurePoint {
  seed: number
  figure: string
  value: number
  ok: boolean
}

/** One strip per figure, one dot per seed (red when the seed failed): how the figures spread across seeds. */
export function campaignFiguresSpec(scenario: string, nodes: number, points: readonly CampaignFigurePoint[]): TopLevelSpec {
  return {
    $schema: SCHEMA,
    title: `Figures across seeds — ${scenario}, ${nodes} nodes`,
    config: CONFIG,
    data: { values: points.map((p) => ({ ...p, result: p.ok ? 'pass' : 'fail' })) },
    facet: { row: { field: 'figure', type: 'nominal', title: null, sort: [...new Set(points.map((p) => p.figure))], header: { labelAngle: 0, labelAlign: 'left', labelFontSize: 11 } } },
    spec: {
      width: 480,
      height: 24,
      mark: { type: 'tick', thickness: 2 },
      encoding: {
        x: { field: 'value', type: 'quantitative', title: null, scale: { zero: false, padding: 6 }, axis: { format: ',~r', tickCount: 5 } },
        color: { field: 'result', type: 'nominal', title: 'seed', scale: { domain: ['pass', 'fail'], range: ['#1f77b4', '#d62728'] } },
      },
    },
    resolve: { scale: { x: 'independent' } },
  }
}

/** Compiles a Vega-Lite spec and renders it to an SVG string, headless. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const { spec: vegaSpec } = compile(spec)
  const view = new View(parse(vegaSpec), { renderer: 'none', logLevel: VEGA_LOG_ERROR })
  try {
    return await view.toSVG()
  } finally {
    view.finalize()
  }
}
