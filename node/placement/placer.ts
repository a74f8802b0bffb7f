/**
 * Placement by deterministic bidding (DESIGN.md §5). Every node runs this
 * over its own copy of the document and its own membership view:
 *
 * 1. A replica needs a round when it has no placement record, when its
 *    winner is dead, left or draining (failover: generation + 1), or when its
 *    last round found no fit and unschedulableRetryMs has passed.
 * 2. Shortlist: the top K alive peers by rendezvous hash of (deployment,
 *    replica, generation, peer). A shortlisted peer that fits (resources,
 *    label constraints, anti-affinity) sends a bid — a score that is a pure
 *    function of its published capacity and free figures — straight to the
 *    round's first closers, so a placement costs O(K) messages whatever the
 *    cluster size. No bid by the end of a wave widens the list by K (waves),
 *    and the last wave asks every alive peer.
 * 3. Closers, in order: the accepting node (owner) if alive, then the
 *    shortlist. Closer i closes after bidWindowMs + i·closeTimeoutMs unless a
 *    record of this generation exists by then, by writing ONE placement
 *    record: generation, the bids it saw, winners, closer, times. Concurrent
 *    closes of one round are concurrent writes of one document key: the CRDT
 *    keeps one record, and every node derives the same winners from it.
 * 4. No bid after the last wave: the record names no winner and says why;
 *    the round is retried after unschedulableRetryMs. Only the first
 *    bidRecipients closers (those bids go to) write such a record.
 */
import type { Clock, DeploymentSpec, Logger, Startable, TimerHandle, Transport } from '../../core/index.ts'
import { LatticeError } from '../../core/index.ts'
import type { ClusterState, DeploymentEntry, PlacementEntry, PlacementInput } from '../../crdt/index.ts'
import type { MemberView } from '../../mesh/index.ts'
import type { EventBus } from '../events.ts'
import { BID_BYTES_MAX, BID_PROTOCOL, decodeBid, encodeBid, type BidMessage } from './bid-wire.ts'
import { cappedRank, rankingView, rendezvousWeight, roundHash, topPeersOf, type RankingView, type RoundKey } from './rendezvous.ts'
import { bidScore, fits, type ResourceFigures } from './score.ts'

export interface PlacerInit {
  /** K: peers per shortlist wave. More means better fits, more messages per placement. */
  shortlistSize: number
  /** How long a closer collects bids before closing. Above a bid's one-way trip plus the time the deploy takes to reach the shortlist. */
  bidWindowMs: number
  /** Extra wait per closer rank, so the next closer steps in only when the one before it is gone. */
  closeTimeoutMs: number
  /** Waves of K before asking every alive peer. */
  wavesMax: number
  /** A node with no fit retries this often; capacity may have freed up. */
  unschedulableRetryMs: number
  /** Closers each bid is sent to: the first plus a spare in case it is gone. */
  bidRecipients: number
  /** Fastest re-evaluation after a change: every node re-checks the deployments the changes touched, so this bounds CPU during bursts; it adds at most this much placement latency. */
  evaluateIntervalMs: number
  /** A bid request that gets no answer by then is given up (the round has spares). */
  bidRequestTimeoutMs: number
  /** Resources promised in an open bid are released after this if the round never closes. */
  reservationTtlMs: number
  /** Bids kept for rounds this node has not seen yet (bounded memory). */
  pendingBidsMax: number
  /** Between document or membership events a node re-checks only the deployments they touched; this often it re-checks every deployment anyway, a safety net for conditions no event names (e.g. anti-affinity becoming possible as nodes join). Lower costs a scan of all deployments more often. */
  fullScanIntervalMs: number
}

export const PLACER_DEFAULTS: PlacerInit = {
  shortlistSize: 5,
  bidWindowMs: 300,
  closeTimeoutMs: 700,
  wavesMax: 3,
  unschedulableRetryMs: 10_000,
  bidRecipients: 2,
  evaluateIntervalMs: 250,
  bidRequestTimeoutMs: 2_000,
  reservationTtlMs: 10_000,
  pendingBidsMax: 10_000,
  fullScanIntervalMs: 30_000,
}

export interface PlacerComponents {
  state: ClusterState
  transport: Transport
  /** This node's membership view. */
  members: () => MemberView[]
  /** PeerIds alive in this view, self included, sorted (cached per change of the alive set). */
  alive: () => readonly string[]
  /** alive().length, without building the list. */
  aliveCount: () => number
  member: (peerId: string) => MemberView | undefined
  clock: Clock
  logger: Logger
  events: EventBus
  capacity: () => ResourceFigures
  labels: () => Record<string, string>
}

export type BidIgnoredReason = 'too_large' | 'malformed' | 'invalid' | 'spoofed' | 'not_shortlisted' | 'not_alive' | 'score_mismatch' | 'capacity_mismatch' | 'anti_affinity' | 'late'

export interface PlacerCounters {
  roundsOpened: number
  roundsClosed: number
  roundsUnschedulable: number
  /** Bids made (one per bidder per round). */
  bidsSent: number
  /** Bid messages sent (a bid goes to up to bidRecipients closers). */
  bidMessagesSent: number
  bidsReceived: number
  bidsIgnored: Record<BidIgnoredReason, number>
  closeConflicts: number
}

export interface Placer extends Startable {
  /** The document changed: look for replicas that need a round (among `deployments`; every one when omitted or 'all'). */
  markDirty(deployments?: ReadonlySet<string> | 'all'): void
  /** The node registry changed (who is draining is read again at the next evaluation, not at every one). */
  registryChanged(): void
  /** Membership changed (of `peerId`, when given: the replicas it won are re-checked; otherwise every deployment): shortlists and closers are recomputed. */
  membershipChanged(peerId?: string): void
  counters(): PlacerCounters
  /** Free resources for bidding: capacity minus replicas won and bids outstanding. */
  freeForBidding(): ResourceFigures
  /** Why a spec can never fit, judged against every alive node's capacity; undefined if some node could take it. */
  neverFits(spec: DeploymentSpec): string | undefined
}

interface Round {
  key: RoundKey
  keyText: string
  owner: string
  openedAtMs: number
  bids: Map<string, BidMessage>
  bidSent: boolean
  /** Cached per membership version: this node's rank (capped at wavesMax·K: beyond it only "not in a wave" matters) and, computed when needed, the shortlist and closers. */
  viewVersion: number
  myRank: number
  closersVersion: number
  shortlist: string[]
  closers: string[]
  reason: string
}

interface Reservation {
  cpu: number
  memoryMB: number
  expiresAtMs: number
}

const roundText = (key: RoundKey): string => `${key.deploymentId}/${key.replica}/${key.generation}`

/** Winners are a pure function of a round's bids: best score, ties by rendezvous weight. */
export function chooseWinners(round: RoundKey, bids: ReadonlyArray<{ peerId: string; score: number }>, count = 1): string[] {
  const base = roundHash(round)
  return [...bids]
    .sort((a, b) => b.score - a.score || rendezvousWeight(base, b.peerId) - rendezvousWeight(base, a.peerId) || (a.peerId < b.peerId ? -1 : 1))
    .slice(0, count)
    .map((bid) => bid.peerId)
}

export function createPlacer(init: Partial<PlacerInit> = {}): (components: PlacerComponents) => Placer {
  const config: PlacerInit = { ...PLACER_DEFAULTS, ...init }
  return (components) => {
    const { state, transport, clock, logger, events } = components
    const selfId = transport.selfId
    const rounds = new Map<string, Round>()
    const pendingBids = new Map<string, Map<string, BidMessage>>()
    const reservations = new Map<string, Reservation>()
    const lastSeenGeneration = new Map<string, number>()
    const counters: PlacerCounters = {
      roundsOpened: 0,
      roundsClosed: 0,
      roundsUnschedulable: 0,
      bidsSent: 0,
      bidMessagesSent: 0,
      bidsReceived: 0,
      bidsIgnored: { too_large: 0, malformed: 0, invalid: 0, spoofed: 0, not_shortlisted: 0, not_alive: 0, score_mismatch: 0, capacity_mismatch: 0, anti_affinity: 0, late: 0 },
      closeConflicts: 0,
    }
    let running = false
    let timer: TimerHandle | undefined
    let timerAtMs = Number.POSITIVE_INFINITY
    let evaluating = false
    let dirtyWhileEvaluating = false
    let viewVersion = 0
    let aliveCache: { version: number; ids: readonly string[]; set: Set<string>; view: RankingView } | undefined
    let lastEvaluationMs = Number.NEGATIVE_INFINITY
    /** Deployments to re-check at the next evaluation, or 'all'. */
    let dirty: Set<string> | 'all' = 'all'
    let lastFullScanMs = Number.NEGATIVE_INFINITY
    /** Unschedulable replicas' deployments, by when their retry is due. */
    const retries = new Map<string, number>()
    let firstScanDone = false
    let drainingSignature = ''
    /** The registry changed since drainingSignature was read (a scan of every node entry). */
    let registryDirty = true

    /** Alive, not draining: who may bid and close. */
    const eligible = (): { ids: readonly string[]; set: Set<string>; view: RankingView } => {
      if (aliveCache?.version === viewVersion) return aliveCache
      const alive = components.alive()
      const ids = drainingSignature === '' ? alive : alive.filter((peerId) => state.node(peerId)?.draining !== true)
      aliveCache = { version: viewVersion, ids, set: new Set(ids), view: rankingView(ids) }
      return aliveCache
    }
    const rankCap = (): number => config.wavesMax * config.shortlistSize

    const isGone = (peerId: string): boolean => {
      const member = components.member(peerId)
      return member !== undefined && (member.state === 'dead' || member.state === 'left')
    }

    const schedule = (atMs: number): void => {
      if (!running || atMs >= timerAtMs) return
      timer?.cancel()
      timerAtMs = atMs
      timer = clock.setTimer(Math.max(0, atMs - clock.nowMs()), () => {
        timerAtMs = Number.POSITIVE_INFINITY
        timer = undefined
        void evaluate()
      })
    }

    /** Replicas this node holds (won at their current generation) for live deployments. */
    const held = (): Array<{ deployment: DeploymentEntry; replica: number }> => {
      const result: Array<{ deployment: DeploymentEntry; replica: number }> = []
      for (const { deploymentId, replica } of state.placementsWonBy(selfId)) {
        const deployment = state.deployment(deploymentId)
        if (deployment === undefined || deployment.desired === 'deleted' || replica >= deployment.replicas) continue
        result.push({ deployment, replica })
      }
      return result
    }

    /** A reservation holds only while its round is open: the deployment lives and no record of that generation exists. */
    const roundStillOpen = (keyText: string): boolean => {
      const [deploymentId, replicaText, generationText] = keyText.split('/')
      const deployment = deploymentId === undefined ? undefined : state.deployment(deploymentId)
      if (deployment === undefined || deployment.desired === 'deleted') return false
      return (state.placement(deployment.id, Number(replicaText))?.generation ?? 0) < Number(generationText)
    }

    const freeForBidding = (): ResourceFigures => {
      const capacity = components.capacity()
      let cpu = capacity.cpu
      let memoryMB = capacity.memoryMB
      for (const { deployment } of held()) {
        if (deployment.desired !== 'running') continue
        cpu -= deployment.spec.resources.cpu
        memoryMB -= deployment.spec.resources.memoryMB
      }
      const nowMs = clock.nowMs()
      for (const [key, reservation] of reservations) {
        if (reservation.expiresAtMs <= nowMs || !roundStillOpen(key)) {
          reservations.delete(key)
          continue
        }
        cpu -= reservation.cpu
        memoryMB -= reservation.memoryMB
      }
      return { cpu: Math.max(0, Math.round(cpu * 1000) / 1000), memoryMB: Math.max(0, memoryMB), diskMB: capacity.diskMB, gpus: capacity.gpus }
    }

    /** Anti-affinity: a node holds one replica of a deployment while enough nodes exist. */
    const holdsAnotherReplica = (peerId: string, deployment: DeploymentEntry, replica: number): boolean => {
      for (const [other, record] of state.placements(deployment.id)) {
        if (other !== replica && other < deployment.replicas && record.winners.includes(peerId)) return true
      }
      return false
    }
    /**
     * Only the count matters here, and with nobody draining it is membership's
     * alive count: re-checking a deployment after a membership event then does
     * not rebuild the ranking view (O(alive) per event per node).
     */
    const eligibleCount = (): number => (drainingSignature === '' ? components.aliveCount() : eligible().ids.length)
    const antiAffinityApplies = (deployment: DeploymentEntry): boolean => eligibleCount() >= deployment.replicas
    /** An open bid of this node for another replica of the deployment (rounds of a scale-up run side by side). */
    const bidsForAnotherReplica = (deploymentId: string, replica: number): boolean => {
      const nowMs = clock.nowMs()
      for (const [key, reservation] of reservations) {
        if (reservation.expiresAtMs <= nowMs) continue
        const [id, other] = key.split('/')
        if (id === deploymentId && Number(other) !== replica) return true
      }
      return false
    }

    /** The round a replica needs now, or undefined. */
    const neededRound = (
      record: PlacementEntry | undefined,
      deployment?: DeploymentEntry,
      replica?: number,
      records?: ReadonlyMap<number, PlacementEntry>,
    ): { generation: number; reason: string } | undefined => {
      if (record === undefined) return { generation: 1, reason: 'initial' }
      if (record.winners.length === 0) {
        const retryAtMs = record.closedAtMs + config.unschedulableRetryMs
        if (clock.nowMs() >= retryAtMs) return { generation: record.generation + 1, reason: 'retry after unschedulable' }
        if (deployment !== undefined) retries.set(deployment.id, Math.min(retries.get(deployment.id) ?? Number.POSITIVE_INFINITY, retryAtMs))
        schedule(retryAtMs)
        return undefined
      }
      const gone = record.winners.find((winner) => isGone(winner))
      if (gone !== undefined) return { generation: record.generation + 1, reason: `failover: ${gone.slice(-8)} is ${components.member(gone)?.state ?? 'gone'}` }
      const draining = record.winners.find((winner) => state.node(winner)?.draining === true)
      if (draining !== undefined) return { generation: record.generation + 1, reason: `drain: ${draining.slice(-8)} is draining` }
      // Two replicas on one node (a scale-up revived an old record, or a healed partition): the higher index moves.
      if (deployment !== undefined && replica !== undefined && antiAffinityApplies(deployment)) {
        for (let lower = 0; lower < replica; lower++) {
          const shared = (records !== undefined ? records.get(lower) : state.placement(deployment.id, lower))?.winners.find((winner) => record.winners.includes(winner))
          if (shared !== undefined) return { generation: record.generation + 1, reason: `anti-affinity: shares ${shared.slice(-8)} with replica ${lower}` }
        }
      }
      return undefined
    }

    const refreshView = (round: Round): void => {
      if (round.viewVersion === viewVersion) return
      const { set, view } = eligible()
      round.myRank = set.has(selfId) ? cappedRank(round.key, view, selfId, rankCap()) : Number.POSITIVE_INFINITY
      round.viewVersion = viewVersion
    }

    /** The round's shortlist (top K) and closers (the owner if eligible, then the shortlist), for this view. */
    const closersOf = (round: Round): string[] => {
      if (round.closersVersion !== viewVersion) {
        const { set, view } = eligible()
        round.shortlist = topPeersOf(round.key, view, config.shortlistSize)
        round.closers = set.has(round.owner) ? [round.owner, ...round.shortlist.filter((p) => p !== round.owner)] : round.shortlist
        round.closersVersion = viewVersion
      }
      return round.closers
    }

    const waveOf = (round: Round): number => {
      const waveMs = config.bidWindowMs + config.closeTimeoutMs
      return Math.min(config.wavesMax, Math.floor((clock.nowMs() - round.openedAtMs) / waveMs))
    }
    const cutoffOf = (wave: number): number => (wave >= config.wavesMax ? Number.POSITIVE_INFINITY : (wave + 1) * config.shortlistSize)

    const sendBid = (round: Round, deployment: DeploymentEntry, wave: number): void => {
      const capacity = components.capacity()
      const free = freeForBidding()
      const spec = deployment.spec
      if (!fits(spec, free, components.labels()).fits) return
      if (antiAffinityApplies(deployment) && (holdsAnotherReplica(selfId, deployment, round.key.replica) || bidsForAnotherReplica(deployment.id, round.key.replica))) return
      const bid: BidMessage = {
        v: 1,
        ...round.key,
        wave,
        peerId: selfId,
        score: bidScore(spec.strategy, spec, capacity, free),
        capacity,
        free,
        atMs: clock.nowMs(),
      }
      round.bidSent = true
      reservations.set(round.keyText, { cpu: spec.resources.cpu, memoryMB: spec.resources.memoryMB, expiresAtMs: clock.nowMs() + config.reservationTtlMs })
      const recipients = closersOf(round).slice(0, config.bidRecipients)
      counters.bidsSent++
      for (const closer of recipients) {
        counters.bidMessagesSent++
        if (closer === selfId) {
          round.bids.set(selfId, bid)
          continue
        }
        transport
          .request(closer, BID_PROTOCOL, encodeBid(bid), { timeoutMs: config.bidRequestTimeoutMs, responseBytesMax: 64 })
          .catch((error: unknown) => logger.debug({ closer, round: round.keyText, err: error instanceof Error ? error.message : String(error) }, 'bid not delivered'))
      }
    }

    /** Bids a closer accepts: from eligible, shortlisted peers whose score matches their figures. */
    const validBids = (round: Round, deployment: DeploymentEntry, wave: number): BidMessage[] => {
      const { set, view } = eligible()
      const valid: BidMessage[] = []
      const cutoff = cutoffOf(wave)
      for (const bid of round.bids.values()) {
        let reason: BidIgnoredReason | undefined
        if (!set.has(bid.peerId)) reason = 'not_alive'
        else if (cutoff !== Number.POSITIVE_INFINITY && cappedRank(round.key, view, bid.peerId, cutoff + config.shortlistSize) >= cutoff + config.shortlistSize) reason = 'not_shortlisted'
        else if (bid.score !== bidScore(deployment.spec.strategy, deployment.spec, bid.capacity, bid.free) || !fits(deployment.spec, bid.free, {}).fits) reason = 'score_mismatch'
        else {
          const known = components.member(bid.peerId)
          if (known !== undefined && known.seq > 0 && (known.capacity.cpu !== bid.capacity.cpu || known.capacity.memoryMB !== bid.capacity.memoryMB)) reason = 'capacity_mismatch'
          else if (antiAffinityApplies(deployment) && holdsAnotherReplica(bid.peerId, deployment, round.key.replica)) reason = 'anti_affinity'
        }
        if (reason !== undefined) {
          counters.bidsIgnored[reason]++
          round.bids.delete(bid.peerId)
          continue
        }
        valid.push(bid)
      }
      return valid
    }

    const unschedulableReason = (spec: DeploymentSpec): string => {
      const alive = components.members().filter((m) => m.state === 'alive')
      const maxMemory = Math.max(0, ...alive.map((m) => (m.peerId === selfId ? freeForBidding().memoryMB : m.free.memoryMB)))
      const maxCpu = Math.max(0, ...alive.map((m) => (m.peerId === selfId ? freeForBidding().cpu : m.free.cpu)))
      const labels = Object.entries(spec.constraints.labels)
      const labelNote = labels.length > 0 ? `; labels ${labels.map(([k, v]) => `${k}=${v}`).join(',')} on ${alive.filter((m) => labels.every(([k, v]) => m.labels[k] === v)).length} of them` : ''
      return `needs ${spec.resources.memoryMB} MB and ${spec.resources.cpu} CPU, largest free ${maxMemory} MB and ${maxCpu} CPU on ${alive.length} alive nodes${labelNote}`
    }

    /** Rounds closed by the current evaluation, written together (closeRounds) as one change. */
    let closing: Array<{ round: Round; record: PlacementInput; unschedulable?: string }> = []

    const close = (round: Round, winners: string[], bids: BidMessage[], unschedulable?: string): void => {
      const previous = state.placement(round.key.deploymentId, round.key.replica)
      if (previous !== undefined && previous.generation >= round.key.generation) return
      const nowMs = clock.nowMs()
      const reason = unschedulable === undefined ? round.reason : `${round.reason}; unschedulable: ${unschedulable}`
      closing.push({
        round,
        ...(unschedulable !== undefined ? { unschedulable } : {}),
        record: {
          generation: round.key.generation,
          winners,
          bids: bids.map((bid) => ({ peerId: bid.peerId, score: bid.score, atMs: bid.atMs })),
          shortlist: closersOf(round).filter((p) => p !== round.owner || round.myRank < config.shortlistSize).slice(0, config.shortlistSize),
          closedBy: selfId,
          openedAtMs: round.openedAtMs,
          closedAtMs: nowMs,
          history: [...(previous?.history ?? []), { generation: round.key.generation, winners, closedBy: selfId, closedAtMs: nowMs, reason }],
          ...(unschedulable !== undefined ? { unschedulableReason: unschedulable } : {}),
        },
      })
    }

    /**
     * Writes the records of the rounds this evaluation closed as ONE change
     * (the replicas of a deployment usually close together, and every node
     * applies every change). A round a newer record or a delete overtook
     * meanwhile is skipped, not the whole batch.
     */
    const closeRounds = async (): Promise<void> => {
      if (closing.length === 0) return
      const batch = closing
      closing = []
      const written = await state.batch((tx) => {
        const done: typeof batch = []
        for (const item of batch) {
          try {
            tx.writePlacement(item.round.key.deploymentId, item.round.key.replica, item.record)
            done.push(item)
          } catch (error) {
            // Thrown before anything of this record is written, so the others still go.
            if (error instanceof LatticeError && (error.code === 'CONFLICT' || error.code === 'NOT_FOUND')) {
              counters.closeConflicts++
              continue
            }
            throw error
          }
        }
        return done
      }, `place ×${batch.length}`)
      for (const { round, record, unschedulable } of written) {
        counters.roundsClosed++
        if (unschedulable !== undefined) counters.roundsUnschedulable++
        logger.info({ round: round.keyText, winners: record.winners, bids: record.bids.length, unschedulable }, 'placement round closed')
        rounds.delete(round.keyText)
      }
    }

    const advanceRound = (round: Round, deployment: DeploymentEntry): void => {
      refreshView(round)
      const nowMs = clock.nowMs()
      const wave = waveOf(round)
      if (!round.bidSent && round.myRank < cutoffOf(wave)) sendBid(round, deployment, wave)
      const closerRank = round.owner === selfId || round.myRank < config.shortlistSize ? closersOf(round).indexOf(selfId) : -1
      const waveMs = config.bidWindowMs + config.closeTimeoutMs
      if (closerRank < 0) {
        // Not a closer: only a later wave may concern this node.
        if (!round.bidSent && wave < config.wavesMax) schedule(round.openedAtMs + (wave + 1) * waveMs)
        return
      }
      const closeAtMs = round.openedAtMs + config.bidWindowMs + closerRank * config.closeTimeoutMs
      // The first closer need not wait out the window once every shortlisted peer has bid.
      const everyoneBid = closerRank === 0 && wave === 0 && round.shortlist.every((peer) => round.bids.has(peer))
      if (nowMs < closeAtMs && !everyoneBid) {
        schedule(closeAtMs)
        return
      }
      const bids = validBids(round, deployment, wave)
      if (bids.length > 0) {
        close(round, chooseWinners(round.key, bids), bids)
        return
      }
      if (wave < config.wavesMax) {
        schedule(round.openedAtMs + (wave + 1) * waveMs + config.bidWindowMs)
        return
      }
      // Bids go to the first bidRecipients closers of the bidders' view: a closer past them with none has learnt
      // nothing, and closers before it alive in this view close the round. It would only be missing their record
      // (a lost change, held with everything after it until anti-entropy): writing "unschedulable" over it undid
      // placements under message loss (at 20 % loss, a quarter of the records a 200-node chaos run wrote). It waits
      // for their record, or for them to leave the view, which moves it up.
      if (closerRank >= config.bidRecipients) {
        schedule(nowMs + config.closeTimeoutMs)
        return
      }
      close(round, [], [], unschedulableReason(deployment.spec))
    }

    const observe = (deployment: DeploymentEntry, replica: number, record: PlacementEntry | undefined): void => {
      if (record === undefined) return
      const key = `${deployment.id}/${replica}`
      if ((lastSeenGeneration.get(key) ?? 0) >= record.generation) return
      lastSeenGeneration.set(key, record.generation)
      reservations.delete(roundText({ deploymentId: deployment.id, replica, generation: record.generation }))
      rounds.delete(roundText({ deploymentId: deployment.id, replica, generation: record.generation }))
      // Records loaded at start-up are history, not news.
      if (firstScanDone) events.emit({ type: 'placement.closed', deploymentId: deployment.id, replica, generation: record.generation, winners: record.winners })
    }

    /** Opens the rounds `deployment` needs now; returns their keys. */
    const scanDeployment = (deployment: DeploymentEntry, live: Set<string>): void => {
      if (deployment.desired === 'deleted') return
      const records = state.placements(deployment.id)
      for (let replica = 0; replica < deployment.replicas; replica++) {
        const record = records.get(replica)
        observe(deployment, replica, record)
        const need = neededRound(record, deployment, replica, records)
        if (need === undefined) continue
        const key: RoundKey = { deploymentId: deployment.id, replica, generation: need.generation }
        const keyText = roundText(key)
        live.add(keyText)
        if (rounds.has(keyText)) continue
        rounds.set(keyText, { key, keyText, owner: deployment.owner, openedAtMs: clock.nowMs(), bids: pendingBids.get(keyText) ?? new Map(), bidSent: false, viewVersion: -1, myRank: Number.POSITIVE_INFINITY, closersVersion: -1, shortlist: [], closers: [], reason: need.reason })
        pendingBids.delete(keyText)
        counters.roundsOpened++
      }
    }

    /**
     * Finds the replicas that need a round: of every deployment (at start,
     * after an unspecific change, every fullScanIntervalMs), else only of the
     * deployments changes named. Open rounds of re-checked deployments that
     * are no longer needed are dropped.
     */
    const scan = (): void => {
      const nowMs = clock.nowMs()
      let ids = dirty
      dirty = new Set()
      if (nowMs - lastFullScanMs >= config.fullScanIntervalMs) ids = 'all'
      for (const [id, atMs] of retries) {
        if (atMs > nowMs) continue
        retries.delete(id)
        if (ids !== 'all') ids.add(id)
      }
      const live = new Set<string>()
      if (ids === 'all') {
        lastFullScanMs = nowMs
        retries.clear()
        for (const deployment of state.deployments()) scanDeployment(deployment, live)
        for (const key of rounds.keys()) if (!live.has(key)) rounds.delete(key)
        return
      }
      for (const id of ids) {
        const deployment = state.deployment(id)
        if (deployment !== undefined) scanDeployment(deployment, live)
      }
      for (const [key, round] of rounds) if (ids.has(round.key.deploymentId) && !live.has(key)) rounds.delete(key)
    }

    async function evaluate(): Promise<void> {
      if (!running) return
      if (evaluating) {
        dirtyWhileEvaluating = true
        return
      }
      evaluating = true
      lastEvaluationMs = clock.nowMs()
      try {
        const drainingNow = registryDirty ? state.drainingNodes().join() : drainingSignature
        registryDirty = false
        if (drainingNow !== drainingSignature) {
          drainingSignature = drainingNow
          viewVersion++
          dirty = 'all'
        }
        scan()
        firstScanDone = true
        for (const round of [...rounds.values()]) {
          const deployment = state.deployment(round.key.deploymentId)
          if (deployment === undefined || deployment.desired === 'deleted') {
            rounds.delete(round.keyText)
            continue
          }
          advanceRound(round, deployment)
        }
        await closeRounds()
      } catch (error) {
        logger.error({ err: error instanceof Error ? error.message : String(error) }, 'placement evaluation failed')
      } finally {
        evaluating = false
      }
      if (dirtyWhileEvaluating) {
        dirtyWhileEvaluating = false
        schedule(Math.max(clock.nowMs(), lastEvaluationMs + config.evaluateIntervalMs))
      }
    }

    function markDirty(deployments: ReadonlySet<string> | 'all' = 'all'): void {
      if (!running) return
      if (deployments === 'all') dirty = 'all'
      else if (dirty !== 'all') for (const id of deployments) dirty.add(id)
      schedule(Math.max(clock.nowMs(), lastEvaluationMs + config.evaluateIntervalMs))
    }

    const onBid = async (request: { from: string; data: Uint8Array }): Promise<Uint8Array> => {
      const decoded = decodeBid(request.data)
      if (!decoded.ok) {
        counters.bidsIgnored[decoded.reason]++
        return new Uint8Array([0])
      }
      const bid = decoded.bid
      if (bid.peerId !== request.from) {
        counters.bidsIgnored.spoofed++
        return new Uint8Array([0])
      }
      counters.bidsReceived++
      const keyText = roundText(bid)
      const round = rounds.get(keyText)
      if (round !== undefined) {
        round.bids.set(bid.peerId, bid)
      } else {
        const record = state.placement(bid.deploymentId, bid.replica)
        if (record !== undefined && record.generation >= bid.generation) {
          counters.bidsIgnored.late++
          return new Uint8Array([0])
        }
        if (pendingBids.size >= config.pendingBidsMax) pendingBids.delete(pendingBids.keys().next().value as string)
        const bids = pendingBids.get(keyText) ?? new Map<string, BidMessage>()
        bids.set(bid.peerId, bid)
        pendingBids.set(keyText, bids)
      }
      markDirty(new Set([bid.deploymentId]))
      return new Uint8Array([1])
    }

    let handlerInstalled = false

    return {
      async start() {
        running = true
        if (!handlerInstalled) {
          transport.handle(BID_PROTOCOL, onBid, { requestBytesMax: BID_BYTES_MAX })
          handlerInstalled = true
        }
        markDirty()
      },
      async stop() {
        running = false
        timer?.cancel()
        timer = undefined
        timerAtMs = Number.POSITIVE_INFINITY
      },
      markDirty,
      registryChanged() {
        registryDirty = true
        markDirty(new Set())
      },
      membershipChanged(peerId) {
        viewVersion++
        markDirty(peerId === undefined ? 'all' : new Set(state.placementsWonBy(peerId).map((held) => held.deploymentId)))
      },
      counters: () => ({ ...counters, bidsIgnored: { ...counters.bidsIgnored } }),
      freeForBidding,
      neverFits(spec) {
        const alive = components.members().filter((m) => m.state === 'alive')
        const capacityOf = (m: MemberView): ResourceFigures => (m.peerId === selfId ? components.capacity() : m.capacity)
        const labelled = alive.filter((m) => Object.entries(spec.constraints.labels).every(([k, v]) => (m.peerId === selfId ? components.labels() : m.labels)[k] === v))
        if (labelled.length === 0) return `no alive node offers the labels ${JSON.stringify(spec.constraints.labels)} (${alive.length} alive nodes)`
        const largestMemory = Math.max(...labelled.map((m) => capacityOf(m).memoryMB))
        const largestCpu = Math.max(...labelled.map((m) => capacityOf(m).cpu))
        if (spec.resources.memoryMB > largestMemory) return `needs ${spec.resources.memoryMB} MB, the largest node has ${largestMemory} MB (${labelled.length} alive nodes)`
        if (spec.resources.cpu > largestCpu) return `needs ${spec.resources.cpu} CPU, the largest node has ${largestCpu} (${labelled.length} alive nodes)`
        return undefined
      },
    }
  }
}
