/**
 * Membership on the simulated network: a handful of nodes, virtual time, the
 * `test` preset. Each test is named after the behaviour it proves.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createRng, silentLogger, type Clock, type Transport } from '../core/index.ts'
import { laggingClock } from '../sim/driver.ts'
import { createSimNetwork, type SimNetwork } from '../sim/sim-network.ts'
import { createVirtualClock, type VirtualClock } from '../sim/virtual-clock.ts'
import {
  MEMBERSHIP_TOPIC,
  PROBE_PROTOCOL,
  SYNC_PROTOCOL,
  metaIntervalMs,
  resolveMembershipConfig,
  retransmitLimit,
  suspicionMaxMs,
  suspicionMinMs,
  suspicionTimeoutMs,
  type MembershipConfig,
} from './membership-config.ts'
import { createMembership } from './membership.ts'
import type { MemberMeta, Membership, MembershipEvent } from './membership-types.ts'
import { SyncMessageSchema, decodeWire, encodeWire, type WireRecord } from './membership-wire.ts'

const CONFIG = resolveMembershipConfig('test')

interface Node {
  id: string
  transport: Transport
  membership: Membership
  events: MembershipEvent[]
}

interface Cluster {
  clock: VirtualClock
  network: SimNetwork
  nodes: Node[]
  run(ms: number): Promise<void>
  add(id: string, options?: { clock?: Clock; seeds?: string[] }): Promise<Node>
  /** Events about `subject` seen by `observer`, as "type@incarnation". */
  eventsAbout(observer: Node, subject: Node): string[]
}

const meta = (i: number): Partial<MemberMeta> => ({
  capacity: { cpu: 4 + i, memoryMB: 8192, diskMB: 100_000, gpus: 0 },
  free: { cpu: 4 + i, memoryMB: 8192, diskMB: 100_000, gpus: 0 },
  labels: { zone: `z${i % 2}` },
  version: '0.1.0',
})

async function cluster(n: number, seed = 1, config: Partial<MembershipConfig> = {}): Promise<Cluster> {
  const clock = createVirtualClock()
  const rng = createRng(seed)
  const network = createSimNetwork({ latencyMs: { min: 1, max: 5 }, lossRate: 0, duplicateRate: 0 }, { clock, rng: rng.fork('network') })
  const nodes: Node[] = []
  const add = async (id: string, options: { clock?: Clock; seeds?: string[] } = {}): Promise<Node> => {
    const transport = network.transport(id)
    const membership = createMembership({ preset: 'test', config, seeds: options.seeds ?? (nodes[0] ? [nodes[0].id] : []), meta: meta(nodes.length) })({
      transport,
      clock: options.clock ?? clock,
      rng: rng.fork(`node/${id}/${nodes.length}`),
      logger: silentLogger,
    })
    const node: Node = { id, transport, membership, events: [] }
    membership.onEvent((event) => node.events.push(event))
    await transport.start()
    await membership.start()
    nodes.push(node)
    return node
  }
  for (let i = 0; i < n; i++) await add(`peer-${i}`)
  return {
    clock,
    network,
    nodes,
    run: (ms) => clock.advance(ms),
    add,
    eventsAbout: (observer, subject) => observer.events.filter((e) => e.peerId === subject.id).map((e) => `${e.type}@${e.incarnation}`),
  }
}

const stateOf = (observer: Node, subject: Node): string | undefined => observer.membership.member(subject.id)?.state
const others = (c: Cluster, node: Node): Node[] => c.nodes.filter((other) => other !== node)
const allAlive = (nodes: Node[]): boolean => nodes.every((o) => nodes.every((s) => o === s || stateOf(o, s) === 'alive'))

/** Publishes raw bytes on the membership topic as `sender` (through its own transport). */
const publishAs = (sender: Node, value: unknown): Promise<void> => sender.transport.publish(MEMBERSHIP_TOPIC, value instanceof Uint8Array ? value : encodeWire(value))

describe('membership formulas', () => {
  it('the suspicion timeout shrinks from max to min as independent confirmations arrive (Lifeguard)', () => {
    const n = 1000
    const min = suspicionMinMs(CONFIG, n)
    const max = suspicionMaxMs(CONFIG, n)
    expect(max).toBe(CONFIG.suspicionMaxMult * min)
    expect(suspicionTimeoutMs(CONFIG, n, 0)).toBe(max)
    const one = suspicionTimeoutMs(CONFIG, n, 1)
    const two = suspicionTimeoutMs(CONFIG, n, 2)
    expect(one).toBeLessThan(max)
    expect(two).toBeLessThan(one)
    expect(suspicionTimeoutMs(CONFIG, n, CONFIG.suspicionConfirmationsExpected)).toBe(min)
    expect(suspicionTimeoutMs(CONFIG, n, 50)).toBe(min)
  })

  it('timeouts, retransmits and the metadata interval grow with the cluster', () => {
    const lan = resolveMembershipConfig('lan')
    expect(suspicionMinMs(lan, 5)).toBe(lan.suspicionFloorMs)
    expect(suspicionMinMs(lan, 1000)).toBe(1200)
    expect(retransmitLimit(lan, 10)).toBe(2)
    expect(retransmitLimit(lan, 1000)).toBe(4)
    expect(metaIntervalMs(lan, 10, 100)).toBe(lan.metaIntervalMinMs)
    expect(metaIntervalMs(lan, 1000, 100)).toBeGreaterThan(90_000)
  })

  it('an inconsistent configuration is refused', () => {
    expect(() => resolveMembershipConfig('lan', { probeRoundMs: 100, probeTimeoutMs: 100 })).toThrow(RangeError)
    expect(() => resolveMembershipConfig('lan', { probeTimeoutMaxMs: 100 })).toThrow(/probeTimeoutMaxMs/)
    expect(() => resolveMembershipConfig('lan', { probeIntervalMs: 0 })).toThrow(RangeError)
  })
})

describe('membership on the simulated network', () => {
  it('five nodes that join through one seed all see each other alive, with capacity', async () => {
    const c = await cluster(5)
    await c.run(2_000)
    expect(allAlive(c.nodes)).toBe(true)
    for (const observer of c.nodes) {
      const views = observer.membership.members()
      expect(views).toHaveLength(5)
      for (const [i, subject] of c.nodes.entries()) {
        const seen = observer.membership.member(subject.id)!
        expect(seen.capacity.cpu).toBe(4 + i)
        expect(seen.labels).toEqual({ zone: `z${i % 2}` })
        expect(seen.seq).toBeGreaterThan(0)
        expect(seen.addresses).toEqual([])
      }
    }
    for (const node of c.nodes) expect(node.events.filter((e) => e.type !== 'joined')).toEqual([])
  })

  it('a crashed node is declared dead by every other node within the configured bound', async () => {
    const n = 5
    const c = await cluster(n)
    await c.run(2_000)
    const victim = c.nodes[3]!
    const crashedAt = c.clock.nowMs()
    await victim.membership.stop() // silent: no leave
    await victim.transport.stop()
    // Worst case: the victim is probed last in two successive round-robin cycles, the round
    // runs out, the suspicion goes unconfirmed, an observer that missed everything checks itself.
    const boundMs = 2 * (n - 1) * CONFIG.probeIntervalMs + 2 * CONFIG.probeRoundMs + suspicionMaxMs(CONFIG, n) + CONFIG.suspicionObserverGraceMs
    let detectedAt = Number.POSITIVE_INFINITY
    for (let t = 0; t <= boundMs; t += 50) {
      await c.run(50)
      if (others(c, victim).every((o) => stateOf(o, victim) === 'dead')) {
        detectedAt = c.clock.nowMs()
        break
      }
    }
    expect(detectedAt - crashedAt).toBeLessThanOrEqual(boundMs)
    for (const observer of others(c, victim)) {
      const events = c.eventsAbout(observer, victim)
      expect(events.at(-1)).toBe('dead@0')
      expect(events).toContain('suspect@0')
      // Each event's view is the member as it was then, though read only now (views are built on first read).
      for (const event of observer.events.filter((e) => e.peerId === victim.id)) {
        expect(event.member.state).toBe(event.type === 'joined' ? 'alive' : event.type)
        expect(JSON.parse(JSON.stringify(event))).toEqual({ type: event.type, peerId: event.peerId, incarnation: event.incarnation, atMs: event.atMs, member: { ...event.member } })
      }
    }
    expect(allAlive(others(c, victim))).toBe(true)
  })

  it('a suspect still heard from directly is held off for as long as its messages arrive, then declared dead', async () => {
    const c = await cluster(2)
    await c.run(2_000)
    const [observer, suspect] = c.nodes as [Node, Node]
    // The suspect's process is gone but its messages still reach the observer (a route broken one way, a stale
    // sender): the observer's probes time out, and every message heard from the suspect holds the verdict off.
    await suspect.membership.stop()
    c.network.partitionOneWay([observer.id], [suspect.id])
    const delta = { v: 1, t: 'f', i: 0, q: 1, b: 1, f: meta(1).free, l: 0 }
    const holdMs = 3 * (suspicionMaxMs(CONFIG, 2) + CONFIG.suspicionObserverGraceMs + CONFIG.probeRoundMs)
    let suspectedAt: number | undefined
    for (let t = 0; t < holdMs; t += 100) {
      await publishAs(suspect, delta)
      await c.run(100)
      if (suspectedAt === undefined && stateOf(observer, suspect) === 'suspect') suspectedAt = c.clock.nowMs()
      expect(stateOf(observer, suspect)).not.toBe('dead')
    }
    expect(suspectedAt).toBeDefined()
    expect(c.clock.nowMs() - suspectedAt!).toBeGreaterThan(2 * suspicionMaxMs(CONFIG, 2))
    // Silence: the suspicion runs its course.
    await c.run(holdMs)
    expect(stateOf(observer, suspect)).toBe('dead')
  })

  it('a node declared dead while cut off syncs once when it refutes, and learns of a member that joined meanwhile', async () => {
    // The mass triggers out of reach, as for a lone isolated node among 1,000 (it buries and sees come back a few
    // dozen members), and no periodic sync or announcement within the test.
    const c = await cluster(5, 1, { massDeathFraction: 100, massComebackFraction: 100, pushPullIntervalMs: 600_000, pushPullBudgetBytesPerSecond: 0, metaIntervalMinMs: 600_000 })
    await c.run(2_000)
    const isolated = c.nodes[4]!
    c.network.partition([[isolated.id], c.nodes.slice(0, 4).map((n) => n.id)])
    const others = c.nodes.slice(0, 4)
    for (let t = 0; t < 10_000 && !others.every((o) => stateOf(o, isolated) === 'dead'); t += 100) await c.run(100)
    expect(others.every((o) => stateOf(o, isolated) === 'dead')).toBe(true)
    const newcomer = await c.add('peer-new', { seeds: [c.nodes[0]!.id] })
    await c.run(2_000)
    expect(isolated.membership.member(newcomer.id)).toBeUndefined()
    const syncsBefore = isolated.membership.counters().syncsOut
    c.network.heal()
    await c.run(3 * CONFIG.recoverySyncDelayMs + CONFIG.syncTimeoutMs)
    expect(isolated.membership.counters().refutations).toBeGreaterThan(0)
    expect(isolated.membership.counters().syncsOut).toBe(syncsBefore + 1)
    expect(stateOf(isolated, newcomer)).toBe('alive')
  })

  it('a suspected node that is alive refutes and stays alive', async () => {
    const c = await cluster(5)
    await c.run(2_000)
    const [accuser, , suspect] = c.nodes as [Node, Node, Node]
    await publishAs(accuser, { v: 1, t: 'u', u: [{ p: suspect.id, s: 's', i: 0, q: 0, b: accuser.id }] })
    await c.run(5_000)
    expect(suspect.membership.counters().refutations).toBe(1)
    for (const observer of others(c, suspect)) {
      expect(stateOf(observer, suspect)).toBe('alive')
      expect(observer.membership.member(suspect.id)!.incarnation).toBe(1)
      expect(c.eventsAbout(observer, suspect)).not.toContain('dead@0')
    }
    expect(allAlive(c.nodes)).toBe(true)
  })

  it('a node cut off until it is suspected refutes after the heal and is never dead', async () => {
    const c = await cluster(5, 3)
    await c.run(2_000)
    const isolated = c.nodes[2]!
    c.network.partition([[isolated.id], others(c, isolated).map((node) => node.id)])
    let suspected = false
    for (let t = 0; t < 2_000 && !suspected; t += 10) {
      await c.run(10)
      suspected = others(c, isolated).some((o) => stateOf(o, isolated) === 'suspect')
    }
    expect(suspected).toBe(true)
    c.network.heal()
    await c.run(5_000)
    expect(allAlive(c.nodes)).toBe(true)
    expect(isolated.membership.counters().refutations).toBeGreaterThanOrEqual(1)
    for (const observer of others(c, isolated)) expect(c.eventsAbout(observer, isolated).some((e) => e.startsWith('dead'))).toBe(false)
  })

  it('after a dead member comes back, the other dead are probed at the fast pace for a while', async () => {
    // Requests the observer sends in the 3 s after one dead member rejoined, the other five still dead.
    const requestsAfterComeback = async (config: Partial<MembershipConfig>): Promise<number> => {
      const c = await cluster(12, 7, { deadProbeIntervalMs: 5_000, ...config })
      await c.run(2_000)
      const observer = c.nodes[0]!
      const victims = c.nodes.slice(6)
      for (const victim of victims) {
        await victim.membership.stop()
        await victim.transport.stop()
      }
      const allDead = (): boolean => victims.every((victim) => stateOf(observer, victim) === 'dead')
      for (let t = 0; t < 30_000 && !allDead(); t += 100) await c.run(100)
      expect(allDead()).toBe(true)
      const returning = victims[0]!
      await c.add(returning.id, { seeds: [c.nodes[1]!.id] })
      for (let t = 0; t < 10_000 && stateOf(observer, returning) !== 'alive'; t += 10) await c.run(10)
      expect(stateOf(observer, returning)).toBe('alive')
      const sentBefore = c.network.counters().byPeer[observer.id]!.requestsSent
      await c.run(3_000)
      return c.network.counters().byPeer[observer.id]!.requestsSent - sentBefore
    }
    const steady = await requestsAfterComeback({ deadProbeFastIntervalMs: 5_000 })
    const hurried = await requestsAfterComeback({ deadProbeFastIntervalMs: 200, deadProbeFastForMs: 10_000 })
    // ~15 dead probes more (one per 200 ms instead of one per 5 s) on top of the same regular probing.
    expect(hurried - steady).toBeGreaterThanOrEqual(8)
  })

  it('many deaths at once (a partition) earn one full sync, which fetches the death notices lost in the storm', async () => {
    const syncsAfterSplit = async (config: Partial<MembershipConfig>): Promise<number> => {
      const c = await cluster(20, 9, config)
      await c.run(3_000)
      const observer = c.nodes[0]!
      const [sideA, sideB] = [c.nodes.slice(0, 10), c.nodes.slice(10)]
      const before = observer.membership.counters().syncsOut
      c.network.partition([sideA.map((node) => node.id), sideB.map((node) => node.id)])
      for (let t = 0; t < 30_000 && !sideB.every((node) => stateOf(observer, node) === 'dead'); t += 100) await c.run(100)
      await c.run(2 * CONFIG.recoverySyncDelayMs + 500)
      return observer.membership.counters().syncsOut - before
    }
    // A threshold above the live count never fires: the same run without the mass-death sync.
    const without = await syncsAfterSplit({ massDeathFraction: 2 })
    const withSync = await syncsAfterSplit({})
    expect(withSync - without).toBe(1)
  })

  it('a lone member back from dead costs its observers no full sync; a healed partition earns each one', async () => {
    // Full syncs the members other than `except` make in the recovery window after `comeback` brought members back.
    const syncsAfterComeback = async (config: Partial<MembershipConfig>, comeback: (c: Cluster) => Promise<Node[]>): Promise<number[]> => {
      const c = await cluster(20, 11, { pushPullIntervalMs: 600_000, ...config })
      await c.run(3_000)
      const back = await comeback(c)
      const syncing = c.nodes.filter((node) => !back.includes(node))
      const before = syncing.map((node) => node.membership.counters().syncsOut)
      await c.run(2 * CONFIG.recoverySyncDelayMs + 500)
      expect(c.nodes.every((observer) => back.every((node) => stateOf(observer, node) === 'alive'))).toBe(true)
      return syncing.map((node, i) => node.membership.counters().syncsOut - before[i]!)
    }
    const awaitState = async (c: Cluster, observers: Node[], subjects: Node[], state: string): Promise<void> => {
      for (let t = 0; t < 30_000 && !observers.every((o) => subjects.every((s) => stateOf(o, s) === state)); t += 100) await c.run(100)
      expect(observers.every((o) => subjects.every((s) => stateOf(o, s) === state))).toBe(true)
    }
    const restartOne = async (c: Cluster): Promise<Node[]> => {
      const victim = c.nodes[5]!
      await victim.membership.stop()
      await victim.transport.stop()
      await awaitState(c, others(c, victim), [victim], 'dead')
      c.nodes.splice(c.nodes.indexOf(victim), 1)
      const reborn = await c.add(victim.id, { seeds: [c.nodes[0]!.id] })
      await awaitState(c, others(c, reborn), [reborn], 'alive')
      return [reborn]
    }
    const splitAndHeal = async (c: Cluster): Promise<Node[]> => {
      const [sideA, sideB] = [c.nodes.slice(0, 10), c.nodes.slice(10)]
      c.network.partition([sideA.map((node) => node.id), sideB.map((node) => node.id)])
      await awaitState(c, sideA, sideB, 'dead')
      await c.run(2 * CONFIG.recoverySyncDelayMs + 500) // the mass-death syncs are done
      c.network.heal()
      await awaitState(c, sideA, sideB, 'alive')
      return []
    }
    expect(await syncsAfterComeback({}, restartOne)).toEqual(new Array(19).fill(0))
    // Each member of a healed partition syncs exactly once: for the mass of comebacks, or (a threshold above the live
    // count never fires) because it refutes its own death; the two share one rate limit.
    expect(await syncsAfterComeback({}, splitAndHeal)).toEqual(new Array(20).fill(1))
    expect(await syncsAfterComeback({ massComebackFraction: 2 }, splitAndHeal)).toEqual(new Array(20).fill(1))
  })

  it('a member that lost a join announcement hears the joiner record again joinResyncDelayMs after the join', async () => {
    // No probes within the test (they would also bring the news): only announcements and syncs carry it.
    const c = await cluster(5, 13, { probeIntervalMs: 600_000, deadProbeIntervalMs: 600_000, pushPullIntervalMs: 600_000 })
    await c.run(1_000)
    const deaf = c.nodes[4]!
    c.network.partition([[deaf.id], [...others(c, deaf).map((node) => node.id), 'joiner']])
    const joiner = await c.add('joiner', { seeds: [c.nodes[0]!.id] })
    await c.run(1_000)
    c.network.heal()
    expect(deaf.membership.member(joiner.id)).toBeUndefined()
    await c.run(CONFIG.joinResyncDelayMs)
    expect(stateOf(deaf, joiner)).toBe('alive')
  })

  it('a joined node syncs once more joinResyncDelayMs later: the member that answered its join may have been joining itself', async () => {
    const c = await cluster(5, 17, { pushPullIntervalMs: 600_000 })
    await c.run(1_000)
    const joiner = await c.add('joiner')
    await c.run(CONFIG.joinResyncDelayMs - 100)
    expect(joiner.membership.counters().syncsOut).toBe(1)
    await c.run(200)
    expect(joiner.membership.counters().syncsOut).toBe(2)
  })

  it('a graceful leave is seen as left, not dead', async () => {
    const c = await cluster(5)
    await c.run(2_000)
    const leaver = c.nodes[1]!
    const leaving = leaver.membership.leave()
    await c.run(1_000)
    await leaving
    await leaver.transport.stop()
    await c.run(10_000)
    for (const observer of others(c, leaver)) {
      expect(stateOf(observer, leaver)).toBe('left')
      expect(c.eventsAbout(observer, leaver)).toEqual(['joined@0', 'left@0'])
    }
    expect(allAlive(others(c, leaver))).toBe(true)
  })

  it('a replayed suspicion with an old incarnation is ignored and counted as stale', async () => {
    const c = await cluster(4)
    await c.run(2_000)
    const [accuser, observer, suspect] = c.nodes as [Node, Node, Node]
    await publishAs(accuser, { v: 1, t: 'u', u: [{ p: suspect.id, s: 's', i: 0, q: 0, b: accuser.id }] })
    await c.run(3_000)
    expect(observer.membership.member(suspect.id)).toMatchObject({ state: 'alive', incarnation: 1 })
    const staleBefore = observer.membership.counters().dropped.stale
    const eventsBefore = observer.events.length
    await publishAs(accuser, { v: 1, t: 'u', u: [{ p: suspect.id, s: 's', i: 0, q: 0, b: accuser.id }, { p: suspect.id, s: 'd', i: 0, q: 0, b: accuser.id }] })
    await c.run(1_000)
    expect(observer.membership.counters().dropped.stale).toBeGreaterThanOrEqual(staleBefore + 2)
    expect(observer.events.length).toBe(eventsBefore)
    expect(observer.membership.member(suspect.id)).toMatchObject({ state: 'alive', incarnation: 1 })
  })

  it('malformed, oversized and random messages on the topic and the streams are dropped and counted, and the node keeps working', async () => {
    const c = await cluster(4)
    await c.run(2_000)
    const victim = c.nodes[0]!
    // An attacker with a transport on the network (a mesh key holder) and one member (an insider).
    const attacker = c.network.transport('attacker')
    await attacker.start()
    const insider = c.nodes[3]!
    const garbage = fc.sample(fc.uint8Array({ maxLength: 600 }), { numRuns: 150, seed: 42 })
    const randomJson = fc.sample(fc.jsonValue(), { numRuns: 150, seed: 43 }).map((value) => encodeWire(value))
    const nearMisses = [
      { v: 1, t: 'u', u: [] },
      { v: 1, t: 'u', u: [{ p: '', s: 'a', i: 0, q: 0 }] },
      { v: 1, t: 'u', u: [{ p: victim.id, s: 'x', i: 0, q: 0 }] },
      { v: 1, t: 'u', u: [{ p: victim.id, s: 'a', i: -1, q: 0 }] },
      { v: 2, t: 'u', u: [{ p: victim.id, s: 'a', i: 0, q: 0 }] },
      { v: 1, t: 'm', r: { p: insider.id, s: 'a', i: 0, q: 9, m: { capacity: 'lots' } } },
      { v: 1, t: 'ping', i: 0, q: 0, u: 'x' },
    ].map((value) => encodeWire(value))
    const oversized = new Uint8Array(CONFIG.broadcastBytesMax + 1).fill(0x20)
    for (const data of [...garbage, ...randomJson, ...nearMisses, oversized]) {
      await attacker.publish(MEMBERSHIP_TOPIC, data)
      await insider.transport.publish(MEMBERSHIP_TOPIC, data)
      for (const protocol of [PROBE_PROTOCOL, SYNC_PROTOCOL]) {
        const reply = attacker.request(victim.id, protocol, data, { timeoutMs: 500, responseBytesMax: 1 << 20 })
        reply.catch(() => {})
      }
    }
    // Well-formed lies from a stranger about members, and about strangers from an insider.
    await attacker.publish(MEMBERSHIP_TOPIC, encodeWire({ v: 1, t: 'u', u: [{ p: insider.id, s: 'd', i: 5, q: 0 }] }))
    await insider.transport.publish(MEMBERSHIP_TOPIC, encodeWire({ v: 1, t: 'u', u: [{ p: 'nobody', s: 'd', i: 0, q: 0 }] }))
    await insider.transport.publish(MEMBERSHIP_TOPIC, encodeWire({ v: 1, t: 'm', r: { p: c.nodes[1]!.id, s: 'a', i: 0, q: 99 } }))
    await c.run(3_000)

    const dropped = victim.membership.counters().dropped
    expect(dropped.malformed).toBeGreaterThan(300)
    expect(dropped.oversized).toBeGreaterThanOrEqual(2)
    expect(dropped.unknownSender).toBeGreaterThanOrEqual(1)
    expect(dropped.unknownSubject).toBeGreaterThanOrEqual(1)
    expect(dropped.notSelf).toBeGreaterThanOrEqual(1)
    // The senders of undecodable input lost score; an honest member did not.
    expect(victim.transport.penaltyOf('attacker')).toBeGreaterThan(10)
    expect(victim.transport.penaltyOf(insider.id)).toBeGreaterThan(10)
    expect(victim.transport.penaltyOf(c.nodes[1]!.id)).toBe(0)
    // Still a working member: the lies changed nothing, the cluster detects a real crash.
    expect(stateOf(victim, insider)).toBe('alive')
    expect(allAlive(c.nodes)).toBe(true)
    const crashed = c.nodes[2]!
    await crashed.membership.stop()
    await crashed.transport.stop()
    await c.run(6_000)
    expect(stateOf(victim, crashed)).toBe('dead')
    expect(stateOf(insider, crashed)).toBe('dead')
  })

  it('a push-pull answer leaves out the members the asker listed alive as the responder knows them (with or without their metadata), and nothing else', async () => {
    const c = await cluster(6)
    await c.run(3_000)
    expect(allAlive(c.nodes)).toBe(true)
    const [responder, asker] = [c.nodes[0]!, c.nodes[5]!]
    const ask = async (records: WireRecord[]): Promise<WireRecord[]> => {
      const reply = c.clock.advance(100).then(() => undefined)
      const answer = asker.transport.request(responder.id, SYNC_PROTOCOL, encodeWire({ v: 1, t: 'sync', join: false, r: records }), { timeoutMs: 500, responseBytesMax: 1 << 20 })
      await reply
      const decoded = decodeWire(SyncMessageSchema, await answer, 1 << 20)
      if (!decoded.ok) throw new Error(`answer refused: ${decoded.reason}`)
      return decoded.value.r
    }
    // Asking with nothing listed: the responder's full state, itself first.
    const full = await ask([])
    expect(full.map((record) => record.p).sort()).toEqual(c.nodes.map((node) => node.id).sort())
    expect(full[0]!.p).toBe(responder.id)
    expect(full.every((record) => record.s === 'a' && record.m !== undefined)).toBe(true)
    // Listing everything as the responder holds it: only the responder's record and the asker's own come back.
    const others = full.filter((record) => record.p !== responder.id)
    expect((await ask(others)).map((record) => record.p)).toEqual([responder.id, asker.id])
    // As a node's own request lists them (metadata named by its seq and `b`, not sent): held all the same.
    expect((await ask(others.map(({ m: _metadata, ...digest }) => digest))).map((record) => record.p)).toEqual([responder.id, asker.id])
    // An older metadata seq, a record without metadata, a suspect, or a member not listed: those come back too.
    const [older, bare, suspected, unlisted] = others.filter((record) => record.p !== asker.id)
    const listed = [
      { ...older!, q: older!.q - 1 },
      { p: bare!.p, s: bare!.s, i: bare!.i, q: bare!.q },
      { ...suspected!, s: 's' as const },
      ...others.filter((record) => record.p === asker.id),
    ]
    expect(unlisted).toBeDefined()
    const answer = await ask(listed)
    expect(answer.map((record) => record.p).sort()).toEqual([responder.id, asker.id, older!.p, bare!.p, suspected!.p, unlisted!.p].sort())
    expect(answer.find((record) => record.p === bare!.p)?.m).toBeDefined()
    // Merging it left the asker's view as it was: everyone alive.
    await c.run(1_000)
    expect(allAlive(c.nodes)).toBe(true)
  })

  it('metadata changes reach every peer; significant ones within metaIntervalMinMs', async () => {
    const c = await cluster(4)
    await c.run(2_000)
    const changer = c.nodes[1]!
    changer.membership.setLocalMeta({ capacity: { cpu: 64, memoryMB: 1 << 17, diskMB: 1 << 20, gpus: 2 }, labels: { zone: 'lab', gpu: 'yes' } })
    await c.run(CONFIG.metaIntervalMinMs + 200)
    for (const observer of others(c, changer)) {
      expect(observer.membership.member(changer.id)).toMatchObject({ capacity: { cpu: 64, gpus: 2 }, labels: { zone: 'lab', gpu: 'yes' } })
    }
    changer.membership.setLocalMeta({ free: { cpu: 10, memoryMB: 1000, diskMB: 1000, gpus: 1 }, load: 3.5 })
    await c.run(metaIntervalMs(CONFIG, 4, 200) + 500)
    for (const observer of others(c, changer)) {
      expect(observer.membership.member(changer.id)).toMatchObject({ free: { cpu: 10, gpus: 1 }, load: 3.5, capacity: { cpu: 64 } })
      expect(observer.membership.member(changer.id)!.seq).toBe(changer.membership.member(changer.id)!.seq)
    }
    expect(() => changer.membership.setLocalMeta({ load: -1 })).toThrow(RangeError)
  })

  it('full syncs re-announce nobody: a peer echoing our own seq is not taken for an older life', async () => {
    // Syncs every pushPullIntervalMs (no byte budget), and nothing's metadata changes.
    const c = await cluster(6, 3, { pushPullIntervalMs: 1_000, pushPullBudgetBytesPerSecond: 0 })
    await c.run(CONFIG.joinResyncDelayMs + 1_000) // past the joins' second announcements
    const total = (key: 'metaAnnouncements' | 'syncsOut'): number => c.nodes.reduce((sum, node) => sum + node.membership.counters()[key], 0)
    const [announced, synced] = [total('metaAnnouncements'), total('syncsOut')]
    await c.run(10_000)
    expect(total('syncsOut') - synced).toBeGreaterThanOrEqual(30)
    expect(total('metaAnnouncements') - announced).toBe(0)
  })

  it('a restarted node whose new life begins at its older life\'s seq still replaces that record everywhere', async () => {
    const c = await cluster(4)
    await c.run(2_000)
    const victim = c.nodes[2]!
    // The older life announces significant changes up to the seq the new life will begin at (the clock's seconds at restart).
    const lifeSeq = Math.floor(c.clock.nowMs() / 1000) + 7
    const restartAtMs = lifeSeq * 1000 + 500
    for (let step = 0; step < 20 && victim.membership.member(victim.id)!.seq < lifeSeq; step++) victim.membership.setLocalMeta({ labels: { zone: 'old', step: String(step) } })
    await c.run(1_000)
    for (const observer of others(c, victim)) expect(observer.membership.member(victim.id)).toMatchObject({ seq: lifeSeq, labels: { zone: 'old' } })
    await victim.membership.stop()
    await victim.transport.stop()
    await c.run(restartAtMs - c.clock.nowMs())
    const reborn = await c.add(victim.id, { seeds: [c.nodes[0]!.id] })
    await c.run(3_000)
    const self = reborn.membership.member(victim.id)!
    expect(self.seq).toBeGreaterThan(lifeSeq)
    for (const observer of c.nodes.filter((node) => node.id !== victim.id)) {
      expect(stateOf(observer, reborn)).toBe('alive')
      // The whole new record: its static part too, not a delta over the older life's.
      expect(observer.membership.member(victim.id)).toMatchObject({ seq: self.seq, labels: self.labels, capacity: self.capacity })
    }
  })

  it('a crashed node that restarts with fresh state rejoins with a higher incarnation', async () => {
    const c = await cluster(4)
    await c.run(2_000)
    const victim = c.nodes[2]!
    await victim.membership.stop()
    await victim.transport.stop()
    await c.run(6_000)
    expect(stateOf(c.nodes[0]!, victim)).toBe('dead')
    const reborn = await c.add(victim.id, { seeds: [c.nodes[0]!.id] })
    await c.run(3_000)
    expect(reborn.membership.member(victim.id)!.incarnation).toBeGreaterThanOrEqual(1)
    for (const observer of c.nodes.filter((node) => node.id !== victim.id)) {
      expect(stateOf(observer, reborn)).toBe('alive')
      expect(c.eventsAbout(observer, reborn).at(-1)).toMatch(/^alive@[1-9]/)
    }
  })

  it('a node whose timers fire late widens its own timeouts instead of declaring others dead (local health)', async () => {
    const c = await cluster(4)
    let lagMs = 0
    const slow = await c.add('slow', { clock: laggingClock(c.clock, () => lagMs) })
    await c.run(2_000)
    expect(slow.membership.health().awareness).toBe(0)
    lagMs = 3 * CONFIG.lagThresholdMs
    await c.run(3_000)
    const health = slow.membership.health()
    expect(health.awareness).toBeGreaterThan(0)
    expect(health.probeTimeoutMs).toBe(CONFIG.probeTimeoutMs * (health.awareness + 1))
    expect(slow.membership.counters().lagEvents).toBeGreaterThan(0)
    expect(slow.events.filter((e) => e.type === 'dead')).toEqual([])
    lagMs = 0
    await c.run(CONFIG.lagHoldMs + 5_000)
    expect(slow.membership.health().awareness).toBe(0)
    expect(allAlive(c.nodes)).toBe(true)
  })

  it('on a network slower than the probe timeout, the timeout follows the round trip: pings succeed again, no suspicions', async () => {
    const c = await cluster(5)
    await c.run(2_000)
    expect(c.nodes[0]!.membership.health().probeTimeoutMs).toBe(CONFIG.probeTimeoutMs)
    // One way 40–80 ms: every round trip exceeds the 60 ms floor of the timeout.
    c.network.setLatency({ min: 40, max: 80 })
    await c.run(5_000)
    const before = c.nodes.map((node) => node.membership.counters())
    const eventsBefore = c.nodes.map((node) => node.events.length)
    await c.run(10_000)
    c.nodes.forEach((node, i) => {
      const now = node.membership.counters()
      const pings = now.pingsOut - before[i]!.pingsOut
      expect(pings).toBeGreaterThan(50)
      expect((now.pingsFailed - before[i]!.pingsFailed) / pings).toBeLessThan(0.1)
      expect(now.pingReqsOut - before[i]!.pingReqsOut).toBeLessThan(0.1 * pings)
      expect(node.events.slice(eventsBefore[i]).filter((e) => e.type !== 'alive')).toEqual([])
      const health = node.membership.health()
      expect(health.roundTripMs).toBeGreaterThan(80)
      expect(health.roundTripMs).toBeLessThan(160)
      expect(health.probeTimeoutMs).toBeGreaterThan(health.roundTripMs!)
      expect(health.probeTimeoutMs).toBeLessThanOrEqual(CONFIG.probeTimeoutMaxMs * (health.awareness + 1))
      expect(health.probeRoundMs).toBeGreaterThan(CONFIG.probeRoundMs)
    })
    expect(c.nodes.some((node) => node.membership.counters().acksLate > 0)).toBe(true)
    expect(allAlive(c.nodes)).toBe(true)
    c.network.setLatency({ min: 1, max: 5 })
    await c.run(10_000)
    for (const node of c.nodes) expect(node.membership.health().probeTimeoutMs).toBe(CONFIG.probeTimeoutMs)
  })

  it('counts probes, acks and gossip bytes both ways', async () => {
    const c = await cluster(3)
    await c.run(3_000)
    const counters = c.nodes[0]!.membership.counters()
    expect(counters.pingsOut).toBeGreaterThan(10)
    expect(counters.pingsIn).toBeGreaterThan(10)
    expect(counters.acksIn).toBeGreaterThan(10)
    expect(counters.acksOut).toBeGreaterThan(10)
    expect(counters.gossipBytesIn).toBeGreaterThan(1000)
    expect(counters.gossipBytesOut).toBeGreaterThan(1000)
    expect(Object.values(counters.dropped).every((count) => count === 0)).toBe(true)
  })
})
