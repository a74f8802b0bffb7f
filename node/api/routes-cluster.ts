/** Routes about the node and the mesh: health, nodes, events, metrics, OpenAPI. */
import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import type { ApiComponents, ApiInit } from './context.ts'
import { ErrorSchema, EventsQuerySchema, HealthSchema, NodesResponseSchema } from './schemas.ts'
import { openSse } from './sse.ts'

export function registerClusterRoutes(server: FastifyInstance, init: ApiInit, components: ApiComponents): void {
  const app = server.withTypeProvider<ZodTypeProvider>()
  const { state, reconciler, events, metrics, clock, nodeInfo } = components

  app.get('/v1/health', {
    schema: { summary: 'Liveness and identity of this node; open without a token', security: [], response: { 200: HealthSchema } },
  }, async () => {
    const runtime = reconciler.runtimeHealth() ?? null
    const stats = state.stats()
    const stateFailure = state.failure()
    return {
      ok: stateFailure === undefined,
      ...(stateFailure !== undefined ? { stateFailure } : {}),
      peerId: nodeInfo.peerId,
      name: nodeInfo.name,
      version: nodeInfo.version,
      uptimeMs: clock.nowMs() - nodeInfo.startedAtMs,
      runtime,
      document: { headsCount: stats.headsCount, sizeBytes: stats.sizeBytes, changeCount: stats.changeCount, epoch: stats.epoch },
    }
  })

  app.get('/v1/nodes', {
    schema: { summary: "This node's view of the mesh", response: { 200: NodesResponseSchema, 401: ErrorSchema } },
  }, async () => ({ nodes: components.nodesView() }))

  for (const [action, draining] of [['drain', true], ['undrain', false]] as const) {
    app.post(`/v1/nodes/self/${action}`, {
      schema: {
        summary: draining ? 'Move this node\'s replicas to other nodes and take no new ones (before leaving, or to pause contributing)' : 'Take work again after a drain',
        response: { 202: z.object({ peerId: z.string(), draining: z.boolean() }), 401: ErrorSchema },
      },
    }, async (_request, reply) => {
      await components.setDraining(draining)
      return reply.code(202).send({ peerId: nodeInfo.peerId, draining })
    })
  }

  app.get('/v1/invite', {
    schema: { summary: 'An invite line for a new node (`lattice start --join INVITE`): this node\'s addresses and the mesh key — treat it as a secret', response: { 200: z.object({ invite: z.string() }), 401: ErrorSchema } },
  }, async () => ({ invite: components.invite() }))

  app.get('/v1/events', {
    schema: { summary: 'Server-sent stream of cluster events (node joined/suspect/dead/left, placement closed, replica state changed)', querystring: EventsQuerySchema, produces: ['text/event-stream'] },
  }, async (request, reply) => {
    const stream = openSse(request, reply, init.sseKeepAliveMs)
    for (const event of events.recent(request.query.since ?? Number.MAX_SAFE_INTEGER)) stream.send(event.type, event, event.seq)
    const unsubscribe = events.subscribe((event) => stream.send(event.type, event, event.seq))
    stream.signal.addEventListener('abort', unsubscribe, { once: true })
  })

  app.get('/metrics', {
    schema: { summary: 'Prometheus text exposition', produces: ['text/plain'], response: { 200: z.string() } },
  }, async (_request, reply) => {
    reply.header('content-type', metrics.registry.contentType)
    return metrics.registry.metrics()
  })

  app.get('/openapi.json', {
    schema: { summary: 'This OpenAPI document, generated from the zod schemas', hide: true },
  }, async () => server.swagger())
}
