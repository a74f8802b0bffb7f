/**
 * `npm run bench -- sim`: the simulator as a product, at the plan's sizes.
 *
 * 1. `run`: one chaos run of the whole node core — 1,000 nodes, 10 virtual
 *    minutes of faults (targets: ≤ 600 wall s on 2 cores, heap ≤ 4 MB per
 *    simulated node).
 * 2. `campaign`: a 100-seed chaos campaign at 200 nodes, both cores
 *    (target: ≤ 1,800 wall s).
 *
 * Each run is a child process (`node --max-old-space-size=… sim/main.ts`),
 * so the heap limit fits the size. Sizes come from the environment, so the
 * bench runs on a laptop long before the node core is fast enough for the
 * full sizes:
 *
 *   LATTICE_BENCH_SIM_PARTS            run,campaign (default both)
 *   LATTICE_BENCH_SIM_NODES            1000   nodes of the single run
 *   LATTICE_BENCH_SIM_DURATION_S       600    virtual seconds of faults of the single run
 *   LATTICE_BENCH_SIM_SEED             1
 *   LATTICE_BENCH_SIM_CAMPAIGN_SEEDS   100
 *   LATTICE_BENCH_SIM_CAMPAIGN_NODES   200
 *   LATTICE_BENCH_SIM_CAMPAIGN_DURATION_S  (the library chaos: 120)
 *   LATTICE_BENCH_SIM_HEAP_MB          16384  --max-old-space-size of each run (as npm run sim: 1,000 nodes hold ~5 GB of heap)
 *   LATTICE_BENCH_SIM_WARM             0      1: runs start with a warm registry (--warm-registry)
 *   LATTICE_BENCH_SIM_TIMEOUT_S        7200   a run over this is killed and counted failed
 *
 * Prints figures and which targets were missed; asserts nothing.
 */
import { fileURLToPath } from 'node:url'
import { z } from 'zod'
import { runCampaign, SIM_PROCESS_FLAGS, simProcessArgs, type CampaignResult } from '../campaign.ts'

export const SIM_BENCH_TARGETS = {
  runWallSeconds: 600,
  heapBytesPerNode: 4 * 1024 * 1024,
  campaignWallSeconds: 1_800,
}

const EnvSchema = z.object({
  LATTICE_BENCH_SIM_PARTS: z.string().default('run,campaign').transform((s) => s.split(',').map((p) => p.trim())).pipe(z.array(z.enum(['run', 'campaign'])).min(1)),
  LATTICE_BENCH_SIM_NODES: z.coerce.number().int().min(3).max(5_000).default(1_000),
  LATTICE_BENCH_SIM_DURATION_S: z.coerce.number().min(0).max(24 * 3600).default(600),
  LATTICE_BENCH_SIM_SEED: z.coerce.number().int().min(0).default(1),
  LATTICE_BENCH_SIM_CAMPAIGN_SEEDS: z.coerce.number().int().min(1).max(10_000).default(100),
  LATTICE_BENCH_SIM_CAMPAIGN_NODES: z.coerce.number().int().min(3).max(5_000).default(200),
  LATTICE_BENCH_SIM_CAMPAIGN_DURATION_S: z.coerce.number().min(0).max(24 * 3600).optional(),
  LATTICE_BENCH_SIM_HEAP_MB: z.coerce.number().int().min(256).max(65_536).default(16_384),
  LATTICE_BENCH_SIM_TIMEOUT_S: z.coerce.number().positive().default(7_200),
  LATTICE_BENCH_SIM_WARM: z.enum(['0', '1']).default('0').transform((v) => v === '1'),
})

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

export async function simBench(): Promise<Record<string, unknown>> {
  const parsed = EnvSchema.safeParse(process.env)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new Error(`${String(issue?.path[0])}: ${issue?.message}`)
  }
  const env = parsed.data
  const command = (simArgv: readonly string[]): { file: string; args: string[]; cwd: string } => ({
    file: process.execPath,
    args: simProcessArgs(simArgv, [`--max-old-space-size=${env.LATTICE_BENCH_SIM_HEAP_MB}`, ...SIM_PROCESS_FLAGS]),
    cwd: ROOT,
  })
  const progress = (label: string) => (p: { row: { seed: number; ok: boolean; processWallSeconds: number }; done: number; total: number }) =>
    process.stderr.write(`[sim bench ${label}] seed ${p.row.seed}: ${p.row.ok ? 'pass' : 'FAIL'} in ${p.row.processWallSeconds.toFixed(1)} s (${p.done}/${p.total})\n`)
  const out: Record<string, unknown> = { targets: SIM_BENCH_TARGETS, env: { ...env, LATTICE_BENCH_SIM_PARTS: env.LATTICE_BENCH_SIM_PARTS.join(',') } }
  const missed: string[] = []

  if (env.LATTICE_BENCH_SIM_PARTS.includes('run')) {
    process.stderr.write(`[sim bench run] chaos, ${env.LATTICE_BENCH_SIM_NODES} nodes, ${env.LATTICE_BENCH_SIM_DURATION_S} virtual s, seed ${env.LATTICE_BENCH_SIM_SEED}\n`)
    const result = await runCampaign({
      scenario: 'chaos',
      seeds: [env.LATTICE_BENCH_SIM_SEED],
      nodes: env.LATTICE_BENCH_SIM_NODES,
      durationS: env.LATTICE_BENCH_SIM_DURATION_S,
      concurrency: 1,
      timeoutS: env.LATTICE_BENCH_SIM_TIMEOUT_S,
      flags: { warmRegistry: env.LATTICE_BENCH_SIM_WARM },
      command,
      print: false,
      onProgress: progress('run'),
    })
    const row = result.rows[0]!
    const report = row.report
    out.run = {
      nodes: env.LATTICE_BENCH_SIM_NODES,
      virtualSeconds: report?.virtualSeconds ?? null,
      wallSeconds: report?.wallSeconds ?? null,
      processWallSeconds: Math.round(row.processWallSeconds * 10) / 10,
      heapBytesPerNode: report?.figures.heapBytesPerNode ?? null,
      invariants: report?.invariants ?? { ok: false, violations: row.violations },
      traceHash: report?.traceHash ?? null,
      figures: report?.figures ?? null,
      details: report?.details ?? null,
      replay: row.replay,
      ...(row.error === undefined ? {} : { error: row.error }),
    }
    if (!row.ok) missed.push('run.invariants')
    if ((report?.wallSeconds ?? Number.POSITIVE_INFINITY) > SIM_BENCH_TARGETS.runWallSeconds) missed.push('run.wallSeconds')
    if ((report?.figures.heapBytesPerNode ?? Number.POSITIVE_INFINITY) > SIM_BENCH_TARGETS.heapBytesPerNode) missed.push('run.heapBytesPerNode')
  }

  if (env.LATTICE_BENCH_SIM_PARTS.includes('campaign')) {
    process.stderr.write(`[sim bench campaign] chaos, ${env.LATTICE_BENCH_SIM_CAMPAIGN_SEEDS} seeds × ${env.LATTICE_BENCH_SIM_CAMPAIGN_NODES} nodes\n`)
    const result: CampaignResult = await runCampaign({
      scenario: 'chaos',
      seeds: env.LATTICE_BENCH_SIM_CAMPAIGN_SEEDS,
      nodes: env.LATTICE_BENCH_SIM_CAMPAIGN_NODES,
      ...(env.LATTICE_BENCH_SIM_CAMPAIGN_DURATION_S === undefined ? {} : { durationS: env.LATTICE_BENCH_SIM_CAMPAIGN_DURATION_S }),
      timeoutS: env.LATTICE_BENCH_SIM_TIMEOUT_S,
      flags: { warmRegistry: env.LATTICE_BENCH_SIM_WARM },
      command,
      print: false,
      onProgress: progress('campaign'),
    })
    const walls = result.rows.map((r) => r.processWallSeconds).sort((a, b) => a - b)
    out.campaign = {
      seeds: result.rows.length,
      nodes: env.LATTICE_BENCH_SIM_CAMPAIGN_NODES,
      ok: result.ok,
      passed: result.rows.filter((r) => r.ok).length,
      failingSeeds: result.failingSeeds,
      wallSeconds: Math.round(result.wallSeconds * 10) / 10,
      runWallSeconds: { min: round1(walls[0]), p50: round1(walls[Math.floor((walls.length - 1) / 2)]), max: round1(walls[walls.length - 1]) },
      distributions: result.distributions,
    }
    if (!result.ok) missed.push('campaign.ok')
    if (result.wallSeconds > SIM_BENCH_TARGETS.campaignWallSeconds) missed.push('campaign.wallSeconds')
  }
  out.targetsMissed = missed
  return out
}

const round1 = (n: number | undefined): number | null => (n === undefined ? null : Math.round(n * 10) / 10)
