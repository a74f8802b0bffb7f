/**
 * Length-prefixed frames over libp2p v3 streams. A frame is an unsigned
 * varint byte length followed by that many bytes (the libp2p convention, so
 * it-length-prefixed readers interoperate). v3 streams are message streams:
 * bytes arrive as 'message' events in chunks that need not align with
 * frames, so the decoder is incremental and rejects a frame as soon as its
 * header declares more than the caller's bound — before the body is read.
 */
import type { Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'

/** 5 varint bytes cover lengths up to 2^35; anything longer is malformed. */
const VARINT_BYTES_MAX = 5

export class FrameTooLargeError extends Error {
  override readonly name = 'FrameTooLargeError'
  constructor(readonly declaredBytes: number, readonly bytesMax: number) {
    super(`frame of ${declaredBytes} bytes exceeds the ${bytesMax}-byte limit`)
  }
}

export class FrameError extends Error {
  override readonly name = 'FrameError'
}

/** The largest number of bytes a frame with a `bodyBytesMax` body occupies. */
export function frameBytesMax(bodyBytesMax: number): number {
  return bodyBytesMax + VARINT_BYTES_MAX
}

export function encodeFrame(body: Uint8Array): Uint8Array {
  const header: number[] = []
  let rest = body.byteLength
  while (rest >= 0x80) {
    header.push((rest % 0x80) | 0x80)
    rest = Math.floor(rest / 0x80)
  }
  header.push(rest)
  const frame = new Uint8Array(header.length + body.byteLength)
  frame.set(header, 0)
  frame.set(body, header.length)
  return frame
}

/** Incremental decoder for one frame. */
export class FrameDecoder {
  private headerBytes = 0
  private declared = 0
  private bodyBytes: number | undefined
  private readonly parts: Uint8Array[] = []
  private received = 0

  constructor(private readonly bytesMax: number) {}

  /**
   * Feeds a chunk; returns the frame body once complete. Throws
   * FrameTooLargeError or FrameError. Bytes after the frame are ignored.
   */
  push(chunk: Uint8Array): Uint8Array | undefined {
    let offset = 0
    while (this.bodyBytes === undefined && offset < chunk.byteLength) {
      const byte = chunk[offset++]!
      this.declared += (byte & 0x7f) * 2 ** (7 * this.headerBytes)
      this.headerBytes++
      if ((byte & 0x80) === 0) {
        if (this.declared > this.bytesMax) throw new FrameTooLargeError(this.declared, this.bytesMax)
        this.bodyBytes = this.declared
      } else if (this.headerBytes >= VARINT_BYTES_MAX) {
        throw new FrameError('malformed frame length')
      }
    }
    if (this.bodyBytes === undefined) return undefined
    if (offset < chunk.byteLength) {
      const needed = this.bodyBytes - this.received
      const part = chunk.subarray(offset, offset + needed)
      this.parts.push(part)
      this.received += part.byteLength
    }
    if (this.received < this.bodyBytes) return undefined
    const body = new Uint8Array(this.bodyBytes)
    let at = 0
    for (const part of this.parts) {
      body.set(part, at)
      at += part.byteLength
    }
    return body
  }
}

/**
 * Reads one frame from a stream. Rejects with FrameTooLargeError, FrameError,
 * a FrameError when the remote ends (or resets) before a whole frame arrived,
 * or `signal.reason` when aborted. Listeners are removed in every case.
 */
export function readFrame(stream: Stream, bytesMax: number, signal: AbortSignal): Promise<Uint8Array> {
  return new Promise<Uint8Array>((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason)
      return
    }
    const decoder = new FrameDecoder(bytesMax)
    const cleanup = (): void => {
      stream.removeEventListener('message', onMessage)
      stream.removeEventListener('remoteCloseWrite', onRemoteEnd)
      stream.removeEventListener('close', onClose)
      signal.removeEventListener('abort', onAbort)
    }
    const fail = (err: unknown): void => {
      cleanup()
      reject(err)
    }
    const onMessage = (event: StreamMessageEvent): void => {
      try {
        const data = event.data instanceof Uint8Array ? event.data : event.data.subarray()
        const frame = decoder.push(data)
        if (frame !== undefined) {
          cleanup()
          resolve(frame)
        }
      } catch (err) {
        fail(err)
      }
    }
    const onRemoteEnd = (): void => fail(new FrameError('stream ended before a whole frame arrived'))
    const onClose = (event: StreamCloseEvent): void =>
      fail(new FrameError('stream closed before a whole frame arrived', { cause: event.error }))
    const onAbort = (): void => fail(signal.reason)

    const ended = stream.status === 'closed' || stream.status === 'aborted' || stream.status === 'reset' || stream.remoteWriteStatus === 'closed'
    if (ended && stream.readBufferLength === 0) {
      reject(new FrameError(`stream is ${stream.status} before a frame arrived`))
      return
    }
    stream.addEventListener('message', onMessage)
    stream.addEventListener('remoteCloseWrite', onRemoteEnd)
    stream.addEventListener('close', onClose)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * Writes one frame and closes the writable end (a half close: the stream
 * stays readable). Resolves once the bytes reached the muxer.
 */
export async function writeFrameAndClose(stream: Stream, body: Uint8Array, signal: AbortSignal): Promise<void> {
  if (!stream.send(encodeFrame(body))) await stream.onDrain({ signal })
  await stream.close({ signal })
}
