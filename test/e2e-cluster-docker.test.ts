/**
 * Three real node processes and the Docker engine on one machine, each node
 * with its own data dir and container namespace (label lattice.node): deploy
 * the busybox httpd through node A; it runs on the winner; SIGKILL the winner
 * → a replacement runs on another node within the bound; restart the killed
 * node → its stale container is removed and exactly one copy remains.
 */
import Docker from 'dockerode'
import { afterAll, expect, it } from 'vitest'
import { describeWithDocker } from './helpers/docker-gate.ts'
import { removeNodeProcess, startNodeProcess, type NodeProcess } from '../sim/bench/node-processes.ts'
import { eventually } from './helpers/test-node.ts'

const docker = new Docker()
/** Failover bound on the test preset: death detection plus a bidding round plus a container start. */
const FAILOVER_BOUND_MS = 20_000

const runningCopies = async (id: string) => (await docker.listContainers({ filters: { label: [`lattice.deployment=${id}`] } })).map((c) => ({ id: c.Id, node: c.Labels['lattice.node'] }))

describeWithDocker('three node processes with Docker', () => {
  const nodes: NodeProcess[] = []

  afterAll(async () => {
    for (const node of nodes) {
      for (const container of await docker.listContainers({ all: true, filters: { label: [`lattice.node=${node.peerId}`] } })) {
        await docker.getContainer(container.Id).remove({ force: true })
      }
    }
    await Promise.all(nodes.map(removeNodeProcess))
  })

  it('deploy through A, SIGKILL the winner, fail over, the winner returns and its stale copy goes', async () => {
    const a = await startNodeProcess('a')
    nodes.push(a)
    const invite = await a.cli('invite')
    nodes.push(await startNodeProcess('b', { join: invite }), await startNodeProcess('c', { join: invite }))
    for (const node of nodes) {
      await eventually(async () => ((await node.api<{ nodes: Array<{ state: string }> }>('GET', '/v1/nodes')).nodes.filter((n) => n.state === 'alive').length === 3 ? true : undefined), 30_000, `${node.name} sees three alive`)
    }

    const id = await a.cli('deploy', '--image', 'lattice-test/busybox:latest', '--name', 'ha-web', '--port', '80', '--memory-mb', '32', '--timeout-s', '60', '--', '/bin/httpd', '-f', '-p', '80', '-h', '/www')
    const first = await eventually(async () => {
      const copies = await runningCopies(id)
      return copies.length === 1 ? copies[0] : undefined
    }, 30_000, 'one running copy')
    const winner = nodes.find((n) => n.peerId === first.node)!
    expect(winner).toBeDefined()

    const killedAt = Date.now()
    await winner.kill('SIGKILL')
    // The killed node's container keeps running in the engine (nobody is there to stop it); a replacement must run elsewhere.
    const replacement = await eventually(async () => (await runningCopies(id)).find((c) => c.node !== winner.peerId), FAILOVER_BOUND_MS, 'replacement running elsewhere')
    const failoverMs = Date.now() - killedAt
    expect(failoverMs).toBeLessThan(FAILOVER_BOUND_MS)
    const survivor = nodes.find((n) => n !== winner)!
    const view = await survivor.api<{ replicas: Array<{ generation: number; nodeId: string }> }>('GET', `/v1/deployments/${id}`)
    expect(view.replicas[0]).toMatchObject({ generation: 2, nodeId: replacement.node })

    await winner.restart()
    await eventually(async () => {
      const copies = await runningCopies(id)
      return copies.length === 1 && copies[0]!.id === replacement.id ? true : undefined
    }, 30_000, 'stale copy removed, one copy left')
    console.log(`[e2e-cluster-docker] failover ${failoverMs} ms`)
  }, 180_000)
})
