/** The simulator replays a run from its seed: same seed, same trace; another seed, another trace. */
import { describe, expect, it } from 'vitest'
import { runMembershipScenario } from '../sim/scenarios/membership.ts'

const run = (seed: number) => runMembershipScenario({ nodes: 500, seed, durationS: 10, loss: 0.1, kill: 0.002, partition: false })

describe('membership simulator determinism, 500 nodes', () => {
  it('the same seed gives the same traceHash, a different seed a different one', async () => {
    const first = await run(5)
    const again = await run(5)
    const other = await run(6)
    expect(first.details['traceEntries']).toBeGreaterThan(250_000)
    expect(again.traceHash).toBe(first.traceHash)
    expect(again.figures.deathDetectionMs).toEqual(first.figures.deathDetectionMs)
    expect(other.traceHash).not.toBe(first.traceHash)
  }, 120_000)
})
