/** The membership scenario at 500 nodes: a 50/50 partition and its heal, in virtual time. */
import { describe, expect, it } from 'vitest'
import { runMembershipScenario } from '../sim/scenarios/membership.ts'

describe('membership simulator, 500 nodes, partition', () => {
  it('a 50/50 partition makes each side mark the other dead, and after the heal all are alive again', async () => {
    const report = await runMembershipScenario({ nodes: 500, seed: 21, durationS: 10, loss: 0, kill: 0, partition: true })
    expect(report.invariants).toEqual({ ok: true, violations: [] })
    expect(report.details['partitionSplitMs']).toBeGreaterThan(0)
    expect(report.details['healConvergenceMs']).toBeGreaterThan(0)
    expect(report.figures.falsePositiveDeaths).toBe(0)
  }, 120_000)
})
