/**
 * Membership configuration: every timing and bound, its default and why
 * (hashicorp/memberlist's config.go habit). Presets: `lan` (the defaults, a
 * real node), `test` (a handful of nodes in virtual time, everything ~5×
 * faster), `sim` (the simulator: the `lan` timings, so its figures describe
 * the product). Values that must grow with the cluster are formulas of n (the
 * number of members not dead or left, self included) below the presets.
 */

export interface MembershipConfig {
  /** One probe starts every interval. A crash is first probed after ~1 interval on average (min over n − 1 probers), p99 ≈ 4.6 intervals — the largest term of detection time; traffic per node is ~4 small messages per interval whatever n is. */
  probeIntervalMs: number
  /** Wait for a direct ack before asking helpers. Above the p99 round trip (stream open included); lower means more indirect probes under jitter. */
  probeTimeoutMs: number
  /** Ceiling of the probe timeout as it follows the measured round trip (srtt + 4 × rttvar, mesh/round-trip.ts; never below probeTimeoutMs). A slower answer counts as none; rounds stretch in proportion, so detection on a slow network stays within ~4 × this. */
  probeTimeoutMaxMs: number
  /** Budget of one probe round (direct, then indirect + a direct retry). A peer that answers nothing is suspected at most this long after its probe began. Must exceed 2 × probeTimeoutMs: the indirect path is two round trips. Rounds may overlap. */
  probeRoundMs: number
  /** Helpers asked to probe a peer that missed its direct ack (memberlist's default). Each one divides the false-suspicion rate under loss by ~4, for 4 small messages. */
  indirectChecks: number
  /** Suspicion timeout floor: a refutation (two one-way trips plus a retransmit) must fit with room to spare even in small clusters. */
  suspicionFloorMs: number
  /** Suspicion timeout, confirmed: max(floor, base × log10 n) — dissemination and refutation take O(log n) hops. */
  suspicionBaseMs: number
  /** An unconfirmed suspicion lasts this × the confirmed timeout (Lifeguard): a lone suspector may be the slow one, so the suspect gets longer to refute. */
  suspicionMaxMult: number
  /** Independent confirmations after which the timeout reaches its minimum; it shrinks with log(confirmations + 1) (Lifeguard). */
  suspicionConfirmationsExpected: number
  /** Expected receivers of a suspect broadcast that probe the suspect themselves (each with probability verifiers / (n − 1)): a dead peer collects its confirmations within one probe round (4 expected, so ≥ 3 with 76 % chance); a live one costs only these few probes. */
  suspicionVerifiers: number
  /** A node that only heard a suspicion (no failed probe of its own) waits the unconfirmed timeout plus this, then probes the suspect itself before calling it dead: a missed refutation never becomes a false death, a missed death notice costs only this delay. */
  suspicionObserverGraceMs: number
  /** Copies of a suspect broadcast. One: the originator also re-probes the suspect, and verifiers carry the news. */
  suspectBroadcastCopies: number
  /** Copies of an alive broadcast (refutation, join). Two: at 10 % loss one in a hundred nodes misses both; piggyback and probes cover those. */
  aliveBroadcastCopies: number
  /** Copies of a dead broadcast. Three: at 10 % loss one in a thousand misses all, so the p99 of detection is the first copy's. */
  deadBroadcastCopies: number
  /** Copies of a left broadcast (graceful leave), as for dead. */
  leftBroadcastCopies: number
  /** Spacing of broadcast copies: longer than a loss burst, short against the detection budget. */
  broadcastCopyIntervalMs: number
  /** Piggyback retransmits per update per node = mult × ceil(log10(n + 1)) (SWIM's λ·log n). One suffices: the broadcast is the primary path, piggyback the epidemic backstop. */
  retransmitMult: number
  /** Updates piggybacked on one ping or ack (~70 B each). */
  piggybackEntriesMax: number
  /** Pending piggyback updates kept; beyond it the most-retransmitted are dropped (counted). */
  piggybackQueueMax: number
  /** Updates batched in one broadcast message. */
  broadcastEntriesMax: number
  /** Fastest re-announcement of changed metadata (capacity, free, load, labels, addresses). */
  metaIntervalMinMs: number
  /** Bytes per second each node may spend receiving everyone's load updates: re-announce interval = max(min, n × deltaBytes / budget) — ~110 B deltas, about 2 minutes at 1,000 nodes. Placement bids carry fresh figures, so stale `free` costs little. */
  metaBudgetBytesPerSecond: number
  /** Metadata pulls (a peer's record fetched because its seq moved past ours) in flight at once. */
  metaPullsInFlightMax: number
  /** Do not pull one peer's record again sooner than this. */
  metaPullRetryMs: number
  /** Deaths within massDeathWindowMs, as a fraction of the live members, that mean a partition (not a crash): then one recovery sync (below) fetches the death notices this node missed in the storm. At 1,000 nodes a few observers otherwise held members of the other side alive for ~50 s: they lost the broadcasts, and their piggyback queue evicted the news. */
  massDeathFraction: number
  massDeathWindowMs: number
  /** Comebacks from dead within massComebackWindowMs, as a fraction of the live members, that mean a healed partition: then one recovery sync (below) repairs the deaths still held. A lone comeback (a restart, an ended pause) needs none, and one sync by every member cost n full syncs per comeback at 1,000 nodes. */
  massComebackFraction: number
  massComebackWindowMs: number
  /** Full-state anti-entropy with one random member, at least this often apart — the backstop behind broadcasts, piggyback and probes. */
  pushPullIntervalMs: number
  /** Bytes per second each node may spend on full-state syncs: interval = max(base, 2 × n × recordBytes / budget) — about 45 minutes at 1,000 nodes: a backstop, not a channel. */
  pushPullBudgetBytesPerSecond: number
  /** A member back from dead hints at more stale deaths here (a healed partition): one full sync, at most this often. */
  recoverySyncMinIntervalMs: number
  /** …that long (×1–2, jittered) after the first recovery: the refutations of a heal spread in a few seconds, the sync mops up the rest. */
  recoverySyncDelayMs: number
  /** One push-pull sync (request + response). */
  syncTimeoutMs: number
  /** Largest full-state message (~450 B per member: ~9,000 members). */
  syncBytesMax: number
  /** First retry of a failed join sync; doubles up to joinRetryMaxMs. */
  joinRetryMs: number
  joinRetryMaxMs: number
  /** Every interval each node pings one random dead member, so the two halves of a healed partition find each other. */
  deadProbeIntervalMs: number
  /** The dead-probe pace for deadProbeFastForMs after a dead member came back (a partition healing): each member the other side holds dead is pinged, learns it, and refutes, within a few seconds instead of ~6 × deadProbeIntervalMs (1,000 nodes healed halves: 104 → 50 virtual s to converge). */
  deadProbeFastIntervalMs: number
  /** How long the fast pace lasts after the latest comeback: a heal brings comebacks well within it; a lone restarted node costs this many seconds of faster pings to the dead. */
  deadProbeFastForMs: number
  /** Dead members are forgotten after this (bounded table); a returning node rejoins. */
  deadRetentionMs: number
  /** Left members are forgotten after this. */
  leftRetentionMs: number
  /** Most members kept; beyond it new peers are refused (counted). */
  membersMax: number
  /** Local health ceiling (Lifeguard): timeouts are scaled by (score + 1), score in [0, awarenessMax − 1]. */
  awarenessMax: number
  /** A timer firing later than this means this node's event loop lags: raise the local health score. */
  lagThresholdMs: number
  /** After a late timer, successful probes do not lower the score for this long: a loaded node stays cautious until the load has passed. */
  lagHoldMs: number
  /** Largest ping/ack/ping-req/notice message; piggyback is bounded well below. */
  probeBytesMax: number
  /** Largest broadcast on the membership topic. */
  broadcastBytesMax: number
  /** Largest metadata record (labels and addresses included). */
  metaBytesMax: number
  /** One direct notice (a refutation to the suspector, a confirmation to the suspectors): as long as a ping; retried once. */
  noticeTimeoutMs: number
  /**
   * 0: probe every member directly (classic SWIM; right for a transport where
   * reaching any peer costs nothing extra, such as the simulator's network or
   * memberlist's UDP). k > 0: keep connections to at least k live members,
   * probe only the members this node is connected to (plus any that just
   * disconnected, at once), and pick helpers and sync partners among them. On
   * libp2p every peer reached is a TCP + pnet + noise + yamux session with
   * identify and gossipsub on top, so probing everyone means n − 1 connections
   * per node; with k = 8 a node holds ~2k (its own dials plus those dialled
   * to it) and is still probed about once per interval (by ~2k neighbours
   * each cycling through ~2k).
   */
  neighbours: number
  /** neighbours > 0: after a failed dial of a would-be neighbour, no new neighbour is dialled for this long (a busy or unreachable host is not hammered every probe interval). */
  neighbourDialRetryMs: number
  /** neighbours > 0: with this many connections or more, only probes of a member that must be watched (it disconnected or refused, or we suspect it) open new ones (see membership.ts request()): 3 × neighbours leaves room for the neighbours others chose. */
  neighboursMax: number
  /**
   * This long after joining, announce our record again and sync once more
   * with another member: join news lost by a member (a loss burst, a short
   * partition), or a join answered by a member still joining itself, is
   * otherwise repaired only by probes, n intervals at worst. On gossipsub
   * (neighbours > 0), besides, news published in the first
   * moments after connecting is lost (subscriptions and mesh grafts take up
   * to a heartbeat or two to arrive), so nodes that joined together miss each
   * other's join, and members learn our addresses only from our record.
   */
  joinResyncDelayMs: number
}

export const MEMBERSHIP_TOPIC = 'lattice/membership/1'
export const PROBE_PROTOCOL = '/lattice/membership/probe/1.0.0'
export const SYNC_PROTOCOL = '/lattice/membership/sync/1.0.0'

const LAN: MembershipConfig = {
  probeIntervalMs: 400,
  probeTimeoutMs: 250,
  probeTimeoutMaxMs: 2_000,
  probeRoundMs: 1_000,
  indirectChecks: 3,
  suspicionFloorMs: 1_000,
  suspicionBaseMs: 400,
  suspicionMaxMult: 3,
  suspicionConfirmationsExpected: 3,
  suspicionVerifiers: 4,
  suspicionObserverGraceMs: 1_500,
  suspectBroadcastCopies: 1,
  aliveBroadcastCopies: 2,
  deadBroadcastCopies: 3,
  leftBroadcastCopies: 3,
  broadcastCopyIntervalMs: 200,
  retransmitMult: 1,
  piggybackEntriesMax: 6,
  piggybackQueueMax: 512,
  broadcastEntriesMax: 64,
  metaIntervalMinMs: 5_000,
  metaBudgetBytesPerSecond: 1_024,
  metaPullsInFlightMax: 4,
  metaPullRetryMs: 5_000,
  massDeathFraction: 0.05,
  massDeathWindowMs: 10_000,
  massComebackFraction: 0.05,
  massComebackWindowMs: 10_000,
  pushPullIntervalMs: 30_000,
  pushPullBudgetBytesPerSecond: 256,
  recoverySyncMinIntervalMs: 30_000,
  recoverySyncDelayMs: 5_000,
  syncTimeoutMs: 10_000,
  syncBytesMax: 4 * 1024 * 1024,
  joinRetryMs: 1_000,
  joinRetryMaxMs: 30_000,
  deadProbeIntervalMs: 5_000,
  deadProbeFastIntervalMs: 1_000,
  deadProbeFastForMs: 30_000,
  deadRetentionMs: 60 * 60_000,
  leftRetentionMs: 10 * 60_000,
  membersMax: 10_000,
  awarenessMax: 8,
  lagThresholdMs: 100,
  lagHoldMs: 5_000,
  probeBytesMax: 16 * 1024,
  broadcastBytesMax: 64 * 1024,
  metaBytesMax: 2 * 1024,
  noticeTimeoutMs: 250,
  neighbours: 8,
  neighbourDialRetryMs: 5_000,
  neighboursMax: 24,
  joinResyncDelayMs: 3_000,
}

export const MEMBERSHIP_PRESETS = {
  /** Machines on a LAN: the defaults. */
  lan: LAN,
  /** A handful of nodes on a fast simulated network in unit tests: ~5× faster loops, same ratios. */
  test: {
    ...LAN,
    probeIntervalMs: 80,
    probeTimeoutMs: 60,
    probeTimeoutMaxMs: 400,
    probeRoundMs: 200,
    suspicionFloorMs: 300,
    suspicionBaseMs: 150,
    suspicionObserverGraceMs: 300,
    broadcastCopyIntervalMs: 40,
    metaIntervalMinMs: 500,
    metaPullRetryMs: 500,
    pushPullIntervalMs: 5_000,
    recoverySyncMinIntervalMs: 5_000,
    recoverySyncDelayMs: 1_000,
    syncTimeoutMs: 2_000,
    joinRetryMs: 100,
    joinRetryMaxMs: 1_000,
    deadProbeIntervalMs: 1_000,
    deadProbeFastIntervalMs: 200,
    deadProbeFastForMs: 6_000,
    noticeTimeoutMs: 60,
    lagThresholdMs: 50,
    lagHoldMs: 1_000,
    // Unit tests run on the simulated network: classic all-member probing, as in `sim`.
    neighbours: 0,
  },
  /**
   * The simulator: the lan timings, so its figures are the product's, with
   * classic all-member probing (`neighbours: 0`): the simulated network makes
   * no connections to pay for (see docs/membership.md, "Neighbours").
   */
  sim: { ...LAN, neighbours: 0 },
} satisfies Record<string, MembershipConfig>

export type MembershipPreset = keyof typeof MEMBERSHIP_PRESETS

export function resolveMembershipConfig(preset: MembershipPreset = 'lan', overrides: Partial<MembershipConfig> = {}): MembershipConfig {
  const config: MembershipConfig = { ...MEMBERSHIP_PRESETS[preset] }
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined) (config as unknown as Record<string, number>)[key] = value as number
  }
  for (const [key, value] of Object.entries(config)) {
    if (!(typeof value === 'number' && Number.isFinite(value) && value >= 0)) throw new RangeError(`membership ${key} must be a finite number >= 0, got ${String(value)}`)
  }
  if (config.probeIntervalMs <= 0) throw new RangeError('probeIntervalMs must be > 0')
  if (config.probeTimeoutMaxMs < config.probeTimeoutMs) throw new RangeError('probeTimeoutMaxMs must be >= probeTimeoutMs')
  if (config.probeRoundMs <= 2 * config.probeTimeoutMs) throw new RangeError('probeRoundMs must exceed 2 × probeTimeoutMs (the indirect path is two round trips)')
  if (config.awarenessMax < 1) throw new RangeError('awarenessMax must be >= 1')
  if (config.piggybackEntriesMax < 1 || config.broadcastEntriesMax < 1) throw new RangeError('piggybackEntriesMax and broadcastEntriesMax must be >= 1')
  return config
}

// ---- formulas that scale with n (members not dead or left, self included) ----

const log10n = (n: number): number => Math.log10(Math.max(1, n))

/** Confirmed suspicion timeout: max(floor, base × log10 n). */
export function suspicionMinMs(config: MembershipConfig, n: number): number {
  return Math.max(config.suspicionFloorMs, config.suspicionBaseMs * log10n(n))
}

/** Unconfirmed suspicion timeout. */
export function suspicionMaxMs(config: MembershipConfig, n: number): number {
  return config.suspicionMaxMult * suspicionMinMs(config, n)
}

/**
 * Lifeguard's shrinking timeout: max − (max − min) × log(c + 1) / log(k + 1),
 * never below min, where c is the number of independent confirmations and k
 * the number expected.
 */
export function suspicionTimeoutMs(config: MembershipConfig, n: number, confirmations: number): number {
  const min = suspicionMinMs(config, n)
  const max = suspicionMaxMs(config, n)
  const k = config.suspicionConfirmationsExpected
  if (k < 1) return min
  const fraction = Math.log(confirmations + 1) / Math.log(k + 1)
  return Math.max(min, Math.floor(max - (max - min) * fraction))
}

/** Piggyback retransmits of one update by one node: λ · ceil(log10(n + 1)). */
export function retransmitLimit(config: MembershipConfig, n: number): number {
  return Math.max(1, config.retransmitMult * Math.ceil(Math.log10(n + 1)))
}

/** Probability that a receiver of a suspect broadcast verifies it by probing. */
export function verifierProbability(config: MembershipConfig, n: number): number {
  return n <= 2 ? 1 : Math.min(1, config.suspicionVerifiers / (n - 1))
}

/** Metadata (load delta) re-announcement interval: max(min, n × deltaBytes / budget). */
export function metaIntervalMs(config: MembershipConfig, n: number, recordBytes: number): number {
  if (config.metaBudgetBytesPerSecond <= 0) return config.metaIntervalMinMs
  return Math.max(config.metaIntervalMinMs, Math.ceil((n * recordBytes * 1000) / config.metaBudgetBytesPerSecond))
}

/** Push-pull interval: max(base, 2 × n × recordBytes / budget). */
export function pushPullIntervalMs(config: MembershipConfig, n: number, recordBytes: number): number {
  if (config.pushPullBudgetBytesPerSecond <= 0) return config.pushPullIntervalMs
  return Math.max(config.pushPullIntervalMs, Math.ceil((2 * n * recordBytes * 1000) / config.pushPullBudgetBytesPerSecond))
}
