import { describe, expect, it } from 'vitest'
import { createVirtualClock } from '../sim/virtual-clock.ts'
import { createEventBus, type ClusterEvent } from './events.ts'

describe('the event bus', () => {
  it('keeps the newest bufferMax events in order, numbered, and gives late subscribers those after a seq', () => {
    const bus = createEventBus({ bufferMax: 3 }, { clock: createVirtualClock(1_000) })
    const heard: ClusterEvent[] = []
    bus.subscribe((event) => heard.push(event))
    for (const peerId of ['a', 'b', 'c', 'd', 'e']) bus.emit({ type: 'node.joined', peerId })
    expect(heard.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5])
    expect(bus.recent()).toEqual([
      { type: 'node.joined', peerId: 'c', seq: 3, atMs: 1_000 },
      { type: 'node.joined', peerId: 'd', seq: 4, atMs: 1_000 },
      { type: 'node.joined', peerId: 'e', seq: 5, atMs: 1_000 },
    ])
    expect(bus.recent(4).map((e) => e.seq)).toEqual([5])
    expect(createEventBus({ bufferMax: 0 }, { clock: createVirtualClock() }).recent()).toEqual([])
  })
})
