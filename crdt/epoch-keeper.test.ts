/** The epoch keeper: who proposes and when, what it proposes, and entering decided epochs. */
import { describe, expect, it } from 'vitest'
import { createRng, silentLogger } from '../core/index.ts'
import { createVirtualClock, type VirtualClock } from '../sim/virtual-clock.ts'
import type { ClusterState } from './cluster-state.ts'
import type { EpochAgreement } from './epoch-agreement.ts'
import { createEpochKeeper, type EpochKeeperConfig } from './epoch-keeper.ts'
import type { CutValue } from './epoch-paxos.ts'
import { sampleNode, startState } from './test-support.ts'

/** An agreement that decides whatever is proposed first, and records the proposals. */
function fakeAgreement(): EpochAgreement & { proposals: CutValue[]; decide(cut: CutValue): void } {
  const decisions = new Map<number, CutValue>()
  const listeners = new Set<(cut: CutValue) => void>()
  const proposals: CutValue[] = []
  const decide = (cut: CutValue): void => {
    if (decisions.has(cut.epoch)) return
    decisions.set(cut.epoch, cut)
    for (const listener of listeners) listener(cut)
  }
  return {
    proposals,
    decide,
    start: async () => undefined,
    stop: async () => undefined,
    propose: async (cut) => {
      proposals.push(cut)
      decide(cut)
      return decisions.get(cut.epoch)
    },
    decided: (epoch) => decisions.get(epoch),
    onDecided: (listener) => {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    counters: () => ({ requestsServed: 0, requestsRefused: 0, proposals: proposals.length, ballotsTried: 0, decisionsLearned: 0, announcementsDropped: 0 }),
  }
}

const settings: Partial<EpochKeeperConfig> = { changesMin: 10, checkIntervalMs: 1_000, cutSettleMs: 500, bootstrapNodes: 0 }

async function deployMany(state: ClusterState, prefix: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) await state.createDeployment({ id: `${prefix}${i}`, spec: { name: `${prefix}${i}`, image: 'nginx' }, owner: state.selfId })
}

/** Runs the keeper's check to its end in virtual time (it waits cutSettleMs before proposing). */
async function checkNow(keeper: { check(): Promise<void> }, clock: VirtualClock): Promise<void> {
  const done = keeper.check()
  await clock.advance(settings.cutSettleMs! + 1)
  await done
}

describe('the epoch keeper', () => {
  it('the founder proposes its settled heads past changesMin, naming live registered nodes as the next acceptors; the decision is entered', async () => {
    const clock = createVirtualClock()
    const { state } = await startState({ clock, selfId: 'node-a' })
    await state.upsertSelfNode({ ...sampleNode, founder: true })
    const agreement = fakeAgreement()
    const keeper = createEpochKeeper(settings)({ state, agreement, clock, rng: createRng(1), logger: silentLogger, alive: () => ['node-a', 'node-gone'] })
    keeper.start()
    await deployMany(state, 'd', 3)
    await checkNow(keeper, clock)
    expect(agreement.proposals).toEqual([]) // 4 changes, below changesMin
    await deployMany(state, 'e', 8)
    const settled = state.heads()
    const checking = keeper.check()
    await state.createDeployment({ id: 'during-settle', spec: { name: 'x', image: 'nginx' }, owner: 'node-a' })
    await clock.advance(settings.cutSettleMs! + 1)
    await checking
    expect(agreement.proposals).toHaveLength(1)
    // The heads of cutSettleMs ago, not the write made meanwhile; an unregistered member is no acceptor.
    expect(agreement.proposals[0]).toEqual({ epoch: 1, heads: [...settled].sort(), acceptors: ['node-a'] })
    await clock.advance(10)
    expect(state.epoch()).toMatchObject({ epoch: 1, acceptors: ['node-a'] })
    expect(state.deployment('during-settle')).toBeDefined()
    expect(keeper.counters()).toMatchObject({ proposals: 1, epochsEntered: 1 })
    await keeper.stop()
  })

  it('a node that is no acceptor of the next agreement does not propose', async () => {
    const clock = createVirtualClock()
    const { state } = await startState({ clock, selfId: 'node-b' })
    await state.upsertSelfNode(sampleNode)
    const agreement = fakeAgreement()
    const keeper = createEpochKeeper(settings)({ state, agreement, clock, rng: createRng(2), logger: silentLogger, alive: () => ['node-b'] })
    keeper.start()
    await deployMany(state, 'd', 12)
    await checkNow(keeper, clock)
    expect(agreement.proposals).toEqual([]) // no founder registered: epoch 1 has no acceptor here
    expect(keeper.acceptorsOf(1)).toEqual([])
    await keeper.stop()
  })

  it('epoch 1 is due early once bootstrapNodes registered nodes are alive', async () => {
    const clock = createVirtualClock()
    const { state } = await startState({ clock, selfId: 'node-a' })
    await state.upsertSelfNode({ ...sampleNode, founder: true })
    const agreement = fakeAgreement()
    let alive = ['node-a']
    const keeper = createEpochKeeper({ ...settings, changesMin: 1_000, bootstrapNodes: 2 })({ state, agreement, clock, rng: createRng(3), logger: silentLogger, alive: () => alive })
    keeper.start()
    await checkNow(keeper, clock)
    expect(agreement.proposals).toEqual([])
    // A second node registers (its change applied here) and is seen alive.
    const other = await startState({ clock, selfId: 'node-b' })
    await other.state.upsertSelfNode({ ...sampleNode, name: 'desk' })
    await state.applyChanges(other.state.changesSince(state.heads()))
    alive = ['node-a', 'node-b']
    await checkNow(keeper, clock)
    expect(agreement.proposals.map((p) => p.acceptors)).toEqual([['node-a', 'node-b']])
    await keeper.stop()
  })

  it('a decision heard while part of the cut was missing is entered at a later check, once sync brought it', async () => {
    const clock = createVirtualClock()
    const a = await startState({ clock, selfId: 'node-a' })
    const b = await startState({ clock, selfId: 'node-b' })
    await a.state.upsertSelfNode({ ...sampleNode, founder: true })
    await deployMany(a.state, 'd', 2)
    const agreement = fakeAgreement()
    const keeper = createEpochKeeper(settings)({ state: b.state, agreement, clock, rng: createRng(4), logger: silentLogger, alive: () => ['node-a', 'node-b'] })
    keeper.start()
    agreement.decide({ epoch: 1, heads: a.state.heads(), acceptors: ['node-a'] })
    await clock.advance(10)
    expect(b.state.epoch().epoch).toBe(0)
    expect(keeper.counters().decisionsWithoutCut).toBe(1)
    await b.state.applyChanges(a.state.changesSince([]))
    await checkNow(keeper, clock)
    await clock.advance(10)
    expect(b.state.epoch().epoch).toBe(1)
    expect(b.state.deployments().map((d) => d.id)).toEqual(['d0', 'd1'])
    await keeper.stop()
  })
})
