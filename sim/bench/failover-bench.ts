/**
 * `npm run bench -- failover`: three real node processes with the Docker
 * engine; deploy the busybox httpd, SIGKILL the node running it, and time
 * kill → replacement running on another node (target ≤ 8 s), then the killed
 * node's return → its stale copy removed. Prints figures; asserts nothing.
 */
import Docker from 'dockerode'
import { removeNodeProcess, startNodeProcess, waitFor, type NodeProcess } from './node-processes.ts'

const ROUNDS = Number(process.env.LATTICE_BENCH_FAILOVER_ROUNDS ?? 3)

export async function failoverBench(): Promise<Record<string, unknown>> {
  const docker = new Docker()
  await docker.ping().catch((error: unknown) => {
    throw new Error(`Docker engine unreachable (${String(error)}); run npm run setup:docker`)
  })
  const nodes: NodeProcess[] = []
  const failoversMs: number[] = []
  const cleanupsMs: number[] = []
  const running = async (id: string) => (await docker.listContainers({ filters: { label: [`lattice.deployment=${id}`] } })).map((c) => ({ id: c.Id, node: c.Labels['lattice.node'] }))
  try {
    const a = await startNodeProcess('bench-a')
    nodes.push(a)
    const invite = await a.cli('invite')
    nodes.push(await startNodeProcess('bench-b', { join: invite }), await startNodeProcess('bench-c', { join: invite }))
    for (const node of nodes) {
      await waitFor(async () => ((await node.api<{ nodes: Array<{ state: string }> }>('GET', '/v1/nodes')).nodes.filter((n) => n.state === 'alive').length === 3 ? true : undefined), 30_000, 'three alive')
    }
    for (let round = 0; round < ROUNDS; round++) {
      const alive = nodes.filter((n) => n.child.exitCode === null && n.child.signalCode === null)
      const id = await alive[0]!.cli('deploy', '--image', 'lattice-test/busybox:latest', '--name', `bench-ha-${round}`, '--port', '80', '--memory-mb', '16', '--', '/bin/httpd', '-f', '-p', '80', '-h', '/www')
      const first = await waitFor(async () => (await running(id))[0], 30_000, 'running')
      const winner = nodes.find((n) => n.peerId === first.node)!
      const killedAt = Date.now()
      await winner.kill('SIGKILL')
      const replacement = await waitFor(async () => (await running(id)).find((c) => c.node !== winner.peerId), 60_000, 'replacement')
      failoversMs.push(Date.now() - killedAt)
      const returnedAt = Date.now()
      await winner.restart()
      await waitFor(async () => {
        const copies = await running(id)
        return copies.length === 1 && copies[0]!.id === replacement.id ? true : undefined
      }, 60_000, 'stale copy removed')
      cleanupsMs.push(Date.now() - returnedAt)
      await alive[0]!.cli('rm', id)
    }
  } finally {
    for (const node of nodes) {
      for (const container of await docker.listContainers({ all: true, filters: { label: [`lattice.node=${node.peerId}`] } })) await docker.getContainer(container.Id).remove({ force: true })
    }
    await Promise.all(nodes.map(removeNodeProcess))
  }
  return {
    nodes: 3,
    rounds: ROUNDS,
    killToReplacementRunningMs: failoversMs,
    returnToStaleCopyRemovedMs: cleanupsMs,
    targets: { failoverMs: 8_000 },
  }
}
