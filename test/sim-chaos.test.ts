/**
 * The chaos scenario on the whole node core, at a size CI affords (6–8 nodes,
 * 20–40 virtual seconds of faults; the library's chaos is 50 nodes × 120 s,
 * which takes minutes here): determinism, the trace file, the report with
 * its plots, planted violations caught by the safety checkers, and a small
 * campaign.
 */
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { XMLValidator } from 'fast-xml-parser'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { runCampaign } from '../sim/campaign.ts'
import { automergeBytesFor } from '../sim/automerge-memory.ts'
import { parseSimFlags, runScenario, runSimCommand } from '../sim/cli.ts'
import { figureValues } from '../sim/report/types.ts'
import { runScheduledScenario } from '../sim/scenarios/scheduled.ts'
import { libraryFile, loadScenarioFile, parseScenarioText, type ScheduledSpec } from '../sim/scenario-file.ts'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lattice-chaos-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})
afterEach(() => vi.restoreAllMocks())

const CHAOS = ['--scenario', 'chaos', '--nodes', '6', '--duration-s', '20', '--deployments', '8']

function flagsOf(argv: string[]): ReturnType<typeof parseSimFlags> & { ok: true } {
  const parsed = parseSimFlags(argv)
  if (!parsed.ok) throw new Error(parsed.error)
  return parsed
}

describe('chaos: determinism and the trace file', () => {
  it('the same seed gives the same traceHash (and the trace file hashes to it); another seed differs', async () => {
    const trace = join(dir, 'trace.jsonl')
    const json = join(dir, 'a.json')
    vi.spyOn(process.stdout, 'write').mockImplementation(() => true)
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true)
    const code = await runSimCommand([...CHAOS, '--seed', '3', '--trace', trace, '--json', json, '--quiet'])
    vi.restoreAllMocks()
    const a = JSON.parse(await readFile(json, 'utf8')) as { traceHash: string; invariants: { ok: boolean; violations: string[] } }
    expect(a.invariants.violations).toEqual([])
    expect(code).toBe(0)

    const b = await runScenario(flagsOf([...CHAOS, '--seed', '3']).flags, () => {})
    expect(b.traceHash).toBe(a.traceHash)
    const c = await runScenario(flagsOf([...CHAOS, '--seed', '4']).flags, () => {})
    expect(c.traceHash).not.toBe(a.traceHash)

    // The JSON lines are the hashed lines: rebuilding the hash from the file gives traceHash.
    const lines = (await readFile(trace, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { tMs: number; observer: number; subject: number; event: string })
    expect(lines.some((l) => l.observer === -1 && l.event.startsWith('fault '))).toBe(true)
    const hash = createHash('sha256')
    for (const l of lines) hash.update(`${l.tMs} ${l.observer} ${l.subject} ${l.event}\n`)
    expect(hash.digest('hex')).toBe(a.traceHash)
  }, 180_000)
})

describe('chaos: the report', () => {
  it('writes report.json, report.md and every plot; SVGs parse; report.md numbers are report.json’s', async () => {
    const out = join(dir, 'report')
    vi.spyOn(process.stdout, 'write').mockImplementation(() => true)
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true)
    // More crashes than the library's chaos, so a 40-second run surely moves replicas.
    const code = await runSimCommand(['--scenario', 'chaos', '--nodes', '8', '--duration-s', '40', '--deployments', '12', '--kill', '0.15', '--seed', '2', '--report', out, '--quiet'])
    vi.restoreAllMocks()
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8'))
    expect(report.invariants.violations).toEqual([])
    expect(code).toBe(0)
    for (const plot of ['alive.svg', 'detections.svg', 'failovers.svg', 'place-latency-cdf.svg', 'gossip-bytes.svg', 'heads.svg']) {
      const file = join(out, plot)
      expect(existsSync(file), plot).toBe(true)
      const svg = await readFile(file, 'utf8')
      expect(XMLValidator.validate(svg), plot).toBe(true)
      expect(svg).toContain('<svg')
    }
    const md = await readFile(join(out, 'report.md'), 'utf8')
    expect(md).toContain('**PASS**')
    expect(md).toContain('npm run sim -- --scenario chaos --nodes 8 --seed 2')
    for (const figure of figureValues(report.figures)) {
      expect(md).toContain(`| \`${figure.path}\` | ${figure.value === null ? 'n/a' : String(figure.value)} |`)
    }
    expect(report.series.aliveCount.length).toBeGreaterThan(0)
    expect(report.series.failovers.length).toBeGreaterThan(0)
  }, 180_000)
})

describe('chaos: planted violations are caught during the faults', () => {
  it('a healthy node silently cut off under loss-only noise is a false death, and a copy its node did not win is caught', async () => {
    const spec = parseScenarioText(
      ['name: noise', 'script: scheduled', 'nodes: 6', 'durationS: 25', 'deployments: { count: 3, spreadS: 2 }', 'network: { loss: 0.05 }', 'faults: { delay: { probability: 0.1, minDurationS: 2, latencyMs: { min: 5, max: 60 } } }', 'liveness: { budgetS: 10 }'].join('\n'),
      'noise.yaml',
    ) as ScheduledSpec
    const notes = new Set<string>()
    const report = await runScheduledScenario({
      spec,
      seed: 5,
      onProgress: ({ note }) => void (note?.startsWith('liveness') === true && notes.add(note)),
      plant: (cluster) => {
        // A broken network the schedule does not know about: node 5 hears nothing and nobody hears it.
        const victim = cluster.nodes[5]!
        cluster.network.partition([[victim.peerId], cluster.nodes.filter((n) => n !== victim).map((n) => n.peerId)])
        // A broken node: its reconciler stopped, it runs a generation nobody ever closed (the start completes as the driver moves time).
        void cluster.nodes[1]!.core.reconciler.stop()
        void cluster.nodes[1]!.runtime.run({ deploymentId: 'd-planted', replica: 0, generation: 42, epoch: 1, name: 'planted', image: 'lattice-test/busybox:latest', command: ['/bin/httpd', '-f', '-p', '80', '-h', '/www'], resources: { cpu: 0.1, memoryMB: 16, pidsMax: 64 } })
      },
    })
    expect(report.details.onlyNetworkNoise).toBe(true)
    expect(report.invariants.ok).toBe(false)
    const text = report.invariants.violations.join('\n')
    expect(text).toMatch(/^safety at \d+ ms: node \d declared healthy node 5 dead/m)
    expect(text, text).toMatch(/^safety at \d+ ms: node 1 runs d-planted\/0 generation 42, which it did not win/m)
    // The progress line said what liveness was waiting for (the planted partition keeps node 5's writes from the rest).
    expect([...notes].some((note) => /^liveness, waiting: node \d lacks 2 accepted deployment\(s\)/.test(note)), [...notes].join('\n')).toBe(true)
  }, 120_000)

  it('the same noise without the planted faults passes', async () => {
    const spec = parseScenarioText(['name: noise', 'script: scheduled', 'nodes: 6', 'durationS: 25', 'deployments: { count: 3, spreadS: 2 }', 'network: { loss: 0.05 }', 'faults: { delay: { probability: 0.1, minDurationS: 2, latencyMs: { min: 5, max: 60 } } }'].join('\n'), 'noise.yaml') as ScheduledSpec
    const report = await runScheduledScenario({ spec, seed: 5 })
    expect(report.invariants.violations).toEqual([])
    expect(report.figures.falsePositiveDeaths).toBe(0)
  }, 120_000)
})

describe('chaos: a small campaign', () => {
  // The plan's example: 10 seeds × 50 nodes × 120 virtual s of the library chaos. One child process at a time:
  // vitest already runs two files at once on the two cores, and two more CPU-bound children starved the 500-node
  // membership tests past their timeouts. Each seed takes 20–70 s on today's core; about 5 minutes in all.
  it('10 seeds × 50 nodes × 120 virtual s of chaos pass, one row per seed, each in its own process', async () => {
    const result = await runCampaign({ scenario: 'chaos', seeds: 10, nodes: 50, durationS: 120, concurrency: 1, print: false, reportDir: join(dir, 'campaign') })
    expect(result.failingSeeds).toEqual([])
    expect(result.rows.map((r) => r.seed)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    expect(new Set(result.rows.map((r) => r.report?.traceHash)).size).toBe(10)
    expect(result.distributions.find((d) => d.path === 'placeLatencyMs.p50')?.count).toBe(10)
    expect(existsSync(join(dir, 'campaign', 'campaign.md'))).toBe(true)
    expect(existsSync(join(dir, 'campaign', 'seed-1', 'report.md'))).toBe(true)
  }, 900_000)
})

describe('chaos: the safety phase keeps its pace', () => {
  it('deployments still due after the faults end are made at their times, with one safety check per checkEveryMs (not per ms)', async () => {
    const spec = parseScenarioText(['name: tail', 'script: scheduled', 'nodes: 4', 'durationS: 3', 'deployments: { count: 4, spreadS: 12 }', 'liveness: { budgetS: 30 }'].join('\n'), 'tail.yaml') as ScheduledSpec
    const report = await runScheduledScenario({ spec, seed: 3 })
    expect(report.invariants.violations).toEqual([])
    expect(report.details.accepted).toBe(4)
    // The last deployment is due at 9 s: the safety phase lasts that long, then liveness; about one check per virtual second.
    expect(report.details.safetyChecks).toBeGreaterThanOrEqual(9)
    expect(report.details.safetyChecks).toBeLessThanOrEqual(report.virtualSeconds + 2)
    // Memory beside the JS heap: the process's growth per node, and the Automerge engines' memory (at least their reserve).
    expect(report.details.residentBytesPerNode).toEqual(expect.any(Number))
    expect(report.details.automergeMemoryBytes).toBeGreaterThanOrEqual(automergeBytesFor(4))
  }, 60_000)
})

describe('chaos across epochs', () => {
  // The library chaos with the history cut every 40 changes: every fault (crashes, partitions, pauses, loss,
  // clock jumps) lands around switches, and every invariant must still hold. A CI-sized run: the two bugs a
  // 20-seed campaign at 50 nodes found (a stale placement record from a partition beating the newer one at a
  // switch; an index stale after a switch) do not show at this size, and are pinned by crdt/epoch.test.ts and
  // crdt/cluster-state-epoch.test.ts instead.
  it.each([1, 2])('seed %i: 30 nodes × 90 virtual s, several epochs, every invariant holds and no carry is lost', async (seed) => {
    const library = loadScenarioFile(libraryFile('chaos')!) as ScheduledSpec
    const spec: ScheduledSpec = { ...library, nodes: 30, durationS: 90, epochChangesMin: 40, deployments: { ...library.deployments, count: 20 } }
    const report = await runScheduledScenario({ spec, seed })
    expect(report.invariants.violations).toEqual([])
    expect(report.details['epochMinAlive']).toBeGreaterThanOrEqual(2)
    expect(report.details['epochCarriesLost']).toBe(0)
  }, 300_000)
})
