/**
 * A simulated node's own Clock over the run's shared virtual clock: what a
 * machine's clock and event loop do to the node code on it.
 *
 * - Skew and jumps: `nowMs()` is the shared time plus this node's offset.
 *   `setOffset` sets the offset (a skewed clock), `jump` adds to it at once
 *   (an NTP step, forward or back). Timers keep running on durations — as
 *   Node's monotonic timers do — so only code that compares wall timestamps
 *   (its own or other nodes') sees the difference.
 * - Pause: while paused, timers that come due are held, not run, and run in
 *   their order on `resume()` (a SIGSTOPped process, a VM frozen by its host,
 *   a long GC pause). The node keeps all its state. Message handling freezes
 *   too, but that lives in the simulated network (`SimNetwork.pause`); the
 *   cluster pauses both together (sim-cluster.ts).
 */
import { sleepOn, type Clock, type TimerHandle } from '../core/index.ts'

export interface NodeClock extends Clock {
  /** Current offset from the shared virtual time, ms (positive: ahead). */
  offsetMs(): number
  /** Sets the offset (clock skew). */
  setOffset(ms: number): void
  /** Steps the clock by `ms` (negative: back), keeping the new offset. */
  jump(ms: number): void
  pause(): void
  /** Runs every timer held while paused (in due order) on the next turn of the shared clock. */
  resume(): void
  paused(): boolean
  /** Timers held right now (paused and due). */
  heldTimers(): number
}

interface Held {
  fn: () => void
  cancelled: boolean
}

export function createNodeClock(base: Clock): NodeClock {
  let offset = 0
  let isPaused = false
  let held: Held[] = []

  const clock: NodeClock = {
    nowMs: () => base.nowMs() + offset,
    setTimer: (delayMs, fn): TimerHandle => {
      const entry: Held = { fn, cancelled: false }
      const handle = base.setTimer(delayMs, () => {
        if (entry.cancelled) return
        if (isPaused) held.push(entry)
        else fn()
      })
      return {
        cancel: () => {
          entry.cancelled = true
          handle.cancel()
        },
      }
    },
    sleep: (delayMs, signal) => sleepOn(clock, delayMs, signal),
    offsetMs: () => offset,
    setOffset: (ms) => {
      if (!Number.isFinite(ms)) throw new RangeError(`clock offset must be finite, got ${ms}`)
      offset = ms
    },
    jump: (ms) => {
      if (!Number.isFinite(ms)) throw new RangeError(`clock jump must be finite, got ${ms}`)
      offset += ms
    },
    pause: () => {
      isPaused = true
    },
    resume: () => {
      if (!isPaused) return
      isPaused = false
      const due = held
      held = []
      if (due.length === 0) return
      base.setTimer(0, () => {
        for (const entry of due) {
          if (entry.cancelled) continue
          if (isPaused) held.push(entry)
          else entry.fn()
        }
      })
    },
    paused: () => isPaused,
    heldTimers: () => held.filter((entry) => !entry.cancelled).length,
  }
  return clock
}
