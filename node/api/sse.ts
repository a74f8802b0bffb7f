/**
 * Server-sent events over a hijacked fastify reply: one `data:` JSON line per
 * event, a comment line as keep-alive, and cleanup when the client goes.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'

export interface SseStream {
  send(event: string, data: unknown, id?: number): void
  /** Aborted when the client disconnects or the stream is closed. */
  signal: AbortSignal
  close(): void
}

export function openSse(request: FastifyRequest, reply: FastifyReply, keepAliveMs: number): SseStream {
  reply.hijack()
  const raw = reply.raw
  raw.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  })
  raw.write(': lattice\n\n')
  const controller = new AbortController()
  // The API's own keep-alive: a real timer is right here (node/ is the composition root's edge).
  const keepAlive = setInterval(() => raw.write(': keep-alive\n\n'), keepAliveMs)
  keepAlive.unref()
  const close = (): void => {
    if (controller.signal.aborted) return
    clearInterval(keepAlive)
    controller.abort()
    raw.end()
  }
  request.raw.on('close', close)
  raw.on('close', close)
  return {
    send(event, data, id) {
      if (controller.signal.aborted) return
      raw.write(`${id !== undefined ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
    },
    signal: controller.signal,
    close,
  }
}
