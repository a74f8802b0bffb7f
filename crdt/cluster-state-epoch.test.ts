/** Moving the cluster state into a new epoch: enterEpoch, adoptEpoch, persistence of the epoch, refusals. */
import { describe, expect, it } from 'vitest'
import { LatticeError } from '../core/index.ts'
import { createVirtualClock } from '../sim/virtual-clock.ts'
import type { ClusterState } from './cluster-state.ts'
import { GENESIS_HASH } from './document.ts'
import { seal } from './envelope.ts'
import { EPOCH_KEY, SNAPSHOT_KEY } from './persistence.ts'
import { createMemoryStore } from './level-store.ts'
import { sampleNode, sampleStatus, startState, withOpen, type StartOptions } from './test-support.ts'
import type { VirtualClock } from '../sim/virtual-clock.ts'

const start = (options: Partial<StartOptions<VirtualClock>> = {}) => startState({ clock: createVirtualClock(), ...options })

/** What a reader sees, without the heads (a new epoch has new hashes). */
function view(state: ClusterState): unknown {
  return {
    nodes: state.nodes(),
    deployments: state.deployments(),
    placements: state.deployments().map((d) => [...state.placements(d.id)]),
    statuses: state.deployments().map((d) => state.statuses(d.id)),
  }
}

async function deploy(state: ClusterState, id: string): Promise<void> {
  await state.createDeployment({ id, spec: { name: id, image: 'nginx' }, owner: state.selfId })
}

/** Brings `to` everything `from` holds that it lacks. */
async function pull(to: ClusterState, from: ClusterState): Promise<void> {
  await to.applyChanges(from.changesSince(to.heads()))
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  const err = await promise.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(LatticeError)
  expect((err as LatticeError).code).toBe(code)
}

describe('cluster state epochs', () => {
  it('a new epoch keeps every entry, drops the history, and two replicas that hold the cut build the same genesis', async () => {
    const a = await start({ selfId: 'node-a' })
    const b = await start({ selfId: 'node-b' })
    await a.state.upsertSelfNode(sampleNode)
    for (let i = 0; i < 5; i++) await deploy(a.state, `d${i}`)
    for (let round = 0; round < 10; round++) await a.state.reportStatus('d0', 0, { ...sampleStatus, restarts: round })
    await pull(b.state, a.state)
    await b.state.upsertSelfNode({ ...sampleNode, name: 'desk' })
    await pull(a.state, b.state)
    const cut = { epoch: 1, heads: a.state.heads() }
    // Written after the cut: carried over, not lost.
    await a.state.reportStatus('d1', 0, { ...sampleStatus, restarts: 99 })
    const before = view(a.state)
    expect(a.state.epoch()).toMatchObject({ epoch: 0, genesis: GENESIS_HASH })

    const switched = await a.state.enterEpoch(cut)
    expect(switched.carried).toBe(1)
    expect(switched.changesAfter).toBe(2) // the genesis and the carried write
    expect(switched.changesBefore).toBeGreaterThan(15)
    expect(view(a.state)).toEqual(before)
    expect(a.state.epoch()).toMatchObject({ epoch: 1, cut: [...cut.heads].sort() })
    expect(a.state.stats().epoch).toBe(1)
    expect(a.state.hasChanges([GENESIS_HASH])).toBe(false)

    const other = await b.state.enterEpoch(cut)
    expect(other.epoch.genesis).toBe(switched.epoch.genesis)
    expect(other.carried).toBe(0)
    await pull(b.state, a.state)
    expect(b.state.heads()).toEqual(a.state.heads())
    expect(view(b.state)).toEqual(view(a.state))

    // Both write in the new epoch, as fresh actors, and converge.
    await a.state.setReplicas('d2', 3)
    await b.state.reportStatus('d3', 0, sampleStatus)
    await pull(a.state, b.state)
    await pull(b.state, a.state)
    expect(b.state.heads()).toEqual(a.state.heads())
    expect(a.state.deployment('d2')?.replicas).toBe(3)
    expect(a.state.statuses('d3')).toHaveLength(1)
  })

  it('a write made while the switch waits in the write queue is carried over, and the epoch survives a restart', async () => {
    const store = createMemoryStore()
    const { state, clock } = await start({ store })
    await deploy(state, 'd0')
    const cut = { epoch: 1, heads: state.heads(), acceptors: ['node-b', 'node-a'] }
    const told: Uint8Array[] = []
    state.onLocalChange((change) => told.push(change))
    // Written after the switch was asked for, before it swaps the documents: into the old document, then carried over.
    const switching = state.enterEpoch(cut)
    const late = deploy(state, 'late')
    await late
    await switching
    // Its old bytes are not told for gossip: they belong to no current document.
    expect(told).toEqual([])
    expect(state.deployment('late')).toBeDefined()
    const before = view(state)
    const heads = state.heads()
    await state.stop()
    await clock.advance(1_000)
    const restarted = await start({ store, clock })
    expect(restarted.state.epoch()).toEqual(state.epoch())
    expect(restarted.state.epoch().acceptors).toEqual(['node-a', 'node-b'])
    expect(restarted.state.heads()).toEqual(heads)
    expect(view(restarted.state)).toEqual(before)
    // No epoch-0 genesis was added at the load: it would make a second set of sections.
    expect(restarted.state.hasChanges([GENESIS_HASH])).toBe(false)
    await deploy(restarted.state, 'after')
    expect(restarted.state.deployments().map((d) => d.id)).toEqual(['d0', 'late', 'after'])
    await restarted.state.stop()
    const again = await start({ store, clock })
    expect(again.state.deployment('after')).toBeDefined()
    expect(again.state.stats().changeCount).toBe(3) // the genesis, 'late' carried over, 'after': nothing of epoch 0's history
  })

  it('a replica that lacks part of the cut adopts a peer\'s document of the new epoch and carries its own writes over', async () => {
    const a = await start({ selfId: 'node-a' })
    const away = await start({ selfId: 'node-c' })
    await deploy(a.state, 'd0')
    await pull(away.state, a.state)
    // The replica leaves; the cluster moves on and cuts without it.
    await deploy(a.state, 'd1')
    await deploy(away.state, 'mine')
    const cut = { epoch: 1, heads: a.state.heads() }
    await expectCode(away.state.enterEpoch(cut), 'BAD_REQUEST')
    expect(away.state.epoch().epoch).toBe(0)
    await a.state.enterEpoch(cut)

    const adopted = await away.state.adoptEpoch(a.state.saveSnapshot(), a.state.epoch())
    expect(adopted.carried).toBe(1)
    expect(away.state.epoch()).toEqual(a.state.epoch())
    expect(away.state.deployments().map((d) => d.id).sort()).toEqual(['d0', 'd1', 'mine'])
    await pull(a.state, away.state)
    expect(a.state.heads()).toEqual(away.state.heads())
    await deploy(away.state, 'next')
    await pull(a.state, away.state)
    expect(a.state.deployment('next')).toBeDefined()
  })

  it('refuses what would mix epochs: a skipped epoch, a cut it does not hold, a document of another epoch', async () => {
    const a = await start({ selfId: 'node-a' })
    const b = await start({ selfId: 'node-b' })
    await deploy(a.state, 'd0')
    const cut = { epoch: 1, heads: a.state.heads() }
    await expectCode(a.state.enterEpoch({ epoch: 2, heads: cut.heads }), 'CONFLICT')
    await expectCode(b.state.enterEpoch(cut), 'BAD_REQUEST')
    const epochZero = a.state.saveSnapshot()
    await a.state.enterEpoch(cut)
    await expectCode(a.state.enterEpoch(cut), 'CONFLICT')
    await expectCode(a.state.adoptEpoch(a.state.saveSnapshot(), a.state.epoch()), 'CONFLICT')
    await expectCode(b.state.adoptEpoch(epochZero, { epoch: 1, genesis: a.state.epoch().genesis, cut: cut.heads, acceptors: [] }), 'BAD_REQUEST')
    // Merging a document of another epoch would add its genesis and sections beside ours: both ways refused.
    await expectCode(a.state.mergeSnapshot(epochZero), 'VALIDATION_FAILED')
    await expectCode(b.state.mergeSnapshot(a.state.saveSnapshot()), 'VALIDATION_FAILED')
    // Adopting with a record that is not the document's own.
    await expectCode(b.state.adoptEpoch(a.state.saveSnapshot(), { ...a.state.epoch(), cut: ['ab'.repeat(32)] }), 'BAD_REQUEST')
    expect(b.state.epoch().epoch).toBe(0)
    await deploy(b.state, 'still-writable')
  })

  it('a damaged snapshot in a later epoch starts empty in that epoch, refuses writes until a peer brings the genesis', async () => {
    const store = createMemoryStore()
    const a = await start({ store, selfId: 'node-a' })
    await deploy(a.state, 'd0')
    await a.state.enterEpoch({ epoch: 1, heads: a.state.heads() })
    const peer = await start({ selfId: 'node-b' })
    await peer.state.adoptEpoch(a.state.saveSnapshot(), a.state.epoch())
    const record = a.state.epoch()
    await a.state.stop()
    await withOpen(store, async () => {
      const snapshot = (await store.get(SNAPSHOT_KEY))!
      const damaged = snapshot.slice()
      damaged[damaged.length - 1]! ^= 0xff
      await store.put(SNAPSHOT_KEY, damaged)
    })
    const restarted = await start({ store, clock: a.clock })
    expect(restarted.state.epoch()).toEqual(record)
    expect(restarted.state.stats().corruptChunks).toBe(1)
    expect(restarted.state.deployments()).toEqual([])
    await expectCode(deploy(restarted.state, 'too-early'), 'INTERNAL')
    await restarted.state.mergeSnapshot(peer.state.saveSnapshot())
    expect(restarted.state.deployment('d0')).toBeDefined()
    expect(restarted.state.hasChanges([GENESIS_HASH])).toBe(false)
    await deploy(restarted.state, 'now')
  })

  it('a damaged epoch record is answered from the document\'s own genesis', async () => {
    const store = createMemoryStore()
    const a = await start({ store })
    await deploy(a.state, 'd0')
    await a.state.enterEpoch({ epoch: 1, heads: a.state.heads() })
    const record = a.state.epoch()
    await a.state.stop()
    await withOpen(store, () => store.put(EPOCH_KEY, seal(new TextEncoder().encode('{"epoch":"one"}'))))
    const restarted = await start({ store, clock: a.clock })
    expect(restarted.state.epoch()).toEqual(record)
    expect(restarted.logger.at('error').some((r) => r.obj['key'] === EPOCH_KEY)).toBe(true)
    await deploy(restarted.state, 'd1')
  })
})

describe('the index across epochs', () => {
  it('reads every entry a peer changes after each of several epochs as a fresh load of the same document does', async () => {
    const a = await start({ selfId: 'node-a' })
    const b = await start({ selfId: 'node-b' })
    await a.state.upsertSelfNode(sampleNode)
    await b.state.upsertSelfNode({ ...sampleNode, name: 'desk' })
    let generation = 1
    for (let epoch = 1; epoch <= 4; epoch++) {
      // A different number of entries each time: the geneses' object ids shift from one epoch to the next.
      for (let i = 0; i < epoch * 3; i++) await deploy(a.state, `e${epoch}-${i}`)
      await pull(b.state, a.state)
      await pull(a.state, b.state)
      const cut = { epoch, heads: a.state.heads() }
      await a.state.enterEpoch(cut)
      await b.state.enterEpoch(cut)
      generation++
      await b.state.batch((tx) => {
        for (const d of b.state.deployments()) tx.writePlacement(d.id, 0, { generation, winners: ['node-b'], bids: [], shortlist: ['node-b'], closedBy: 'node-b', openedAtMs: 1, closedAtMs: 2, history: [] })
        tx.upsertSelfNode({ ...sampleNode, name: `desk-${epoch}` })
      })
      await pull(a.state, b.state)
      expect(a.state.heads()).toEqual(b.state.heads())
      const fresh = await start({ selfId: 'node-c' })
      await fresh.state.mergeSnapshot(a.state.saveSnapshot()).catch(async () => {
        await fresh.state.adoptEpoch(a.state.saveSnapshot(), a.state.epoch())
      })
      expect(view(a.state)).toEqual(view(fresh.state))
      expect(a.state.placement('e1-0', 0)?.generation).toBe(generation)
      expect(a.state.node('node-b')?.name).toBe(`desk-${epoch}`)
    }
  })
})
