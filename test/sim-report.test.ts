import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { XMLParser, XMLValidator } from 'fast-xml-parser'
import { afterAll, describe, expect, it } from 'vitest'
import type { runScenario } from '../sim/cli.ts'
import { Decimator, PLOTS, SeriesRecorder, writeReport, type SimReport } from '../sim/report/index.ts'

/** Compile-time: whatever a scenario returns is a report writeReport accepts. */
export const scenarioReportIsASimReport = (report: Awaited<ReturnType<typeof runScenario>>): SimReport => report

const dirs: string[] = []
const scratch = async (): Promise<string> => {
  const dir = await mkdtemp(join(tmpdir(), 'lattice-report-test-'))
  dirs.push(dir)
  return dir
}
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true })
})

/** A run of 60 nodes over 120 virtual s: joins, three kills, a partition's worth of diverging heads, placements and failovers. */
function syntheticReport(overrides: Partial<SimReport> = {}): SimReport {
  const n = 60
  const recorder = new SeriesRecorder()
  const kills = [
    { subject: 11, atMs: 30_000 },
    { subject: 23, atMs: 55_000 },
    { subject: 42, atMs: 80_000 },
  ]
  for (let t = 0; t <= 120_000; t += 500) {
    for (const observer of [0, 1, 2, 3, 4]) {
      const detected = kills.filter((k) => t >= k.atMs + 2_000 + observer * 150).length
      recorder.aliveCount(t, observer, Math.min(n, 1 + Math.floor(t / 50)) - detected)
    }
    recorder.gossipBytes(t, 600 + Math.round(200 * Math.sin(t / 7_000)))
    recorder.heads(t, t > 60_000 && t < 75_000 ? 2 + (Math.floor(t / 1_000) % 3) : 1)
  }
  for (const kill of kills) {
    for (let observer = 0; observer < n; observer++) {
      if (kills.some((k) => k.subject === observer)) continue
      recorder.detection(kill.subject, kill.atMs, kill.atMs + 1_800 + ((observer * 53) % 1_400), observer)
    }
    recorder.failover(`web/${kill.subject % 3}`, kill.atMs, kill.atMs + 3_900)
  }
  for (let i = 0; i < 3_000; i++) recorder.placeLatency(150 + ((i * 7_919) % 700))
  return {
    seed: 42,
    nodes: n,
    scenario: 'chaos',
    virtualSeconds: 120.5,
    wallSeconds: 3.7,
    invariants: { ok: true, violations: [] },
    traceHash: '9f2c4e1d7b3a5f60817263544536271809f2c4e1d7b3a5f6081726354453627',
    figures: {
      joinConvergenceMs: { p50: 1_180, p99: 2_950 },
      deathDetectionMs: { p50: 2_480, p99: 3_190 },
      falsePositiveDeaths: 0,
      placeLatencyMs: { p50: 498, p99: 843 },
      failoverMs: { p50: 3_900, p99: 3_900 },
      placementsPerSecond: 612.5,
      bidsPerPlacement: 6.25,
      gossipBytesPerNodePerSecond: 611,
      heapBytesPerNode: 1_048_577,
    },
    details: { kills: 3, eventsProcessed: 1_234_567, phase: 'settle', traffic: { receivedPerNodePerSecond: 611.4 } },
    series: recorder.toSeries(),
    ...overrides,
  }
}

/** Rows of the Markdown table whose header's first cell is `firstHeader`: first cell → second cell. */
function tableRows(markdown: string, firstHeader: string): Map<string, string> {
  const lines = markdown.split('\n')
  const start = lines.findIndex((line) => line.startsWith(`| ${firstHeader} |`))
  expect(start, `table "${firstHeader}" in report.md`).toBeGreaterThanOrEqual(0)
  const rows = new Map<string, string>()
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break
    const cells = line.split(/(?<!\\)\|/).slice(1, -1).map((cell) => cell.trim())
    rows.set((cells[0] ?? '').replace(/`/g, ''), cells[1] ?? '')
  }
  return rows
}

const at = (object: unknown, path: string): unknown => path.split('.').reduce<unknown>((value, key) => (value as Record<string, unknown> | null)?.[key], object)

describe('simulator report', () => {
  it('renders report.json, report.md and one SVG per plot, and every SVG parses as XML', async () => {
    const dir = await scratch()
    const written = await writeReport(dir, syntheticReport(), { replay: 'npm run sim -- --scenario chaos --nodes 60 --seed 42' })
    const files = (await readdir(dir)).sort()
    expect(files).toEqual(['report.json', 'report.md', ...PLOTS.map((p) => p.file)].sort())
    expect(written.plots.every((p) => p.written)).toBe(true)
    const parser = new XMLParser({ ignoreAttributes: false })
    for (const plot of PLOTS) {
      const svg = await readFile(join(dir, plot.file), 'utf8')
      expect(XMLValidator.validate(svg), plot.file).toBe(true)
      const doc = parser.parse(svg) as { svg?: Record<string, unknown> }
      expect(doc.svg, `${plot.file} has an <svg> root`).toBeDefined()
      expect(Number(doc.svg?.['@_width'])).toBeGreaterThan(100)
      expect(svg, `${plot.file} draws marks`).toMatch(/<path|<line/)
    }
    const markdown = await readFile(join(dir, 'report.md'), 'utf8')
    for (const plot of PLOTS) expect(markdown).toContain(`](${plot.file})`)
  })

  it('shows in report.md exactly the numbers report.json holds', async () => {
    const dir = await scratch()
    await writeReport(dir, syntheticReport())
    const json = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8')) as SimReport
    const markdown = await readFile(join(dir, 'report.md'), 'utf8')

    const run = tableRows(markdown, 'run')
    for (const key of ['seed', 'nodes', 'virtualSeconds', 'wallSeconds'] as const) expect(Number(run.get(key)), key).toBe(json[key])
    expect(run.get('scenario')).toBe(json.scenario)
    expect(run.get('traceHash')).toBe(`\`${json.traceHash}\``)

    const figures = tableRows(markdown, 'figure')
    expect(figures.size).toBe(13)
    for (const [path, shown] of figures) {
      const value = at(json.figures, path)
      if (value === null) expect(shown, path).toBe('n/a')
      else expect(Number(shown), path).toBe(value)
    }
    expect(figures.get('heapBytesPerNode')).toBe('1048577')
    expect(figures.get('placementsPerSecond')).toBe('612.5')

    const details = tableRows(markdown, 'detail')
    expect(Number(details.get('kills'))).toBe(json.details?.['kills'])
    expect(Number(details.get('eventsProcessed'))).toBe(json.details?.['eventsProcessed'])
    expect(details.has('traffic')).toBe(false)
  })

  it('writes report.json as the report it was given, series included', async () => {
    const dir = await scratch()
    const report = syntheticReport()
    await writeReport(dir, report)
    expect(JSON.parse(await readFile(join(dir, 'report.json'), 'utf8'))).toEqual(report)
  })

  it('skips a plot whose series is absent and says so in report.md', async () => {
    const dir = await scratch()
    const full = syntheticReport()
    const series = { ...full.series }
    delete series.failovers
    delete series.placeLatenciesMs
    delete series.heads
    await writeReport(dir, { ...full, figures: { ...full.figures, placeLatencyMs: null, failoverMs: null, placementsPerSecond: null, bidsPerPlacement: null }, series })
    const files = await readdir(dir)
    expect(files).toContain('alive.svg')
    expect(files).not.toContain('failovers.svg')
    expect(files).not.toContain('place-latency-cdf.svg')
    expect(files).not.toContain('heads.svg')
    const markdown = await readFile(join(dir, 'report.md'), 'utf8')
    expect(markdown).toContain('Not plotted: the run recorded no `series.failovers`.')
    expect(markdown).toContain('Not plotted: the run recorded no `series.heads`.')
    expect(tableRows(markdown, 'figure').get('placeLatencyMs.p50')).toBe('n/a')
  })

  it('renders a report with no series at all: no SVG, every plot named as skipped', async () => {
    const dir = await scratch()
    const report = syntheticReport()
    delete report.series
    const written = await writeReport(dir, report)
    expect((await readdir(dir)).sort()).toEqual(['report.json', 'report.md'])
    expect(written.plots.filter((p) => !p.written)).toHaveLength(PLOTS.length)
    expect((await readFile(join(dir, 'report.md'), 'utf8')).match(/Not plotted/g)).toHaveLength(PLOTS.length)
  })

  it('puts a failing run\'s violations and its replay command at the top of report.md', async () => {
    const dir = await scratch()
    const replay = 'npm run sim -- --scenario chaos --nodes 60 --seed 42 --duration-s 120 --loss 0.1 --kill 0.05'
    await writeReport(dir, syntheticReport({ invariants: { ok: false, violations: ['replica web/1 runs on 2 alive nodes | gen 3', 'heads differ after the liveness budget'] } }), { replay })
    const markdown = await readFile(join(dir, 'report.md'), 'utf8')
    expect(markdown).toContain('**FAIL**: 2 invariant violation(s)')
    expect(markdown).toContain('- replica web/1 runs on 2 alive nodes | gen 3')
    expect(markdown).toContain(`\`\`\`sh\n${replay}\n\`\`\``)
  })
})

describe('series recorder', () => {
  it('keeps at most pointsMax points of a long series, an even sample of the whole run', () => {
    const recorder = new SeriesRecorder({ pointsMax: 2_000 })
    for (let t = 0; t < 100_000; t++) recorder.gossipBytes(t * 10, t)
    const series = recorder.toSeries()
    const points = series.gossipBytes ?? []
    expect(points.length).toBeLessThanOrEqual(2_000)
    expect(points.length).toBeGreaterThanOrEqual(1_000)
    expect(series.totals?.gossipBytes).toBe(100_000)
    expect(points[0]?.tMs).toBe(0)
    expect(points.at(-1)?.tMs ?? 0).toBeGreaterThan(0.95 * 1_000_000)
    const gaps = new Set(points.slice(1).map((p, i) => p.tMs - (points[i]?.tMs ?? 0)))
    expect(gaps.size).toBe(1)
  })

  it('records the alive count of the first observersMax observers only, within the same bound', () => {
    const recorder = new SeriesRecorder({ pointsMax: 400, observersMax: 4 })
    for (let t = 0; t < 5_000; t++) for (let observer = 0; observer < 10; observer++) recorder.aliveCount(t, observer, 10)
    const points = recorder.toSeries().aliveCount ?? []
    expect(new Set(points.map((p) => p.observer))).toEqual(new Set(['0', '1', '2', '3']))
    expect(points.length).toBeLessThanOrEqual(400)
    expect(recorder.toSeries().totals?.aliveCount).toBe(20_000)
  })

  it('leaves out the series that received no points', () => {
    const recorder = new SeriesRecorder()
    expect(recorder.toSeries()).toEqual({})
    recorder.placeLatency(12)
    expect(recorder.toSeries()).toEqual({ placeLatenciesMs: [12], totals: { placeLatenciesMs: 1 } })
  })

  it('decimates deterministically: the same stream keeps the same items', () => {
    const a = new Decimator<number>(16)
    const b = new Decimator<number>(16)
    for (let i = 0; i < 1_000; i++) {
      a.push(i)
      b.push(i)
    }
    expect(a.values()).toEqual(b.values())
    expect(a.values().every((v) => v % 64 === 0)).toBe(true)
  })
})
