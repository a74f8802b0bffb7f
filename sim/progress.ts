/**
 * The progress line of a long simulator run: virtual time, events per wall
 * second, violations so far (and whatever else the scenario adds).
 *
 * On a terminal it rewrites one line in place (`\r`, then erase to the end)
 * at most every `ttyIntervalMs`; into a pipe or file (CI logs) it prints a
 * whole line every `lineIntervalMs` instead, so a log is not flooded. Calling
 * `update` is cheap (one `performance.now()` when nothing is due), so a
 * scenario may call it from every `runUntil` check. `done()` prints the final
 * line and ends the rewritten one with a newline.
 *
 *   const progress = createProgressLine({ label: `chaos n=${n} seed=${seed}` })
 *   await driver.runUntil(() => { progress.update({ virtualMs: driver.elapsedMs(), events: driver.eventsProcessed(), violations: violations.length }); return done() }, budgetMs)
 *   progress.done({ … })
 */

export interface ProgressSample {
  /** Virtual ms since the run began (SimDriver.elapsedMs()). */
  virtualMs: number
  /** Events processed so far (SimDriver.eventsProcessed()); the line shows their rate per wall second. */
  events: number
  /** Invariant violations so far. */
  violations: number
  /** Anything else worth a glance, e.g. "phase steady, 3 kills". */
  note?: string
}

/** Where the line goes: a stream, told whether it is a terminal. */
export interface ProgressSink {
  write(chunk: string): unknown
  isTTY?: boolean
}

export interface ProgressInit {
  /** Prefix, e.g. "membership n=1000 seed=1". */
  label?: string
  /** Default process.stderr (stdout carries the report). */
  sink?: ProgressSink
  /** Overrides the sink's own isTTY. */
  tty?: boolean
  /** Least wall ms between two rewrites on a terminal. Default 250. */
  ttyIntervalMs?: number
  /** Wall ms between two printed lines when not a terminal. Default 10,000. */
  lineIntervalMs?: number
  /** Wall clock, ms (injectable for tests). Default performance.now. */
  now?: () => number
  /** false: update and done do nothing (e.g. --quiet). Default true. */
  enabled?: boolean
}

export interface ProgressLine {
  /** Shows `sample` if the interval has passed since the last line. */
  update(sample: ProgressSample): void
  /** Prints the final line (always) and ends the terminal line. */
  done(sample?: ProgressSample): void
}

export const PROGRESS_DEFAULTS = { ttyIntervalMs: 250, lineIntervalMs: 10_000 } as const

export function createProgressLine(init: ProgressInit = {}): ProgressLine {
  const sink = init.sink ?? process.stderr
  const tty = init.tty ?? sink.isTTY === true
  const intervalMs = tty ? (init.ttyIntervalMs ?? PROGRESS_DEFAULTS.ttyIntervalMs) : (init.lineIntervalMs ?? PROGRESS_DEFAULTS.lineIntervalMs)
  const now = init.now ?? (() => performance.now())
  const enabled = init.enabled ?? true
  const startedAt = now()
  let lastShownAt = startedAt
  let lastEvents = 0
  let lastEventsAt = startedAt
  let eventsPerSecond = 0
  let last: ProgressSample | undefined
  let lineOpen = false

  const show = (sample: ProgressSample, at: number, final: boolean): void => {
    const wallSeconds = (at - lastEventsAt) / 1000
    if (wallSeconds > 0) eventsPerSecond = (sample.events - lastEvents) / wallSeconds
    if (final) {
      const total = (at - startedAt) / 1000
      if (total > 0) eventsPerSecond = sample.events / total
    }
    lastEvents = sample.events
    lastEventsAt = at
    const line = formatProgress(init.label, sample, eventsPerSecond, (at - startedAt) / 1000)
    if (tty) {
      sink.write(`\r${line}\x1b[K${final ? '\n' : ''}`)
      lineOpen = !final
    } else {
      sink.write(`${line}\n`)
    }
  }

  return {
    update(sample) {
      if (!enabled) return
      last = sample
      const at = now()
      if (at - lastShownAt < intervalMs) return
      lastShownAt = at
      show(sample, at, false)
    },
    done(sample) {
      if (!enabled) return
      const final = sample ?? last
      if (final === undefined) {
        if (lineOpen) sink.write('\n')
        lineOpen = false
        return
      }
      show(final, now(), true)
    },
  }
}

/** "[label] virtual 123.4 s · 45,210 events/s · 0 violations · wall 12.0 s · note". */
export function formatProgress(label: string | undefined, sample: ProgressSample, eventsPerSecond: number, wallSeconds: number): string {
  const parts = [
    `virtual ${(sample.virtualMs / 1000).toFixed(1)} s`,
    `${Math.round(eventsPerSecond).toLocaleString('en-US')} events/s`,
    `${sample.violations} violation${sample.violations === 1 ? '' : 's'}`,
    `wall ${wallSeconds.toFixed(1)} s`,
  ]
  if (sample.note !== undefined && sample.note !== '') parts.push(sample.note)
  return `${label === undefined ? '' : `[${label}] `}${parts.join(' · ')}`
}
