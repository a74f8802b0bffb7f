import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { XMLValidator } from 'fast-xml-parser'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { LatticeError } from '../core/index.ts'
import { parseCampaignArgv, runCampaign, runCampaignCommand } from '../sim/campaign.ts'
import { createProgressLine, type ProgressSink } from '../sim/progress.ts'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lattice-campaign-test-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

/**
 * Stands in for `sim/main.ts`: seed 2 breaks an invariant (exit 1 with a
 * report), seed 3 crashes before writing one, every other seed passes.
 */
const FAKE_SIM = `
const argv = process.argv.slice(2)
const flag = (name) => argv[argv.indexOf('--' + name) + 1]
const seed = Number(flag('seed'))
if (seed === 3) { process.stderr.write('TypeError: boom\\n'); process.exit(7) }
const ok = seed !== 2
const report = {
  seed, nodes: Number(flag('nodes')), scenario: flag('scenario'), virtualSeconds: 30, wallSeconds: 0.1,
  invariants: { ok, violations: ok ? [] : ['replica web/0 runs on 2 alive nodes'] },
  traceHash: 'hash-' + seed,
  figures: { joinConvergenceMs: { p50: seed, p99: seed * 10 }, deathDetectionMs: null, falsePositiveDeaths: 0, placeLatencyMs: null,
    failoverMs: null, placementsPerSecond: null, bidsPerPlacement: null, gossipBytesPerNodePerSecond: 100 * seed, heapBytesPerNode: 1000 },
}
require('node:fs').writeFileSync(flag('json'), JSON.stringify(report))
process.exit(ok ? 0 : 1)
`

describe('simulator campaign', () => {
  it('passes a small campaign: 3 seeds × membership, 20 nodes, 30 virtual s, one row per seed', async () => {
    const started = performance.now()
    const reportDir = join(dir, 'membership')
    const progress: number[] = []
    const result = await runCampaign({ scenario: 'membership', seeds: 3, nodes: 20, durationS: 30, reportDir, print: false, onProgress: (p) => progress.push(p.done) })
    const wallSeconds = (performance.now() - started) / 1000

    expect(result.failingSeeds).toEqual([])
    expect(result.ok).toBe(true)
    expect(result.rows.map((row) => row.seed)).toEqual([1, 2, 3])
    for (const row of result.rows) {
      expect(row.ok, `seed ${row.seed}: ${row.violations.join('; ')}`).toBe(true)
      expect(row.report?.seed).toBe(row.seed)
      expect(row.report?.nodes).toBe(20)
      expect(row.replay).toContain(`--seed ${row.seed}`)
    }
    expect(progress.sort()).toEqual([1, 2, 3])
    const detection = result.distributions.find((d) => d.path === 'deathDetectionMs.p99')
    expect(detection?.count).toBe(3)
    const values = result.rows.map((row) => row.report?.figures.deathDetectionMs?.p99 ?? NaN)
    expect(detection?.min).toBe(Math.min(...values))
    expect(detection?.max).toBe(Math.max(...values))
    expect(result.summary).toContain('3/3 seeds passed')

    expect(existsSync(join(reportDir, 'campaign.md'))).toBe(true)
    expect(XMLValidator.validate(await readFile(join(reportDir, 'figures.svg'), 'utf8'))).toBe(true)
    const seed2 = JSON.parse(await readFile(join(reportDir, 'seed-2', 'report.json'), 'utf8')) as { seed: number; traceHash: string }
    expect(seed2.seed).toBe(2)
    expect(seed2.traceHash).toBe(result.rows[1]?.report?.traceHash)
    expect(wallSeconds).toBeLessThan(30)
  }, 60_000)

  it('fails when one seed breaks an invariant or crashes, and names the command that replays each', async () => {
    const fake = join(dir, 'fake-sim.cjs')
    await writeFile(fake, FAKE_SIM)
    const printed: string[] = []
    const result = await runCampaign({
      scenario: 'membership',
      seeds: [1, 2, 3, 4],
      nodes: 20,
      durationS: 30,
      flags: { loss: 0.2 },
      concurrency: 2,
      print: (text) => printed.push(text),
      command: (simArgv) => ({ file: process.execPath, args: [fake, ...simArgv] }),
    })
    expect(result.ok).toBe(false)
    expect(result.rows.map((row) => [row.seed, row.ok])).toEqual([
      [1, true],
      [2, false],
      [3, false],
      [4, true],
    ])
    expect(result.failingSeeds.map((f) => f.seed)).toEqual([2, 3])
    const [broken, crashed] = result.failingSeeds
    expect(broken?.violations).toEqual(['replica web/0 runs on 2 alive nodes'])
    expect(broken?.replay).toMatch(/^npm run sim -- --scenario membership --nodes 20 --seed 2 --duration-s 30 --loss 0.2/)
    expect(crashed?.violations.join(' ')).toContain('exited 7 without a report')
    expect(crashed?.violations.join(' ')).toContain('TypeError: boom')
    expect(result.rows[2]?.error).toBeDefined()
    // Distributions come from the seeds that reported: 1, 2 and 4.
    expect(result.distributions.find((d) => d.path === 'gossipBytesPerNodePerSecond')).toMatchObject({ count: 3, min: 100, p50: 200, max: 400 })
    const text = printed.join('\n')
    expect(text).toContain('2/4 seeds failed; replay with:')
    expect(text).toContain(broken?.replay)
    expect(text).toContain(crashed?.replay)
  }, 30_000)

  it('rejects bad flags before starting any run: exit 2, nothing on stdout', async () => {
    const stdout = vi.spyOn(process.stdout, 'write').mockImplementation(() => true)
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true)
    try {
      expect(await runCampaignCommand(['--scenario', 'membership', '--nodes', '20'])).toBe(2)
      expect(await runCampaignCommand(['--seeds', '0', '--scenario', 'membership', '--nodes', '20'])).toBe(2)
      expect(await runCampaignCommand(['--seeds', '3', '--scenario', 'membership', '--nodes', '1'])).toBe(2)
      expect(await runCampaignCommand(['--seeds', '3', '--scenario', 'no-such-scenario', '--nodes', '20'])).toBe(2)
      expect(await runCampaignCommand(['--seeds', '3', '--scenario', 'membership', '--nodes', '20', '--seed', '4'])).toBe(2)
      expect(await runCampaignCommand(['--seeds', '3', '--scenario', 'membership', '--nodes', '20', '--bogus'])).toBe(2)
      expect(await runCampaignCommand(['--seeds', '3', '--seed-list', '1,2', '--scenario', 'membership', '--nodes', '20'])).toBe(2)
      expect(await runCampaignCommand(['--seeds', '3', '--scenario', 'membership', '--nodes', '20', '--concurrency'])).toBe(2)
      expect(stdout).not.toHaveBeenCalled()
      expect(String(stderr.mock.calls[0]?.[0])).toContain('usage: lattice sim campaign')
    } finally {
      stdout.mockRestore()
      stderr.mockRestore()
    }
  })

  it('splits the campaign\'s own flags from the sim\'s and validates both', () => {
    const parsed = parseCampaignArgv(['sim', 'campaign', '--seeds=5', '--first-seed', '10', '--scenario', 'membership', '--nodes', '50', '--duration-s', '120', '--concurrency', '2', '--report', 'out/c', '--partition'])
    expect(parsed.ok).toBe(true)
    if (!parsed.ok) return
    expect(parsed.seeds).toEqual([10, 11, 12, 13, 14])
    expect(parsed.flags).toMatchObject({ concurrency: 2, report: 'out/c', quiet: false })
    expect(parsed.simArgv).toEqual(['--scenario', 'membership', '--nodes', '50', '--duration-s', '120', '--partition'])
    const list = parseCampaignArgv(['--seed-list', '3,17,42', '--scenario', 'membership', '--nodes', '50'])
    expect(list.ok && list.seeds).toEqual([3, 17, 42])
  })

  it('throws a VALIDATION_FAILED error from runCampaign for flags the sim rejects', async () => {
    const error = await runCampaign({ scenario: 'membership', seeds: 2, nodes: 1, print: false }).catch((err: unknown) => err)
    expect(error).toBeInstanceOf(LatticeError)
    expect((error as LatticeError).code).toBe('VALIDATION_FAILED')
  })
})

describe('progress line', () => {
  const sink = (isTTY: boolean): ProgressSink & { chunks: string[] } => {
    const chunks: string[] = []
    return { isTTY, chunks, write: (chunk: string) => chunks.push(chunk) }
  }

  it('rewrites one line in place on a terminal, at most every ttyIntervalMs, and ends it with a newline', () => {
    let now = 0
    const out = sink(true)
    const progress = createProgressLine({ label: 'membership n=20 seed=1', sink: out, now: () => now, ttyIntervalMs: 250 })
    for (let step = 1; step <= 10; step++) {
      now = step * 100
      progress.update({ virtualMs: step * 1_000, events: step * 5_000, violations: step > 8 ? 1 : 0 })
    }
    expect(out.chunks).toHaveLength(3)
    expect(out.chunks.every((chunk) => chunk.startsWith('\r') && !chunk.includes('\n'))).toBe(true)
    expect(out.chunks[0]).toContain('[membership n=20 seed=1] virtual 3.0 s · 50,000 events/s · 0 violations')
    progress.done({ virtualMs: 10_000, events: 50_000, violations: 1, note: 'settled' })
    expect(out.chunks.at(-1)).toBe('\r[membership n=20 seed=1] virtual 10.0 s · 50,000 events/s · 1 violation · wall 1.0 s · settled\u001b[K\n')
  })

  it('prints whole lines every lineIntervalMs into a pipe, not on every update', () => {
    let now = 0
    const out = sink(false)
    const progress = createProgressLine({ sink: out, now: () => now, lineIntervalMs: 10_000 })
    for (let step = 1; step <= 100; step++) {
      now = step * 1_000
      progress.update({ virtualMs: step * 60_000, events: step * 1_000, violations: 0 })
    }
    expect(out.chunks).toHaveLength(10)
    expect(out.chunks.every((chunk) => chunk.endsWith('\n') && !chunk.includes('\r'))).toBe(true)
    expect(out.chunks[0]).toBe('virtual 600.0 s · 1,000 events/s · 0 violations · wall 10.0 s\n')
  })

  it('prints nothing when disabled', () => {
    const out = sink(true)
    const progress = createProgressLine({ sink: out, enabled: false, now: () => 1e9 })
    progress.update({ virtualMs: 1, events: 1, violations: 0 })
    progress.done()
    expect(out.chunks).toEqual([])
  })
})
