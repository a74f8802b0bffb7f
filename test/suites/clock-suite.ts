/**
 * The Clock port's acceptance suite, run against the system clock and the
 * virtual clock. `advance(ms)` lets time pass: really for the system clock,
 * virtually for the virtual one.
 */
import { describe, expect, it } from 'vitest'
import type { Clock } from '../../core/index.ts'

export interface ClockHarness {
  clock: Clock
  advance(ms: number): Promise<void>
}

export function runClockSuite(name: string, makeHarness: () => ClockHarness): void {
  describe(`Clock port: ${name}`, () => {
    it('time does not run backwards and moves forward as time passes', async () => {
      const { clock, advance } = makeHarness()
      const before = clock.nowMs()
      await advance(30)
      expect(clock.nowMs()).toBeGreaterThanOrEqual(before + 25)
    })

    it('timers fire once, in order of their due time, not before it', async () => {
      const { clock, advance } = makeHarness()
      const fired: string[] = []
      const startedAt = clock.nowMs()
      let lateAt = 0
      clock.setTimer(40, () => {
        fired.push('late')
        lateAt = clock.nowMs()
      })
      clock.setTimer(10, () => fired.push('early'))
      await advance(15)
      expect(fired).toEqual(['early'])
      await advance(60)
      expect(fired).toEqual(['early', 'late'])
      expect(lateAt - startedAt).toBeGreaterThanOrEqual(39)
    })

    it('a cancelled timer never fires, and cancelling twice is harmless', async () => {
      const { clock, advance } = makeHarness()
      let fired = false
      const timer = clock.setTimer(10, () => {
        fired = true
      })
      timer.cancel()
      timer.cancel()
      await advance(30)
      expect(fired).toBe(false)
    })

    it('sleep resolves after its delay and rejects with the reason when aborted', async () => {
      const { clock, advance } = makeHarness()
      let slept = false
      const sleeping = clock.sleep(20).then(() => {
        slept = true
      })
      await advance(30)
      await sleeping
      expect(slept).toBe(true)
      const controller = new AbortController()
      const aborted = clock.sleep(1_000, controller.signal)
      controller.abort(new Error('stop'))
      await expect(aborted).rejects.toThrow('stop')
      await expect(clock.sleep(10, controller.signal)).rejects.toThrow('stop')
    })
  })
}
