/**
 * The runtime acceptance suite against the fake runtime, on a virtual clock
 * (waitFor advances it), plus the fake's own controls: injected start
 * failures and delays, crashes, outages, and replay from a seed.
 */
import { describe, expect, it } from 'vitest'
import { createRng, RuntimeError, type ContainerSpec } from '../core/index.ts'
import { createFakeEngine, createFakeRuntime, type FakeRuntime } from '../runtime/index.ts'
import { createVirtualClock, type VirtualClock } from '../sim/virtual-clock.ts'
import { runRuntimeSuite, TEST_IMAGE, type RuntimeHarness } from './suites/runtime-suite.ts'

const STEP_MS = 50

function virtualWaitFor(clock: VirtualClock): RuntimeHarness['waitFor'] {
  return async (predicate, timeoutMs, what) => {
    const deadlineMs = clock.nowMs() + timeoutMs
    for (;;) {
      if (await predicate()) return
      if (clock.nowMs() >= deadlineMs) throw new Error(`timed out after ${timeoutMs} virtual ms waiting for ${what}`)
      await clock.advance(STEP_MS)
    }
  }
}

runRuntimeSuite('fake', async () => {
  const clock = createVirtualClock()
  const engine = createFakeEngine()
  const nodeId = 'fake-node-a'
  const runtimes: FakeRuntime[] = []
  const make = (id: string, seed: number): FakeRuntime => {
    const runtime = createFakeRuntime({ nodeId: id, engine })({ clock, rng: createRng(seed) })
    runtimes.push(runtime)
    return runtime
  }
  const runtime = make(nodeId, 1)
  return {
    runtime,
    nodeId,
    newRuntime: (options) => make(options?.nodeId ?? nodeId, runtimes.length + 1),
    httpGet: async (hostPort) => runtime.respond(hostPort),
    waitFor: virtualWaitFor(clock),
    cleanup: async () => {
      for (const r of runtimes) for (const c of await r.list()) await r.remove(c.id)
    },
  }
})

function spec(overrides: Partial<ContainerSpec> = {}): ContainerSpec {
  return {
    deploymentId: 'dep-fake',
    replica: 0,
    generation: 1,
    epoch: 1,
    name: 'fake',
    image: TEST_IMAGE,
    command: ['/bin/httpd', '-f', '-p', '80', '-h', '/www'],
    ports: [{ container: 80, protocol: 'tcp' }],
    resources: { cpu: 0.5, memoryMB: 64, pidsMax: 32 },
    ...overrides,
  }
}

describe('fake runtime controls', () => {
  it('a start delay keeps the container "created" until the clock passes it', async () => {
    const clock = createVirtualClock()
    const runtime = createFakeRuntime({ nodeId: 'n', startDelayMs: 1_000 })({ clock, rng: createRng(1) })
    let started = false
    const running = runtime.run(spec()).then(() => {
      started = true
    })
    await clock.advance(999)
    expect(started).toBe(false)
    expect((await runtime.list()).map((c) => c.state)).toEqual(['created'])
    await clock.advance(1)
    await running
    expect((await runtime.list()).map((c) => c.state)).toEqual(['running'])
  })

  it('a start failure rate of 1 fails every start with START_FAILED and leaves nothing behind', async () => {
    const runtime = createFakeRuntime({ nodeId: 'n', startFailureRate: 1 })({ clock: createVirtualClock(), rng: createRng(1) })
    await expect(runtime.run(spec())).rejects.toMatchObject({ code: 'START_FAILED' })
    expect(await runtime.list()).toEqual([])
  })

  it('the same seed gives the same ids, names, ports and failures', async () => {
    const trace = async (seed: number): Promise<string[]> => {
      const runtime = createFakeRuntime({ nodeId: 'n', startFailureRate: 0.5 })({ clock: createVirtualClock(), rng: createRng(seed) })
      const out: string[] = []
      for (let i = 0; i < 8; i++) {
        try {
          const info = await runtime.run(spec({ replica: i }))
          out.push(`${info.id} ${info.name} ${info.hostPorts['80']}`)
        } catch (err) {
          out.push((err as RuntimeError).code)
        }
      }
      return out
    }
    const first = await trace(42)
    expect(await trace(42)).toEqual(first)
    expect(first).toContain('START_FAILED')
    expect(first.some((line) => line !== 'START_FAILED')).toBe(true)
  })

  it('a crashed container is exited with the given code and error, and stops answering HTTP', async () => {
    const runtime = createFakeRuntime({ nodeId: 'n' })({ clock: createVirtualClock(), rng: createRng(1) })
    const info = await runtime.run(spec())
    const hostPort = info.hostPorts['80'] as number
    expect(runtime.respond(hostPort)).toBe('hello from lattice\n')
    runtime.crash(info.id, 137, 'killed: out of memory')
    expect(await runtime.list()).toMatchObject([{ id: info.id, state: 'exited', exitCode: 137, error: 'killed: out of memory', hostPorts: {} }])
    expect(runtime.respond(hostPort)).toBeUndefined()
  })

  it('httpd without -f daemonizes, so its container exits 0 at once', async () => {
    const runtime = createFakeRuntime({ nodeId: 'n' })({ clock: createVirtualClock(), rng: createRng(1) })
    const info = await runtime.run(spec({ command: ['/bin/httpd', '-p', '80', '-h', '/www'] }))
    expect(info).toMatchObject({ state: 'exited', exitCode: 0 })
  })

  it('an unavailable engine fails calls with RUNTIME_UNAVAILABLE and health explains it', async () => {
    const runtime = createFakeRuntime({ nodeId: 'n', available: false })({ clock: createVirtualClock(), rng: createRng(1) })
    const health = await runtime.health()
    expect(health.available).toBe(false)
    if (!health.available) expect(health.hint).not.toBe('')
    await expect(runtime.run(spec())).rejects.toMatchObject({ code: 'RUNTIME_UNAVAILABLE' })
    await expect(runtime.list()).rejects.toBeInstanceOf(RuntimeError)
    runtime.setAvailable(true)
    expect((await runtime.run(spec())).state).toBe('running')
  })

  it('emitted log lines reach a follower, and a tail of 0 starts at the end', async () => {
    const clock = createVirtualClock()
    const runtime = createFakeRuntime({ nodeId: 'n', engine: createFakeEngine() })({ clock, rng: createRng(1) })
    const info = await runtime.run(spec())
    const lines: string[] = []
    const reading = (async () => {
      for await (const line of runtime.logs(info.id, { follow: true, tail: 0 })) lines.push(`${line.stream}:${line.line}`)
    })()
    runtime.emitLog(info.id, 'stderr', 'boom')
    await clock.advance(0)
    await runtime.stop(info.id, 1_000)
    await reading
    expect(lines).toEqual(['stderr:boom'])
  })

  it('a log bound drops the oldest lines', async () => {
    const runtime = createFakeRuntime({ nodeId: 'n', engine: createFakeEngine({ logLinesMax: 3 }) })({ clock: createVirtualClock(), rng: createRng(1) })
    const info = await runtime.run(spec())
    for (const line of ['a', 'b', 'c', 'd']) runtime.emitLog(info.id, 'stdout', line)
    const lines: string[] = []
    for await (const line of runtime.logs(info.id, { follow: false })) lines.push(line.line)
    expect(lines).toEqual(['b', 'c', 'd'])
  })
})
