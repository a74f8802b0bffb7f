/**
 * Docker's log stream for a container without a TTY is multiplexed: each
 * frame is an 8-byte header (byte 0: 1 = stdout, 2 = stderr; bytes 4–7: the
 * payload length, big-endian) followed by the payload. Frames do not align
 * with lines, so each stream keeps its own partial line until a newline
 * arrives. We parse frames ourselves (rather than docker.modem.demuxStream)
 * to get an async iterator with back-pressure and no intermediate streams.
 */
import type { LogLine } from '../core/index.ts'

const HEADER_BYTES = 8
/** A line longer than this is cut into pieces, so a process writing without newlines cannot grow memory unbounded. */
export const LOG_LINE_CHARS_MAX = 65_536

type StreamName = LogLine['stream']

class LineSplitter {
  private readonly decoder = new TextDecoder('utf-8')
  private partial = ''

  constructor(private readonly stream: StreamName) {}

  push(bytes: Uint8Array): LogLine[] {
    const parts = (this.partial + this.decoder.decode(bytes, { stream: true })).split('\n')
    this.partial = parts.pop() ?? ''
    const lines = parts.flatMap((part) => this.pieces(part))
    while (this.partial.length > LOG_LINE_CHARS_MAX) {
      lines.push(this.line(this.partial.slice(0, LOG_LINE_CHARS_MAX)))
      this.partial = this.partial.slice(LOG_LINE_CHARS_MAX)
    }
    return lines
  }

  /** The last line may lack its newline (a process killed mid-write). */
  flush(): LogLine[] {
    this.partial += this.decoder.decode()
    const rest = this.partial
    this.partial = ''
    return rest.length > 0 ? this.pieces(rest) : []
  }

  private pieces(text: string): LogLine[] {
    if (text.length <= LOG_LINE_CHARS_MAX) return [this.line(text)]
    const out: LogLine[] = []
    for (let start = 0; start < text.length; start += LOG_LINE_CHARS_MAX) out.push(this.line(text.slice(start, start + LOG_LINE_CHARS_MAX)))
    return out
  }

  private line(text: string): LogLine {
    return { stream: this.stream, line: text.endsWith('\r') ? text.slice(0, -1) : text }
  }
}

function isFrameHeader(bytes: Uint8Array): boolean {
  const type = bytes[0]
  return (type === 0 || type === 1 || type === 2) && bytes[1] === 0 && bytes[2] === 0 && bytes[3] === 0
}

/**
 * Demultiplexes a Docker log stream into lines. Input that does not start
 * with a frame header (a TTY container's raw output) is passed through as
 * stdout, as Docker itself does for TTY containers.
 */
export async function* demuxLogLines(chunks: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>): AsyncGenerator<LogLine> {
  const stdout = new LineSplitter('stdout')
  const stderr = new LineSplitter('stderr')
  let pending: Buffer = Buffer.alloc(0)
  let raw = false

  for await (const chunk of chunks) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
    if (raw) {
      yield* stdout.push(bytes)
      continue
    }
    pending = pending.length === 0 ? Buffer.from(bytes) : Buffer.concat([pending, bytes])
    while (pending.length >= HEADER_BYTES) {
      if (!isFrameHeader(pending)) {
        raw = true
        yield* stdout.push(pending)
        pending = Buffer.alloc(0)
        break
      }
      const payloadBytes = pending.readUInt32BE(4)
      if (pending.length < HEADER_BYTES + payloadBytes) break
      const payload = pending.subarray(HEADER_BYTES, HEADER_BYTES + payloadBytes)
      const type = pending[0]
      pending = pending.subarray(HEADER_BYTES + payloadBytes)
      // Type 0 (stdin) is never sent for logs; ignore it if an engine does.
      if (type === 1) yield* stdout.push(payload)
      else if (type === 2) yield* stderr.push(payload)
    }
  }
  // A frame cut short (stream aborted mid-frame) is dropped: its length is unknown to be complete.
  yield* stdout.flush()
  yield* stderr.flush()
}
