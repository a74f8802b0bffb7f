/**
 * State-sync configuration: every timing and bound of dissemination and
 * anti-entropy, its default and why (hashicorp/memberlist's config.go habit).
 * Presets: `lan` (the defaults, a real node), `test` (a handful of nodes in
 * virtual time, loops ~10× faster), `sim` (the simulator: the `lan` values,
 * so its figures describe the product).
 */

export interface StateSyncConfig {
  /** Each node starts one anti-entropy session with one random alive peer this often. A change gossip lost is repaired within about one interval (a node both pulls and is pulled ~once per interval); an in-sync session is 1–2 round trips of heads plus a Bloom filter of the changes since the last sync (a few hundred bytes), so lower costs little traffic but more sessions. */
  antiEntropyIntervalMs: number
  /** Random extra delay (uniform in [0, this)) before each session, so nodes started together do not sync in lockstep. */
  antiEntropyJitterMs: number
  /** A gossiped change held this long for a missing dependency (a lost message, not reordering: gossip latency is well below it) brings the next anti-entropy session forward, so a gap is filled in about this time rather than up to an interval. */
  gapSyncDelayMs: number
  /** Brought forward, sessions still start at most this often: under sustained loss, a node syncs a few times an interval, not on every gap. */
  gapSyncIntervalMinMs: number
  /** Largest change published on the state topic. One API write is one change, a few KB at most for any realistic spec; a larger one is not gossiped and reaches peers by anti-entropy within an interval. Well below the transports' 1 MiB gossip bound. */
  changeBytesMax: number
  /** Gossiped changes held until their dependencies arrive. A gap is usually one lost message, filled by the next anti-entropy session; past the bound the oldest are dropped (counted) and anti-entropy brings them instead. */
  pendingChangesMax: number
  /** Bytes of held changes, the same trade-off as pendingChangesMax for large changes. */
  pendingBytesMax: number
  /** Most gossiped changes applied (and persisted as one chunk) per call: keeps one apply short while a burst still costs few store writes. */
  applyBatchChangesMax: number
  /** Gossiped changes wait up to this long to be applied together: one apply, one store write, one index update and one round of change listeners (placement, reconciler) for everything that arrived meanwhile, instead of one per change — every node applies every change, so this is the cost that grows with the cluster. Applies fall on multiples of this on the node's clock, so nodes that received the same changes apply the same batch (the simulator's replicas then share one result: a fifth less wall time at 200 nodes, with the genesis saves shared). Adds at most this much to the time a change takes to reach a node, half on average; 0 applies as soon as the current task ends. */
  applyDelayMs: number
  /** One sync round trip, the peer's persist included. Must carry a whole-document message on a slow link (32 MiB at 100 Mbit/s ≈ 3 s); stays under libp2p's handlerTimeoutMs (30 s). Lower detects a stuck peer sooner but fails big first syncs. */
  syncRequestTimeoutMs: number
  /** Round trips per session. Automerge converges in 2–4, plus one per Bloom-filter false positive (~1 % each); more means a misbehaving or very busy peer. */
  syncRoundsMax: number
  /** Largest sync message sent or accepted (request or response). A whole-document message for the design target (10,000 deployments, ≈ 5 MB saved) fits 6×; one message per session is held in memory. */
  syncMessageBytesMax: number
  /** Document size (bytes in the store) past which a joining node may no longer receive it whole within syncMessageBytesMax: crossing it is logged and counted (`documentOversized`). Must not exceed syncMessageBytesMax. */
  documentBytesMax: number
  /** Peers whose sync state is kept (LRU). A forgotten state costs one session with a Bloom filter of the whole history (~1 byte per change) instead of the changes since the last sync. */
  syncStatesMax: number
  /** Sync requests served at once; beyond it a peer is told `busy` and tries another peer next interval. Bounds the work a healed partition (everyone syncing) puts on one node. */
  syncInboundMax: number
  /** How long a joining or restarted node tries to sync fully before it starts placement anyway (then anti-entropy catches it up). A whole document takes ~3 s on a LAN; the rest is for membership to find a peer. */
  initialSyncTimeoutMs: number
  /** Wait between initial-sync attempts when no peer is known yet or one failed. */
  initialSyncRetryMs: number
  /** Wait between sync attempts while `waitForPeerAck` has no peer that holds the heads yet. */
  ackRetryMs: number
  /** Peers whose misbehaviour counts are kept (LRU). */
  misbehavingPeersMax: number
}

export const STATE_TOPIC = 'lattice/state/1'
export const STATE_SYNC_PROTOCOL = '/lattice/state-sync/1'

const KIB = 1024
const MIB = 1024 * KIB

const LAN: StateSyncConfig = {
  antiEntropyIntervalMs: 5_000,
  antiEntropyJitterMs: 1_000,
  gapSyncDelayMs: 500,
  gapSyncIntervalMinMs: 1_000,
  changeBytesMax: 64 * KIB,
  pendingChangesMax: 1_024,
  pendingBytesMax: 8 * MIB,
  applyBatchChangesMax: 512,
  applyDelayMs: 50,
  syncRequestTimeoutMs: 15_000,
  syncRoundsMax: 16,
  syncMessageBytesMax: 32 * MIB,
  documentBytesMax: 30 * MIB,
  syncStatesMax: 256,
  syncInboundMax: 8,
  initialSyncTimeoutMs: 30_000,
  initialSyncRetryMs: 1_000,
  ackRetryMs: 250,
  misbehavingPeersMax: 1_024,
}

export const STATE_SYNC_PRESETS = {
  /** Machines on a LAN: the defaults. */
  lan: LAN,
  /** A handful of nodes on a fast simulated network in unit tests: ~10× faster loops, same bounds. */
  test: {
    ...LAN,
    antiEntropyIntervalMs: 500,
    antiEntropyJitterMs: 100,
    syncRequestTimeoutMs: 2_000,
    initialSyncTimeoutMs: 5_000,
    initialSyncRetryMs: 100,
    ackRetryMs: 50,
    applyDelayMs: 0, // unit tests drive delivery by hand on a clock they may never advance
  },
  /** The simulator: the lan values, so its figures are the product's. */
  sim: LAN,
} satisfies Record<string, StateSyncConfig>

export type StateSyncPreset = keyof typeof STATE_SYNC_PRESETS

export function resolveStateSyncConfig(preset: StateSyncPreset = 'lan', overrides: Partial<StateSyncConfig> = {}): StateSyncConfig {
  const config: StateSyncConfig = { ...STATE_SYNC_PRESETS[preset] }
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined) (config as unknown as Record<string, number>)[key] = value as number
  }
  for (const [key, value] of Object.entries(config)) {
    if (!(typeof value === 'number' && Number.isFinite(value) && value >= 0)) throw new RangeError(`state sync ${key} must be a finite number >= 0, got ${String(value)}`)
  }
  for (const key of ['antiEntropyIntervalMs', 'syncRequestTimeoutMs', 'syncRoundsMax', 'syncMessageBytesMax', 'changeBytesMax', 'pendingChangesMax', 'applyBatchChangesMax', 'syncStatesMax', 'syncInboundMax', 'misbehavingPeersMax', 'initialSyncRetryMs', 'ackRetryMs'] as const) {
    if (!(config[key] > 0)) throw new RangeError(`state sync ${key} must be > 0`)
  }
  if (config.documentBytesMax > config.syncMessageBytesMax) throw new RangeError('documentBytesMax must not exceed syncMessageBytesMax: a joining node receives the document whole in one message')
  if (config.changeBytesMax > config.pendingBytesMax) throw new RangeError('pendingBytesMax must hold at least one change of changeBytesMax')
  return config
}
