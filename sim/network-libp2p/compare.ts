/**
 * The membership scenario on both networks with the same nodes, seed,
 * duration, loss and kill fraction: the simulated network (virtual time,
 * sim/scenarios/membership.ts) first, then real libp2p on loopback (wall
 * time, ./membership.ts), one after the other so neither steals the other's
 * CPU. The CLI's `--network libp2p` prints the two reports side by side.
 */
import { runMembershipScenario, type MembershipScenarioOptions, type MembershipScenarioReport } from '../scenarios/membership.ts'
import { runMembershipScenarioLibp2p, type Libp2pMembershipScenarioOptions } from './membership.ts'

export interface MembershipComparisonRow {
  figure: string
  simulated: number
  libp2p: number
}

export interface MembershipComparison {
  simulated: MembershipScenarioReport
  libp2p: MembershipScenarioReport
  /** The headline figures, one row each (ms, counts, bytes). */
  rows: MembershipComparisonRow[]
}

export async function runMembershipComparison(options: Libp2pMembershipScenarioOptions): Promise<MembershipComparison> {
  const log = options.log ?? (() => {})
  const { dht: _dht, joinBudgetMs: _joinBudgetMs, ...simOptions } = options
  const simulated = await runMembershipScenario(simOptions satisfies MembershipScenarioOptions)
  log(`[membership n=${options.nodes} seed=${options.seed}] simulated run done; starting the libp2p run`)
  const libp2p = await runMembershipScenarioLibp2p(options)
  const pick = (report: MembershipScenarioReport): Record<string, number> => ({
    'joinConvergenceMs.p50': report.figures.joinConvergenceMs.p50,
    'joinConvergenceMs.p99': report.figures.joinConvergenceMs.p99,
    'deathDetectionMs.p50': report.figures.deathDetectionMs.p50,
    'deathDetectionMs.p99': report.figures.deathDetectionMs.p99,
    falsePositiveDeaths: report.figures.falsePositiveDeaths,
    gossipBytesPerNodePerSecond: report.figures.gossipBytesPerNodePerSecond,
    heapBytesPerNode: report.figures.heapBytesPerNode,
  })
  const a = pick(simulated)
  const b = pick(libp2p)
  return { simulated, libp2p, rows: Object.keys(a).map((figure) => ({ figure, simulated: a[figure] as number, libp2p: b[figure] as number })) }
}

/** The rows as a fixed-width table, for a terminal. */
export function formatMembershipComparison(comparison: MembershipComparison): string {
  const lines = [`${'figure'.padEnd(30)} ${'simulated'.padStart(12)} ${'libp2p'.padStart(12)}`]
  for (const row of comparison.rows) lines.push(`${row.figure.padEnd(30)} ${String(row.simulated).padStart(12)} ${String(row.libp2p).padStart(12)}`)
  const verdict = (report: MembershipScenarioReport): string => (report.invariants.ok ? 'ok' : `FAILED: ${report.invariants.violations.join('; ')}`)
  lines.push(`invariants: simulated ${verdict(comparison.simulated)}; libp2p ${verdict(comparison.libp2p)}`)
  return lines.join('\n')
}
