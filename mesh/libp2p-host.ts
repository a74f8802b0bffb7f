/**
 * Composes the libp2p node Lattice runs: TCP, a pnet private network (the
 * mesh key), noise, yamux, identify, ping, gossipsub and (optionally) the
 * Kademlia DHT under a private protocol name. Every knob comes from
 * Libp2pHostConfig; the choices that are traps on libp2p v3 are explained
 * where they are made (see also shared STACK-NOTES, libp2p section).
 */
// Must precede @libp2p/pnet: see the file's header.
import './pnet-cipher.ts'
import { noise } from '@chainsafe/libp2p-noise'
import { gossipsub, StrictSign, type GossipSub } from '@libp2p/gossipsub'
import { createTopicScoreParams, type TopicScoreParams } from '@libp2p/gossipsub/score'
import { identify, type Identify } from '@libp2p/identify'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import { kadDHT, passthroughMapper, type KadDHT } from '@libp2p/kad-dht'
import { ping, type Ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'

export interface Libp2pHostConfig {
  listen: string[]
  meshKey: Uint8Array
  topics: string[]
  dialConcurrencyMax: number
  dialTimeoutMs: number
  connectionsMax: number
  allowLoopback: boolean
  ipColocationFactorWeight: number
  dht: boolean
  dhtProtocol: string
  rpcBytesMax: number
  connectionPingIntervalMs: number
  connectionPingTimeoutMs: number
  /** Gossipsub's application-specific score of a peer (<= 0: our penalties for bad input). */
  appSpecificScore: (peerId: string) => number
}

export interface LatticeServices extends Record<string, unknown> {
  identify: Identify
  ping: Ping
  pubsub: GossipSub
  dht?: KadDHT
}

export type Libp2pHost = Libp2p<LatticeServices>

/** Loopback in the connection manager's allow list (see allowLoopback). */
export const LOOPBACK_ALLOW = '/ip4/127.0.0.1/ipcidr/32'

/**
 * Scoring for Lattice's own topics. They carry low, bursty traffic
 * (heartbeats about once a second, CRDT changes when state changes), so the
 * mesh-delivery-rate penalties (P3, P3b), tuned for busy topics, are off:
 * with gossipsub's defaults a healthy but quiet mesh peer falls below the
 * graylist threshold and its messages are dropped. Time in mesh and first
 * deliveries reward good peers; invalid (bad-signature) messages cost dearly.
 */
export const LATTICE_TOPIC_SCORE: TopicScoreParams = createTopicScoreParams({
  topicWeight: 1,
  timeInMeshWeight: 0.01,
  timeInMeshQuantum: 1_000,
  timeInMeshCap: 3_600,
  firstMessageDeliveriesWeight: 1,
  firstMessageDeliveriesDecay: 0.5,
  firstMessageDeliveriesCap: 100,
  meshMessageDeliveriesWeight: 0,
  meshFailurePenaltyWeight: 0,
  invalidMessageDeliveriesWeight: -10,
  invalidMessageDeliveriesDecay: 0.5,
})

/** Creates (does not start) a libp2p node for the given identity and config. */
export async function createLibp2pHost(config: Libp2pHostConfig, privateKey: PrivateKey): Promise<Libp2pHost> {
  const services = {
    // gossipsub needs identify (protocol discovery); kad-dht needs identify and ping.
    identify: identify(),
    ping: ping(),
    pubsub: gossipsub({
      globalSignaturePolicy: StrictSign,
      emitSelf: false,
      floodPublish: true,
      // publish() must not throw before the first subscription arrives (~40 ms
      // after connecting); the transport counts zero-recipient publishes.
      allowPublishToZeroTopicPeers: true,
      // Without a fast id gossipsub verifies a message's signature before its seen-cache check, so
      // every duplicate copy (one from each mesh peer, plus flood-published ones) costs an Ed25519
      // verification: 21 % of all CPU with 100 nodes. The signature names signer and content; the
      // fast-id cache is filled only after validation, so a forged copy cannot shadow the real one.
      fastMsgIdFn: (message) => `${message.topic}/${Buffer.from(message.signature ?? message.data ?? new Uint8Array(0)).toString('base64')}`,
      maxInboundDataLength: config.rpcBytesMax,
      scoreParams: {
        IPColocationFactorWeight: config.ipColocationFactorWeight,
        // Peers that send input failing validation lose score (Transport.penalize).
        appSpecificScore: config.appSpecificScore,
        appSpecificWeight: 1,
        topics: Object.fromEntries(config.topics.map((topic) => [topic, LATTICE_TOPIC_SCORE])),
      },
    }),
    ...(config.dht
      ? {
          dht: kadDHT({
            protocol: config.dhtProtocol,
            // On a private network every node is a server; left on auto it stays a
            // client on loopback/LAN addresses and never fills its routing table.
            clientMode: false,
            // The default mapper drops private addresses, i.e. all of ours.
            peerInfoMapper: passthroughMapper,
          }),
        }
      : {}),
  }
  return createLibp2p<LatticeServices>({
    start: false,
    privateKey,
    addresses: { listen: config.listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionProtector: preSharedKey({ psk: config.meshKey }),
    // libp2p pings every connection and aborts it when a ping times out (5 s by default). An event
    // loop that stalls a few seconds (a busy host, 100 nodes in one process) then loses all its
    // connections at once; membership's probes already test liveness, this only has to find
    // TCP sessions that died silently.
    connectionMonitor: { pingInterval: config.connectionPingIntervalMs, pingTimeout: { minTimeout: config.connectionPingTimeoutMs } },
    connectionManager: {
      maxParallelDials: config.dialConcurrencyMax,
      dialTimeout: config.dialTimeoutMs,
      maxConnections: config.connectionsMax,
      // Without this, many nodes on one IP trip the ~5 inbound connections per
      // second per host limit and dials fail with ECONNRESET.
      allow: config.allowLoopback ? [LOOPBACK_ALLOW] : [],
    },
    services,
  })
}
