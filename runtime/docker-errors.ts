/**
 * How the Docker adapter turns what dockerode throws into coded RuntimeErrors,
 * and how it explains an unreachable engine to a person: every reason comes
 * with a hint that says what to do about it.
 */
import { RuntimeError, type RuntimeErrorCode } from '../core/index.ts'

export const START_DOCKER_HINT =
  'start Docker (sudo systemctl start docker, or `npm run setup:docker` in a Lattice checkout)'
const HUNG_DOCKER_HINT = 'the engine is hung or overloaded: check `docker info`, or restart it (sudo systemctl restart docker)'

/** A Docker call that outlived its deadline; the engine may be hung. */
export class DeadlineExceeded extends Error {
  override readonly name = 'DeadlineExceeded'
  constructor(readonly what: string, readonly timeoutMs: number, endpoint: string) {
    super(`Docker at ${endpoint} did not answer within ${timeoutMs} ms`)
  }
}

/** Socket-level failures: the engine is not there, not listening or not ours to talk to. */
const UNREACHABLE_CODES = new Set([
  'ENOENT',
  'ECONNREFUSED',
  'EACCES',
  'EPERM',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
])

interface DockerishError {
  message: string
  code?: string
  statusCode?: number
  json?: unknown
}

function asDockerish(err: unknown): DockerishError {
  if (typeof err === 'object' && err !== null) {
    const record = err as Record<string, unknown>
    return {
      message: typeof record.message === 'string' ? record.message : String(err),
      code: typeof record.code === 'string' ? record.code : undefined,
      statusCode: typeof record.statusCode === 'number' ? record.statusCode : undefined,
      json: record.json,
    }
  }
  return { message: String(err) }
}

export function statusCodeOf(err: unknown): number | undefined {
  return asDockerish(err).statusCode
}

/** The engine's own words when it sent a JSON error body, else dockerode's message. */
export function engineMessage(err: unknown): string {
  const { message, json } = asDockerish(err)
  if (typeof json === 'object' && json !== null && typeof (json as Record<string, unknown>).message === 'string') {
    return (json as { message: string }).message
  }
  // docker-modem's shape: "(HTTP code 500) server error - <the engine's words> ".
  const framed = /^\(HTTP code \d+\) ([^-]*?) - ([\s\S]*?)\s*$/.exec(message)
  if (framed !== null) return framed[2] !== undefined && framed[2] !== '' ? framed[2] : (framed[1] ?? message)
  return message.trim()
}

export function isUnreachable(err: unknown): boolean {
  if (err instanceof DeadlineExceeded) return true
  const { code, statusCode } = asDockerish(err)
  return statusCode === undefined && code !== undefined && UNREACHABLE_CODES.has(code)
}

export interface Diagnosis {
  reason: string
  hint: string
}

/** Why the engine at `endpoint` cannot be used, and what a person should do about it. */
export function diagnose(err: unknown, endpoint: string): Diagnosis {
  if (err instanceof RuntimeError && err.cause !== undefined) return diagnose(err.cause, endpoint)
  if (err instanceof DeadlineExceeded) return { reason: err.message, hint: HUNG_DOCKER_HINT }
  const { code, message } = asDockerish(err)
  switch (code) {
    case 'ENOENT':
      return { reason: `no Docker socket at ${endpoint}`, hint: START_DOCKER_HINT }
    case 'ECONNREFUSED':
      return { reason: `Docker at ${endpoint} refuses connections (the engine is not running)`, hint: START_DOCKER_HINT }
    case 'EACCES':
    case 'EPERM':
      return {
        reason: `permission denied on ${endpoint}`,
        hint: 'add this user to the docker group (sudo usermod -aG docker $USER, then log in again), or run Lattice as root',
      }
    default:
      return { reason: `Docker at ${endpoint} did not answer: ${message}`, hint: START_DOCKER_HINT }
  }
}

/**
 * Maps any failure of a Docker call to a RuntimeError. `notFound` is the code
 * a 404 means for this call (a missing container, or a missing image).
 */
export function toRuntimeError(
  err: unknown,
  what: string,
  endpoint: string,
  notFound: RuntimeErrorCode = 'CONTAINER_NOT_FOUND',
): RuntimeError {
  if (err instanceof RuntimeError) return err
  if (isUnreachable(err)) {
    const { reason, hint } = diagnose(err, endpoint)
    return new RuntimeError('RUNTIME_UNAVAILABLE', `${what}: ${reason}; ${hint}`, { cause: err })
  }
  const statusCode = statusCodeOf(err)
  const code: RuntimeErrorCode = statusCode === 404 ? notFound : 'RUNTIME_ERROR'
  return new RuntimeError(code, `${what}: ${engineMessage(err)}`, { cause: err })
}

/**
 * Runs one Docker call with a deadline. The signal aborts the HTTP request
 * where dockerode supports it; the race bounds the calls where it does not
 * (image inspect), so no call can hang on a wedged engine.
 */
export async function withDeadline<T>(
  what: string,
  timeoutMs: number,
  endpoint: string,
  call: (signal: AbortSignal) => Promise<T>,
  notFound: RuntimeErrorCode = 'CONTAINER_NOT_FOUND',
): Promise<T> {
  const controller = new AbortController()
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new DeadlineExceeded(what, timeoutMs, endpoint)
      controller.abort(error)
      reject(error)
    }, timeoutMs)
  })
  try {
    return await Promise.race([call(controller.signal), deadline])
  } catch (err) {
    throw toRuntimeError(controller.signal.aborted ? controller.signal.reason : err, what, endpoint, notFound)
  } finally {
    clearTimeout(timer)
  }
}
