/**
 * Who may close a round that got no bids. Bids go to the first bidRecipients
 * closers; a closer past them that saw none has learnt nothing, and under
 * message loss it may simply be missing their record.
 */
import { describe, expect, it } from 'vitest'
import { createRng, silentLogger } from '../../core/index.ts'
import { createClusterState } from '../../crdt/index.ts'
import { createMemoryStore } from '../../crdt/level-store.ts'
import type { MemberView } from '../../mesh/index.ts'
import { createSimNetwork } from '../../sim/sim-network.ts'
import { createVirtualClock } from '../../sim/virtual-clock.ts'
import { createEventBus } from '../events.ts'
import { createPlacer, PLACER_DEFAULTS } from './placer.ts'
import { rankingView, topPeersOf, type RoundKey } from './rendezvous.ts'

const ROUND: RoundKey = { deploymentId: 'd1', replica: 0, generation: 1 }
const OTHERS = ['peer-a', 'peer-b', 'peer-c', 'peer-d', 'peer-e', 'peer-f', 'peer-g']

/** A node name that is the third closer of ROUND among OTHERS and itself (the owner is not a member). */
function thirdCloser(): { self: string; closers: string[] } {
  for (let i = 0; ; i++) {
    const self = `self-${i}`
    const closers = topPeersOf(ROUND, rankingView([...OTHERS, self].sort()), PLACER_DEFAULTS.shortlistSize)
    if (closers[2] === self) return { self, closers }
  }
}

async function startPlacer(self: string) {
  const clock = createVirtualClock()
  const network = createSimNetwork({ latencyMs: { min: 1, max: 1 }, lossRate: 0, duplicateRate: 0 }, { clock, rng: createRng(1) })
  const transport = network.transport(self)
  await transport.start()
  const state = createClusterState({ selfId: self })({ store: createMemoryStore(), clock, logger: silentLogger })
  await state.start()
  // Fits nowhere: no member bids, and this node cannot either.
  await state.createDeployment({ id: ROUND.deploymentId, spec: { name: 'big', image: 'nginx', resources: { cpu: 64, memoryMB: 1_000_000 } }, owner: 'owner-gone' })
  let alive = [...OTHERS, self].sort()
  const member = (peerId: string): MemberView | undefined =>
    alive.includes(peerId)
      ? { peerId, state: 'alive', incarnation: 1, seq: 0, capacity: { cpu: 1, memoryMB: 1024, diskMB: 0, gpus: 0 }, free: { cpu: 1, memoryMB: 1024, diskMB: 0, gpus: 0 }, load: 0, labels: {}, version: '', addresses: [], lastSeenAtMs: 0 }
      : undefined
  const placer = createPlacer()({
    state,
    transport,
    members: () => alive.map((peerId) => member(peerId)!),
    alive: () => alive,
    aliveCount: () => alive.length,
    member,
    clock,
    logger: silentLogger,
    events: createEventBus({ bufferMax: 100 }, { clock }),
    capacity: () => ({ cpu: 1, memoryMB: 1024, diskMB: 0, gpus: 0 }),
    labels: () => ({}),
  })
  await placer.start()
  return {
    clock,
    state,
    placer,
    /** Members gone from this node's view (dead), as membership would report them. */
    drop(peerIds: string[]) {
      alive = alive.filter((peerId) => !peerIds.includes(peerId))
      for (const peerId of peerIds) placer.membershipChanged(peerId)
    },
    async stop() {
      await placer.stop()
      await state.stop()
      await transport.stop()
    },
  }
}

describe('closing a round without bids', () => {
  it('a closer past the bid recipients writes no "unschedulable" record while the closers before it are alive; it does once they are gone', async () => {
    const { self, closers } = thirdCloser()
    const node = await startPlacer(self)
    try {
      // Every wave has passed several times over: the first closers (alive, silent here: their record is "lost") would have closed.
      await node.clock.advance(20_000)
      expect(node.state.placement(ROUND.deploymentId, ROUND.replica)).toBeUndefined()
      expect(node.placer.counters().roundsClosed).toBe(0)
      // The two closers before it die: it is now the first closer, and closes the round as unschedulable.
      node.drop(closers.slice(0, PLACER_DEFAULTS.bidRecipients))
      await node.clock.advance(20_000)
      const record = node.state.placement(ROUND.deploymentId, ROUND.replica)
      expect(record).toMatchObject({ generation: 1, winners: [], closedBy: self })
      expect(record?.unschedulableReason).toMatch(/needs 1000000 MB/)
    } finally {
      await node.stop()
    }
  })
})
