/**
 * Runs the Paxos of crdt/epoch-paxos.ts between nodes: the acceptor side
 * answers prepare and accept requests on EPOCH_PAXOS_PROTOCOL, persisting
 * its state in the Store before each answer; `propose` drives one proposer
 * until a cut is decided or it gives up; a decision is announced on
 * EPOCH_TOPIC and kept in the Store, so every node learns it and keeps it
 * across restarts (docs/ARCHITECTURE.md, "Bounding the history").
 *
 * crdt/epoch-keeper.ts decides when to propose and enters what is decided.
 *
 * A decision heard on the topic is believed: the mesh is private (pnet),
 * so a peer is a cluster member. The acceptor set of each epoch comes from
 * the caller (`acceptors`), which must give every node the same set.
 */
import { z } from 'zod'
import type { Clock, Logger, Rng, Store, TopicMessage, Transport } from '../core/index.ts'
import { LatticeError, TransportError, parseJsonOrUndefined } from '../core/index.ts'
import {
  AcceptorStateSchema,
  CutValueSchema,
  PaxosReplySchema,
  PaxosRequestSchema,
  ProposerAttempt,
  acceptorReceive,
  compareBallots,
  nextBallot,
  sameCut,
  type AcceptorState,
  type Ballot,
  type CutValue,
  type PaxosReply,
  type PaxosRequest,
} from './epoch-paxos.ts'

export const EPOCH_PAXOS_PROTOCOL = '/lattice/epoch/paxos/1'
export const EPOCH_TOPIC = 'lattice/epoch/1'
const ACCEPTOR_KEY_PREFIX = 'epoch/acceptor/'
const DECIDED_KEY_PREFIX = 'epoch/decided/'
const EPOCH_DIGITS = 12

export interface EpochAgreementConfig {
  /** One prepare or accept round trip, the acceptor's store write included. */
  requestTimeoutMs: number
  /** A proposer preempted or short of a quorum waits a random time in [min, max) before trying a higher ballot, so two proposers stop outbidding each other. */
  retryBackoffMinMs: number
  retryBackoffMaxMs: number
  /** Ballots one `propose` tries before it gives up (a majority unreachable, say). */
  attemptsMax: number
  /** Largest request or reply: a cut is a handful of 64-hex heads. */
  messageBytesMax: number
}

export const EPOCH_AGREEMENT_DEFAULTS: EpochAgreementConfig = {
  requestTimeoutMs: 5_000,
  retryBackoffMinMs: 200,
  retryBackoffMaxMs: 1_000,
  attemptsMax: 8,
  messageBytesMax: 256 * 1024,
}

export interface EpochAgreementInit {
  selfId: string
  /** The acceptors of an epoch's instance: the same set on every node. */
  acceptors: (epoch: number) => readonly string[]
  config?: Partial<EpochAgreementConfig>
}

export interface EpochAgreementComponents {
  transport: Transport
  /** Opened and closed by its owner (the ClusterState that shares it). */
  store: Store
  clock: Clock
  logger: Logger
  rng: Rng
}

export interface EpochAgreementCounters {
  requestsServed: number
  requestsRefused: number
  proposals: number
  ballotsTried: number
  decisionsLearned: number
  announcementsDropped: number
}

export interface EpochAgreement {
  start(): Promise<void>
  stop(): Promise<void>
  /**
   * Proposes `cut` for its epoch and answers the cut decided for it (another
   * proposer's when one was chosen first), or undefined when no quorum
   * answered within attemptsMax ballots.
   */
  propose(cut: CutValue): Promise<CutValue | undefined>
  /** The cut decided for `epoch`, once this node knows it. */
  decided(epoch: number): CutValue | undefined
  onDecided(listener: (cut: CutValue) => void): () => void
  counters(): EpochAgreementCounters
}

/** How one ballot ended: `failed` when every acceptor answered (or failed to) without a quorum either way. */
type BallotOutcome = { kind: 'decided'; value: CutValue } | { kind: 'preempted'; above: Ballot } | { kind: 'failed' }

const AnnouncementSchema = z.object({ v: z.literal(1), decided: CutValueSchema })
const ErrorReplySchema = z.object({ error: z.string() })

function epochKey(prefix: string, epoch: number): string {
  return `${prefix}${String(epoch).padStart(EPOCH_DIGITS, '0')}`
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const encode = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value))

const decode = (bytes: Uint8Array): unknown => parseJsonOrUndefined(decoder.decode(bytes))

export function createEpochAgreement(init: EpochAgreementInit): (components: EpochAgreementComponents) => EpochAgreement {
  const config = { ...EPOCH_AGREEMENT_DEFAULTS, ...init.config }
  if (!(config.retryBackoffMaxMs >= config.retryBackoffMinMs && config.retryBackoffMinMs >= 0)) throw new RangeError('retryBackoffMaxMs must be >= retryBackoffMinMs >= 0')
  if (!(config.attemptsMax >= 1)) throw new RangeError('attemptsMax must be >= 1')
  return (components) => new PaxosEpochAgreement(init, config, components)
}

class PaxosEpochAgreement implements EpochAgreement {
  private readonly decisions = new Map<number, CutValue>()
  private readonly listeners = new Set<(cut: CutValue) => void>()
  /** Acceptor state per epoch, as persisted; requests for one epoch are handled one at a time (read, decide, persist, answer). */
  private readonly acceptorStates = new Map<number, AcceptorState>()
  private readonly acceptorQueues = new Map<number, Promise<unknown>>()
  private readonly stats: EpochAgreementCounters = { requestsServed: 0, requestsRefused: 0, proposals: 0, ballotsTried: 0, decisionsLearned: 0, announcementsDropped: 0 }
  private unsubscribe: (() => void) | undefined
  private running = false

  constructor(
    private readonly init: EpochAgreementInit,
    private readonly config: EpochAgreementConfig,
    private readonly components: EpochAgreementComponents,
  ) {}

  async start(): Promise<void> {
    if (this.running) return
    for (const { key, value } of await this.components.store.list(DECIDED_KEY_PREFIX)) {
      const parsed = CutValueSchema.safeParse(decode(value))
      if (parsed.success) this.decisions.set(parsed.data.epoch, parsed.data)
      else this.components.logger.error({ key }, 'epoch decision in the store is damaged; skipped, peers will announce it again')
    }
    this.running = true
    this.components.transport.handle(EPOCH_PAXOS_PROTOCOL, (request) => this.serve(request.from, request.data), { requestBytesMax: this.config.messageBytesMax })
    this.unsubscribe = this.components.transport.subscribe(EPOCH_TOPIC, (message) => this.onAnnouncement(message))
  }

  async stop(): Promise<void> {
    this.running = false
    this.unsubscribe?.()
    this.unsubscribe = undefined
    await Promise.all([...this.acceptorQueues.values()].map((queued) => queued.catch(() => undefined)))
  }

  decided(epoch: number): CutValue | undefined {
    return this.decisions.get(epoch)
  }

  onDecided(listener: (cut: CutValue) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  counters(): EpochAgreementCounters {
    return { ...this.stats }
  }

  // ---- acceptor ----

  private serve(from: string, data: Uint8Array): Promise<Uint8Array> {
    const parsed = PaxosRequestSchema.safeParse(decode(data))
    if (!parsed.success) return Promise.resolve(this.refuse(from, `invalid request: ${parsed.error.issues[0]?.message ?? 'unknown'}`))
    const request = parsed.data as PaxosRequest
    if (!this.running) return Promise.resolve(this.refuse(from, 'stopped'))
    if (!this.init.acceptors(request.epoch).includes(this.components.transport.selfId)) return Promise.resolve(this.refuse(from, `not an acceptor of epoch ${request.epoch}`))
    // One request of an epoch at a time: the state read, the decision and the write must not interleave.
    const previous = this.acceptorQueues.get(request.epoch) ?? Promise.resolve()
    const handled = previous.catch(() => undefined).then(() => this.accept(request))
    this.acceptorQueues.set(request.epoch, handled)
    void handled.finally(() => {
      if (this.acceptorQueues.get(request.epoch) === handled) this.acceptorQueues.delete(request.epoch)
    })
    return handled
  }

  private async accept(request: PaxosRequest): Promise<Uint8Array> {
    const state = await this.acceptorState(request.epoch)
    const { state: next, reply } = acceptorReceive(state, request)
    if (next !== state) {
      // Persisted before the answer leaves: a promise forgotten by a restart could let two cuts win.
      await this.components.store.put(epochKey(ACCEPTOR_KEY_PREFIX, request.epoch), encode(next))
      this.acceptorStates.set(request.epoch, next)
    }
    this.stats.requestsServed++
    return encode(reply)
  }

  private async acceptorState(epoch: number): Promise<AcceptorState> {
    const held = this.acceptorStates.get(epoch)
    if (held !== undefined) return held
    const stored = await this.components.store.get(epochKey(ACCEPTOR_KEY_PREFIX, epoch))
    let state: AcceptorState = {}
    if (stored !== undefined) {
      const parsed = AcceptorStateSchema.safeParse(decode(stored))
      // A damaged promise cannot be honoured: refuse to take part in this epoch rather than risk two cuts.
      if (!parsed.success) throw new LatticeError('INTERNAL', `acceptor state of epoch ${epoch} is damaged`)
      state = parsed.data as AcceptorState
    }
    this.acceptorStates.set(epoch, state)
    return state
  }

  private refuse(from: string, reason: string): Uint8Array {
    this.stats.requestsRefused++
    this.components.logger.debug({ from, reason }, 'epoch paxos request refused')
    return encode({ error: reason })
  }

  // ---- proposer ----

  async propose(cut: CutValue): Promise<CutValue | undefined> {
    const own = CutValueSchema.parse(cut) as CutValue
    this.stats.proposals++
    const acceptors = new Set(this.init.acceptors(own.epoch))
    if (acceptors.size === 0) throw new LatticeError('BAD_REQUEST', `epoch ${own.epoch} has no acceptors`)
    let above: Ballot | undefined
    for (let attempt = 0; attempt < this.config.attemptsMax && this.running; attempt++) {
      const known = this.decisions.get(own.epoch)
      if (known !== undefined) return known
      const ballot = nextBallot(this.components.transport.selfId, above)
      this.stats.ballotsTried++
      const outcome = await this.runBallot(new ProposerAttempt(own.epoch, ballot, own, acceptors))
      if (outcome.kind === 'decided') {
        await this.learn(outcome.value, true)
        return outcome.value
      }
      if (outcome.kind === 'preempted' && (above === undefined || compareBallots(outcome.above, above) > 0)) above = outcome.above
      else above = ballot
      const { retryBackoffMinMs: min, retryBackoffMaxMs: max } = this.config
      await this.components.clock.sleep(min + this.components.rng.next() * (max - min))
    }
    return this.decisions.get(own.epoch)
  }

  /** One ballot: prepare to every acceptor, then accept once a quorum promised. */
  private runBallot(attempt: ProposerAttempt): Promise<BallotOutcome> {
    return new Promise((resolve) => {
      let settled = false
      let outstanding = 0
      const settle = (result: BallotOutcome): void => {
        if (settled) return
        settled = true
        resolve(result)
      }
      const send = (to: string, request: PaxosRequest): void => {
        outstanding++
        void this.ask(to, request).then((reply) => {
          outstanding--
          if (settled) return
          if (reply !== undefined) {
            const outcome = attempt.receive(to, reply)
            if (outcome.kind === 'accept') for (const acceptor of attempt.acceptorIds) send(acceptor, outcome.request)
            else if (outcome.kind === 'decided' || outcome.kind === 'preempted') return settle(outcome)
          }
          if (outstanding === 0) settle({ kind: 'failed' })
        })
      }
      for (const acceptor of attempt.acceptorIds) send(acceptor, attempt.prepare())
    })
  }

  /** The acceptor's reply, or undefined when it did not answer usefully (unreachable, timed out, refused, garbled). */
  private async ask(to: string, request: PaxosRequest): Promise<PaxosReply | undefined> {
    let bytes: Uint8Array
    try {
      bytes = to === this.components.transport.selfId
        ? await this.serve(to, encode(request))
        : await this.components.transport.request(to, EPOCH_PAXOS_PROTOCOL, encode(request), { timeoutMs: this.config.requestTimeoutMs, responseBytesMax: this.config.messageBytesMax })
    } catch (err) {
      if (!(err instanceof TransportError)) this.components.logger.warn({ to, err: String(err) }, 'epoch paxos request failed')
      return undefined
    }
    const body = decode(bytes)
    const reply = PaxosReplySchema.safeParse(body)
    if (reply.success) return reply.data as PaxosReply
    if (!ErrorReplySchema.safeParse(body).success) this.components.transport.penalize(to, 'epoch:reply')
    return undefined
  }

  // ---- learning ----

  private onAnnouncement(message: TopicMessage): void {
    const parsed = AnnouncementSchema.safeParse(decode(message.data))
    if (!parsed.success) {
      this.stats.announcementsDropped++
      this.components.transport.penalize(message.from, 'epoch:announcement')
      return
    }
    void this.learn(parsed.data.decided as CutValue, false).catch((err: unknown) => this.components.logger.error({ err: String(err) }, 'could not keep an epoch decision'))
  }

  private async learn(cut: CutValue, announce: boolean): Promise<void> {
    const known = this.decisions.get(cut.epoch)
    if (known !== undefined) {
      if (!sameCut(known, cut)) this.components.logger.error({ epoch: cut.epoch, known, heard: cut }, 'two different cuts announced for one epoch; keeping the first')
      return
    }
    this.decisions.set(cut.epoch, cut)
    this.stats.decisionsLearned++
    await this.components.store.put(epochKey(DECIDED_KEY_PREFIX, cut.epoch), encode(cut))
    if (announce) await this.components.transport.publish(EPOCH_TOPIC, encode({ v: 1, decided: cut }))
    for (const listener of [...this.listeners]) {
      try {
        listener(cut)
      } catch (err) {
        this.components.logger.warn({ err: String(err) }, 'epoch decision listener failed')
      }
    }
  }
}
