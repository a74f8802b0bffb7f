import { describe, expect, it } from 'vitest'
import { silentLogger } from '../core/index.ts'
import { createVirtualClock } from '../sim/virtual-clock.ts'
import { backoffDelayMs, createBootstrapDialer, type BootstrapBackoff } from './bootstrap-dialer.ts'

const BACKOFF: BootstrapBackoff = { initialDelayMs: 100, delayMaxMs: 1_000, factor: 2, jitterRatio: 0 }

describe('bootstrap dialer', () => {
  it('backs off exponentially up to the cap, with bounded per-node jitter', () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelayMs(BACKOFF, n, 'x'))).toEqual([100, 200, 400, 800, 1_000, 1_000])
    const jittered = { ...BACKOFF, jitterRatio: 0.2 }
    const a = backoffDelayMs(jittered, 3, 'node-a addr')
    const b = backoffDelayMs(jittered, 3, 'node-b addr')
    for (const delay of [a, b]) expect(delay).toBeGreaterThanOrEqual(400)
    for (const delay of [a, b]) expect(delay).toBeLessThanOrEqual(480)
    expect(a).not.toBe(b)
  })

  it('retries a failing bootstrap address with backoff, then redials it after a disconnect', async () => {
    const clock = createVirtualClock(0)
    const attempts: number[] = []
    let reachable = false
    let connected = false
    const dialer = createBootstrapDialer(
      { addresses: ['/ip4/10.0.0.1/tcp/1/p2p/PEER'], backoff: BACKOFF, selfId: 'me' },
      {
        clock,
        logger: silentLogger,
        dial: async () => {
          attempts.push(clock.nowMs())
          if (!reachable) throw new Error('refused')
          connected = true
          return 'PEER'
        },
        isConnected: () => connected,
      },
    )
    await dialer.start()
    await clock.advance(650)
    // t=0 fails, +100 -> 100 fails, +200 -> 300 fails, +400 -> 700 (not yet)
    expect(attempts).toEqual([0, 100, 300])
    reachable = true
    await clock.advance(100)
    expect(attempts).toEqual([0, 100, 300, 700])
    expect(connected).toBe(true)
    await clock.advance(5_000)
    expect(attempts).toHaveLength(4) // connected: no more dials

    connected = false
    dialer.peerDisconnected('PEER')
    dialer.peerDisconnected('SOMEONE-ELSE')
    await clock.advance(100)
    expect(attempts).toEqual([0, 100, 300, 700, 5_850])
    expect(dialer.attempts()).toBe(5)

    connected = false
    await dialer.stop()
    dialer.peerDisconnected('PEER')
    await clock.advance(10_000)
    expect(attempts).toHaveLength(5)
  })
})
