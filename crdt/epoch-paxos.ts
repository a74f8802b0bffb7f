/**
 * Agreeing on an epoch's cut: single-decree Paxos, one instance per epoch
 * number (docs/ARCHITECTURE.md, "Bounding the history"). Two different cuts
 * would start two documents that never merge, so at most one cut may ever
 * be chosen for an epoch, whatever messages are lost, repeated, reordered
 * or delayed, and whichever nodes propose at once or restart.
 *
 * This module is the protocol's logic only, with no I/O: an acceptor's
 * state is a plain value the caller persists before sending the reply that
 * depends on it (a promise forgotten by a restart could let two cuts win);
 * a proposer is a state machine fed replies, answering the messages to
 * send. Sending, retrying with a higher ballot and persisting are the
 * caller's (crdt/epoch-agreement.ts).
 *
 * The acceptors of an instance are a fixed set every node agrees on (the
 * nodes the previous epoch's genesis registered); a quorum is a strict
 * majority of them.
 */
import { z } from 'zod'

/** A proposal number: rounds first, then the proposer's id, so two proposers never share one. */
export interface Ballot {
  round: number
  proposer: string
}

/**
 * What an instance decides: the cut an epoch starts from, and the acceptors
 * of the next instance (the one that decides epoch + 1's cut). Deciding the
 * next acceptors with the cut gives every node the same set for the next
 * instance, whatever each one's view of the membership is.
 */
export interface CutValue {
  epoch: number
  heads: string[]
  acceptors: string[]
}

export interface AcceptorState {
  promised?: Ballot
  accepted?: { ballot: Ballot; value: CutValue }
}

export type PaxosRequest = { type: 'prepare'; epoch: number; ballot: Ballot } | { type: 'accept'; epoch: number; ballot: Ballot; value: CutValue }

export type PaxosReply =
  | { type: 'promise'; epoch: number; ballot: Ballot; accepted?: { ballot: Ballot; value: CutValue } }
  | { type: 'accepted'; epoch: number; ballot: Ballot }
  /** Refused: the acceptor promised `promised`, at least as high; a proposer retries above it. */
  | { type: 'nack'; epoch: number; ballot: Ballot; promised: Ballot }

const BallotSchema = z.object({ round: z.number().int().nonnegative(), proposer: z.string().min(1).max(128) })
/** The most acceptors one instance names for the next (a quorum of them answers each ballot). */
export const EPOCH_ACCEPTORS_MAX = 15

export const CutValueSchema = z.object({
  epoch: z.number().int().positive(),
  heads: z.array(z.string().regex(/^[0-9a-f]{64}$/)).min(1).max(1024),
  acceptors: z.array(z.string().min(1).max(128)).min(1).max(EPOCH_ACCEPTORS_MAX),
})
const AcceptedSchema = z.object({ ballot: BallotSchema, value: CutValueSchema })

/** Requests and replies as they cross the wire: validated before the protocol sees them. */
export const PaxosRequestSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('prepare'), epoch: z.number().int().positive(), ballot: BallotSchema }),
  z.object({ type: z.literal('accept'), epoch: z.number().int().positive(), ballot: BallotSchema, value: CutValueSchema }),
])
export const PaxosReplySchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('promise'), epoch: z.number().int().positive(), ballot: BallotSchema, accepted: AcceptedSchema.optional() }),
  z.object({ type: z.literal('accepted'), epoch: z.number().int().positive(), ballot: BallotSchema }),
  z.object({ type: z.literal('nack'), epoch: z.number().int().positive(), ballot: BallotSchema, promised: BallotSchema }),
])
/** An acceptor's state as persisted. */
export const AcceptorStateSchema = z.object({ promised: BallotSchema.optional(), accepted: AcceptedSchema.optional() })

/** Negative, zero or positive as `a` is below, equal to or above `b`. */
export function compareBallots(a: Ballot, b: Ballot): number {
  return a.round - b.round || (a.proposer < b.proposer ? -1 : a.proposer > b.proposer ? 1 : 0)
}

export function sameCut(a: CutValue, b: CutValue): boolean {
  const same = (x: readonly string[], y: readonly string[]): boolean => x.length === y.length && x.every((item, i) => item === y[i])
  return a.epoch === b.epoch && same(a.heads, b.heads) && same(a.acceptors, b.acceptors)
}

/** A cut in its one written form: heads and acceptors sorted, each once. */
export function cutValue(epoch: number, heads: readonly string[], acceptors: readonly string[]): CutValue {
  return { epoch, heads: [...new Set(heads)].sort(), acceptors: [...new Set(acceptors)].sort() }
}

export function quorumOf(acceptors: number): number {
  return Math.floor(acceptors / 2) + 1
}

/**
 * The acceptor's answer to `request` and its next state. The caller must
 * persist `state` (when it differs) before sending `reply`.
 */
export function acceptorReceive(state: AcceptorState, request: PaxosRequest): { state: AcceptorState; reply: PaxosReply } {
  const { epoch, ballot } = request
  if (state.promised !== undefined && compareBallots(ballot, state.promised) < 0) {
    return { state, reply: { type: 'nack', epoch, ballot, promised: state.promised } }
  }
  if (request.type === 'prepare') {
    const next: AcceptorState = { ...state, promised: ballot }
    const reply: PaxosReply = { type: 'promise', epoch, ballot }
    if (state.accepted !== undefined) reply.accepted = state.accepted
    return { state: next, reply }
  }
  return { state: { promised: ballot, accepted: { ballot, value: request.value } }, reply: { type: 'accepted', epoch, ballot } }
}

export type ProposerOutcome =
  | { kind: 'pending' }
  /** Send these accept requests (phase 2 began with the value phase 1 allows). */
  | { kind: 'accept'; request: PaxosRequest & { type: 'accept' } }
  | { kind: 'decided'; value: CutValue }
  /** An acceptor promised a higher ballot: start again above `above`. */
  | { kind: 'preempted'; above: Ballot }

/**
 * One proposer's attempt at one ballot. `prepare()` is the request to send
 * to every acceptor; `receive` takes each reply (from an acceptor, once
 * each: later copies are ignored) and says what to do next. The value it
 * proposes is the one accepted at the highest ballot among a quorum of
 * promises, or its own when none was: what makes a second decision equal
 * the first.
 */
export class ProposerAttempt {
  private readonly promises = new Map<string, PaxosReply & { type: 'promise' }>()
  private readonly accepts = new Set<string>()
  private proposed: CutValue | undefined
  private done = false

  constructor(
    readonly epoch: number,
    readonly ballot: Ballot,
    private readonly own: CutValue,
    private readonly acceptors: ReadonlySet<string>,
  ) {
    if (own.epoch !== epoch) throw new RangeError(`a cut for epoch ${own.epoch} proposed in instance ${epoch}`)
  }

  get acceptorIds(): ReadonlySet<string> {
    return this.acceptors
  }

  prepare(): PaxosRequest & { type: 'prepare' } {
    return { type: 'prepare', epoch: this.epoch, ballot: this.ballot }
  }

  /** The value phase 2 proposes, once phase 1 has a quorum. */
  get value(): CutValue | undefined {
    return this.proposed
  }

  receive(from: string, reply: PaxosReply): ProposerOutcome {
    if (this.done || !this.acceptors.has(from) || reply.epoch !== this.epoch || compareBallots(reply.ballot, this.ballot) !== 0) return { kind: 'pending' }
    const quorum = quorumOf(this.acceptors.size)
    if (reply.type === 'nack') {
      if (compareBallots(reply.promised, this.ballot) <= 0) return { kind: 'pending' }
      this.done = true
      return { kind: 'preempted', above: reply.promised }
    }
    if (reply.type === 'promise') {
      if (this.proposed !== undefined || this.promises.has(from)) return { kind: 'pending' }
      this.promises.set(from, reply)
      if (this.promises.size < quorum) return { kind: 'pending' }
      let highest: { ballot: Ballot; value: CutValue } | undefined
      for (const promise of this.promises.values()) {
        if (promise.accepted !== undefined && (highest === undefined || compareBallots(promise.accepted.ballot, highest.ballot) > 0)) highest = promise.accepted
      }
      this.proposed = highest?.value ?? this.own
      return { kind: 'accept', request: { type: 'accept', epoch: this.epoch, ballot: this.ballot, value: this.proposed } }
    }
    if (this.proposed === undefined || this.accepts.has(from)) return { kind: 'pending' }
    this.accepts.add(from)
    if (this.accepts.size < quorum) return { kind: 'pending' }
    this.done = true
    return { kind: 'decided', value: this.proposed }
  }
}

/** The ballot a proposer tries next: above every ballot it has seen refused or promised. */
export function nextBallot(proposer: string, above?: Ballot): Ballot {
  return { round: above === undefined ? 1 : above.round + 1, proposer }
}
