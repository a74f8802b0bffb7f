/** Small statistics for benchmark and simulator figures. */

/** Nearest-rank percentile of `values` (q in [0, 1]); 0 for an empty list. */
export function percentile(values: readonly number[], q: number): number {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[rank] as number
}

/** The median and 99th percentile, rounded to whole units: how every figure reports a distribution. */
export function p50p99(values: readonly number[]): { p50: number; p99: number } {
  return { p50: Math.round(percentile(values, 0.5)), p99: Math.round(percentile(values, 0.99)) }
}
