import { describe, expect, it } from 'vitest'
import { dialErrorCode } from './libp2p-transport.ts'

describe('dialErrorCode', () => {
  it('is UNREACHABLE only when the host answered that nobody is there', () => {
    expect(dialErrorCode(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:4001'), { code: 'ECONNREFUSED' }))).toBe('UNREACHABLE')
    expect(dialErrorCode(new Error('read ECONNRESET'))).toBe('UNREACHABLE')
    expect(dialErrorCode(Object.assign(new Error('The dial request has no valid addresses'), { name: 'NoValidAddressesError' }))).toBe('UNREACHABLE')
  })

  it('is TIMEOUT when the dial merely did not finish, also when the timeout is a cause deep inside', () => {
    expect(dialErrorCode(Object.assign(new Error('The operation was aborted due to timeout'), { name: 'TimeoutError' }))).toBe('TIMEOUT')
    const handshake = Object.assign(new Error('handshake failed', { cause: Object.assign(new Error('The operation was aborted'), { name: 'AbortError' }) }), { name: 'EncryptionFailedError' })
    expect(dialErrorCode(handshake)).toBe('TIMEOUT')
  })
})
