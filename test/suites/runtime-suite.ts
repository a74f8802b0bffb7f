/**
 * The Runtime port's acceptance suite, run against every adapter (Docker and
 * the fake): an adapter that passes it is interchangeable. A bug found in one
 * adapter becomes a case here. Every case uses the busybox test image
 * (lattice-test/busybox:latest) and its own deployment id, and removes what
 * it started; the harness's cleanup() sweeps whatever a failing case left.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RuntimeError, type ContainerInfo, type ContainerSpec, type LogLine, type LogOptions, type Runtime } from '../../core/index.ts'

export const TEST_IMAGE = 'lattice-test/busybox:latest'
export const ABSENT_IMAGE = 'lattice-test/absent-image:never'

export interface RuntimeHarness {
  /** The runtime under test, in namespace `nodeId`. */
  readonly runtime: Runtime
  readonly nodeId: string
  /** Another instance over the same engine: same nodeId by default (a node restart), or another node's. */
  newRuntime(options?: { nodeId?: string }): Runtime
  /** Body of HTTP GET / on 127.0.0.1:hostPort, or undefined when nothing answers. */
  httpGet(hostPort: number): Promise<string | undefined>
  /** Resolves once `predicate` holds; rejects after `timeoutMs` of the harness's time. */
  waitFor(predicate: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void>
  /** Removes every container this harness's runtimes created. */
  cleanup(): Promise<void>
}

const HTTPD_COMMAND = ['/bin/httpd', '-f', '-p', '80', '-h', '/www']
const WAIT_MS = 5_000
const STOP_TIMEOUT_MS = 2_000

let deploymentCounter = 0

function spec(overrides: Partial<ContainerSpec> = {}): ContainerSpec {
  deploymentCounter++
  return {
    deploymentId: `dep-${deploymentCounter}`,
    replica: 0,
    generation: 1,
    epoch: 1,
    name: `suite-${deploymentCounter}`,
    image: TEST_IMAGE,
    command: ['/bin/sh', '-c', 'sleep 30'],
    resources: { cpu: 0.25, memoryMB: 32, pidsMax: 16 },
    ...overrides,
  }
}

async function collect(runtime: Runtime, id: string, options: LogOptions): Promise<LogLine[]> {
  const lines: LogLine[] = []
  for await (const line of runtime.logs(id, options)) lines.push(line)
  return lines
}

function linesOf(lines: readonly LogLine[], stream: LogLine['stream']): string[] {
  return lines.filter((l) => l.stream === stream).map((l) => l.line)
}

async function expectCode(promise: Promise<unknown>, code: RuntimeError['code']): Promise<void> {
  const error: unknown = await promise.then(
    () => undefined,
    (err: unknown) => err,
  )
  expect(error, `expected RuntimeError ${code}`).toBeInstanceOf(RuntimeError)
  expect((error as RuntimeError).code).toBe(code)
}

export function runRuntimeSuite(name: string, makeHarness: () => Promise<RuntimeHarness>): void {
  describe(`Runtime acceptance suite: ${name}`, () => {
    let harness: RuntimeHarness
    let runtime: Runtime

    beforeAll(async () => {
      harness = await makeHarness()
      runtime = harness.runtime
    })

    afterAll(async () => {
      await harness?.cleanup()
    })

    const listed = async (id: string): Promise<ContainerInfo[]> => (await runtime.list()).filter((c) => c.id === id)

    it('health reports an available engine', async () => {
      const health = await runtime.health()
      expect(health.available).toBe(true)
    })

    it('a busybox httpd runs, is listed running with a host-chosen port, and answers HTTP', async () => {
      const info = await runtime.run(spec({ command: HTTPD_COMMAND, ports: [{ container: 80, protocol: 'tcp' }], capAdd: ['NET_BIND_SERVICE'] }))
      expect(info.state).toBe('running')
      const hostPort = info.hostPorts['80']
      expect(hostPort).toBeGreaterThan(0)

      const [entry] = await listed(info.id)
      expect(entry?.state).toBe('running')
      expect(entry?.hostPorts['80']).toBe(hostPort)
      expect(await harness.httpGet(hostPort as number)).toContain('hello from lattice')
      await runtime.remove(info.id)
    })

    it('inspect shows the limits the engine enforces, with CapAdd honoured', async () => {
      const info = await runtime.run(spec({ resources: { cpu: 0.5, memoryMB: 64, pidsMax: 32 }, capAdd: ['NET_BIND_SERVICE'] }))
      const details = await runtime.inspect(info.id)
      expect(details?.limits).toEqual({
        memoryBytes: 64 * 1024 * 1024,
        memorySwapBytes: 64 * 1024 * 1024,
        nanoCpus: 500_000_000,
        pidsLimit: 32,
        capDrop: ['ALL'],
        capAdd: ['NET_BIND_SERVICE'],
        securityOpt: ['no-new-privileges:true'],
        privileged: false,
        init: true,
      })
      await runtime.remove(info.id)
    })

    it('env and labels reach the container and come back in inspect and list', async () => {
      const s = spec({ replica: 2, generation: 7, epoch: 3, env: { GREETING: 'hello world', EMPTY: '' } })
      const info = await runtime.run(s)
      expect(info).toMatchObject({ deploymentId: s.deploymentId, replica: 2, generation: 7, epoch: 3, image: TEST_IMAGE })
      const details = await runtime.inspect(info.id)
      expect(details?.env).toMatchObject({ GREETING: 'hello world', EMPTY: '' })
      expect(details?.labels).toMatchObject({
        'lattice.node': harness.nodeId,
        'lattice.deployment': s.deploymentId,
        'lattice.replica': '2',
        'lattice.generation': '7',
        'lattice.epoch': '3',
      })
      const [entry] = await listed(info.id)
      expect(entry).toMatchObject({ deploymentId: s.deploymentId, replica: 2, generation: 7, epoch: 3 })
      await runtime.remove(info.id)
    })

    describe('logs', () => {
      let id: string

      beforeAll(async () => {
        // The pause keeps the two lines in a known order across the two pipes.
        const info = await runtime.run(spec({ command: ['/bin/sh', '-c', 'echo one; sleep 0.2; echo two >&2; sleep 30'] }))
        id = info.id
        await harness.waitFor(async () => linesOf(await collect(runtime, id, { follow: false }), 'stderr').includes('two'), WAIT_MS, 'both log lines')
      })

      afterAll(async () => {
        if (id !== undefined) await runtime.remove(id)
      })

      it('logs without follow return stdout and stderr demultiplexed', async () => {
        const lines = await collect(runtime, id, { follow: false })
        expect(linesOf(lines, 'stdout')).toContain('one')
        expect(linesOf(lines, 'stderr')).toEqual(['two'])
        expect(linesOf(lines, 'stdout')).not.toContain('two')
      })

      it('logs with tail 1 return only the last line', async () => {
        expect(await collect(runtime, id, { follow: false, tail: 1 })).toEqual([{ stream: 'stderr', line: 'two' }])
      })

      it('logs with follow end when the signal aborts', async () => {
        const controller = new AbortController()
        const lines: LogLine[] = []
        let ended = false
        const reading = (async () => {
          for await (const line of runtime.logs(id, { follow: true, signal: controller.signal })) lines.push(line)
          ended = true
        })()
        await harness.waitFor(() => lines.some((l) => l.line === 'two'), WAIT_MS, 'the existing lines')
        controller.abort()
        await harness.waitFor(() => ended, WAIT_MS, 'the follow to end after abort')
        await reading
        expect((await listed(id))[0]?.state).toBe('running')
      })
    })

    it('logs with follow yield a later line and end when the container stops', async () => {
      const info = await runtime.run(spec({ command: ['/bin/sh', '-c', 'echo early; sleep 0.5; echo later; sleep 30'] }))
      const lines: LogLine[] = []
      let ended = false
      const reading = (async () => {
        for await (const line of runtime.logs(info.id, { follow: true })) lines.push(line)
        ended = true
      })()
      await harness.waitFor(() => lines.some((l) => l.line === 'later'), WAIT_MS, 'the later line')
      expect(ended).toBe(false)
      await runtime.stop(info.id, STOP_TIMEOUT_MS)
      await harness.waitFor(() => ended, WAIT_MS, 'the follow to end after stop')
      await reading
      expect(linesOf(lines, 'stdout')).toEqual(expect.arrayContaining(['early', 'later']))
      await runtime.remove(info.id)
    })

    it('a container whose command exits is listed as exited with its exit code', async () => {
      const echo = await runtime.run(spec({ command: ['/bin/echo', 'hi', 'there'] }))
      const failing = await runtime.run(spec({ command: ['/bin/sh', '-c', 'exit 3'] }))
      await harness.waitFor(async () => {
        const states = (await runtime.list()).filter((c) => c.id === echo.id || c.id === failing.id).map((c) => c.state)
        return states.length === 2 && states.every((s) => s === 'exited')
      }, WAIT_MS, 'both containers to exit')
      expect((await listed(echo.id))[0]?.exitCode).toBe(0)
      expect((await listed(failing.id))[0]?.exitCode).toBe(3)
      expect(linesOf(await collect(runtime, echo.id, { follow: false }), 'stdout')).toContain('hi there')
      await runtime.remove(echo.id)
      await runtime.remove(failing.id)
    })

    it('a stopped container is listed as exited, and a removed one is no longer listed', async () => {
      const info = await runtime.run(spec({ ports: [{ container: 80, protocol: 'tcp' }], command: HTTPD_COMMAND, capAdd: ['NET_BIND_SERVICE'] }))
      await runtime.stop(info.id, STOP_TIMEOUT_MS)
      const [stopped] = await listed(info.id)
      expect(stopped?.state).toBe('exited')
      expect(stopped?.exitCode).toEqual(expect.any(Number))
      expect(stopped?.hostPorts).toEqual({})
      await runtime.stop(info.id, STOP_TIMEOUT_MS)
      await runtime.remove(info.id)
      expect(await listed(info.id)).toEqual([])
      expect(await runtime.inspect(info.id)).toBeUndefined()
    })

    it('remove stops a running container first', async () => {
      const info = await runtime.run(spec())
      await runtime.remove(info.id)
      expect(await listed(info.id)).toEqual([])
    })

    it('stopping or removing an absent container is a no-op', async () => {
      const absent = 'f'.repeat(64)
      await runtime.stop(absent, STOP_TIMEOUT_MS)
      await runtime.remove(absent)
      expect(await runtime.inspect(absent)).toBeUndefined()
    })

    it('logs and stats of an absent container fail with CONTAINER_NOT_FOUND', async () => {
      const absent = 'e'.repeat(64)
      await expectCode(collect(runtime, absent, { follow: false }), 'CONTAINER_NOT_FOUND')
      await expectCode(runtime.stats(absent), 'CONTAINER_NOT_FOUND')
    })

    it('a new runtime instance with the same node id adopts the running container', async () => {
      const info = await runtime.run(spec({ command: HTTPD_COMMAND, ports: [{ container: 80, protocol: 'tcp' }], capAdd: ['NET_BIND_SERVICE'] }))
      const restarted = harness.newRuntime()
      const [adopted] = (await restarted.list()).filter((c) => c.id === info.id)
      expect(adopted).toMatchObject({ id: info.id, state: 'running', hostPorts: info.hostPorts, deploymentId: info.deploymentId })
      await restarted.remove(info.id)
      expect(await listed(info.id)).toEqual([])
    })

    it('a runtime with another node id neither sees nor touches the container', async () => {
      const info = await runtime.run(spec())
      const neighbour = harness.newRuntime({ nodeId: `${harness.nodeId}-neighbour` })
      expect((await neighbour.list()).map((c) => c.id)).not.toContain(info.id)
      expect(await neighbour.inspect(info.id)).toBeUndefined()
      await neighbour.stop(info.id, STOP_TIMEOUT_MS)
      await neighbour.remove(info.id)
      await expectCode(neighbour.stats(info.id), 'CONTAINER_NOT_FOUND')
      expect((await listed(info.id))[0]?.state).toBe('running')
      await runtime.remove(info.id)
    })

    it('a container whose executable is absent fails with START_FAILED and leaves nothing behind', async () => {
      const s = spec({ command: ['/bin/does-not-exist'] })
      await expectCode(runtime.run(s), 'START_FAILED')
      expect((await runtime.list()).filter((c) => c.deploymentId === s.deploymentId)).toEqual([])
    })

    it('a container whose image is absent fails with IMAGE_NOT_FOUND and leaves nothing behind', async () => {
      const s = spec({ image: ABSENT_IMAGE })
      await expectCode(runtime.run(s), 'IMAGE_NOT_FOUND')
      expect((await runtime.list()).filter((c) => c.deploymentId === s.deploymentId)).toEqual([])
    })

    it('stats of a running container report memory in use under its limit', async () => {
      const info = await runtime.run(spec({ resources: { cpu: 0.25, memoryMB: 48, pidsMax: 16 } }))
      const stats = await runtime.stats(info.id)
      expect(stats.memoryBytes).toBeGreaterThan(0)
      expect(stats.memoryLimitBytes).toBe(48 * 1024 * 1024)
      expect(stats.memoryBytes).toBeLessThanOrEqual(stats.memoryLimitBytes)
      expect(stats.pids).toBeGreaterThanOrEqual(1)
      expect(stats.cpuPercent).toBeGreaterThanOrEqual(0)
      await runtime.remove(info.id)
    })
  })
}
