import { describe, expect, it } from 'vitest'
import { encodeFrame, FrameDecoder, FrameError, FrameTooLargeError } from './frames.ts'

function feed(decoder: FrameDecoder, bytes: Uint8Array, chunkBytes: number): Uint8Array | undefined {
  let result: Uint8Array | undefined
  for (let at = 0; at < bytes.byteLength && result === undefined; at += chunkBytes) {
    result = decoder.push(bytes.subarray(at, at + chunkBytes))
  }
  return result
}

describe('length-prefixed frames', () => {
  it('decode whatever the chunking, header split across chunks included', () => {
    const body = Uint8Array.from({ length: 300 }, (_, i) => i % 251)
    const frame = encodeFrame(body)
    expect([...frame.subarray(0, 2)]).toEqual([0xac, 0x02]) // varint 300
    for (const chunkBytes of [1, 2, 3, 7, 64, 1_000]) {
      expect(feed(new FrameDecoder(300), frame, chunkBytes)).toEqual(body)
    }
  })

  it('decode an empty frame and ignore bytes after the frame', () => {
    expect(new FrameDecoder(0).push(new Uint8Array([0, 9, 9]))).toEqual(new Uint8Array(0))
    expect(new FrameDecoder(10).push(new Uint8Array([2, 5, 6, 7]))).toEqual(new Uint8Array([5, 6]))
  })

  it('refuse an oversized frame from its header, before the body arrives', () => {
    const decoder = new FrameDecoder(1_000)
    expect(() => decoder.push(encodeFrame(new Uint8Array(1_001)).subarray(0, 2))).toThrow(FrameTooLargeError)
  })

  it('refuse a length that never ends', () => {
    expect(() => new FrameDecoder(1_000).push(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0x01]))).toThrow(FrameError)
  })

  it('encode lengths above 2^31 without overflow', () => {
    const header = encodeFrame(new Uint8Array(0))
    expect([...header]).toEqual([0])
    const decoder = new FrameDecoder(2 ** 33)
    // 2^32 = 0x80 0x80 0x80 0x80 0x10 as a varint
    expect(decoder.push(new Uint8Array([0x80, 0x80, 0x80, 0x80, 0x10]))).toBeUndefined()
    expect(() => new FrameDecoder(2 ** 32 - 1).push(new Uint8Array([0x80, 0x80, 0x80, 0x80, 0x10]))).toThrow(FrameTooLargeError)
  })
})
