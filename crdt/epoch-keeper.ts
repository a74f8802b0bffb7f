/**
 * Keeps the document's history bounded (docs/ARCHITECTURE.md, "Bounding the
 * history: epochs"): when the current epoch's document holds `changesMin`
 * changes, an acceptor of the next agreement proposes its heads as the cut
 * (crdt/epoch-agreement.ts); once a cut is decided, every node that holds
 * it moves there (ClusterState.enterEpoch). A node that lacks the cut, or
 * missed the decision, learns it from its peers' sync replies
 * (anti-entropy.ts) and moves there too.
 *
 * Who accepts: the agreement on epoch e's cut has the acceptors decided
 * with epoch e - 1's cut (in the epoch record); the agreement on epoch 1's
 * has the mesh's founder (the node that made the mesh key, flagged in its
 * nodes entry). Every node reads the same set either way, whatever its
 * view of the membership, which Paxos needs. The proposer picks the next
 * acceptors from the members it sees alive, keeping current ones first.
 */
import type { Clock, Logger, Rng, TimerHandle } from '../core/index.ts'
import type { ClusterState } from './cluster-state.ts'
import type { EpochAgreement } from './epoch-agreement.ts'
import { cutValue, EPOCH_ACCEPTORS_MAX, type CutValue } from './epoch-paxos.ts'

export interface EpochKeeperConfig {
  /** An epoch's document with this many changes gets a new epoch proposed. */
  changesMin: number
  /** How often an acceptor of the next agreement checks the change count (with up to half of it again at random, so acceptors do not all propose at once). */
  checkIntervalMs: number
  /** Acceptors a proposal names for the agreement after it (a majority of them must answer each ballot). */
  acceptorsMax: number
  /**
   * The cut proposed is the proposer's heads this long before the proposal:
   * by then gossip has taken them to nearly every node, which then builds
   * the genesis itself instead of downloading the proposer's document.
   */
  cutSettleMs: number
  /**
   * Epoch 1, whose one acceptor is the founder, is proposed as soon as this
   * many registered nodes are alive, however few changes the document holds:
   * the acceptor role passes early from the founder to up to acceptorsMax
   * nodes, so the founder leaving later does not stop epochs. 0 waits for
   * changesMin, as every later epoch does.
   */
  bootstrapNodes: number
}

export const EPOCH_KEEPER_DEFAULTS: EpochKeeperConfig = {
  // ~20 MB of history on a busy cluster's document; a new epoch costs each node one genesis build (~2.8 s at 10,000 deployments).
  changesMin: 50_000,
  // The count grows by at most a few hundred changes a minute on a busy cluster: a minute's lag is nothing against 50,000.
  checkIntervalMs: 60_000,
  // Five: any two can be down and an epoch is still decided; more only adds round trips.
  acceptorsMax: 5,
  // Gossip reaches every node within a few seconds; anti-entropy (every 5 s) mends what it lost.
  cutSettleMs: 10_000,
  // Three: the smallest set in which one acceptor can be down and a majority still decides.
  bootstrapNodes: 3,
}

export interface EpochKeeperComponents {
  state: ClusterState
  agreement: EpochAgreement
  clock: Clock
  rng: Rng
  logger: Logger
  /** PeerIds of the members this node sees alive, itself included. */
  alive: () => readonly string[]
}

export interface EpochKeeperCounters {
  proposals: number
  /** Moves to a new epoch on a decision this node heard (the agreement's). */
  epochsEntered: number
  /** Decisions heard for a cut this node does not hold whole: it waits for a peer ahead to hand it the epoch by sync. */
  decisionsWithoutCut: number
}

export interface EpochKeeper {
  start(): void
  stop(): Promise<void>
  /** The acceptors of the agreement on epoch `epoch`'s cut, as every node reads them; empty when not known here. */
  acceptorsOf(epoch: number): string[]
  /** Checks the change count now and proposes when due (what the timer does). */
  check(): Promise<void>
  counters(): EpochKeeperCounters
}

export function createEpochKeeper(config: Partial<EpochKeeperConfig> = {}): (components: EpochKeeperComponents) => EpochKeeper {
  const settings: EpochKeeperConfig = { ...EPOCH_KEEPER_DEFAULTS, ...config }
  if (!(settings.acceptorsMax >= 1 && settings.acceptorsMax <= EPOCH_ACCEPTORS_MAX)) throw new RangeError(`acceptorsMax must be within 1..${EPOCH_ACCEPTORS_MAX}`)
  return (components) => new Keeper(settings, components)
}

/** The acceptors of the agreement on epoch 1's cut: the founder (one per mesh). */
export function foundersOf(state: ClusterState): string[] {
  return state
    .nodes()
    .filter((node) => node.founder === true)
    .map((node) => node.peerId)
    .sort()
}

class Keeper implements EpochKeeper {
  private readonly log: Logger
  private timer: TimerHandle | undefined
  private running = false
  private proposing: Promise<void> | undefined
  private entering: Promise<void> = Promise.resolve()
  private offs: (() => void)[] = []
  private readonly count: EpochKeeperCounters = { proposals: 0, epochsEntered: 0, decisionsWithoutCut: 0 }

  constructor(
    private readonly config: EpochKeeperConfig,
    private readonly components: EpochKeeperComponents,
  ) {
    this.log = components.logger.child({ component: 'epoch-keeper' })
  }

  start(): void {
    if (this.running) return
    this.running = true
    const { agreement, state } = this.components
    this.offs.push(agreement.onDecided((cut) => this.decided(cut)))
    // A decision kept in the store from before a restart, not acted on then.
    const pending = agreement.decided(state.epoch().epoch + 1)
    if (pending !== undefined) this.decided(pending)
    this.schedule()
  }

  async stop(): Promise<void> {
    this.running = false
    for (const off of this.offs.splice(0)) off()
    this.timer?.cancel()
    this.timer = undefined
    // A proposal in flight is not awaited: its ballots wait on the network and the clock, and it ends by itself once the agreement stops.
    await this.entering.catch(() => undefined)
  }

  counters(): EpochKeeperCounters {
    return { ...this.count }
  }

  acceptorsOf(epoch: number): string[] {
    const { state, agreement } = this.components
    if (epoch === 1) return foundersOf(state)
    const current = state.epoch()
    if (current.epoch === epoch - 1) return [...current.acceptors]
    return [...(agreement.decided(epoch - 1)?.acceptors ?? [])]
  }

  private schedule(): void {
    if (!this.running) return
    const delay = this.config.checkIntervalMs + this.components.rng.int(Math.max(1, Math.floor(this.config.checkIntervalMs / 2)))
    this.timer = this.components.clock.setTimer(delay, () => {
      this.timer = undefined
      void this.check().finally(() => this.schedule())
    })
  }

  check(): Promise<void> {
    if (this.proposing !== undefined) return this.proposing
    const run = this.proposeIfDue().catch((err: unknown) => this.log.warn({ err }, 'proposing a new epoch failed; the next check tries again'))
    this.proposing = run.finally(() => {
      this.proposing = undefined
    })
    return this.proposing
  }

  private async proposeIfDue(): Promise<void> {
    const { state, agreement } = this.components
    if (!this.running || state.failure() !== undefined) return
    const next = state.epoch().epoch + 1
    const known = agreement.decided(next)
    if (known !== undefined) {
      // Decided while this node lacked part of the cut, and no peer has moved on to hand it the epoch: once sync
      // brought the cut, the node builds it itself (the one way on when every node lacked part of it at first).
      if (state.hasChanges(known.heads)) this.decided(known)
      return
    }
    const acceptors = this.acceptorsOf(next)
    if (!acceptors.includes(state.selfId)) return
    if (state.stats().changeCount < this.config.changesMin && !this.bootstrapDue(next)) return
    const heads = state.heads()
    await this.components.clock.sleep(this.config.cutSettleMs)
    // Meanwhile another proposer's cut may have been decided, or this node moved on.
    if (!this.running || state.epoch().epoch + 1 !== next || agreement.decided(next) !== undefined) return
    const proposal = cutValue(next, heads, this.nextAcceptors(acceptors))
    this.count.proposals++
    this.log.info({ epoch: next, heads: proposal.heads.length, changes: state.stats().changeCount, acceptors: proposal.acceptors }, 'proposing a new epoch')
    const chosen = await agreement.propose(proposal)
    if (chosen === undefined) this.log.warn({ epoch: next }, 'no quorum of acceptors answered the epoch proposal; the next check tries again')
  }

  /** Epoch 1 is due early once bootstrapNodes registered nodes are alive (see EpochKeeperConfig.bootstrapNodes). */
  private bootstrapDue(next: number): boolean {
    if (next !== 1 || this.config.bootstrapNodes <= 0) return false
    return this.liveRegistered().length >= this.config.bootstrapNodes
  }

  /** Registered, not draining, and seen alive (this node included). */
  private liveRegistered(): string[] {
    const { state } = this.components
    const alive = new Set(this.components.alive())
    alive.add(state.selfId)
    return state
      .nodes()
      .filter((node) => node.draining !== true && alive.has(node.peerId))
      .map((node) => node.peerId)
  }

  /** The next agreement's acceptors: those of this one still seen alive first, then other live registered nodes, by peerId. */
  private nextAcceptors(current: readonly string[]): string[] {
    const live = this.liveRegistered()
    const keep = current.filter((peerId) => live.includes(peerId))
    const more = live.filter((peerId) => !keep.includes(peerId)).sort()
    return [...keep, ...more].slice(0, this.config.acceptorsMax)
  }

  /** A decided cut: entered when it is the next epoch and this node holds it whole; one move at a time. */
  private decided(cut: CutValue): void {
    this.entering = this.entering.then(async () => {
      const { state } = this.components
      if (!this.running || cut.epoch !== state.epoch().epoch + 1) return
      if (!state.hasChanges(cut.heads)) {
        // A peer that holds it moves first; its sync replies then hand this node the epoch (anti-entropy.ts).
        this.count.decisionsWithoutCut++
        this.log.info({ epoch: cut.epoch }, 'decided cut not held whole here; waiting for a peer in the new epoch')
        return
      }
      try {
        const switched = await state.enterEpoch({ epoch: cut.epoch, heads: cut.heads, acceptors: cut.acceptors })
        this.count.epochsEntered++
        this.log.info({ epoch: cut.epoch, carried: switched.carried, changesBefore: switched.changesBefore, changesAfter: switched.changesAfter }, 'entered a new epoch')
      } catch (err) {
        // Another path (a peer's sync reply) may have moved us there meanwhile.
        if (state.epoch().epoch < cut.epoch) this.log.warn({ err, epoch: cut.epoch }, 'entering the decided epoch failed')
      }
    })
  }
}
