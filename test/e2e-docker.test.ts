/**
 * End to end, as a user would: a real node process on a temp data dir with
 * the Docker engine, driven through the CLI. Deploy the busybox httpd, fetch
 * it on its published port, SIGKILL the node, start it again: the same
 * container is adopted (exactly one carries the deployment label); `rm`
 * removes it.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import Docker from 'dockerode'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { eventually } from './helpers/test-node.ts'

const run = promisify(execFile)
const BIN = join(import.meta.dirname, '..', 'bin', 'lattice.js')
const docker = new Docker()

async function engineReachable(): Promise<boolean> {
  try {
    await docker.ping()
    return true
  } catch {
    return false
  }
}

const reachable = await engineReachable()
if (!reachable && process.env.CI === 'true') {
  // In CI a Docker test never skips silently: it fails, saying why.
  describe('end to end with Docker', () => {
    it('needs a reachable Docker engine (run `npm run setup:docker`)', () => {
      expect.fail('Docker engine unreachable in CI: scripts/setup-docker.sh should have started it')
    })
  })
} else {
  describe.runIf(reachable)('end to end with Docker (a real node process and the CLI)', () => {
    let dataDir: string
    let node: ChildProcess | undefined
    let nodeLog = ''
    let peerId = ''

    const cli = async (command: string, ...args: string[]): Promise<string> => {
      try {
        // --data-dir before the arguments: everything after `--` is the container's command.
        const { stdout } = await run(process.execPath, [BIN, command, '--data-dir', dataDir, ...args], { timeout: 60_000 })
        return stdout.trim()
      } catch (error) {
        const e = error as Error & { stderr?: string; stdout?: string }
        throw new Error(`lattice ${command} ${args.join(' ')} failed: ${e.stderr ?? ''}${e.stdout ?? ''}${e.message}`)
      }
    }

    const startNode = async (): Promise<string> => {
      const previous = await readFile(join(dataDir, 'api.json'), 'utf8').catch(() => '')
      node = spawn(process.execPath, [BIN, 'start', '--data-dir', dataDir, '--api-port', '0', '--preset', 'test', '--name', 'e2e'], { stdio: ['ignore', 'pipe', 'pipe'] })
      node.stdout?.on('data', (chunk: Buffer) => { nodeLog += chunk.toString() })
      node.stderr?.on('data', (chunk: Buffer) => { nodeLog += chunk.toString() })
      // api.json is rewritten once the API listens; with port 0 its URL changes.
      return eventually(async () => {
        const text = await readFile(join(dataDir, 'api.json'), 'utf8').catch(() => '')
        if (text === '' || text === previous) return undefined
        const { url } = JSON.parse(text) as { url: string }
        const health = await fetch(`${url}/v1/health`).catch(() => undefined)
        if (health?.ok !== true) return undefined
        peerId = ((await health.json()) as { peerId: string }).peerId
        return url
      }, 30_000, `node API (log: ${nodeLog})`)
    }

    const containersOf = async (id: string) => docker.listContainers({ all: true, filters: { label: [`lattice.deployment=${id}`] } })

    beforeAll(async () => {
      dataDir = await mkdtemp(join(tmpdir(), 'lattice-e2e-'))
    })

    afterAll(async () => {
      node?.kill('SIGKILL')
      // Whatever a failed run left behind carries this node's label; remove it.
      if (peerId !== '') {
        for (const container of await docker.listContainers({ all: true, filters: { label: [`lattice.node=${peerId}`] } })) {
          await docker.getContainer(container.Id).remove({ force: true })
        }
      }
      await rm(dataDir, { recursive: true, force: true })
    })

    it('deploy through the CLI, curl it, survive SIGKILL by adoption, then rm', async () => {
      await startNode()
      const id = await cli('deploy', '--image', 'lattice-test/busybox:latest', '--name', 'e2e-web', '--port', '80', '--memory-mb', '32', '--timeout-s', '60', '--', '/bin/httpd', '-f', '-p', '80', '-h', '/www')
      expect(id).toMatch(/^d-/)

      const ps = JSON.parse(await cli('ps', '--json')) as Array<{ id: string; phase: string; replicas: Array<{ hostPorts: Record<string, number>; containerId: string }> }>
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

      node?.kill('SIGKILL')
      await new Promise((resolve) => node?.once('exit', resolve))
      await startNode()

      // Give the reconciler a few passes: it must adopt, not duplicate.
      await eventually(async () => {
        const v = JSON.parse(await cli('ps', '--json')) as Array<{ id: string; phase: string }>
        return v.find((d) => d.id === id)?.phase === 'running' ? true : undefined
      }, 20_000, 'running after restart')
      await new Promise((resolve) => setTimeout(resolve, 500))
      const after = await containersOf(id)
      expect(after).toHaveLength(1)
      expect(after[0]?.Id).toBe(before[0]?.Id)

      const logs = await cli('logs', id, '--tail', '10')
      expect(typeof logs).toBe('string')

      await cli('rm', id)
      await eventually(async () => ((await containersOf(id)).length === 0 ? true : undefined), 20_000, 'container removed')
      node?.kill('SIGTERM')
      await new Promise((resolve) => node?.once('exit', resolve))
    }, 120_000)
  })
}
