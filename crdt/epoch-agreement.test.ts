import { describe, expect, it } from 'vitest'
import { createRng, silentLogger, TransportError, type Rng, type Store, type Transport } from '../core/index.ts'
import { createSimNetwork, type SimNetwork } from '../sim/sim-network.ts'
import { createVirtualClock, type VirtualClock } from '../sim/virtual-clock.ts'
import { createEpochAgreement, EPOCH_PAXOS_PROTOCOL, EPOCH_TOPIC, type EpochAgreement } from './epoch-agreement.ts'
import { cutValue, type CutValue } from './epoch-paxos.ts'
import { createMemoryStore } from './level-store.ts'

const head = (n: number): string => n.toString(16).padStart(64, '0')
const cutA = cutValue(1, [head(0xa)], ['n0'])
const cutB = cutValue(1, [head(0xb)], ['n1'])
const cutC = cutValue(1, [head(0xc)], ['n2'])

interface Member {
  id: string
  transport: Transport
  store: Store
  agreement: EpochAgreement
  learned: CutValue[]
}

interface Mesh {
  clock: VirtualClock
  network: SimNetwork
  members: Member[]
  byId(id: string): Member
  /** A new agreement on the member's transport and store (a restart of the process keeps the disk). */
  restart(id: string): Promise<Member>
  add(id: string): Promise<Member>
  /** Runs `work` while virtual time passes. */
  during<T>(work: Promise<T>, ms?: number): Promise<T>
}

/** A transport whose requests are lost (time out) with probability `loss`. */
function lossy(inner: Transport, loss: () => number, rng: Rng, clock: VirtualClock): Transport {
  return new Proxy(inner, {
    get(target, key, receiver) {
      if (key !== 'request') {
        const value = Reflect.get(target, key, receiver) as unknown
        // The simulated transport checks `this` is itself.
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
      }
      return async (peerId: string, protocol: string, data: Uint8Array, options: { timeoutMs: number; responseBytesMax: number }) => {
        if (rng.next() < loss()) {
          await clock.sleep(options.timeoutMs)
          throw new TransportError('TIMEOUT', 'lost')
        }
        return target.request(peerId, protocol, data, options)
      }
    },
  })
}

async function mesh(size: number, options: { seed?: number; loss?: number; acceptors?: number } = {}): Promise<Mesh> {
  const clock = createVirtualClock()
  const rng = createRng(options.seed ?? 1)
  const network = createSimNetwork({ latencyMs: { min: 1, max: 20 }, lossRate: 0, duplicateRate: 0.2 }, { clock, rng: rng.fork('network') })
  const ids = Array.from({ length: size }, (_, i) => `n${i}`)
  const acceptorIds = ids.slice(0, options.acceptors ?? size)
  const members = new Map<string, Member>()
  const loss = options.loss ?? 0
  const make = async (id: string, transport: Transport, store: Store): Promise<Member> => {
    const agreement = createEpochAgreement({ selfId: id, acceptors: () => acceptorIds, config: { requestTimeoutMs: 300, attemptsMax: 6 } })({
      transport,
      store,
      clock,
      logger: silentLogger,
      rng: rng.fork(`agreement/${id}/${members.size}`),
    })
    const member: Member = { id, transport, store, agreement, learned: [] }
    agreement.onDecided((cut) => member.learned.push(cut))
    await agreement.start()
    members.set(id, member)
    return member
  }
  const add = async (id: string): Promise<Member> => {
    const transport = lossy(network.transport(id), () => loss, rng.fork(`loss/${id}`), clock)
    await transport.start()
    const store = createMemoryStore()
    await store.open()
    return make(id, transport, store)
  }
  for (const id of ids) await add(id)
  return {
    clock,
    network,
    get members() {
      return [...members.values()]
    },
    byId: (id) => members.get(id)!,
    async restart(id) {
      const old = members.get(id)!
      await old.agreement.stop()
      return make(id, old.transport, old.store)
    },
    add,
    async during(work, ms = 20_000) {
      await clock.advance(ms)
      return work
    },
  } satisfies Mesh & { members: Member[] }
}

describe('epoch agreement', () => {
  it('decides a proposed cut, tells every node, and keeps it across a restart', async () => {
    const m = await mesh(5)
    const decided = await m.during(m.byId('n0').agreement.propose(cutA))
    expect(decided).toEqual(cutA)
    for (const member of m.members) {
      expect(member.agreement.decided(1)).toEqual(cutA)
      expect(member.learned).toEqual([cutA])
    }
    const restarted = await m.restart('n3')
    expect(restarted.agreement.decided(1)).toEqual(cutA)
    expect(restarted.agreement.decided(2)).toBeUndefined()
  })

  it('gives competing proposers one cut, over requests lost and announcements repeated', async () => {
    let retried = 0
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      const m = await mesh(5, { seed, loss: 0.45 })
      const proposers = ['n0', 'n2', 'n4'].map((id) => m.byId(id).agreement)
      const results = await m.during(Promise.all([proposers[0]!.propose(cutA), proposers[1]!.propose(cutB), proposers[2]!.propose(cutC)]), 60_000)
      retried += proposers.filter((agreement) => agreement.counters().ballotsTried > 1).length
      const decided = results.filter((cut): cut is CutValue => cut !== undefined)
      expect(decided.length).toBeGreaterThan(0)
      for (const cut of decided) expect(cut).toEqual(decided[0])
      for (const member of m.members) {
        const known = member.agreement.decided(1)
        if (known !== undefined) expect(known).toEqual(decided[0])
        expect(member.learned.length).toBeLessThanOrEqual(1)
      }
    }
    // The losses made proposers try again with higher ballots (what the test is about).
    expect(retried).toBeGreaterThan(0)
  })

  it('decides nothing on a minority side; the majority decides, and the minority learns that cut after the heal', async () => {
    const m = await mesh(5)
    m.network.partition([
      ['n0', 'n1'],
      ['n2', 'n3', 'n4'],
    ])
    const minority = await m.during(m.byId('n0').agreement.propose(cutA), 60_000)
    expect(minority).toBeUndefined()
    for (const member of m.members) expect(member.agreement.decided(1)).toBeUndefined()
    const majority = await m.during(m.byId('n3').agreement.propose(cutB), 60_000)
    expect(majority).toEqual(cutB)
    expect(m.byId('n0').agreement.decided(1)).toBeUndefined() // the announcement could not cross
    m.network.heal()
    // Its own cut again: Paxos hands it the one already chosen.
    const after = await m.during(m.byId('n0').agreement.propose(cutA), 60_000)
    expect(after).toEqual(cutB)
    expect(m.byId('n1').agreement.decided(1)).toEqual(cutB)
  })

  it('keeps an acceptor promise across a restart: a late proposer still gets the accepted cut', async () => {
    const m = await mesh(4, { acceptors: 3 })
    expect(await m.during(m.byId('n0').agreement.propose(cutA))).toEqual(cutA)
    for (const id of ['n0', 'n1', 'n2']) await m.restart(id)
    // A node that never heard the decision (it joined after), with a cut of its own.
    const late = await m.add('n9')
    expect(late.agreement.decided(1)).toBeUndefined()
    expect(await m.during(late.agreement.propose(cutB))).toEqual(cutA)
  })

  it('refuses bad input with a reason, and keeps working', async () => {
    const m = await mesh(3, { acceptors: 2 })
    const outsider = m.byId('n2')
    const ask = (to: string, body: unknown): Promise<unknown> =>
      m.during(
        outsider.transport
          .request(to, EPOCH_PAXOS_PROTOCOL, new TextEncoder().encode(typeof body === 'string' ? body : JSON.stringify(body)), { timeoutMs: 1_000, responseBytesMax: 4096 })
          .then((bytes) => JSON.parse(new TextDecoder().decode(bytes)) as unknown),
        2_000,
      )
    expect(await ask('n0', 'not json')).toMatchObject({ error: expect.stringMatching(/invalid request/) })
    expect(await ask('n0', { type: 'prepare', epoch: 1, ballot: { round: -1, proposer: 'x' } })).toMatchObject({ error: expect.stringMatching(/invalid request/) })
    expect(await ask('n2', { type: 'prepare', epoch: 1, ballot: { round: 1, proposer: 'n2' } })).toMatchObject({ error: 'not an acceptor of epoch 1' })
    expect(m.byId('n0').agreement.counters().requestsRefused).toBe(2)
    await m.during(outsider.transport.publish(EPOCH_TOPIC, new TextEncoder().encode('{"v":1,"decided":{"epoch":0}}')), 1_000)
    expect(m.byId('n0').agreement.counters().announcementsDropped).toBe(1)
    expect(m.byId('n0').transport.penaltyOf('n2')).toBeGreaterThan(0)
    expect(await m.during(outsider.agreement.propose(cutC))).toEqual(cutC)
    await expect(outsider.agreement.propose({ epoch: 1, heads: [], acceptors: ['n0'] })).rejects.toThrow()
  })
})
