/**
 * `npm run bench -- runtime`: 20 deploys of the busybox httpd through the API
 * of a real node (Docker runtime, LevelDB) — accept→running latency p50/p99
 * and the node's RSS when idle. Targets on these machines: p50 ≤ 400 ms,
 * RSS ≤ 150 MB idle. Prints figures; asserts nothing.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../../core/index.ts'
import { createLatticeNode, resolveConfig, type DeploymentView } from '../../node/index.ts'
import { percentile } from './stats.ts'

const DEPLOYS = 20
const POLL_MS = 10

export async function runtimeBench(): Promise<Record<string, unknown>> {
  const dataDir = await mkdtemp(join(tmpdir(), 'lattice-bench-'))
  const node = await createLatticeNode({ dataDir, config: resolveConfig('test', { reconcileIntervalMs: 50 }), logger: silentLogger })
  await node.start()
  const health = node.reconciler.runtimeHealth()
  if (health === undefined || !health.available) {
    await node.stop()
    throw new Error(`Docker engine unavailable: ${health?.available === false ? health.reason : 'unknown'} (run npm run setup:docker)`)
  }
  const auth = { authorization: `Bearer ${node.token}` }
  const latenciesMs: number[] = []
  const ids: string[] = []
  try {
    await new Promise((resolve) => setTimeout(resolve, 2_000))
    const idleRssMB = process.memoryUsage().rss / (1024 * 1024)
    for (let i = 0; i < DEPLOYS; i++) {
      const startedAt = performance.now()
      const created = await node.api.inject({
        method: 'POST',
        url: '/v1/deployments',
        headers: auth,
        payload: { name: `bench-${i}`, image: 'lattice-test/busybox:latest', command: ['/bin/httpd', '-f', '-p', '80', '-h', '/www'], ports: [{ container: 80 }], resources: { cpu: 0.1, memoryMB: 16 } },
      })
      if (created.statusCode !== 201) throw new Error(`deploy ${i} answered ${created.statusCode}: ${created.body}`)
      const { id } = created.json<{ id: string }>()
      ids.push(id)
      for (;;) {
        const view = (await node.api.inject({ method: 'GET', url: `/v1/deployments/${id}`, headers: auth })).json<DeploymentView>()
        if (view.phase === 'running') break
        if (view.replicas[0]?.state === 'failed') throw new Error(`deploy ${i} failed: ${view.replicas[0].error}`)
        await new Promise((resolve) => setTimeout(resolve, POLL_MS))
      }
      latenciesMs.push(performance.now() - startedAt)
    }
    const loadedRssMB = process.memoryUsage().rss / (1024 * 1024)
    return {
      deploys: DEPLOYS,
      acceptToRunningMs: { p50: round(percentile(latenciesMs, 0.5)), p99: round(percentile(latenciesMs, 0.99)), max: round(Math.max(...latenciesMs)) },
      idleRssMB: round(idleRssMB),
      rssWith20ContainersMB: round(loadedRssMB),
      targets: { acceptToRunningMsP50: 400, idleRssMB: 150 },
    }
  } finally {
    for (const id of ids) await node.api.inject({ method: 'DELETE', url: `/v1/deployments/${id}`, headers: auth })
    // Let the reconciler remove the containers before the node goes.
    for (let i = 0; i < 100 && (await node.runtime.list()).length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 100))
    await node.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}

const round = (n: number): number => Math.round(n * 10) / 10
