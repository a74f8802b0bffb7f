import { describe, expect, it } from 'vitest'
import { RoundTripEstimator } from './round-trip.ts'

describe('RoundTripEstimator', () => {
  it('holds the floor until the first sample, and while the network is faster than the floor', () => {
    const rtt = new RoundTripEstimator()
    expect(rtt.timeoutMs(250, 2_000)).toBe(250)
    expect(rtt.smoothed()).toBeUndefined()
    for (let i = 0; i < 50; i++) rtt.sample(5 + (i % 10))
    expect(rtt.smoothed()).toBeGreaterThan(5)
    expect(rtt.smoothed()).toBeLessThan(15)
    expect(rtt.timeoutMs(250, 2_000)).toBe(250)
  })

  it('follows a slow network to srtt + 4 × rttvar, up to the ceiling, and comes back down after it', () => {
    const rtt = new RoundTripEstimator()
    rtt.sample(400)
    // First sample: srtt = R, rttvar = R / 2 (RFC 6298).
    expect(rtt.timeoutMs(250, 2_000)).toBe(1_200)
    expect(rtt.timeoutMs(250, 1_000)).toBe(1_000)
    for (let i = 0; i < 100; i++) rtt.sample(400)
    expect(rtt.smoothed()).toBeCloseTo(400, 0)
    // A steady round trip: the variation decays, the timeout approaches the round trip itself.
    expect(rtt.timeoutMs(250, 2_000)).toBeLessThan(420)
    expect(rtt.timeoutMs(250, 2_000)).toBeGreaterThanOrEqual(400)
    for (let i = 0; i < 100; i++) rtt.sample(10)
    expect(rtt.timeoutMs(250, 2_000)).toBe(250)
  })

  it('ignores samples that are not round trips', () => {
    const rtt = new RoundTripEstimator()
    rtt.sample(Number.NaN)
    rtt.sample(-1)
    rtt.sample(Number.POSITIVE_INFINITY)
    expect(rtt.smoothed()).toBeUndefined()
    expect(rtt.timeoutMs(250, 2_000)).toBe(250)
  })

  it('never goes below the floor even when the ceiling is configured lower', () => {
    const rtt = new RoundTripEstimator()
    rtt.sample(5_000)
    expect(rtt.timeoutMs(250, 100)).toBe(250)
  })
})
