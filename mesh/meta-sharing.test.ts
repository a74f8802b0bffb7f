/**
 * Metadata sharing across the nodes of one process: equal metadata for one
 * member and seq becomes one frozen object; anything unequal, or another
 * seq, stays the adopter's own.
 */
import { describe, expect, it } from 'vitest'
import type { WireMeta } from './membership-wire.ts'
import { shareMeta } from './meta-sharing.ts'

let peers = 0
/** A peer id no other test has shared metadata for (the table is process-wide). */
const freshPeer = (): string => `12D3KooWshare${String(++peers).padStart(4, '0')}`

function meta(overrides: Partial<WireMeta> = {}): WireMeta {
  return {
    capacity: { cpu: 4, memoryMB: 8192, diskMB: 100_000, gpus: 0 },
    free: { cpu: 3.5, memoryMB: 6000, diskMB: 90_000, gpus: 0 },
    load: 0.25,
    labels: { zone: 'a', rack: '7' },
    version: '0.1.0',
    addresses: ['/ip4/10.0.0.1/tcp/4001'],
    ...overrides,
  }
}

describe('shareMeta', () => {
  it('answers the first object for every equal copy at the same seq, frozen deeply', () => {
    const peer = freshPeer()
    const first = shareMeta(peer, 3, meta())
    const second = shareMeta(peer, 3, meta())
    expect(second).toBe(first)
    expect(Object.isFrozen(first)).toBe(true)
    for (const part of [first.capacity, first.free, first.labels, first.addresses]) expect(Object.isFrozen(part)).toBe(true)
  })

  it('keeps an unequal copy its own, field by field', () => {
    const peer = freshPeer()
    const shared = shareMeta(peer, 5, meta())
    const variants: WireMeta[] = [
      meta({ load: 0.5 }),
      meta({ version: '0.2.0' }),
      meta({ capacity: { cpu: 8, memoryMB: 8192, diskMB: 100_000, gpus: 0 } }),
      meta({ free: { cpu: 3.5, memoryMB: 6000, diskMB: 90_000, gpus: 1 } }),
      meta({ labels: { zone: 'a', rack: '8' } }),
      meta({ labels: { rack: '7', zone: 'a' } }), // same labels in another order: another JSON text
      meta({ labels: { zone: 'a' } }),
      meta({ addresses: ['/ip4/10.0.0.2/tcp/4001'] }),
      meta({ addresses: [] }),
    ]
    for (const variant of variants) {
      const kept = shareMeta(peer, 5, variant)
      expect(kept).toBe(variant)
      expect(kept).not.toBe(shared)
      expect(kept).toEqual(variant)
    }
    // The first stays the shared one.
    expect(shareMeta(peer, 5, meta())).toBe(shared)
  })

  it('shares by member and seq: another member or a newer seq is not the same metadata', () => {
    const peer = freshPeer()
    const atThree = shareMeta(peer, 3, meta())
    expect(shareMeta(freshPeer(), 3, meta())).not.toBe(atThree)
    const atFour = shareMeta(peer, 4, meta())
    expect(atFour).not.toBe(atThree)
    expect(shareMeta(peer, 4, meta())).toBe(atFour)
    // A node behind the others adopting seq 3 late keeps its own copy and leaves seq 4 shared.
    const late = meta()
    expect(shareMeta(peer, 3, late)).toBe(late)
    expect(shareMeta(peer, 4, meta())).toBe(atFour)
  })
})
