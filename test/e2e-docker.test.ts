/**
 * End to end, as a user would: a real node process on a temp data dir with
 * the Docker engine, driven through the CLI. Deploy the busybox httpd, fetch
 * it on its published port, SIGKILL the node, start it again: the same
 * container is adopted (exactly one carries the deployment label); `rm`
 * removes it.
 */
import Docker from 'dockerode'
import { afterAll, expect, it } from 'vitest'
import { describeWithDocker } from './helpers/docker-gate.ts'
import { removeNodeProcess, startNodeProcess, type NodeProcess } from '../sim/bench/node-processes.ts'
import { eventually } from './helpers/test-node.ts'

const docker = new Docker()
const containersOf = async (id: string) => docker.listContainers({ all: true, filters: { label: [`lattice.deployment=${id}`] } })

describeWithDocker('end to end with Docker: one node process and the CLI', () => {
  let node: NodeProcess | undefined

  afterAll(async () => {
    if (node === undefined) return
    for (const container of await docker.listContainers({ all: true, filters: { label: [`lattice.node=${node.peerId}`] } })) {
      await docker.getContainer(container.Id).remove({ force: true })
    }
    await removeNodeProcess(node)
  })

  it('deploy through the CLI, curl it, survive SIGKILL by adoption, then rm', async () => {
    node = await startNodeProcess('e2e')
    const id = await node.cli('deploy', '--image', 'lattice-test/busybox:latest', '--name', 'e2e-web', '--port', '80', '--memory-mb', '32', '--timeout-s', '60', '--', '/bin/httpd', '-f', '-p', '80', '-h', '/www')
    expect(id).toMatch(/^d-/)

    const ps = JSON.parse(await node.cli('ps', '--json')) as Array<{ id: string; phase: string; replicas: Array<{ hostPorts: Record<string, number> }> }>
    const mine = ps.find((d) => d.id === id)
    expect(mine?.phase).toBe('running')
    const hostPort = mine?.replicas[0]?.hostPorts['80']
    expect(hostPort).toBeGreaterThan(0)
    const page = await eventually(async () => {
      const response = await fetch(`http://127.0.0.1:${hostPort}/`).catch(() => undefined)
      return response?.ok === true ? response.text() : undefined
    }, 10_000, 'httpd answers')
    expect(page).toContain('hello from lattice')

    const before = await containersOf(id)
    expect(before).toHaveLength(1)

    await node.kill('SIGKILL')
    await node.restart()
    await eventually(async () => {
      const listed = JSON.parse(await node!.cli('ps', '--json')) as Array<{ id: string; phase: string }>
      return listed.find((d) => d.id === id)?.phase === 'running' ? true : undefined
    }, 20_000, 'running after restart')
    // Give the reconciler a few more passes: it must adopt, not duplicate.
    await new Promise((resolve) => setTimeout(resolve, 500))
    const after = await containersOf(id)
    expect(after).toHaveLength(1)
    expect(after[0]?.Id).toBe(before[0]?.Id)

    expect(typeof (await node.cli('logs', id, '--tail', '10'))).toBe('string')
    await node.cli('rm', id)
    await eventually(async () => ((await containersOf(id)).length === 0 ? true : undefined), 20_000, 'container removed')
    await node.kill('SIGTERM')
  }, 120_000)
})
