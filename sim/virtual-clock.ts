/**
 * A virtual Clock: time moves only when the owner advances it, and timers
 * fire in (time, creation order) — deterministic, so a run replays exactly.
 * Used by unit tests (manual advance) and by the simulator's scheduler.
 */
import { sleepOn, type Clock, type TimerHandle } from '../core/index.ts'

interface Timer {
  fn: () => void
  cancelled: boolean
}

/** The timers due at one instant, in creation order; `next` is the first not yet fired. */
interface Bucket {
  atMs: number
  timers: Timer[]
  next: number
}

export interface VirtualClock extends Clock {
  /** Timers still waiting. */
  pendingTimers(): number
  /** Time of the earliest pending timer, or undefined. */
  nextTimerAtMs(): number | undefined
  /** Fires the earliest timer (moving time to it); false when none. */
  step(): boolean
  /**
   * Moves time forward by `ms`, firing every due timer in order and letting
   * promise continuations run between timers, so async code behaves as it
   * would on a real clock.
   */
  advance(ms: number): Promise<void>
  /** Sets the time without firing timers (clock jumps in fault scenarios). */
  jumpTo(ms: number): void
}

/**
 * Timers live in one bucket per due instant (creation order within it) and a
 * binary heap holds the distinct instants: a simulated cluster keeps hundreds
 * of thousands of timers pending, most of them due at a few thousand distinct
 * milliseconds, so adding one is usually an append and the heap stays small.
 * The firing order is the same as one heap ordered by (time, creation).
 */
export function createVirtualClock(startMs = 1_700_000_000_000): VirtualClock {
  let nowMs = startMs
  const buckets = new Map<number, Bucket>()
  /** Min-heap of the instants that have a bucket. */
  const instants: number[] = []

  const pushInstant = (atMs: number): void => {
    instants.push(atMs)
    let i = instants.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (instants[parent]! <= atMs) break
      instants[i] = instants[parent]!
      i = parent
    }
    instants[i] = atMs
  }
  const popInstant = (): void => {
    const last = instants.pop()!
    if (instants.length === 0) return
    let i = 0
    const n = instants.length
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) break
      const r = l + 1
      const child = r < n && instants[r]! < instants[l]! ? r : l
      if (instants[child]! >= last) break
      instants[i] = instants[child]!
      i = child
    }
    instants[i] = last
  }
  /** The earliest bucket with a timer still to fire (emptied buckets are dropped on the way), or undefined. */
  const head = (): Bucket | undefined => {
    while (instants.length > 0) {
      const bucket = buckets.get(instants[0]!)!
      const { timers } = bucket
      while (bucket.next < timers.length && timers[bucket.next]!.cancelled) bucket.next++
      if (bucket.next < timers.length) return bucket
      buckets.delete(bucket.atMs)
      popInstant()
    }
    return undefined
  }
  const flushMicrotasks = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

  const clock: VirtualClock = {
    nowMs: () => nowMs,
    setTimer: (delayMs, fn): TimerHandle => {
      const atMs = nowMs + Math.max(0, delayMs)
      const timer: Timer = { fn, cancelled: false }
      let bucket = buckets.get(atMs)
      if (bucket === undefined) {
        bucket = { atMs, timers: [], next: 0 }
        buckets.set(atMs, bucket)
        pushInstant(atMs)
      }
      bucket.timers.push(timer)
      return { cancel: () => { timer.cancelled = true } }
    },
    sleep: (delayMs, signal) => sleepOn(clock, delayMs, signal),
    pendingTimers: () => {
      let count = 0
      for (const bucket of buckets.values()) for (let i = bucket.next; i < bucket.timers.length; i++) if (!bucket.timers[i]!.cancelled) count++
      return count
    },
    nextTimerAtMs: () => head()?.atMs,
    step: () => {
      const bucket = head()
      if (bucket === undefined) return false
      const timer = bucket.timers[bucket.next]!
      bucket.next++
      // Fired timers are not kept: a long instant (every delivery of a busy millisecond) holds only what is still due.
      if (bucket.next > 1024 && bucket.next * 2 > bucket.timers.length) {
        bucket.timers.splice(0, bucket.next)
        bucket.next = 0
      }
      nowMs = Math.max(nowMs, bucket.atMs)
      timer.fn()
      return true
    },
    advance: async (ms) => {
      const targetMs = nowMs + ms
      await flushMicrotasks()
      for (;;) {
        const next = head()
        if (next === undefined || next.atMs > targetMs) break
        clock.step()
        await flushMicrotasks()
      }
      nowMs = targetMs
      await flushMicrotasks()
    },
    jumpTo: (ms) => {
      nowMs = ms
    },
  }
  return clock
}
