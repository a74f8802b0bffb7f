/**
 * The node's local HTTP API (fastify): bearer-token auth on every route but
 * health, zod-validated inputs and outputs, coded JSON errors, a body size
 * limit, metrics per route and an OpenAPI document generated from the
 * schemas. Routes live in routes-*.ts; this file wires them.
 */
import { timingSafeEqual } from 'node:crypto'
import fastifySwagger from '@fastify/swagger'
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify'
import { hasZodFastifySchemaValidationErrors, jsonSchemaTransform, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod'
import { LatticeError, statusOf, type LatticeErrorCode } from '../../core/index.ts'
import type { ApiComponents, ApiInit } from './context.ts'
import { registerClusterRoutes } from './routes-cluster.ts'
import { registerDeploymentRoutes } from './routes-deployments.ts'

const OPEN_ROUTES = new Set(['/v1/health'])

/** Fastify's own error codes, mapped to ours. */
const FASTIFY_CODES: Record<string, LatticeErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'BAD_REQUEST',
  FST_ERR_CTP_INVALID_JSON_BODY: 'BAD_REQUEST',
}

export function sendError(code: LatticeErrorCode, message: string, details?: unknown): { status: number; body: { error: { code: string; message: string; details?: unknown } } } {
  return { status: statusOf(code), body: { error: { code, message, ...(details !== undefined ? { details } : {}) } } }
}

function tokenMatches(expected: Buffer, header: string | undefined): boolean {
  if (header === undefined) return false
  const match = /^Bearer\s+(\S+)$/i.exec(header)
  if (match?.[1] === undefined) return false
  const given = Buffer.from(match[1])
  return given.length === expected.length && timingSafeEqual(given, expected)
}

export async function createApiServer(init: ApiInit, components: ApiComponents): Promise<FastifyInstance> {
  const app = Fastify({
    logger: false,
    bodyLimit: init.bodyBytesMax,
    // Deployment ids and names only; longer paths are abuse.
    routerOptions: { maxParamLength: 200 },
    return503OnClosing: true,
    forceCloseConnections: true,
  })
  app.setValidatorCompiler(validatorCompiler)
  app.setSerializerCompiler(serializerCompiler)
  const expectedToken = Buffer.from(init.token)
  const { metrics, logger } = components

  // JSON is the default; a strict parser turns malformed JSON into a coded 400.
  // Only JSON is accepted (compose YAML arrives with the workload catalog); anything else is a 415.
  app.removeContentTypeParser(['application/json', 'text/plain'])
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: init.bodyBytesMax }, (_request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8')
    if (text.trim() === '') {
      done(new LatticeError('BAD_REQUEST', 'request body is empty; send a JSON object') as unknown as FastifyError)
      return
    }
    try {
      done(null, JSON.parse(text))
    } catch (error) {
      done(new LatticeError('BAD_REQUEST', `request body is not valid JSON: ${(error as Error).message}`) as unknown as FastifyError)
    }
  })

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'Lattice node API', version: components.nodeInfo.version, description: 'The local HTTP API every Lattice node serves. All routes but GET /v1/health need `Authorization: Bearer <token>` (the token is in the data dir, api.json).' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
  })

  app.addHook('onRequest', async (request, reply) => {
    const route = request.routeOptions.url
    if (route !== undefined && OPEN_ROUTES.has(route)) return
    if (!tokenMatches(expectedToken, request.headers.authorization)) {
      const { status, body } = sendError('UNAUTHORIZED', 'missing or wrong bearer token: send `Authorization: Bearer <token>` with the token from the data dir (api.json)')
      await reply.code(status).header('www-authenticate', 'Bearer').send(body)
    }
  })

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched'
    metrics.httpRequests.inc({ method: request.method, route, status: String(reply.statusCode) })
    metrics.httpDurationSeconds.observe({ method: request.method, route }, reply.elapsedTime / 1000)
  })

  app.setErrorHandler((error: FastifyError | LatticeError, request, reply) => {
    if (error instanceof LatticeError) {
      const { status, body } = sendError(error.code, error.message, error.details)
      return reply.code(status).send(body)
    }
    if (hasZodFastifySchemaValidationErrors(error)) {
      const issues = error.validation.map((issue) => ({
        field: `${error.validationContext ?? 'body'}${issue.instancePath.replaceAll('/', '.')}`,
        message: issue.message ?? 'invalid',
      }))
      const first = issues[0]
      const { status, body } = sendError('VALIDATION_FAILED', first === undefined ? 'request is invalid' : `${first.field}: ${first.message}`, { issues })
      return reply.code(status).send(body)
    }
    const mapped = error.code !== undefined ? FASTIFY_CODES[error.code] : undefined
    if (mapped !== undefined) {
      const { status, body } = sendError(mapped, error.message)
      return reply.code(status).send(body)
    }
    if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
      const { status, body } = sendError('BAD_REQUEST', error.message)
      return reply.code(status).send(body)
    }
    logger.error({ err: error.message, stack: error.stack, url: request.url }, 'API handler failed')
    const { status, body } = sendError('INTERNAL', 'internal error; see the node log')
    return reply.code(status).send(body)
  })

  app.setNotFoundHandler((request, reply) => {
    const { status, body } = sendError('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`)
    return reply.code(status).send(body)
  })

  registerClusterRoutes(app, init, components)
  registerDeploymentRoutes(app, init, components)
  return app
}
