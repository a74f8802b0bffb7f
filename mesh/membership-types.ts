/** Public types of the membership service (mesh/membership.ts). */
import type { Clock, Logger, Rng, Startable, Transport } from '../core/index.ts'
import type { MembershipConfig, MembershipPreset } from './membership-config.ts'
import type { DropReason } from './membership-wire.ts'
import { DROP_REASONS } from './membership-wire.ts'

export type MemberState = 'alive' | 'suspect' | 'dead' | 'left'

export interface Resources {
  cpu: number
  memoryMB: number
  diskMB: number
  gpus: number
}

/** What a node says about itself; travels as its record, versioned by `seq`. */
export interface MemberMeta {
  capacity: Resources
  free: Resources
  /** 1-minute load average (or any comparable figure the node chooses). */
  load: number
  labels: Record<string, string>
  version: string
  /** Listen addresses (multiaddrs), so peers can dial beyond the bootstrap list. */
  addresses: string[]
}

export interface MemberView extends MemberMeta {
  peerId: string
  state: MemberState
  /** Raised only by the member itself, to refute a suspicion or rejoin. */
  incarnation: number
  /** Version of the metadata held here (0: not known yet). */
  seq: number
  /** Last direct word from the member (a message it sent us), or when we first heard of it. */
  lastSeenAtMs: number
}

/** `joined`: first heard of; `alive`: back from suspect/dead/left; the rest: entered that state. */
export type MembershipEventType = 'joined' | 'alive' | 'suspect' | 'dead' | 'left'

export interface MembershipEvent {
  type: MembershipEventType
  peerId: string
  incarnation: number
  atMs: number
  member: MemberView
}

export interface MembershipCounters {
  /** Direct probes ("heartbeats") sent and received, and their acks. */
  pingsOut: number
  pingsIn: number
  acksOut: number
  acksIn: number
  /** Direct probes that got no ack in time. */
  pingsFailed: number
  /** Acks that arrived after their ping's timeout: proof of life and a round-trip sample, too late for the probe. */
  acksLate: number
  /** Indirect probe requests sent (we asked a helper) and served (we helped), and nacks received. */
  pingReqsOut: number
  pingReqsIn: number
  nacksIn: number
  /** Probe rounds that ended with no ack by any path. */
  probeRoundsFailed: number
  /** Probe rounds started early because an alive member refused a request (connection refused). */
  refusalProbes: number
  broadcastsOut: number
  broadcastsIn: number
  noticesOut: number
  noticesIn: number
  /** Updates that changed this node's view. */
  updatesApplied: number
  /** Updates we already held (the same news by broadcast and by piggyback): normal, not a drop. */
  updatesDuplicate: number
  /** Pending piggyback updates evicted because the queue was full (piggybackQueueMax). */
  piggybackEvicted: number
  suspicionsStarted: number
  /** Suspicions of this node that it refuted by raising its incarnation. */
  refutations: number
  /** Deaths this node declared itself (others' declarations are applied, not counted here). */
  deathsDeclared: number
  metaAnnouncements: number
  metaPullsOut: number
  metaPullsIn: number
  syncsOut: number
  syncsIn: number
  syncsFailed: number
  /** Timer firings later than lagThresholdMs (event-loop lag). */
  lagEvents: number
  /** neighbours > 0: dials to a member's advertised address (keeping k neighbours, or to reach a member before a request). */
  dials: number
  dialsFailed: number
  /** neighbours > 0: requests not sent because the member is not connected and we hold no address of it, or may not open another connection (not counted as a refusal). */
  requestsUnaddressable: number
  /** neighbours > 0: probes started at once because a connected live member disconnected. */
  disconnectProbes: number
  /** Probe rounds that ended in silence while this node's own timers ran late: no suspicion (the delay may be ours). */
  probeRoundsInconclusive: number
  /** All membership bytes this node received / sent: topic messages, requests and responses. */
  gossipBytesIn: number
  gossipBytesOut: number
  dropped: Record<DropReason, number>
}

export type MembershipCounterName = Exclude<keyof MembershipCounters, 'dropped'> | `dropped.${DropReason}`

/** Optional sink for counter increments (the node pipes them into Prometheus). */
export interface MembershipMetrics {
  increment(counter: MembershipCounterName, delta: number): void
}

export interface MembershipHealth {
  /** Lifeguard local health score in [0, awarenessMax − 1]; timeouts are scaled by score + 1. */
  awareness: number
  /** Probe timeout and round budget now: adapted to the measured round trip (mesh/round-trip.ts), then scaled by awareness. */
  probeTimeoutMs: number
  probeRoundMs: number
  /** Smoothed round trip of direct pings (ms), or undefined before the first ack. */
  roundTripMs: number | undefined
  /** Confirmed suspicion timeout at the current cluster size and health. */
  suspicionMinMs: number
  /** Largest timer lag measured (ms). */
  lagMsMax: number
  /** Members not dead or left, self included (the n of the formulas). */
  liveMembers: number
}

export interface MembershipInit {
  preset?: MembershipPreset
  config?: Partial<MembershipConfig>
  /** PeerIds to push-pull sync with when starting (bootstrap peers); connected peers are tried too. */
  seeds?: string[]
  /** This node's initial metadata; omitted fields are zero/empty. */
  meta?: Partial<MemberMeta>
}

export interface MembershipComponents {
  transport: Transport
  clock: Clock
  rng: Rng
  logger: Logger
  metrics?: MembershipMetrics
}

export interface Membership extends Startable {
  readonly selfId: string
  readonly config: Readonly<MembershipConfig>
  /** Every known member, this node included, sorted by peerId. */
  /** Every member, self included, sorted by peerId. Views share the members' metadata, which is frozen. */
  members(): MemberView[]
  /** PeerIds of the members alive in this view, self included (unless leaving), sorted; cached until the alive set changes. */
  aliveMembers(): readonly string[]
  /** aliveMembers().length, in O(1). */
  aliveCount(): number
  member(peerId: string): MemberView | undefined
  onEvent(listener: (event: MembershipEvent) => void): () => void
  /** Updates this node's metadata; changes are announced at the rate-limited interval. */
  setLocalMeta(meta: Partial<MemberMeta>): void
  /** Graceful: announce `left`, let the copies go out, then stop. */
  leave(): Promise<void>
  counters(): MembershipCounters
  health(): MembershipHealth
}

export function zeroMembershipCounters(): MembershipCounters {
  const dropped = {} as Record<DropReason, number>
  for (const reason of DROP_REASONS) dropped[reason] = 0
  return {
    pingsOut: 0,
    pingsIn: 0,
    acksOut: 0,
    acksIn: 0,
    pingsFailed: 0,
    acksLate: 0,
    pingReqsOut: 0,
    pingReqsIn: 0,
    nacksIn: 0,
    probeRoundsFailed: 0,
    refusalProbes: 0,
    broadcastsOut: 0,
    broadcastsIn: 0,
    noticesOut: 0,
    noticesIn: 0,
    updatesApplied: 0,
    updatesDuplicate: 0,
    piggybackEvicted: 0,
    suspicionsStarted: 0,
    refutations: 0,
    deathsDeclared: 0,
    metaAnnouncements: 0,
    metaPullsOut: 0,
    metaPullsIn: 0,
    syncsOut: 0,
    syncsIn: 0,
    syncsFailed: 0,
    lagEvents: 0,
    dials: 0,
    dialsFailed: 0,
    requestsUnaddressable: 0,
    disconnectProbes: 0,
    probeRoundsInconclusive: 0,
    gossipBytesIn: 0,
    gossipBytesOut: 0,
    dropped,
  }
}
