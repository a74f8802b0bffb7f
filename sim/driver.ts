/**
 * The discrete-event driver: one virtual clock shared by every simulated
 * node, and one root Rng from which every random choice of a run is forked.
 * It fires the clock's timers in (time, creation) order; all timers due at the
 * same virtual millisecond fire as one batch, then the microtask queue is
 * drained (a macrotask turn) so promise continuations run before time moves
 * on, as they would on a real event loop. A run is therefore a pure function
 * of the seed: same seed, same event order, same trace.
 *
 * Clock skew: all nodes share this clock's time; a node's own view of it
 * (offset, jumps, pauses) is a NodeClock over it (sim/node-clock.ts). Local
 * lag (a node whose timers fire late) is modelled with `laggingClock`.
 */
import { createRng, sleepOn, type Clock, type Rng, type TimerHandle } from '../core/index.ts'
import { createVirtualClock, type VirtualClock } from './virtual-clock.ts'

export interface SimDriver {
  readonly clock: VirtualClock
  /** The root of every random stream in the run; fork it, never share it. */
  readonly rng: Rng
  readonly seed: number
  /** Virtual ms since the run began. */
  elapsedMs(): number
  /** Fires every timer due within the next `ms` virtual milliseconds. */
  runFor(ms: number): Promise<void>
  /** Runs in steps of `checkEveryMs` until `condition` holds (true) or `budgetMs` passed (false). */
  runUntil(condition: () => boolean, budgetMs: number, checkEveryMs?: number): Promise<boolean>
  /** Timers fired so far. */
  eventsProcessed(): number
}

export interface SimDriverHooks {
  /** Called after every advance of virtual time (runFor, each runUntil step): the progress line hangs here. */
  onAdvance?(elapsedMs: number, eventsProcessed: number): void
  /**
   * Called after every step: the timers due at one virtual instant have run
   * and their microtasks drained. For upkeep that must not wait for the end
   * of an advance — one advance can take minutes of wall time under load.
   */
  onStep?(): void
}

/** Node's macrotask turn: every queued microtask (promise continuation) runs before it resolves. */
const drainMicrotasks = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

export function createSimDriver(seed: number, startMs = 1_700_000_000_000, hooks: SimDriverHooks = {}): SimDriver {
  const clock = createVirtualClock(startMs)
  const rng = createRng(seed)
  let events = 0

  const runTo = async (targetMs: number): Promise<void> => {
    await drainMicrotasks()
    for (;;) {
      const next = clock.nextTimerAtMs()
      if (next === undefined || next > targetMs) break
      while (clock.nextTimerAtMs() === next) {
        clock.step()
        events++
      }
      await drainMicrotasks()
      hooks.onStep?.()
    }
    if (clock.nowMs() < targetMs) clock.jumpTo(targetMs)
    await drainMicrotasks()
    hooks.onAdvance?.(clock.nowMs() - startMs, events)
  }

  const driver: SimDriver = {
    clock,
    rng,
    seed,
    elapsedMs: () => clock.nowMs() - startMs,
    runFor: (ms) => runTo(clock.nowMs() + Math.max(0, ms)),
    runUntil: async (condition, budgetMs, checkEveryMs = 100) => {
      const endMs = clock.nowMs() + budgetMs
      while (!condition()) {
        if (clock.nowMs() >= endMs) return false
        await runTo(Math.min(endMs, clock.nowMs() + checkEveryMs))
      }
      return true
    },
    eventsProcessed: () => events,
  }
  return driver
}

/**
 * A node's view of the shared clock whose timers fire `lagMs()` late — an
 * overloaded event loop. Time itself is not skewed.
 */
export function laggingClock(clock: Clock, lagMs: () => number): Clock {
  const lagging: Clock = {
    nowMs: () => clock.nowMs(),
    setTimer: (delayMs, fn): TimerHandle => clock.setTimer(Math.max(0, delayMs) + Math.max(0, lagMs()), fn),
    sleep: (delayMs, signal) => sleepOn(lagging, delayMs, signal),
  }
  return lagging
}
