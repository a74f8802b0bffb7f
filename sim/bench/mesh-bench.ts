/**
 * `npm run bench -- mesh`: 100 real libp2p nodes (TCP, pnet, noise, yamux,
 * gossipsub, kad-dht) in one process on loopback, each running the real
 * membership code: time until every node sees all alive, time for one gossip
 * message to reach all, RSS per node. Prints figures; asserts nothing.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createRng, silentLogger, type Transport } from '../../core/index.ts'
import { LIBP2P_TRANSPORT_PRESETS, MEMBERSHIP_TOPIC, createLibp2pTransport, createMembership, generateMeshKey, type Membership } from '../../mesh/index.ts'
import { createSystemClock } from '../../node/index.ts'
import { percentile } from './stats.ts'

const NODES = Number(process.env.LATTICE_BENCH_MESH_NODES ?? 100)
// LATTICE_BENCH_MESH_DHT=0 runs without kad-dht, to tell its cost from membership's.
/** Each node dials this many earlier nodes (STACK-NOTES: 3 keeps connect time low). */
const BOOTSTRAP_PEERS = 3
const TOPIC = 'lattice/bench/1'
const CONVERGE_TIMEOUT_MS = 120_000

export async function meshBench(): Promise<Record<string, unknown>> {
  const clock = createSystemClock()
  const rng = createRng(1)
  const meshKey = generateMeshKey()
  global.gc?.()
  const rssBefore = process.memoryUsage().rss
  const transports: Transport[] = []
  const memberships: Membership[] = []
  const startedAt = performance.now()
  for (let i = 0; i < NODES; i++) {
    const privateKey = await generateKeyPair('Ed25519')
    const bootstrap = i === 0 ? [] : Array.from({ length: Math.min(i, BOOTSTRAP_PEERS) }, () => transports[rng.int(i)]!.addresses()[0]!)
    const transport = createLibp2pTransport({ ...LIBP2P_TRANSPORT_PRESETS.test, meshKey, topics: [MEMBERSHIP_TOPIC, TOPIC], bootstrap: [...new Set(bootstrap)], dht: process.env.LATTICE_BENCH_MESH_DHT !== '0' })({ privateKey, logger: silentLogger, clock })
    await transport.start()
    transports.push(transport)
    const seeds = bootstrap.map((address) => address.split('/p2p/')[1]!).filter(Boolean)
    const membership = createMembership({ preset: 'lan', seeds, meta: { capacity: { cpu: 2, memoryMB: 2048, diskMB: 0, gpus: 0 } } })({ transport, clock, rng: rng.fork(`m${i}`), logger: silentLogger })
    await membership.start()
    memberships.push(membership)
  }
  const allStartedMs = performance.now() - startedAt

  const converged = async (): Promise<number> => {
    const deadline = performance.now() + CONVERGE_TIMEOUT_MS
    for (;;) {
      const fullyAware = memberships.filter((m) => m.members().filter((x) => x.state === 'alive').length === NODES).length
      if (fullyAware === NODES) return performance.now() - startedAt
      if (performance.now() > deadline) return Number.NaN
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  const convergeMs = await converged()

  // One message from node 0: how long until every other node has it.
  const arrivals: number[] = []
  let sentAt = 0
  for (const transport of transports.slice(1)) {
    transport.subscribe(TOPIC, () => arrivals.push(performance.now() - sentAt))
  }
  await new Promise((resolve) => setTimeout(resolve, 3_000)) // subscriptions propagate, meshes graft
  sentAt = performance.now()
  await transports[0]!.publish(TOPIC, new TextEncoder().encode('hello'))
  const deadline = performance.now() + 10_000
  while (arrivals.length < NODES - 1 && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))

  global.gc?.()
  const rssAfter = process.memoryUsage().rss
  const membershipBytes = memberships.reduce((sum, m) => sum + m.counters().gossipBytesIn, 0)
  const elapsedS = (performance.now() - startedAt) / 1000
  await Promise.all(memberships.map((m) => m.stop()))
  await Promise.all(transports.map((t) => t.stop()))
  return {
    nodes: NODES,
    startAllMs: Math.round(allStartedMs),
    allSeeAllAliveMs: Math.round(convergeMs),
    gossipReachedNodes: arrivals.length,
    gossipToAllMs: { p50: Math.round(percentile(arrivals, 0.5)), p99: Math.round(percentile(arrivals, 0.99)), max: Math.round(Math.max(0, ...arrivals)) },
    rssPerNodeMB: Math.round(((rssAfter - rssBefore) / NODES / (1024 * 1024)) * 100) / 100,
    processRssMB: Math.round(rssAfter / (1024 * 1024)),
    membershipBytesInPerNodePerSecond: Math.round(membershipBytes / NODES / elapsedS),
  }
}
