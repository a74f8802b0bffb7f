/** `lattice sim` flags, exit codes and the JSON report shape (CONTRACTS.md, simulator section). */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { parseSimFlags, replayCommand, runSimCommand } from '../sim/cli.ts'

function capture(): { out: () => string; err: () => string } {
  let out = ''
  let err = ''
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => ((out += String(chunk)), true))
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => ((err += String(chunk)), true))
  return { out: () => out, err: () => err }
}

describe('lattice sim', () => {
  afterEach(() => vi.restoreAllMocks())

  it('bad flags exit 2 with a one-line reason and the usage', async () => {
    for (const argv of [['--scenario', 'nope'], ['--scenario', 'membership', '--loss', '2'], ['--scenario', 'membership', '--nodes', 'x'], ['--scenario', 'membership', '--bogus'], ['--nodes', '10'], ['--scenario', 'membership', '--kill-mode', 'melt'], ['--scenario', 'membership', '--warm-registry']]) {
      const io = capture()
      expect(await runSimCommand(argv)).toBe(2)
      expect(io.err()).toMatch(/^lattice sim: .+\nusage: lattice sim/)
      vi.restoreAllMocks()
    }
  })

  it('flags parse with their defaults, a leading "sim" is skipped, and the replay command round-trips', () => {
    const parsed = parseSimFlags(['sim', '--scenario', 'membership', '--nodes', '50', '--seed', '9', '--partition', '--duration-s', '30', '--kill-mode', 'vanish'])
    expect(parsed).toMatchObject({ ok: true, flags: { scenario: 'membership', nodes: 50, seed: 9, durationS: 30, loss: 0.1, kill: 0.01, killMode: 'vanish', partition: true } })
    if (!parsed.ok) return
    const again = parseSimFlags(replayCommand(parsed.flags).split(' ').slice(4))
    expect(again).toEqual(parsed)
    const warm = parseSimFlags(['--scenario', 'chaos', '--nodes', '20', '--warm-registry'])
    expect(warm).toMatchObject({ ok: true, flags: { warmRegistry: true, spec: { warmRegistry: true } } })
    if (warm.ok) expect(parseSimFlags(replayCommand(warm.flags).split(' ').slice(4))).toEqual(warm)
  })

  it('a run whose invariants hold exits 0 and writes the report with the contract fields', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lattice-sim-'))
    try {
      const file = join(dir, 'out.json')
      const io = capture()
      expect(await runSimCommand(['--scenario', 'membership', '--nodes', '30', '--seed', '3', '--duration-s', '20', '--kill', '0.1', '--json', file, '--quiet'])).toBe(0)
      const report = JSON.parse(await readFile(file, 'utf8'))
      expect(JSON.parse(io.out())).toEqual(report)
      expect(report).toMatchObject({ seed: 3, nodes: 30, scenario: 'membership', invariants: { ok: true, violations: [] } })
      expect(report.traceHash).toMatch(/^[0-9a-f]{64}$/)
      for (const key of ['virtualSeconds', 'wallSeconds']) expect(typeof report[key]).toBe('number')
      for (const key of ['joinConvergenceMs', 'deathDetectionMs']) expect(report.figures[key]).toEqual({ p50: expect.any(Number), p99: expect.any(Number) })
      for (const key of ['falsePositiveDeaths', 'gossipBytesPerNodePerSecond', 'heapBytesPerNode']) expect(typeof report.figures[key]).toBe('number')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('a run that breaks an invariant exits 1 and prints the command that replays it', async () => {
    const io = capture()
    // Every message lost for 20 virtual seconds: everyone declares everyone dead.
    expect(await runSimCommand(['--scenario', 'membership', '--nodes', '12', '--seed', '4', '--duration-s', '20', '--loss', '1', '--kill', '0', '--quiet'])).toBe(1)
    expect(io.err()).toContain('false deaths')
    expect(io.err()).toContain('replay: npm run sim -- --scenario membership --nodes 12 --seed 4 --duration-s 20 --loss 1 --kill 0')
  })
})
