/**
 * Many real libp2p nodes in one process on loopback, each running the real
 * membership code over its own libp2p transport (TCP, pnet, noise, yamux,
 * identify, ping, gossipsub, optionally kad-dht) on the system clock. Used by
 * the mesh benchmark and by the libp2p runner of the membership scenario.
 *
 * Nodes start in batches: each node dials `bootstrapPeers` random earlier
 * nodes, and the next batch starts once every node started so far sees all
 * of them alive (or `batchWaitMs` passed). One process runs every handshake on
 * one thread; starting a hundred nodes at once puts ~300 noise handshakes in
 * flight together, each then takes as long as all of them, and dial timeouts
 * throw the work away. Batches keep the join close to how real machines
 * join — each on its own CPU — while still finishing in seconds.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Clock, Logger, Rng, Transport } from '../../core/index.ts'
import { silentLogger } from '../../core/index.ts'
import {
  LIBP2P_TRANSPORT_PRESETS,
  MEMBERSHIP_TOPIC,
  createLibp2pTransport,
  createMembership,
  generateMeshKey,
  type Libp2pTransport,
  type MemberMeta,
  type Membership,
  type MembershipConfig,
  type MembershipPreset,
} from '../../mesh/index.ts'

export interface Libp2pClusterOptions {
  nodes: number
  rng: Rng
  clock: Clock
  /** Run kad-dht on every node (the product's default). */
  dht: boolean
  /** Earlier nodes each node dials at start (STACK-NOTES: 3 keeps the connect time low). */
  bootstrapPeers?: number
  /** Nodes started together before waiting for their connections. */
  batch?: number
  /** Longest wait for a batch to join before starting the next anyway. */
  batchWaitMs?: number
  membershipPreset?: MembershipPreset
  membershipConfig?: Partial<MembershipConfig>
  /** Extra topics the transports subscribe to (the membership topic is always there). */
  topics?: string[]
  meta?: (index: number) => Partial<MemberMeta>
  logger?: Logger
  /** Called with each node as soon as its membership exists (before start), to attach listeners. */
  onNode?: (node: Libp2pClusterNode) => void
  /** Wraps the transport membership runs on (e.g. FaultyTransport, to lose request legs). */
  wrapTransport?: (transport: Libp2pTransport, index: number) => Transport
}

export interface Libp2pClusterNode {
  index: number
  peerId: string
  transport: Libp2pTransport
  /** The transport membership runs on: `transport`, or its wrapper. */
  membershipTransport: Transport
  membership: Membership
  /** PeerIds of the nodes it dialled at start. */
  bootstrap: string[]
  /** Wall ms (cluster clock) when it started. */
  startedAtMs: number
}

export interface Libp2pCluster {
  nodes: Libp2pClusterNode[]
  /** Wall ms from the first start until every node had been started. */
  startAllMs: number
  /** Wall ms from the first start until every node was connected to all its bootstrap peers (NaN if some never were). */
  connectMs: number
  /** Stops every membership and transport (safe to call twice). */
  stop(): Promise<void>
}

export const LIBP2P_CLUSTER_DEFAULTS = { bootstrapPeers: 3, batch: 10, batchWaitMs: 20_000 }

export async function startLibp2pCluster(options: Libp2pClusterOptions): Promise<Libp2pCluster> {
  const { rng, clock } = options
  const bootstrapPeers = options.bootstrapPeers ?? LIBP2P_CLUSTER_DEFAULTS.bootstrapPeers
  const batch = Math.max(1, options.batch ?? LIBP2P_CLUSTER_DEFAULTS.batch)
  const batchWaitMs = options.batchWaitMs ?? LIBP2P_CLUSTER_DEFAULTS.batchWaitMs
  const logger = options.logger ?? silentLogger
  const meshKey = generateMeshKey()
  const nodes: Libp2pClusterNode[] = []
  const startedAt = clock.nowMs()
  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    await Promise.all(nodes.map((node) => node.membership.stop()))
    await Promise.all(nodes.map((node) => node.transport.stop()))
  }
  const bootstrapConnected = (node: Libp2pClusterNode): boolean => {
    const connected = new Set(node.transport.connectedPeers())
    return node.bootstrap.every((peerId) => connected.has(peerId))
  }
  let connectMs = Number.NaN
  try {
    for (let index = 0; index < options.nodes; index++) {
      const privateKey = await generateKeyPair('Ed25519')
      const dialled = index === 0 ? [] : [...new Set(Array.from({ length: Math.min(index, bootstrapPeers) }, () => rng.int(index)))]
      const addresses = dialled.map((i) => nodes[i]!.transport.addresses()[0]!)
      const transport = createLibp2pTransport({
        ...LIBP2P_TRANSPORT_PRESETS.test,
        meshKey: meshKey,
        topics: [MEMBERSHIP_TOPIC, ...(options.topics ?? [])],
        bootstrap: addresses,
        dht: options.dht,
      })({ privateKey, logger, clock })
      await transport.start()
      const bootstrap = dialled.map((i) => nodes[i]!.peerId)
      const membershipTransport = options.wrapTransport?.(transport, index) ?? transport
      const membership = createMembership({
        preset: options.membershipPreset ?? 'lan',
        ...(options.membershipConfig !== undefined ? { config: options.membershipConfig } : {}),
        seeds: bootstrap,
        // As the real node does (node/node-core.ts): the record carries our addresses, so members can dial us.
        meta: { ...options.meta?.(index), addresses: transport.addresses() },
      })({ transport: membershipTransport, clock, rng: rng.fork(`node${index}`), logger })
      const node: Libp2pClusterNode = { index, peerId: transport.selfId, transport, membershipTransport, membership, bootstrap, startedAtMs: clock.nowMs() }
      nodes.push(node)
      options.onNode?.(node)
      await membership.start()
      if ((index + 1) % batch === 0 || index === options.nodes - 1) {
        // The batch has joined when every node started so far sees every one of them alive.
        const started = new Set(nodes.map((n) => n.peerId))
        const deadline = clock.nowMs() + batchWaitMs
        while (clock.nowMs() < deadline && !allSeeAlive(nodes, started)) await clock.sleep(50)
      }
    }
    const startAllMs = clock.nowMs() - startedAt
    const deadline = clock.nowMs() + batchWaitMs
    while (clock.nowMs() < deadline && !nodes.every(bootstrapConnected)) await clock.sleep(20)
    if (nodes.every(bootstrapConnected)) connectMs = clock.nowMs() - startedAt
    return { nodes, startAllMs, connectMs, stop }
  } catch (err) {
    await stop()
    throw err
  }
}

/** Every running node sees every node of `expected` alive (and nothing else alive). */
export function allSeeAlive(nodes: readonly Libp2pClusterNode[], expected: ReadonlySet<string>): boolean {
  return nodes.every((node) => {
    let alive = 0
    for (const member of node.membership.members()) {
      if (member.state !== 'alive') continue
      if (!expected.has(member.peerId)) return false
      alive++
    }
    return alive === expected.size
  })
}
