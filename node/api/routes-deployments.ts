/**
 * Deployment routes: create, list, get, lifecycle (stop/start/restart/scale),
 * delete and logs. Every lifecycle action is a document change; the
 * reconciler turns it into containers.
 */
import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { DeploymentSpecSchema, LatticeError, type LogLine } from '../../core/index.ts'
import type { DeploymentEntry } from '../../crdt/index.ts'
import { deploymentView } from '../deployment-view.ts'
import type { ApiComponents, ApiInit } from './context.ts'
import {
  AckTimeoutResponseSchema,
  CreateQuerySchema,
  DeploymentListSchema,
  DeploymentViewSchema,
  ErrorSchema,
  IdParamsSchema,
  IdResponseSchema,
  ListQuerySchema,
  LogsQuerySchema,
  ScaleBodySchema,
} from './schemas.ts'
import { openSse } from './sse.ts'

const errors = { 400: ErrorSchema, 401: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema }

export function registerDeploymentRoutes(server: FastifyInstance, init: ApiInit, components: ApiComponents): void {
  const app = server.withTypeProvider<ZodTypeProvider>()
  const { state, runtime, events, reconciler, logger } = components

  /** Finds a live deployment by id, or by name when the name is unique among live ones. */
  const find = (idOrName: string, options: { includeDeleted: boolean } = { includeDeleted: true }): DeploymentEntry => {
    const byId = state.deployment(idOrName)
    if (byId !== undefined && (options.includeDeleted || byId.desired !== 'deleted')) return byId
    const byName = state.deployments().filter((d) => d.name === idOrName && d.desired !== 'deleted')
    if (byName.length === 1 && byName[0] !== undefined) return byName[0]
    if (byName.length > 1) throw new LatticeError('CONFLICT', `several deployments are named "${idOrName}"; use the id`, { ids: byName.map((d) => d.id) })
    throw new LatticeError('NOT_FOUND', `no deployment "${idOrName}"`)
  }
  const findLive = (idOrName: string): DeploymentEntry => {
    const deployment = find(idOrName)
    if (deployment.desired === 'deleted') throw new LatticeError('NOT_FOUND', `deployment "${idOrName}" was deleted`)
    return deployment
  }

  app.post('/v1/deployments', {
    schema: {
      summary: 'Create a deployment; answers 201 once it is durable on this node (with ?ack=1, once another peer holds it too; 202 with a note if none did in time)',
      body: DeploymentSpecSchema,
      querystring: CreateQuerySchema,
      response: { 201: IdResponseSchema, 202: AckTimeoutResponseSchema, ...errors, 413: ErrorSchema, 415: ErrorSchema, 422: ErrorSchema },
    },
  }, async (request, reply) => {
    const spec = request.body
    const never = components.neverFits(spec)
    if (never !== undefined) throw new LatticeError('UNPROCESSABLE', `this deployment can never be placed: ${never}`)
    const clash = state.deployments().find((d) => d.name === spec.name && d.desired !== 'deleted')
    if (clash !== undefined) throw new LatticeError('CONFLICT', `a deployment named "${spec.name}" exists (${clash.id}); remove it or pick another name`, { id: clash.id })
    // Ids are random; a clash with an existing one (a badly seeded generator) draws again rather than failing.
    let id = components.newDeploymentId()
    for (let draws = 0; state.deployment(id) !== undefined && draws < 8; draws++) id = components.newDeploymentId()
    await state.createDeployment({ id, spec, owner: state.selfId })
    events.emit({ type: 'deployment.created', deploymentId: id, name: spec.name })
    logger.info({ deploymentId: id, name: spec.name, image: spec.image }, 'deployment accepted')
    reconciler.trigger()
    const ack = request.query.ack === '1' || request.query.ack === 'true'
    if (ack && !(await components.waitForPeerAck(state.heads(), init.ackTimeoutMs))) {
      return reply.code(202).send({ id, note: `durable on this node; no other peer confirmed it within ${init.ackTimeoutMs} ms (it spreads when peers are reachable)` })
    }
    return reply.code(201).send({ id })
  })

  app.get('/v1/deployments', {
    schema: { summary: 'All deployments (deleted ones with ?all=true)', querystring: ListQuerySchema, response: { 200: DeploymentListSchema, 401: ErrorSchema } },
  }, async (request) => {
    const includeDeleted = request.query.all === 'true'
    const deployments = state.deployments().filter((d) => includeDeleted || d.desired !== 'deleted')
    return { deployments: deployments.map((d) => deploymentView(state, d)) }
  })

  app.get('/v1/deployments/:id', {
    schema: { summary: 'One deployment with its replicas and placement records', params: IdParamsSchema, response: { 200: DeploymentViewSchema, ...errors } },
  }, async (request) => deploymentView(state, find(request.params.id)))

  const lifecycle = (
    action: 'stop' | 'start' | 'restart',
    summary: string,
    apply: (deployment: DeploymentEntry) => Promise<void>,
  ): void => {
    app.post(`/v1/deployments/:id/${action}`, {
      schema: { summary, params: IdParamsSchema, response: { 202: IdResponseSchema, ...errors } },
    }, async (request, reply) => {
      const deployment = findLive(request.params.id)
      await apply(deployment)
      reconciler.trigger()
      return reply.code(202).send({ id: deployment.id })
    })
  }

  lifecycle('stop', 'Stop every replica (containers are kept for their logs)', async (deployment) => {
    await state.setDesired(deployment.id, 'stopped')
    events.emit({ type: 'deployment.desired', deploymentId: deployment.id, desired: 'stopped' })
  })
  lifecycle('start', 'Start a stopped deployment (fresh containers)', async (deployment) => {
    if (deployment.desired === 'running') return
    await state.setDesired(deployment.id, 'running')
    events.emit({ type: 'deployment.desired', deploymentId: deployment.id, desired: 'running' })
  })
  lifecycle('restart', 'Replace every replica with a fresh container', async (deployment) => {
    if (deployment.desired === 'stopped') await state.setDesired(deployment.id, 'running')
    else await state.bumpEpoch(deployment.id)
    events.emit({ type: 'deployment.desired', deploymentId: deployment.id, desired: 'running' })
  })

  app.post('/v1/deployments/:id/scale', {
    schema: { summary: 'Set the number of replicas', params: IdParamsSchema, body: ScaleBodySchema, response: { 202: IdResponseSchema, ...errors } },
  }, async (request, reply) => {
    const deployment = findLive(request.params.id)
    await state.setReplicas(deployment.id, request.body.replicas)
    events.emit({ type: 'deployment.scaled', deploymentId: deployment.id, replicas: request.body.replicas })
    reconciler.trigger()
    return reply.code(202).send({ id: deployment.id })
  })

  app.delete('/v1/deployments/:id', {
    schema: { summary: 'Delete a deployment; its containers are removed', params: IdParamsSchema, response: { 202: IdResponseSchema, ...errors } },
  }, async (request, reply) => {
    const deployment = findLive(request.params.id)
    await state.setDesired(deployment.id, 'deleted')
    events.emit({ type: 'deployment.desired', deploymentId: deployment.id, desired: 'deleted' })
    reconciler.trigger()
    return reply.code(202).send({ id: deployment.id })
  })

  app.get('/v1/deployments/:id/logs', {
    schema: {
      summary: 'Log lines as server-sent events (one `log` event per line); follow=true keeps streaming',
      params: IdParamsSchema,
      querystring: LogsQuerySchema,
      produces: ['text/event-stream'],
      response: { ...errors },
    },
  }, async (request, reply) => {
    const deployment = findLive(request.params.id)
    const follow = request.query.follow === 'true' || request.query.follow === '1'
    const tail = Math.min(request.query.tail ?? init.logTailDefault, init.logTailMax)
    const wanted = request.query.replica
    const statuses = state.statuses(deployment.id).filter((s) => s.peerId === state.selfId && s.containerId !== undefined && (wanted === undefined || s.replica === wanted))
    if (statuses.length === 0) {
      throw new LatticeError('NOT_FOUND', `no container of "${deployment.name}" on this node yet${wanted !== undefined ? ` for replica ${wanted}` : ''}; check its replicas with GET /v1/deployments/${deployment.id}`)
    }
    const stream = openSse(request, reply, init.sseKeepAliveMs)
    const pumps = statuses.map(async (status) => {
      try {
        for await (const line of runtime.logs(status.containerId as string, { follow, tail, signal: stream.signal }) as AsyncIterable<LogLine>) {
          stream.send('log', { replica: status.replica, stream: line.stream, line: line.line })
        }
      } catch (error) {
        if (!stream.signal.aborted) stream.send('error', { replica: status.replica, message: error instanceof Error ? error.message : String(error) })
      }
    })
    void Promise.all(pumps).then(() => {
      stream.send('end', { follow })
      stream.close()
    })
  })
}
