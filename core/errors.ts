/**
 * Errors are values with codes (fastify's FST_ERR_*, libp2p's named errors).
 * Tests assert on `code`, never on message text. The HTTP edge maps each code
 * to a status.
 */
export type LatticeErrorCode =
  | 'BAD_REQUEST'
  | 'VALIDATION_FAILED'
  | 'UNAUTHORIZED'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'PAYLOAD_TOO_LARGE'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'UNPROCESSABLE'
  | 'RUNTIME_UNAVAILABLE'
  | 'INTERNAL'

const STATUS_BY_CODE: Record<LatticeErrorCode, number> = {
  BAD_REQUEST: 400,
  VALIDATION_FAILED: 400,
  UNAUTHORIZED: 401,
  NOT_FOUND: 404,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  UNPROCESSABLE: 422,
  RUNTIME_UNAVAILABLE: 503,
  INTERNAL: 500,
}

export class LatticeError extends Error {
  override readonly name = 'LatticeError'
  constructor(
    readonly code: LatticeErrorCode,
    message: string,
    readonly details?: unknown,
  ) {
    super(message)
  }

  get status(): number {
    return STATUS_BY_CODE[this.code]
  }
}

export function statusOf(code: LatticeErrorCode): number {
  return STATUS_BY_CODE[code]
}
