/**
 * The membership scenario over real libp2p (sim/network-libp2p): a few real
 * nodes in this process join, one is crashed, the others must see it dead and
 * nobody else; the report has the simulated scenario's shape.
 */
import { mkdtemp, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { runSimCommand } from '../sim/cli.ts'
import { runMembershipScenarioLibp2p, type MembershipComparison } from '../sim/network-libp2p/index.ts'

describe('membership scenario on real libp2p', () => {
  it('8 nodes converge, a crashed node is detected by every survivor, no false deaths', async () => {
    const report = await runMembershipScenarioLibp2p({ nodes: 8, seed: 3, durationS: 8, loss: 0, kill: 0.125, partition: false, dht: false })
    expect(report.invariants.violations).toEqual([])
    expect(report.invariants.ok).toBe(true)
    expect(report.details['kills']).toBe(1)
    // Every survivor saw the crashed node dead, within the steady phase plus its detection budget.
    expect(report.details['deathDetectionObservations']).toBe(7)
    expect(report.figures.deathDetectionMs.p99).toBeGreaterThan(0)
    expect(report.figures.deathDetectionMs.p99).toBeLessThan(15_000)
    expect(report.figures.joinConvergenceMs.p99).toBeGreaterThan(0)
    expect(report.figures.falsePositiveDeaths).toBe(0)
    expect(report.figures.gossipBytesPerNodePerSecond).toBeGreaterThan(0)
    expect(report.details['network']).toBe('libp2p')
  }, 60_000)

  it('refuses what loopback cannot do', async () => {
    await expect(runMembershipScenarioLibp2p({ nodes: 4, seed: 1, durationS: 1, loss: 0, kill: 0, partition: true })).rejects.toThrow(RangeError)
    await expect(runMembershipScenarioLibp2p({ nodes: 4, seed: 1, durationS: 1, loss: 0, kill: 0, partition: false, killMode: 'vanish' })).rejects.toThrow(RangeError)
  })

  it('lattice sim --network both prints the simulated and the real figures side by side', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'lattice-sim-both-')), 'both.json')
    const stderr: string[] = []
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => (stderr.push(String(chunk)), true))
    vi.spyOn(process.stdout, 'write').mockImplementation(() => true)
    try {
      const code = await runSimCommand(['--scenario', 'membership', '--network', 'both', '--nodes', '6', '--seed', '2', '--duration-s', '6', '--loss', '0', '--kill', '0.17', '--json', file, '--quiet'])
      expect(code, stderr.join('')).toBe(0)
    } finally {
      vi.restoreAllMocks()
    }
    const comparison = JSON.parse(await readFile(file, 'utf8')) as MembershipComparison
    expect(comparison.simulated.details['network']).not.toBe('libp2p')
    expect(comparison.libp2p.details['network']).toBe('libp2p')
    const detection = comparison.rows.find((row) => row.figure === 'deathDetectionMs.p50')
    expect(detection?.simulated).toBeGreaterThan(0)
    expect(detection?.libp2p).toBeGreaterThan(0)
    expect(stderr.join('')).toMatch(/figure\s+simulated\s+libp2p/)
  }, 90_000)
})
