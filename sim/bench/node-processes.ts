/**
 * Real node processes for benchmarks and end-to-end tests: `lattice start`
 * on temp data dirs (test preset), driven through the CLI and the HTTP API.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
export const LATTICE_BIN = join(import.meta.dirname, '..', '..', 'bin', 'lattice.js')

/** Polls `check` every 50 ms until it returns a value, or throws after timeoutMs. */
export async function waitFor<T>(check: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (error) {
      last = error
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

export interface NodeProcess {
  name: string
  dataDir: string
  peerId: string
  url: string
  token: string
  child: ChildProcess
  log(): string
  /** Runs a CLI command against this node; returns stdout. */
  cli(command: string, ...args: string[]): Promise<string>
  api<T>(method: string, path: string, body?: unknown): Promise<T>
  kill(signal: NodeJS.Signals): Promise<void>
  /** Starts the node again on the same data dir (after kill). */
  restart(): Promise<void>
}

export async function startNodeProcess(name: string, options: { join?: string; dataDir?: string } = {}): Promise<NodeProcess> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), `lattice-${name}-`)))
  let output = ''
  const node: NodeProcess = {
    name,
    dataDir,
    peerId: '',
    url: '',
    token: '',
    child: undefined as unknown as ChildProcess,
    log: () => output,
    async cli(command, ...args) {
      try {
        // --data-dir first: everything after `--` is a container's command.
        const { stdout } = await run(process.execPath, [LATTICE_BIN, command, '--data-dir', dataDir, ...args], { timeout: 90_000 })
        return stdout.trim()
      } catch (error) {
        const e = error as Error & { stderr?: string; stdout?: string }
        throw new Error(`lattice ${command} ${args.join(' ')} (${name}) failed: ${e.stderr ?? ''}${e.stdout ?? ''}${e.message}`)
      }
    },
    async api<T>(method: string, path: string, body?: unknown): Promise<T> {
      const response = await fetch(`${node.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${node.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      })
      if (!response.ok) throw new Error(`${method} ${path} on ${name}: ${response.status} ${await response.text()}`)
      return (await response.json()) as T
    },
    async kill(signal) {
      const exited = new Promise((resolve) => node.child.once('exit', resolve))
      node.child.kill(signal)
      await exited
    },
    async restart() {
      await launch()
    },
  }

  const launch = async (): Promise<void> => {
    const previous = await readFile(join(dataDir, 'api.json'), 'utf8').catch(() => '')
    const args = [LATTICE_BIN, 'start', '--data-dir', dataDir, '--api-port', '0', '--preset', 'test', '--name', name, ...(options.join !== undefined ? ['--join', options.join] : [])]
    node.child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    node.child.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
    node.child.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString() })
    // api.json is rewritten once the API listens; with port 0 its URL changes.
    await waitFor(async () => {
      const text = await readFile(join(dataDir, 'api.json'), 'utf8').catch(() => '')
      if (text === '' || text === previous) return undefined
      const { url, token } = JSON.parse(text) as { url: string; token: string }
      const health = await fetch(`${url}/v1/health`).catch(() => undefined)
      if (health?.ok !== true) return undefined
      node.peerId = ((await health.json()) as { peerId: string }).peerId
      node.url = url
      node.token = token
      return true
    }, 30_000, `${name} API (log: ${output})`)
  }

  await launch()
  return node
}

export async function removeNodeProcess(node: NodeProcess): Promise<void> {
  if (node.child.exitCode === null && node.child.signalCode === null) await node.kill('SIGKILL').catch(() => undefined)
  await rm(node.dataDir, { recursive: true, force: true })
}
