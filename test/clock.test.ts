import { createSystemClock } from '../node/index.ts'
import { createVirtualClock } from '../sim/virtual-clock.ts'
import { runClockSuite } from './suites/clock-suite.ts'

runClockSuite('system clock', () => ({ clock: createSystemClock(), advance: (ms) => new Promise((resolve) => setTimeout(resolve, ms + 5)) }))
runClockSuite('virtual clock', () => {
  const clock = createVirtualClock()
  return { clock, advance: (ms) => clock.advance(ms) }
})
