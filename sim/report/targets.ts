/**
 * The targets the project's plan sets for the simulator's figures (steps 2–5:
 * membership, placement and failover benchmarks). Each holds at the scale it
 * names; a smaller run is shown against it for orientation, and the report
 * says at which scale the target was set.
 */

export interface FigureTarget {
  /** Path of the number in report.json's `figures`, e.g. `deathDetectionMs.p99`. */
  path: string
  op: '<=' | '>=' | '=='
  value: number
  /** How it reads in the report, e.g. "≤ 5,000 ms". */
  text: string
  /** Where the target was set (scale and conditions). */
  at: string
}

/** Shortlist size K of the placement design (default 5); bidsPerPlacement ≤ 2K. */
export const PLACEMENT_SHORTLIST_K = 5

export const FIGURE_TARGETS: readonly FigureTarget[] = [
  { path: 'deathDetectionMs.p50', op: '<=', value: 3_000, text: '≤ 3,000 ms', at: 'membership, 1,000 nodes' },
  { path: 'deathDetectionMs.p99', op: '<=', value: 5_000, text: '≤ 5,000 ms', at: 'membership, 1,000 nodes' },
  { path: 'falsePositiveDeaths', op: '==', value: 0, text: '= 0', at: '10 % message loss' },
  { path: 'placeLatencyMs.p50', op: '<=', value: 1_000, text: '≤ 1,000 ms', at: '500 nodes' },
  { path: 'failoverMs.p50', op: '<=', value: 5_000, text: '≤ 5,000 ms', at: '1,000 nodes' },
  { path: 'placementsPerSecond', op: '>=', value: 500, text: '≥ 500 /s', at: '500 nodes' },
  { path: 'bidsPerPlacement', op: '<=', value: 2 * PLACEMENT_SHORTLIST_K, text: `≤ 2K = ${2 * PLACEMENT_SHORTLIST_K} (K = ${PLACEMENT_SHORTLIST_K})`, at: '500 nodes' },
  { path: 'gossipBytesPerNodePerSecond', op: '<=', value: 4_096, text: '≤ 4,096 B/s', at: 'membership, 1,000 nodes' },
  { path: 'heapBytesPerNode', op: '<=', value: 4 * 1024 * 1024, text: '≤ 4 MiB', at: '1,000 nodes' },
]

export function targetFor(path: string): FigureTarget | undefined {
  return FIGURE_TARGETS.find((target) => target.path === path)
}

/** Whether `value` meets `target`; undefined when there is nothing to judge. */
export function meets(target: FigureTarget | undefined, value: number | null): boolean | undefined {
  if (target === undefined || value === null) return undefined
  switch (target.op) {
    case '<=':
      return value <= target.value
    case '>=':
      return value >= target.value
    case '==':
      return value === target.value
  }
}
