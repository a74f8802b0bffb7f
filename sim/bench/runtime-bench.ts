/**
 * `npm run bench -- runtime`: a real node process (`lattice start`, Docker
 * runtime, LevelDB) and 20 deploys of the busybox httpd through its HTTP API
 * — accept→running latency p50/p99 and the node process's RSS when idle.
 * Targets on these machines: p50 ≤ 400 ms, RSS ≤ 150 MB idle. Prints
 * figures; asserts nothing.
 */
import { readFile } from 'node:fs/promises'
import Docker from 'dockerode'
import { percentile } from './stats.ts'
import { removeNodeProcess, startNodeProcess } from './node-processes.ts'

const DEPLOYS = 20
const POLL_MS = 10

async function rssMB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0)
  return Math.round((kb / 1024) * 10) / 10
}

export async function runtimeBench(): Promise<Record<string, unknown>> {
  const node = await startNodeProcess('bench-runtime')
  const latenciesMs: number[] = []
  const ids: string[] = []
  try {
    const health = await node.api<{ runtime: { available: boolean; reason?: string } | null }>('GET', '/v1/health')
    if (health.runtime?.available !== true) throw new Error(`Docker engine unavailable: ${health.runtime?.reason ?? 'unknown'} (run npm run setup:docker)`)
    await new Promise((resolve) => setTimeout(resolve, 3_000))
    const idleRssMB = await rssMB(node.child.pid!)
    for (let i = 0; i < DEPLOYS; i++) {
      const startedAt = performance.now()
      const { id } = await node.api<{ id: string }>('POST', '/v1/deployments', { name: `bench-${i}`, image: 'lattice-test/busybox:latest', command: ['/bin/httpd', '-f', '-p', '80', '-h', '/www'], ports: [{ container: 80 }], resources: { cpu: 0.05, memoryMB: 16 } })
      ids.push(id)
      for (;;) {
        const view = await node.api<{ phase: string; replicas: Array<{ state: string; error: string | null }> }>('GET', `/v1/deployments/${id}`)
        if (view.phase === 'running') break
        if (view.replicas[0]?.state === 'failed') throw new Error(`deploy ${i} failed: ${view.replicas[0].error}`)
        await new Promise((resolve) => setTimeout(resolve, POLL_MS))
      }
      latenciesMs.push(performance.now() - startedAt)
    }
    const loadedRssMB = await rssMB(node.child.pid!)
    return {
      deploys: DEPLOYS,
      acceptToRunningMs: { p50: round(percentile(latenciesMs, 0.5)), p99: round(percentile(latenciesMs, 0.99)), max: round(Math.max(...latenciesMs)) },
      nodeIdleRssMB: idleRssMB,
      nodeRssWith20ContainersMB: loadedRssMB,
      targets: { acceptToRunningMsP50: 400, idleRssMB: 150 },
    }
  } finally {
    for (const id of ids) await node.api('DELETE', `/v1/deployments/${id}`).catch(() => undefined)
    // Let the node remove its containers, then sweep whatever is left under its label.
    const docker = new Docker()
    const mine = async () => docker.listContainers({ all: true, filters: { label: [`lattice.node=${node.peerId}`] } })
    for (let i = 0; i < 100 && (await mine()).length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 200))
    await removeNodeProcess(node)
    for (const container of await mine()) await docker.getContainer(container.Id).remove({ force: true })
  }
}

const round = (n: number): number => Math.round(n * 10) / 10
