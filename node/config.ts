/**
 * The node's configuration: one zod-validated object, every field with its
 * default and the trade-off behind it (hashicorp/memberlist's config.go
 * habit). Presets: `default` (a real machine) and `test` (fast loops, loopback
 * only). A data dir may hold `config.json` with overrides; CLI flags win.
 */
import { z } from 'zod'

export const NodeConfigSchema = z.strictObject({
  /** Human name shown in `lattice nodes`; defaults to the host name. */
  name: z.string().min(1).max(63).optional(),
  /** API bind address. Loopback by default: the API holds the keys to the node. */
  apiHost: z.string().default('127.0.0.1'),
  /** API port (0 = any free port, for tests). 7070 is the documented default. */
  apiPort: z.number().int().min(0).max(65_535).default(7070),
  /** Largest request body accepted. 1 MiB fits any spec or compose file; larger is abuse. */
  apiBodyBytesMax: z.number().int().min(1024).max(64 * 1024 * 1024).default(1024 * 1024),
  /** SSE comment sent when a stream is idle, so proxies and clients keep it open. */
  sseKeepAliveMs: z.number().int().min(100).default(15_000),
  /** Reconciler period. Lower notices crashes sooner at the cost of more engine calls. */
  reconcileIntervalMs: z.number().int().min(10).default(1_000),
  /** First restart delay after a crash; doubles per consecutive crash. */
  restartBackoffMinMs: z.number().int().min(0).default(1_000),
  /** Ceiling of the restart delay, so a crash loop costs at most one start per this period. */
  restartBackoffMaxMs: z.number().int().min(0).default(60_000),
  /** A replica running this long without crashing gets its backoff reset. */
  restartBackoffResetMs: z.number().int().min(0).default(30_000),
  /** Grace period between SIGTERM and SIGKILL when stopping a container. */
  containerStopTimeoutMs: z.number().int().min(0).default(10_000),
  /** Default pids limit per container: stops fork bombs, roomy for real servers. */
  containerPidsMax: z.number().int().min(16).default(1_024),
  /** Container starts under way at once: a slow start (image unpacking, busy engine) must not hold back other replicas, yet dozens at once would swamp the engine. */
  containerStartsConcurrentMax: z.number().int().min(1).default(4),
  /** A container start that ends within this is reported once, as its outcome, without `starting` first: every node applies every status change, and most starts take well under a second; slower ones (image unpacking) still show `starting`. 0 reports every start. */
  startingReportDelayMs: z.number().int().min(0).default(1_000),
  /** Host address published ports bind to. 0.0.0.0 lets the team's LAN reach services. */
  publishHostIp: z.string().default('0.0.0.0'),
  /** Docker socket; empty means DOCKER_HOST or /var/run/docker.sock. */
  dockerSocketPath: z.string().optional(),
  /** Incremental document chunks kept before compacting into one snapshot (bounds load time). */
  docCompactAfterChunks: z.number().int().min(1).default(200),
  /** Changes in the current epoch's document past which a new epoch is proposed, dropping the history before it (crdt/epoch-keeper.ts): ~20 MB of history on a busy cluster. */
  epochChangesMin: z.number().int().min(1).default(50_000),
  /** How often an acceptor of the next epoch agreement checks the change count; a minute's lag is nothing against epochChangesMin. */
  epochCheckIntervalMs: z.number().int().min(100).default(60_000),
  /** The cut proposed is the heads this long before: gossip has taken them to nearly every node, which then builds the new epoch instead of downloading it. */
  epochCutSettleMs: z.number().int().min(0).default(10_000),
  /** Epoch 1 (the founder its one acceptor) is proposed once this many registered nodes are alive, handing the acceptor role to several nodes early; 0 waits for epochChangesMin. */
  epochBootstrapNodes: z.number().int().min(0).default(3),
  /** Default `tail` for log requests without one: enough context, bounded memory. */
  logTailDefault: z.number().int().min(0).default(200),
  /** Largest `tail` a log request may ask for. */
  logTailMax: z.number().int().min(1).default(10_000),
  /** Events kept in memory for `GET /v1/events` late joiners. */
  eventBufferMax: z.number().int().min(1).default(500),
  /** Log level for the node's structured logs. */
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  /** Capacity this machine contributes; omitted fields are measured. */
  capacity: z
    .strictObject({
      cpu: z.number().positive().optional(),
      memoryMB: z.number().int().positive().optional(),
      diskMB: z.number().int().positive().optional(),
      gpus: z.number().int().min(0).optional(),
    })
    .default({}),
  /** libp2p listen multiaddrs. Port 0 picks a free port: invites carry the actual addresses, and peers learn new ones from membership. */
  listen: z.array(z.string().min(1)).min(1).default(['/ip4/0.0.0.0/tcp/0']),
  /** A port-0 listen address asks again for the port it bound last time (D/listen.json), so peers' remembered addresses and invites survive a restart. */
  stickyListenPorts: z.boolean().default(true),
  /** libp2p transport preset: `lan` for machines on a network; `test` allows many nodes on loopback (no IP colocation penalty). */
  meshTransportPreset: z.enum(['lan', 'test']).default('lan'),
  /** Membership timings preset (mesh/membership-config.ts): `lan` suits real machines, `test` is ~5× faster for virtual-time tests only. */
  membershipPreset: z.enum(['lan', 'test', 'sim']).default('lan'),
  /** State-sync timings preset (crdt/sync-config.ts): `lan` anti-entropy every 5 s; `test` every 0.5 s. */
  stateSyncPreset: z.enum(['lan', 'test', 'sim']).default('lan'),
  /** How long `POST /v1/deployments?ack=1` waits for another peer to hold the deployment before answering 202. */
  ackTimeoutMs: z.number().int().min(0).default(5_000),
  /** How often alive members' addresses are saved to D/peers.json (also on membership changes and at stop), for restarts. */
  rememberPeersIntervalMs: z.number().int().min(100).default(30_000),
  /** Connections a node keeps at least: below it, it dials members it hears of (membership carries their addresses). */
  connectionsTarget: z.number().int().min(1).max(1_000).default(8),
  /** Labels this node offers to placement constraints (e.g. zone=home). */
  labels: z.record(z.string(), z.string()).default({}),
})

export type NodeConfig = z.output<typeof NodeConfigSchema>
export type NodeConfigInput = z.input<typeof NodeConfigSchema>

export const CONFIG_PRESETS = {
  default: {} satisfies NodeConfigInput,
  /** Fast loops and loopback-only ports so tests finish quickly and expose nothing. */
  test: {
    apiPort: 0,
    reconcileIntervalMs: 100,
    restartBackoffMinMs: 100,
    restartBackoffMaxMs: 1_000,
    restartBackoffResetMs: 2_000,
    containerStopTimeoutMs: 1_000,
    publishHostIp: '127.0.0.1',
    sseKeepAliveMs: 1_000,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    meshTransportPreset: 'test',
    stateSyncPreset: 'test',
    ackTimeoutMs: 3_000,
    rememberPeersIntervalMs: 2_000,
    logLevel: 'silent',
  } satisfies NodeConfigInput,
} as const

export type ConfigPreset = keyof typeof CONFIG_PRESETS

export function resolveConfig(preset: ConfigPreset, ...overrides: NodeConfigInput[]): NodeConfig {
  const merged: NodeConfigInput = Object.assign({}, CONFIG_PRESETS[preset], ...overrides)
  return NodeConfigSchema.parse(merged)
}
