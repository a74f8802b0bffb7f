/**
 * `npm run bench -- membership`: the membership scenario at 1,000 nodes for
 * 10 virtual minutes at 10 % loss with jitter (1 % of the nodes crash along
 * the way). Targets: deathDetectionMs p50 ≤ 3,000 and p99 ≤ 5,000,
 * falsePositiveDeaths 0, gossipBytesPerNodePerSecond ≤ 4,096,
 * heapBytesPerNode ≤ 4 MB, wall time ≤ 10 minutes on 2 cores.
 * Prints figures; asserts nothing.
 */
import { runMembershipScenario } from '../scenarios/membership.ts'

export const MEMBERSHIP_BENCH_TARGETS = {
  deathDetectionMsP50: 3_000,
  deathDetectionMsP99: 5_000,
  falsePositiveDeaths: 0,
  gossipBytesPerNodePerSecond: 4_096,
  heapBytesPerNode: 4 * 1024 * 1024,
  wallSeconds: 600,
}

export async function membershipBench(): Promise<Record<string, unknown>> {
  const report = await runMembershipScenario({
    nodes: 1_000,
    seed: 1,
    durationS: 600,
    loss: 0.1,
    kill: 0.01,
    partition: false,
    log: (line) => process.stderr.write(`${line}\n`),
  })
  const { figures } = report
  const missed: string[] = []
  if (figures.deathDetectionMs.p50 > MEMBERSHIP_BENCH_TARGETS.deathDetectionMsP50) missed.push('deathDetectionMs.p50')
  if (figures.deathDetectionMs.p99 > MEMBERSHIP_BENCH_TARGETS.deathDetectionMsP99) missed.push('deathDetectionMs.p99')
  if (figures.falsePositiveDeaths > MEMBERSHIP_BENCH_TARGETS.falsePositiveDeaths) missed.push('falsePositiveDeaths')
  if (figures.gossipBytesPerNodePerSecond > MEMBERSHIP_BENCH_TARGETS.gossipBytesPerNodePerSecond) missed.push('gossipBytesPerNodePerSecond')
  if (figures.heapBytesPerNode > MEMBERSHIP_BENCH_TARGETS.heapBytesPerNode) missed.push('heapBytesPerNode')
  if (report.wallSeconds > MEMBERSHIP_BENCH_TARGETS.wallSeconds) missed.push('wallSeconds')
  return {
    nodes: report.nodes,
    seed: report.seed,
    virtualSeconds: report.virtualSeconds,
    wallSeconds: report.wallSeconds,
    invariants: report.invariants,
    traceHash: report.traceHash,
    figures: {
      joinConvergenceMs: figures.joinConvergenceMs,
      deathDetectionMs: figures.deathDetectionMs,
      falsePositiveDeaths: figures.falsePositiveDeaths,
      gossipBytesPerNodePerSecond: figures.gossipBytesPerNodePerSecond,
      heapBytesPerNode: figures.heapBytesPerNode,
    },
    details: report.details,
    targets: MEMBERSHIP_BENCH_TARGETS,
    targetsMissed: missed,
  }
}
