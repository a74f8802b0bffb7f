/** The real Clock adapter: wall time and Node timers. */
import { sleepOn, type Clock, type TimerHandle } from '../core/index.ts'

export function createSystemClock(): Clock {
  const clock: Clock = {
    nowMs: () => Date.now(),
    setTimer: (delayMs, fn): TimerHandle => {
      const handle = setTimeout(fn, Math.max(0, delayMs))
      // A pending timer must not keep a stopping process alive.
      handle.unref?.()
      return { cancel: () => clearTimeout(handle) }
    },
    sleep: (delayMs, signal) => sleepOn(clock, delayMs, signal),
  }
  return clock
}
