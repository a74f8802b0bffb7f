/**
 * The Clock port: the only way code below node/ learns the time or waits.
 * The real adapter (node/system-clock.ts) reads Date.now and uses timers; the
 * virtual adapter (sim/virtual-clock.ts) is driven by a discrete-event
 * scheduler, so a simulation replays exactly from its seed.
 */
export interface TimerHandle {
  /** Cancels the timer; cancelling twice or after it fired is harmless. */
  cancel(): void
}

export interface Clock {
  /** Milliseconds since the Unix epoch, as this node believes it to be. */
  nowMs(): number
  /** Runs `fn` once after `delayMs` (>= 0). */
  setTimer(delayMs: number, fn: () => void): TimerHandle
  /** Resolves after `delayMs`; rejects with the signal's reason when aborted. */
  sleep(delayMs: number, signal?: AbortSignal): Promise<void>
}

/** Sleeps on any Clock, honouring an AbortSignal. Adapters share this. */
export function sleepOn(clock: Pick<Clock, 'setTimer'>, delayMs: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted === true) {
      reject(signal.reason)
      return
    }
    const onAbort = (): void => {
      timer.cancel()
      reject(signal?.reason)
    }
    const timer = clock.setTimer(delayMs, () => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    })
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
