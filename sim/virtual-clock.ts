/**
 * A virtual Clock: time moves only when the owner advances it, and timers
 * fire in (time, creation order) — deterministic, so a run replays exactly.
 * Used by unit tests (manual advance) and by the simulator's scheduler.
 */
import { sleepOn, type Clock, type TimerHandle } from '../core/index.ts'

interface Timer {
  atMs: number
  seq: number
  fn: () => void
  cancelled: boolean
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

export function createVirtualClock(startMs = 1_700_000_000_000): VirtualClock {
  let nowMs = startMs
  let seq = 0
  const heap: Timer[] = []

  const less = (a: Timer, b: Timer): boolean => a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq)
  const push = (timer: Timer): void => {
    heap.push(timer)
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!less(heap[i]!, heap[parent]!)) break
      ;[heap[i], heap[parent]] = [heap[parent]!, heap[i]!]
      i = parent
    }
  }
  const pop = (): Timer | undefined => {
    const top = heap[0]
    const last = heap.pop()
    if (heap.length > 0 && last !== undefined) {
      heap[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let smallest = i
        if (l < heap.length && less(heap[l]!, heap[smallest]!)) smallest = l
        if (r < heap.length && less(heap[r]!, heap[smallest]!)) smallest = r
        if (smallest === i) break
        ;[heap[i], heap[smallest]] = [heap[smallest]!, heap[i]!]
        i = smallest
      }
    }
    return top
  }
  const dropCancelled = (): void => {
    while (heap.length > 0 && heap[0]!.cancelled) pop()
  }
  const flushMicrotasks = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

  const clock: VirtualClock = {
    nowMs: () => nowMs,
    setTimer: (delayMs, fn): TimerHandle => {
      const timer: Timer = { atMs: nowMs + Math.max(0, delayMs), seq: seq++, fn, cancelled: false }
      push(timer)
      return { cancel: () => { timer.cancelled = true } }
    },
    sleep: (delayMs, signal) => sleepOn(clock, delayMs, signal),
    pendingTimers: () => heap.filter((t) => !t.cancelled).length,
    nextTimerAtMs: () => {
      dropCancelled()
      return heap[0]?.atMs
    },
    step: () => {
      dropCancelled()
      const timer = pop()
      if (timer === undefined) return false
      nowMs = Math.max(nowMs, timer.atMs)
      timer.fn()
      return true
    },
    advance: async (ms) => {
      const targetMs = nowMs + ms
      await flushMicrotasks()
      for (;;) {
        dropCancelled()
        const next = heap[0]
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
