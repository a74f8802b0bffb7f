import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  AcceptorStateSchema,
  PaxosReplySchema,
  PaxosRequestSchema,
  ProposerAttempt,
  acceptorReceive,
  compareBallots,
  cutValue,
  nextBallot,
  quorumOf,
  sameCut,
  type AcceptorState,
  type CutValue,
  type PaxosReply,
  type PaxosRequest,
} from './epoch-paxos.ts'

const head = (n: number): string => n.toString(16).padStart(64, '0')
const cut = (n: number): CutValue => cutValue(1, [head(n)], ['p0'])

describe('epoch paxos, one proposer', () => {
  it('decides its own cut when no acceptor accepted one before', () => {
    const acceptors = ['a', 'b', 'c']
    const states = new Map<string, AcceptorState>(acceptors.map((id) => [id, {}]))
    const attempt = new ProposerAttempt(1, nextBallot('p'), cut(1), new Set(acceptors))
    let accept: PaxosRequest | undefined
    for (const id of acceptors.slice(0, 2)) {
      const { state, reply } = acceptorReceive(states.get(id)!, attempt.prepare())
      states.set(id, state)
      const outcome = attempt.receive(id, reply)
      if (outcome.kind === 'accept') accept = outcome.request
    }
    expect(accept).toMatchObject({ type: 'accept', value: cut(1) })
    let decided: CutValue | undefined
    for (const id of ['c', 'b']) {
      const { state, reply } = acceptorReceive(states.get(id)!, accept!)
      states.set(id, state)
      const outcome = attempt.receive(id, reply)
      if (outcome.kind === 'decided') decided = outcome.value
    }
    expect(decided).toEqual(cut(1))
  })

  it('proposes the value a quorum member accepted at the highest ballot, not its own', () => {
    const attempt = new ProposerAttempt(1, { round: 5, proposer: 'q' }, cut(9), new Set(['a', 'b', 'c']))
    attempt.receive('a', { type: 'promise', epoch: 1, ballot: attempt.ballot, accepted: { ballot: { round: 2, proposer: 'x' }, value: cut(2) } })
    const outcome = attempt.receive('b', { type: 'promise', epoch: 1, ballot: attempt.ballot, accepted: { ballot: { round: 3, proposer: 'y' }, value: cut(3) } })
    expect(outcome).toMatchObject({ kind: 'accept', request: { value: cut(3) } })
  })

  it('ignores replies from strangers, for other ballots or epochs, and copies; a higher promise preempts it', () => {
    const attempt = new ProposerAttempt(1, { round: 2, proposer: 'p' }, cut(1), new Set(['a', 'b', 'c']))
    const promise: PaxosReply = { type: 'promise', epoch: 1, ballot: attempt.ballot }
    expect(attempt.receive('z', promise).kind).toBe('pending')
    expect(attempt.receive('a', { ...promise, epoch: 2 }).kind).toBe('pending')
    expect(attempt.receive('a', { ...promise, ballot: { round: 1, proposer: 'p' } }).kind).toBe('pending')
    expect(attempt.receive('a', promise).kind).toBe('pending')
    expect(attempt.receive('a', promise).kind).toBe('pending')
    expect(attempt.receive('b', { type: 'nack', epoch: 1, ballot: attempt.ballot, promised: { round: 1, proposer: 'z' } }).kind).toBe('pending')
    expect(attempt.receive('b', { type: 'nack', epoch: 1, ballot: attempt.ballot, promised: { round: 7, proposer: 'z' } })).toEqual({ kind: 'preempted', above: { round: 7, proposer: 'z' } })
    expect(attempt.receive('c', promise).kind).toBe('pending')
    expect(nextBallot('p', { round: 7, proposer: 'z' })).toEqual({ round: 8, proposer: 'p' })
  })

  it('refuses a lower ballot once it promised a higher one, and keeps what it accepted', () => {
    const high = { round: 3, proposer: 'b' }
    const low = { round: 3, proposer: 'a' }
    expect(compareBallots(low, high)).toBeLessThan(0)
    const { state } = acceptorReceive({}, { type: 'accept', epoch: 1, ballot: high, value: cut(4) })
    expect(acceptorReceive(state, { type: 'prepare', epoch: 1, ballot: low }).reply).toEqual({ type: 'nack', epoch: 1, ballot: low, promised: high })
    const again = acceptorReceive(state, { type: 'prepare', epoch: 1, ballot: { round: 4, proposer: 'a' } })
    expect(again.reply).toMatchObject({ type: 'promise', accepted: { ballot: high, value: cut(4) } })
    expect(AcceptorStateSchema.parse(again.state)).toEqual(again.state)
  })

  it('writes a cut one way and checks wire shapes', () => {
    expect(cutValue(2, [head(2), head(1), head(2)], ['b', 'a', 'b'])).toEqual({ epoch: 2, heads: [head(1), head(2)], acceptors: ['a', 'b'] })
    expect(sameCut(cutValue(2, [head(2), head(1)], ['b', 'a']), cutValue(2, [head(1), head(2)], ['a', 'b']))).toBe(true)
    expect(sameCut(cut(1), cutValue(2, [head(1)], ['p0']))).toBe(false)
    // The next instance's acceptors are part of what is decided.
    expect(sameCut(cut(1), cutValue(1, [head(1)], ['p1']))).toBe(false)
    expect([1, 2, 3, 4, 5].map(quorumOf)).toEqual([1, 2, 2, 3, 3])
    expect(PaxosRequestSchema.safeParse({ type: 'accept', epoch: 1, ballot: { round: 1, proposer: 'p' }, value: { epoch: 1, heads: ['nothex'], acceptors: ['p'] } }).success).toBe(false)
    expect(PaxosReplySchema.safeParse({ type: 'nack', epoch: 1, ballot: { round: 1, proposer: 'p' } }).success).toBe(false)
    expect(() => new ProposerAttempt(2, nextBallot('p'), cut(1), new Set(['a']))).toThrow(RangeError)
  })
})

/**
 * A whole instance under an adversarial network: proposers with different
 * cuts, each retrying above the ballot that preempted it; every message may
 * be delivered late, twice or never; acceptors restart, keeping the state
 * they persisted (or, for the planted fault, losing it).
 */
function runInstance(acceptorCount: number, proposerCount: number, schedule: number[], forgetOnRestart: boolean): CutValue[] {
  const acceptors = Array.from({ length: acceptorCount }, (_, i) => `acc${i}`)
  const states = new Map<string, AcceptorState>(acceptors.map((id) => [id, {}]))
  type InFlight = { to: string; from: string; request?: PaxosRequest; reply?: PaxosReply }
  const pool: InFlight[] = []
  const attempts = new Map<string, ProposerAttempt>()
  const decided: CutValue[] = []
  const retriesLeft = new Map<string, number>()
  const start = (proposer: string, above?: { round: number; proposer: string }): void => {
    const index = Number(proposer.slice(1))
    const attempt = new ProposerAttempt(1, nextBallot(proposer, above), cut(index + 1), new Set(acceptors))
    attempts.set(proposer, attempt)
    for (const to of acceptors) pool.push({ to, from: proposer, request: attempt.prepare() })
  }
  for (let p = 0; p < proposerCount; p++) {
    retriesLeft.set(`p${p}`, 4)
    start(`p${p}`)
  }
  let cursor = 0
  const nextChoice = (): number => schedule[cursor++ % schedule.length]!
  for (let step = 0; step < schedule.length * 3 && pool.length > 0; step++) {
    const choice = nextChoice()
    const message = pool[choice % pool.length]!
    const action = nextChoice() % 10
    if (action === 0) {
      pool.splice(pool.indexOf(message), 1) // lost
      continue
    }
    if (action === 1) {
      const acceptor = acceptors[choice % acceptors.length]!
      if (forgetOnRestart) states.set(acceptor, {})
      continue // a restart: the persisted state survives it
    }
    if (action > 2) pool.splice(pool.indexOf(message), 1) // otherwise delivered and kept: a duplicate later
    if (message.request !== undefined) {
      const { state, reply } = acceptorReceive(states.get(message.to)!, message.request)
      states.set(message.to, state)
      pool.push({ to: message.from, from: message.to, reply })
      continue
    }
    const attempt = attempts.get(message.to)!
    const outcome = attempt.receive(message.from, message.reply!)
    if (outcome.kind === 'accept') for (const to of acceptors) pool.push({ to, from: message.to, request: outcome.request })
    else if (outcome.kind === 'decided') decided.push(outcome.value)
    else if (outcome.kind === 'preempted') {
      const left = retriesLeft.get(message.to)!
      if (left > 0) {
        retriesLeft.set(message.to, left - 1)
        start(message.to, outcome.above)
      }
    }
  }
  return decided
}

describe('epoch paxos, any schedule', () => {
  it('never decides two different cuts for one epoch', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 3 }),
        fc.array(fc.nat({ max: 1000 }), { minLength: 20, maxLength: 400 }),
        (acceptorCount, proposerCount, schedule) => {
          const decided = runInstance(acceptorCount, proposerCount, schedule, false)
          for (const value of decided) expect(value).toEqual(decided[0])
        },
      ),
      { numRuns: 400 },
    )
  })

  it('decides when messages arrive, even with every proposer competing', () => {
    // Everything delivered, never lost: some proposer's cut is decided.
    const decided = runInstance(3, 3, Array.from({ length: 600 }, (_, i) => (i % 2 === 0 ? 0 : 5)), false)
    expect(decided.length).toBeGreaterThan(0)
  })

  it('can decide two cuts when acceptors forget their promises (the planted fault the property catches)', () => {
    const found = fc.sample(fc.array(fc.nat({ max: 1000 }), { minLength: 50, maxLength: 400 }), { numRuns: 3000, seed: 7 }).some((schedule) => {
      const decided = runInstance(3, 2, schedule, true)
      return decided.some((value) => !sameCut(value, decided[0]!))
    })
    expect(found).toBe(true)
  })
})
