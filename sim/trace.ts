/**
 * The run's trace: every membership state transition as one line
 * "virtualMs observer subject state", folded into a SHA-256 as it is
 * recorded (a 1,000-node run records millions). Same seed → same lines →
 * same traceHash. Observers and subjects are node indices (the seed fixes
 * which PeerId each index has).
 *
 * With a sink (`--trace FILE`, `createTraceFile`) every line is also written
 * as one JSON object per line: {"tMs":…,"observer":…,"subject":…,"event":"…"}
 * (observer -1: the fault schedule). The hash is over the text lines, so a
 * sink changes nothing in it.
 */
import { closeSync, openSync, writeSync } from 'node:fs'
import { createHash, type Hash } from 'node:crypto'

export interface TraceLine {
  tMs: number
  observer: number
  subject: number
  event: string
}

export type TraceSink = (line: TraceLine) => void

/** Characters of trace lines gathered before they are folded into the hash (a 1,000-node run records ~12 million lines). */
const TRACE_HASH_BATCH_CHARS = 64 * 1024

export class Trace {
  private readonly hash: Hash = createHash('sha256')
  /** Lines not folded into the hash yet: one update per TRACE_HASH_BATCH_CHARS, not per line (the same digest). */
  private pending = ''
  private count = 0

  constructor(private readonly sink?: TraceSink) {}

  record(atMs: number, observer: number, subject: number, state: string): void {
    const line = `${atMs} ${observer} ${subject} ${state}\n`
    this.pending += line
    if (this.pending.length >= TRACE_HASH_BATCH_CHARS) this.fold()
    this.sink?.({ tMs: atMs, observer, subject, event: state })
    this.count++
  }

  private fold(): void {
    this.hash.update(this.pending)
    this.pending = ''
  }

  entries(): number {
    return this.count
  }

  /** Final digest (hex); the trace cannot be extended afterwards. */
  digest(): string {
    this.fold()
    return this.hash.digest('hex')
  }
}

/** Bytes buffered before a write to the trace file. */
const TRACE_FILE_BUFFER_BYTES = 256 * 1024

/** A JSON-lines trace file: `sink` for a Trace, `close()` flushes and closes it. */
export function createTraceFile(path: string): { sink: TraceSink; close(): void; lines(): number } {
  const fd = openSync(path, 'w')
  let buffer = ''
  let count = 0
  const flush = (): void => {
    if (buffer.length === 0) return
    writeSync(fd, buffer)
    buffer = ''
  }
  return {
    sink: (line) => {
      buffer += `${JSON.stringify(line)}\n`
      count++
      if (buffer.length >= TRACE_FILE_BUFFER_BYTES) flush()
    },
    close: () => {
      flush()
      closeSync(fd)
    },
    lines: () => count,
  }
}
