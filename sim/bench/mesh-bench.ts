/**
 * `npm run bench -- mesh`: 100 real libp2p nodes (TCP, pnet, noise, yamux,
 * gossipsub, kad-dht) in one process on loopback, each running the real
 * membership code (`lan` timings): time to connect, time until every node sees
 * all alive, time for one gossip message to reach all, RSS per node,
 * membership traffic and connections per node. Prints figures; asserts
 * nothing. Everything shares one JavaScript thread (the machine's other cores
 * only help the GC and the kernel), so the times are those of a hundred nodes
 * on one core, not of a hundred machines.
 *
 * LATTICE_BENCH_MESH_NODES (100), LATTICE_BENCH_MESH_DHT=1 (with kad-dht,
 * as the product's transport default; off by default here because with it
 * 100 nodes in one process still do not converge — its self-queries connect
 * every node to its ~20 closest peers with 10 dials at once; see
 * docs/ARCHITECTURE.md, mesh), LATTICE_BENCH_MESH_TIMEOUT_MS (120000).
 */
import os from 'node:os'
import { createRng } from '../../core/index.ts'
import type { MembershipCounters } from '../../mesh/index.ts'
import { createSystemClock } from '../../node/index.ts'
import { allSeeAlive, startLibp2pCluster } from '../network-libp2p/cluster.ts'
import { percentile } from './stats.ts'

const NODES = Number(process.env.LATTICE_BENCH_MESH_NODES ?? 100)
const DHT = process.env.LATTICE_BENCH_MESH_DHT === '1'
const TOPIC = 'lattice/bench/1'
const CONVERGE_TIMEOUT_MS = Number(process.env.LATTICE_BENCH_MESH_TIMEOUT_MS ?? 120_000)
/** Steady-state window after convergence over which membership traffic is measured. */
const STEADY_MS = 20_000

export async function meshBench(): Promise<Record<string, unknown>> {
  const clock = createSystemClock()
  global.gc?.()
  const rssBefore = process.memoryUsage().rss
  const startedAt = performance.now()
  const cluster = await startLibp2pCluster({
    nodes: NODES,
    rng: createRng(1),
    clock,
    dht: DHT,
    topics: [TOPIC],
    meta: () => ({ capacity: { cpu: 2, memoryMB: 2048, diskMB: 0, gpus: 0 } }),
  })
  const { nodes } = cluster
  try {
    const ids = new Set(nodes.map((node) => node.peerId))
    const deadline = performance.now() + CONVERGE_TIMEOUT_MS
    while (!allSeeAlive(nodes, ids) && performance.now() < deadline) await clock.sleep(100)
    const convergeMs = allSeeAlive(nodes, ids) ? performance.now() - startedAt : Number.NaN

    // Membership traffic in a steady window (after the join's syncs).
    const sum = (pick: (c: MembershipCounters) => number): number => nodes.reduce((total, node) => total + pick(node.membership.counters()), 0)
    const bytesBefore = sum((c) => c.gossipBytesIn)
    const steadyFrom = performance.now()
    await clock.sleep(STEADY_MS)
    const steadyBytesPerNodePerSecond = (sum((c) => c.gossipBytesIn) - bytesBefore) / NODES / ((performance.now() - steadyFrom) / 1000)

    // One message from node 0: how long until every other node has it.
    const arrivals: number[] = []
    let sentAt = 0
    for (const node of nodes.slice(1)) node.transport.subscribe(TOPIC, () => arrivals.push(performance.now() - sentAt))
    await clock.sleep(3_000) // subscriptions propagate, meshes graft
    sentAt = performance.now()
    await nodes[0]!.transport.publish(TOPIC, new TextEncoder().encode('hello'))
    const gossipDeadline = performance.now() + 10_000
    while (arrivals.length < NODES - 1 && performance.now() < gossipDeadline) await clock.sleep(10)

    global.gc?.()
    const rssAfter = process.memoryUsage().rss
    const connections = nodes.map((node) => node.transport.connectedPeers().length).sort((a, b) => a - b)
    const health = nodes.map((node) => node.membership.health())
    return {
      nodes: NODES,
      dht: DHT,
      machine: `${os.cpus().length} cores; all nodes on one JavaScript thread`,
      startAllMs: Math.round(cluster.startAllMs),
      connectMs: Math.round(cluster.connectMs),
      allSeeAllAliveMs: Math.round(convergeMs),
      gossipReachedNodes: arrivals.length,
      gossipToAllMs: { p50: Math.round(percentile(arrivals, 0.5)), p99: Math.round(percentile(arrivals, 0.99)), max: Math.round(Math.max(0, ...arrivals)) },
      rssPerNodeMB: Math.round(((rssAfter - rssBefore) / NODES / (1024 * 1024)) * 100) / 100,
      processRssMB: Math.round(rssAfter / (1024 * 1024)),
      connectionsPerNode: { p50: percentile(connections, 0.5), max: Math.max(...connections) },
      membershipBytesInPerNodePerSecond: Math.round(steadyBytesPerNodePerSecond),
      suspicions: sum((c) => c.suspicionsStarted),
      falseDeathsDeclared: sum((c) => c.deathsDeclared),
      refutations: sum((c) => c.refutations),
      lagEvents: sum((c) => c.lagEvents),
      awarenessMax: Math.max(...health.map((h) => h.awareness)),
      lagMsMax: Math.round(Math.max(...health.map((h) => h.lagMsMax))),
    }
  } finally {
    await cluster.stop()
  }
}
