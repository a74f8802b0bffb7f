import { describe, expect, it } from 'vitest'
import { TransportError } from './transport.ts'

describe('TransportError', () => {
  it('carries its code, message and cause, captures no stack, and leaves stack capture on for other errors', () => {
    const limit = Error.stackTraceLimit
    const cause = new Error('socket closed')
    const err = new TransportError('TIMEOUT', 'request timed out', { cause })
    expect(err).toBeInstanceOf(Error)
    expect(err.code).toBe('TIMEOUT')
    expect(err.name).toBe('TransportError')
    expect(err.message).toBe('request timed out')
    expect(err.cause).toBe(cause)
    expect(err.stack ?? '').not.toMatch(/\n\s+at /)
    expect(Error.stackTraceLimit).toBe(limit)
    expect(new Error('other').stack).toMatch(/\n\s+at /)
  })
})
