/**
 * `npm run bench -- NAME…`: benchmarks that print their figures as JSON.
 * They measure; tests check behaviour. With no name, lists the benchmarks.
 */
import '../../core/polyfills.ts'
import { clusterBench } from './cluster-bench.ts'
import { crdtBench } from './crdt-bench.ts'
import { failoverBench } from './failover-bench.ts'
import { membershipBench } from './membership-bench.ts'
import { meshBench } from './mesh-bench.ts'
import { runtimeBench } from './runtime-bench.ts'
import { simBench } from './sim-bench.ts'

const BENCHMARKS: Record<string, { what: string; run: () => Promise<Record<string, unknown>> }> = {
  runtime: { what: '20 deploys of the busybox httpd through the API on Docker: accept→running p50/p99, node RSS', run: runtimeBench },
  cluster: { what: 'the whole node core in the simulator: change propagation to all of 1,000 nodes and state-sync bytes; placement and failover figures (sizes from env)', run: clusterBench },
  crdt: { what: 'a document with 10,000 deployments, placements and statuses: save size, load time, apply time, fresh-node sync bytes', run: crdtBench },
  failover: { what: 'three node processes with Docker: SIGKILL the winner, time until a replacement runs (target ≤ 8 s)', run: failoverBench },
  membership: { what: 'the membership simulator at 1,000 nodes, 10 virtual minutes at 10 % loss: detection, false deaths, traffic, heap', run: membershipBench },
  mesh: { what: '100 real libp2p nodes in one process (kad-dht with LATTICE_BENCH_MESH_DHT=1): time to connect, until all see all alive, gossip to all, RSS per node', run: meshBench },
  sim: { what: 'chaos on the whole node core: 1,000 nodes × 10 virtual min (≤ 10 wall min, ≤ 4 MB heap/node) and a 100-seed campaign at 200 nodes (≤ 30 min); sizes from LATTICE_BENCH_SIM_* (sim/bench/sim-bench.ts)', run: simBench },
}

const names = process.argv.slice(2)
if (names.length === 0) {
  console.log('usage: npm run bench -- <name>…\n')
  for (const [name, { what }] of Object.entries(BENCHMARKS)) console.log(`  ${name.padEnd(10)} ${what}`)
  process.exit(0)
}
for (const name of names) {
  const bench = BENCHMARKS[name]
  if (bench === undefined) {
    console.error(`unknown benchmark "${name}"; known: ${Object.keys(BENCHMARKS).join(', ')}`)
    process.exit(2)
  }
  const figures = await bench.run()
  console.log(JSON.stringify({ benchmark: name, ...figures }, null, 2))
}
process.exit(0)
