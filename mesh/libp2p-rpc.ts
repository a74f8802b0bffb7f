/**
 * Request/response over libp2p v3 streams, one exchange per stream:
 *
 *   requester → frame(request bytes), then half-close
 *   responder → frame(status byte + response bytes), then half-close
 *
 * Both sides bound what they read (the handler's requestBytesMax, the
 * caller's responseBytesMax) from the frame header, before reading the body,
 * and both sides run under a deadline on the Clock port. A refused or failed
 * request is answered with a status, so the requester learns TOO_LARGE or
 * HANDLER_FAILED instead of a bare reset.
 */
import type { Connection, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Clock, HandlerOptions, Logger, RequestContext, RequestOptions } from '../core/index.ts'
import { TransportError } from '../core/index.ts'
import { FrameError, FrameTooLargeError, frameBytesMax, readFrame, writeFrameAndClose } from './frames.ts'
import type { Libp2pHost } from './libp2p-host.ts'

export type RequestHandler = (request: RequestContext) => Promise<Uint8Array>

export interface HandlerEntry {
  handler: RequestHandler
  options: HandlerOptions
}

export interface RpcCounters {
  requestsSent: number
  requestsFailed: number
  requestsServed: number
  requestsRefusedTooLarge: number
  handlerFailures: number
}

export function createRpcCounters(): RpcCounters {
  return { requestsSent: 0, requestsFailed: 0, requestsServed: 0, requestsRefusedTooLarge: 0, handlerFailures: 0 }
}

const STATUS_OK = 0
const STATUS_TOO_LARGE = 1
const STATUS_HANDLER_FAILED = 2

interface Deadline {
  signal: AbortSignal
  dispose(): void
}

/**
 * An AbortSignal that fires with TransportError TIMEOUT after `timeoutMs` on
 * the clock, or when the caller's signal aborts (the caller's deadline).
 */
export function createDeadline(clock: Clock, timeoutMs: number, what: string, callerSignal?: AbortSignal): Deadline {
  const controller = new AbortController()
  const timer = clock.setTimer(timeoutMs, () => controller.abort(new TransportError('TIMEOUT', `${what} timed out after ${timeoutMs} ms`)))
  const onCallerAbort = (): void =>
    controller.abort(new TransportError('TIMEOUT', `${what} aborted by the caller`, { cause: callerSignal?.reason }))
  if (callerSignal?.aborted === true) onCallerAbort()
  else callerSignal?.addEventListener('abort', onCallerAbort, { once: true })
  return {
    signal: controller.signal,
    dispose: () => {
      timer.cancel()
      callerSignal?.removeEventListener('abort', onCallerAbort)
    },
  }
}

/** Rejects with the signal's reason as soon as it aborts. */
function raceSignal<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(err)
      },
    )
  })
}

function withStatus(status: number, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  const framed = new Uint8Array(body.byteLength + 1)
  framed[0] = status
  framed.set(body, 1)
  return framed
}

export interface ServeComponents {
  clock: Clock
  logger: Logger
  counters: RpcCounters
  /** Bounds one inbound exchange: reading the request, the handler, the reply. */
  handlerTimeoutMs: number
}

/** Serves one inbound stream with `entry`; never throws. */
export async function serveStream(stream: Stream, connection: Connection, entry: HandlerEntry, components: ServeComponents): Promise<void> {
  const { clock, logger, counters, handlerTimeoutMs } = components
  const from = connection.remotePeer.toString()
  const deadline = createDeadline(clock, handlerTimeoutMs, `serving ${stream.protocol}`)
  const { signal } = deadline
  stream.maxReadBufferLength = frameBytesMax(entry.options.requestBytesMax)
  try {
    let data: Uint8Array
    try {
      data = await readFrame(stream, entry.options.requestBytesMax, signal)
    } catch (err) {
      if (!(err instanceof FrameTooLargeError)) throw err
      counters.requestsRefusedTooLarge++
      await writeFrameAndClose(stream, withStatus(STATUS_TOO_LARGE), signal)
      return
    }
    let response: Uint8Array
    try {
      response = await raceSignal(entry.handler({ from, protocol: stream.protocol, data }), signal)
    } catch (err) {
      counters.handlerFailures++
      logger.warn({ protocol: stream.protocol, from, err: String(err) }, 'request handler failed')
      // Past the deadline the stream is aborted below; otherwise say it failed.
      if (signal.aborted) throw err
      await writeFrameAndClose(stream, withStatus(STATUS_HANDLER_FAILED), signal)
      return
    }
    await writeFrameAndClose(stream, withStatus(STATUS_OK, response), signal)
    counters.requestsServed++
  } catch (err) {
    logger.debug({ protocol: stream.protocol, from, err: String(err) }, 'inbound request stream failed')
    stream.abort(err instanceof Error ? err : new Error(String(err)))
  } finally {
    deadline.dispose()
  }
}

/** Sends one request over a new stream to `peerId`. */
export async function sendRequest(
  node: Libp2pHost,
  clock: Clock,
  peerId: string,
  protocol: string,
  data: Uint8Array,
  options: RequestOptions,
): Promise<Uint8Array> {
  const deadline = createDeadline(clock, options.timeoutMs, `request ${protocol} to ${peerId}`, options.signal)
  const { signal } = deadline
  try {
    let stream: Stream
    try {
      stream = await node.dialProtocol(peerIdFromString(peerId), protocol, { signal })
    } catch (err) {
      throw dialFailure(err, signal, peerId, protocol)
    }
    return await exchange(stream, data, options.responseBytesMax, signal)
  } finally {
    deadline.dispose()
  }
}

async function exchange(stream: Stream, data: Uint8Array, responseBytesMax: number, signal: AbortSignal): Promise<Uint8Array> {
  stream.maxReadBufferLength = frameBytesMax(responseBytesMax + 1)
  // Listen before writing: a responder refusing an oversized request answers
  // while we are still sending, and we must see that answer.
  const reply = readFrame(stream, responseBytesMax + 1, signal)
  const sent = writeFrameAndClose(stream, data, signal)
  // Either may fail first; the other's rejection is handled below.
  sent.catch(() => {})
  reply.catch(() => {})
  try {
    const frame = await Promise.race([reply, sent.then(() => reply)])
    const status = frame[0]
    // The responder reads the whole request before it answers OK, so our
    // half-close has reached the muxer by then.
    if (status === STATUS_OK) return frame.subarray(1)
    stream.abort(new Error('request refused'))
    if (status === STATUS_TOO_LARGE) throw new TransportError('TOO_LARGE', `request of ${data.byteLength} bytes refused by the peer as too large`)
    throw new TransportError('HANDLER_FAILED', 'the peer\'s handler failed')
  } catch (err) {
    if (err instanceof TransportError) throw err
    stream.abort(err instanceof Error ? err : new Error(String(err)))
    throw streamFailure(err, signal, responseBytesMax)
  }
}

function dialFailure(err: unknown, signal: AbortSignal, peerId: string, protocol: string): TransportError {
  if (signal.aborted && signal.reason instanceof TransportError) return signal.reason
  if (err instanceof TransportError) return err
  if (err instanceof Error && err.name === 'UnsupportedProtocolError') {
    return new TransportError('NO_HANDLER', `${peerId} has no handler for ${protocol}`, { cause: err })
  }
  return new TransportError('UNREACHABLE', `cannot open ${protocol} to ${peerId}`, { cause: err })
}

function streamFailure(err: unknown, signal: AbortSignal, responseBytesMax: number): TransportError {
  if (signal.aborted && signal.reason instanceof TransportError) return signal.reason
  if (err instanceof FrameTooLargeError) {
    return new TransportError('TOO_LARGE', `response of ${err.declaredBytes - 1} bytes exceeds responseBytesMax ${responseBytesMax}`, { cause: err })
  }
  if (err instanceof FrameError) return new TransportError('UNREACHABLE', 'the peer closed the stream without answering', { cause: err })
  return new TransportError('UNREACHABLE', 'request stream failed', { cause: err })
}

/** Serves a request to this node itself with the same bounds as a remote one. */
export async function serveLocally(
  entry: HandlerEntry | undefined,
  request: RequestContext,
  clock: Clock,
  options: RequestOptions,
): Promise<Uint8Array> {
  if (entry === undefined) throw new TransportError('NO_HANDLER', `no handler for ${request.protocol}`)
  if (request.data.byteLength > entry.options.requestBytesMax) {
    throw new TransportError('TOO_LARGE', `request of ${request.data.byteLength} bytes exceeds requestBytesMax ${entry.options.requestBytesMax}`)
  }
  const deadline = createDeadline(clock, options.timeoutMs, `request ${request.protocol} to self`, options.signal)
  try {
    let response: Uint8Array
    try {
      response = await raceSignal(entry.handler({ ...request, data: request.data.slice() }), deadline.signal)
    } catch (err) {
      if (deadline.signal.aborted && err === deadline.signal.reason) throw err
      throw new TransportError('HANDLER_FAILED', `handler for ${request.protocol} failed`, { cause: err })
    }
    if (response.byteLength > options.responseBytesMax) {
      throw new TransportError('TOO_LARGE', `response of ${response.byteLength} bytes exceeds responseBytesMax ${options.responseBytesMax}`)
    }
    return response
  } finally {
    deadline.dispose()
  }
}
