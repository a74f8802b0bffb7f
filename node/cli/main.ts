/**
 * The `lattice` command line (commander). Commands that talk to a node find
 * its URL and token in the data dir (api.json). Exit 0 on success, non-zero
 * with a one-line reason on stderr otherwise.
 */
import '../../core/polyfills.ts'
import { readFile } from 'node:fs/promises'
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander'
import { parse as parseYaml } from 'yaml'
import { DeploymentSpecSchema, LatticeError, type DeploymentSpecInput } from '../../core/index.ts'
import { resolveConfig, type ConfigPreset } from '../config.ts'
import { ensureDataDir, readConfigFile, resolveDataDir } from '../data-dir.ts'
import type { DeploymentView } from '../deployment-view.ts'
import { LATTICE_VERSION } from '../version.ts'
import { CliError, connect } from './client.ts'
import { formatTable, waitForDeployment } from './output.ts'

const dataDirOption = (): Option => new Option('--data-dir <dir>', 'node data dir (default: $LATTICE_DATA_DIR or ~/.lattice)')

const intArg = (name: string, min: number, max: number) => (value: string): number => {
  const n = Number(value)
  if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`)
  return n
}
const numberArg = (name: string) => (value: string): number => {
  const n = Number(value)
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number`)
  return n
}
const collect = (value: string, previous: string[]): string[] => [...previous, value]
/** `lattice start`'s exit code when the cluster document failed (EX_SOFTWARE): distinct from a bad flag or a crash, for supervisors and logs. */
const EXIT_STATE_FAILED = 70

export function buildProgram(): Command {
  const program = new Command('lattice')
    .description('Lattice: the computers a team already has, as one cloud with no central server')
    .version(LATTICE_VERSION)
    .showHelpAfterError('(run with --help for usage)')

  program.command('init')
    .description("create a new mesh: its private network key and this node's identity in the data dir")
    .addOption(dataDirOption())
    .action(async (options: { dataDir?: string }) => {
      const dataDir = resolveDataDir(options.dataDir)
      await ensureDataDir(dataDir)
      const { loadOrCreateIdentity, loadOrCreateMeshKey } = await import('../../mesh/index.ts')
      const { peerId } = await loadOrCreateIdentity(dataDir)
      await loadOrCreateMeshKey(dataDir)
      console.log(`initialized ${dataDir}\npeer id ${peerId}`)
    })

  program.command('start')
    .description('run the node in the foreground until SIGINT/SIGTERM')
    .addOption(dataDirOption())
    .option('--api-port <port>', 'API port (default 7070; 0 picks a free one)', intArg('--api-port', 0, 65_535))
    .option('--api-host <host>', 'API bind address (default 127.0.0.1)')
    .option('--name <name>', 'node name shown to the mesh (default: host name)')
    .option('--join <invite>', 'join the mesh of this invite (from `lattice invite` on a member)')
    .option('--listen <multiaddr>', 'libp2p listen address (repeatable; default /ip4/0.0.0.0/tcp/0)', collect, [])
    .addOption(new Option('--preset <preset>', 'config preset').choices(['default', 'test']).default('default'))
    .action(async (options: { dataDir?: string; apiPort?: number; apiHost?: string; name?: string; join?: string; listen: string[]; preset: ConfigPreset }) => {
      const dataDir = resolveDataDir(options.dataDir)
      await ensureDataDir(dataDir)
      const fromFile = await readConfigFile(dataDir)
      const config = resolveConfig(options.preset, fromFile, {
        ...(options.apiPort !== undefined ? { apiPort: options.apiPort } : {}),
        ...(options.apiHost !== undefined ? { apiHost: options.apiHost } : {}),
        ...(options.name !== undefined ? { name: options.name } : {}),
        ...(options.listen.length > 0 ? { listen: options.listen } : {}),
      })
      // Imported here: the node's stack (libp2p, the HTTP server, Docker's client) is most of the CLI's start-up, and
      // the commands that only talk to a node need none of it (the bundle keeps it in chunks of its own).
      const { createLatticeNode } = await import('../lattice-node.ts')
      const node = await createLatticeNode({ dataDir, config, ...(options.join !== undefined ? { join: options.join } : {}) })
      try {
        await node.start()
      } catch (error) {
        await node.stop().catch(() => undefined)
        if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new CliError(`API port ${config.apiPort} is in use: pick another with --api-port`)
        throw error
      }
      const health = node.reconciler.runtimeHealth()
      console.error(`lattice node ${node.name} (${node.peerId}) — API ${node.apiUrl()}, data ${dataDir}`)
      console.error(`mesh addresses: ${node.transport.addresses().join(' ')}`)
      if (health !== undefined && !health.available) console.error(`container runtime unavailable: ${health.reason}. ${health.hint}`)
      await new Promise<void>((resolve) => {
        const shutdown = (signal: string): void => {
          console.error(`${signal}: stopping`)
          void node.stop().finally(resolve)
        }
        process.once('SIGINT', () => shutdown('SIGINT'))
        process.once('SIGTERM', () => shutdown('SIGTERM'))
        // Nothing works without the document: exit non-zero so a supervisor restarts the node, which reloads it from the data dir.
        node.state.onFailure((reason) => {
          process.exitCode = EXIT_STATE_FAILED
          console.error(`cluster state failed: ${reason}`)
          shutdown('state failure')
        })
      })
    })

  program.command('invite')
    .description('print one line a new node joins with (`lattice start --join INVITE`): addresses and the mesh key')
    .addOption(dataDirOption())
    .action(async (options: { dataDir?: string }) => {
      const client = await connect(resolveDataDir(options.dataDir))
      const { invite } = await client.request<{ invite: string }>('GET', '/v1/invite')
      console.log(invite)
    })

  program.command('deploy')
    .description('create a deployment through the local node; prints its id')
    .addOption(dataDirOption())
    .option('-f, --file <file>', 'deployment spec (JSON or YAML)')
    .option('--image <image>', 'container image')
    .option('--name <name>', 'deployment name (default: from the image)')
    .option('--port <port>', 'container port to publish (repeatable)', collect, [])
    .option('--replicas <n>', 'replica count', intArg('--replicas', 0, 64))
    .option('--memory-mb <mb>', 'memory limit in MB', intArg('--memory-mb', 6, 1_048_576))
    .option('--cpu <cpus>', 'CPU limit in cores', numberArg('--cpu'))
    .option('--env <K=V>', 'environment variable (repeatable)', collect, [])
    .addOption(new Option('--restart <policy>', 'restart policy').choices(['always', 'on-failure', 'never']))
    .option('--no-wait', 'return as soon as the deployment is accepted')
    .option('--timeout-s <s>', 'how long to wait for the replicas to run', intArg('--timeout-s', 1, 3600), 120)
    .argument('[command...]', 'command and arguments, after --')
    .action(async (command: string[], options: { dataDir?: string; file?: string; image?: string; name?: string; port: string[]; replicas?: number; memoryMb?: number; cpu?: number; env: string[]; restart?: 'always' | 'on-failure' | 'never'; wait: boolean; timeoutS: number }) => {
      const spec = await specFromOptions(command, options)
      const client = await connect(resolveDataDir(options.dataDir))
      const { id } = await client.request<{ id: string }>('POST', '/v1/deployments', spec)
      if (options.wait) await waitForDeployment(client, id, options.timeoutS * 1000)
      console.log(id)
    })

  program.command('ps')
    .description('list deployments')
    .addOption(dataDirOption())
    .option('--all', 'include deleted deployments')
    .option('--json', 'print JSON')
    .action(async (options: { dataDir?: string; all?: boolean; json?: boolean }) => {
      const client = await connect(resolveDataDir(options.dataDir))
      const { deployments } = await client.request<{ deployments: DeploymentView[] }>('GET', `/v1/deployments${options.all === true ? '?all=true' : ''}`)
      if (options.json === true) {
        console.log(JSON.stringify(deployments, null, 2))
        return
      }
      console.log(formatTable(['ID', 'NAME', 'PHASE', 'READY', 'IMAGE', 'PORTS'], deployments.map((d) => [
        d.id,
        d.name,
        d.phase,
        `${d.replicas.filter((r) => r.state === 'running').length}/${d.replicas.length}`,
        d.spec.image,
        d.replicas.flatMap((r) => Object.entries(r.hostPorts).map(([c, h]) => `${h}->${c}`)).join(',') || '-',
      ])))
    })

  program.command('nodes')
    .description("this node's view of the mesh")
    .addOption(dataDirOption())
    .option('--json', 'print JSON')
    .action(async (options: { dataDir?: string; json?: boolean }) => {
      const client = await connect(resolveDataDir(options.dataDir))
      const { nodes } = await client.request<{ nodes: Array<{ peerId: string; name: string; state: string; self: boolean; capacity: { cpu: number; memoryMB: number; diskMB: number }; lastSeenMs: number }> }>('GET', '/v1/nodes')
      if (options.json === true) {
        console.log(JSON.stringify(nodes, null, 2))
        return
      }
      console.log(formatTable(['PEER', 'NAME', 'STATE', 'CPU', 'MEMORY', 'DISK', 'SEEN'], nodes.map((n) => [
        `${n.peerId.slice(0, 8)}…${n.peerId.slice(-6)}${n.self ? ' (self)' : ''}`,
        n.name,
        n.state,
        String(n.capacity.cpu),
        `${n.capacity.memoryMB} MB`,
        `${Math.round(n.capacity.diskMB / 1024)} GB`,
        `${Math.round(n.lastSeenMs / 1000)} s ago`,
      ])))
    })

  program.command('logs')
    .description("a deployment's log lines")
    .addOption(dataDirOption())
    .option('-f, --follow', 'keep streaming new lines')
    .option('--tail <n>', 'lines from the end to start with', intArg('--tail', 0, 10_000))
    .option('--replica <n>', 'only this replica', intArg('--replica', 0, 63))
    .argument('<id>', 'deployment id or name')
    .action(async (id: string, options: { dataDir?: string; follow?: boolean; tail?: number; replica?: number }) => {
      const client = await connect(resolveDataDir(options.dataDir))
      const query = new URLSearchParams({ follow: String(options.follow === true) })
      if (options.tail !== undefined) query.set('tail', String(options.tail))
      if (options.replica !== undefined) query.set('replica', String(options.replica))
      const controller = new AbortController()
      process.once('SIGINT', () => controller.abort())
      try {
        for await (const { event, data } of client.events(`/v1/deployments/${encodeURIComponent(id)}/logs?${query}`, controller.signal)) {
          if (event === 'log') {
            const line = data as { stream: string; line: string }
            ;(line.stream === 'stderr' ? process.stderr : process.stdout).write(`${line.line}\n`)
          } else if (event === 'error') {
            console.error(`log stream error: ${(data as { message: string }).message}`)
          } else if (event === 'end') {
            break
          }
        }
      } catch (error) {
        if ((error as Error).name !== 'AbortError') throw error
      }
    })

  const lifecycleCommand = (name: string, description: string, path: (id: string) => string, method = 'POST'): void => {
    program.command(name)
      .description(description)
      .addOption(dataDirOption())
      .argument('<id>', 'deployment id or name')
      .action(async (id: string, options: { dataDir?: string }) => {
        const client = await connect(resolveDataDir(options.dataDir))
        const answer = await client.request<{ id: string }>(method, path(encodeURIComponent(id)))
        console.log(answer.id)
      })
  }
  lifecycleCommand('stop', 'stop a deployment (containers kept for their logs)', (id) => `/v1/deployments/${id}/stop`)
  lifecycleCommand('start-deployment', 'start a stopped deployment', (id) => `/v1/deployments/${id}/start`)
  lifecycleCommand('restart', 'replace every replica with a fresh container', (id) => `/v1/deployments/${id}/restart`)
  lifecycleCommand('rm', 'delete a deployment and its containers', (id) => `/v1/deployments/${id}`, 'DELETE')

  for (const [name, description] of [['drain', "move this node's replicas to other nodes and take no new ones"], ['undrain', 'take work again after a drain']] as const) {
    program.command(name)
      .description(description)
      .addOption(dataDirOption())
      .action(async (options: { dataDir?: string }) => {
        const client = await connect(resolveDataDir(options.dataDir))
        const answer = await client.request<{ peerId: string; draining: boolean }>('POST', `/v1/nodes/self/${name}`)
        console.log(`${answer.peerId} ${answer.draining ? 'draining' : 'taking work'}`)
      })
  }

  program.command('scale')
    .description('set the number of replicas')
    .addOption(dataDirOption())
    .argument('<id>', 'deployment id or name')
    .argument('<replicas>', 'replica count', intArg('replicas', 0, 64))
    .action(async (id: string, replicas: number, options: { dataDir?: string }) => {
      const client = await connect(resolveDataDir(options.dataDir))
      const answer = await client.request<{ id: string }>('POST', `/v1/deployments/${encodeURIComponent(id)}/scale`, { replicas })
      console.log(answer.id)
    })

  program.command('sim')
    .description('the simulator: real node code in virtual time (`lattice sim --help`); `lattice sim campaign …` runs many seeds')
    .allowUnknownOption()
    .allowExcessArguments()
    .helpOption(false)
    .argument('[args...]')
    .action(async (args: string[]) => {
      // The simulator validates its own flags (zod) and sets the exit code: 0 held, 1 violated, 2 bad flags.
      // Each imported only when run: a campaign's module (and the report's charts) is not a single run's start-up.
      let code: number
      if (args[0] === 'campaign') code = await (await import('../../sim/campaign.ts')).runCampaignCommand(args.slice(1))
      else code = await (await import('../../sim/cli.ts')).runSimCommand(args)
      if (code !== 0) throw new CliError(code === 2 ? 'bad simulator flags' : 'an invariant failed (see the replay command above)', code)
    })

  return program
}

async function specFromOptions(command: string[], options: { file?: string; image?: string; name?: string; port: string[]; replicas?: number; memoryMb?: number; cpu?: number; env: string[]; restart?: 'always' | 'on-failure' | 'never' }): Promise<DeploymentSpecInput> {
  let base: Record<string, unknown> = {}
  if (options.file !== undefined) {
    const text = await readFile(options.file, 'utf8').catch((error: Error) => {
      throw new CliError(`cannot read ${options.file}: ${error.message}`)
    })
    try {
      base = parseYaml(text) as Record<string, unknown> // YAML is a superset of JSON
    } catch (error) {
      throw new CliError(`${options.file} is neither JSON nor YAML: ${(error as Error).message}`)
    }
    if (typeof base !== 'object' || base === null || Array.isArray(base)) throw new CliError(`${options.file} must hold one deployment spec object`)
  } else if (options.image === undefined) {
    throw new CliError('give a spec file (-f FILE) or an image (--image IMG)', 2)
  }
  const spec: Record<string, unknown> = { ...base }
  if (options.image !== undefined) spec.image = options.image
  if (options.name !== undefined) spec.name = options.name
  if (spec.name === undefined && typeof spec.image === 'string') spec.name = nameFromImage(spec.image)
  if (options.port.length > 0) {
    spec.ports = options.port.map((text) => {
      const match = /^(\d+)(?:\/(tcp|udp))?$/.exec(text)
      if (match === null) throw new CliError(`--port ${text}: expected PORT or PORT/tcp|udp`, 2)
      return { container: Number(match[1]), protocol: match[2] ?? 'tcp' }
    })
  }
  if (options.replicas !== undefined) spec.replicas = options.replicas
  if (options.memoryMb !== undefined || options.cpu !== undefined) {
    spec.resources = { ...(spec.resources as object | undefined), ...(options.memoryMb !== undefined ? { memoryMB: options.memoryMb } : {}), ...(options.cpu !== undefined ? { cpu: options.cpu } : {}) }
  }
  if (options.env.length > 0) {
    const env: Record<string, string> = { ...(spec.env as Record<string, string> | undefined) }
    for (const pair of options.env) {
      const at = pair.indexOf('=')
      if (at <= 0) throw new CliError(`--env ${pair}: expected KEY=VALUE`, 2)
      env[pair.slice(0, at)] = pair.slice(at + 1)
    }
    spec.env = env
  }
  if (options.restart !== undefined) spec.restart = options.restart
  if (command.length > 0) spec.command = command
  // Validate here too, so a typo is reported before anything reaches the node.
  const parsed = DeploymentSpecSchema.safeParse(spec)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new CliError(`invalid deployment spec: ${issue?.path.join('.') || 'spec'}: ${issue?.message ?? 'invalid'}`, 2)
  }
  return spec as DeploymentSpecInput
}

/** "lattice-test/busybox:latest" → "busybox". */
export function nameFromImage(image: string): string {
  const last = image.split('/').pop() ?? image
  const bare = last.split(/[:@]/)[0] ?? last
  const cleaned = bare.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 63)
  return cleaned === '' ? 'app' : cleaned
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram()
  program.exitOverride()
  program.configureOutput({ writeErr: (text) => process.stderr.write(text) })
  try {
    await program.parseAsync(argv)
    return 0
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') return 0
      return 2
    }
    if (error instanceof CliError) {
      console.error(`lattice: ${error.message}`)
      return error.exitCode
    }
    if (error instanceof LatticeError) {
      console.error(`lattice: ${error.message} (${error.code})`)
      return 1
    }
    console.error(`lattice: ${error instanceof Error ? error.message : String(error)}`)
    return 1
  }
}
