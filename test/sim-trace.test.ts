/**
 * The simulator's trace: its digest is the SHA-256 of every line in order,
 * however the lines are gathered before hashing.
 */
import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { Trace } from '../sim/trace.ts'

describe('trace', () => {
  it('the digest is the SHA-256 of all lines in order, across many hash batches', () => {
    const trace = new Trace()
    const reference = createHash('sha256')
    // ~3 MB of lines: dozens of the trace's hash batches, the last one partial.
    for (let i = 0; i < 120_000; i++) {
      const state = i % 7 === 0 ? 'dead' : 'alive'
      trace.record(i * 10, i % 1000, (i * 7) % 1000, state)
      const line = `${i * 10} ${i % 1000} ${(i * 7) % 1000} ${state}\n`
      reference.update(line)
    }
    expect(trace.entries()).toBe(120_000)
    expect(trace.digest()).toBe(reference.digest('hex'))
  })

  it('a trace shorter than one batch is hashed whole', () => {
    const trace = new Trace()
    trace.record(1, 0, 1, 'suspect')
    trace.record(2, 0, 1, 'dead')
    expect(trace.digest()).toBe(createHash('sha256').update('1 0 1 suspect\n2 0 1 dead\n').digest('hex'))
  })
})
