/**
 * The runtime acceptance suite against the real Docker engine, plus what only
 * the Docker adapter can get wrong: an engine that is not there. Needs the
 * engine and the lattice-test/busybox image (`npm run setup:docker`). In CI
 * (CI=true) an unreachable engine fails the run; elsewhere the suite is
 * skipped with a message saying how to enable it.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { RuntimeError, silentLogger, type ContainerSpec, type Runtime } from '../core/index.ts'
import { createDockerRuntime } from '../runtime/index.ts'
import { describeWithDocker } from './helpers/docker-gate.ts'
import { runRuntimeSuite, TEST_IMAGE, type RuntimeHarness } from './suites/runtime-suite.ts'

const RUN_ID = `test-${process.pid}-${Date.now()}`
const HTTP_RETRY_MS = 3_000
const POLL_MS = 50

function dockerRuntime(nodeId: string, socketPath?: string): Runtime {
  return createDockerRuntime({
    nodeId,
    socketPath,
    // Test workloads stay private to this machine.
    publishHostIp: '127.0.0.1',
    containerNamePrefix: 'lattice-test',
    pullTimeoutMs: 20_000,
    requestTimeoutMs: 10_000,
  })({ logger: silentLogger })
}

async function httpGet(hostPort: number): Promise<string | undefined> {
  // httpd binds a moment after the container starts: retry connection failures for a while.
  const deadline = Date.now() + HTTP_RETRY_MS
  for (;;) {
    try {
      const response = await fetch(`http://127.0.0.1:${hostPort}/`, { signal: AbortSignal.timeout(1_000) })
      return response.ok ? await response.text() : undefined
    } catch {
      if (Date.now() >= deadline) return undefined
      await sleep(POLL_MS)
    }
  }
}

async function makeHarness(): Promise<RuntimeHarness> {
  const nodeIds = new Set<string>([RUN_ID])
  const runtime = dockerRuntime(RUN_ID)
  return {
    runtime,
    nodeId: RUN_ID,
    newRuntime: (options) => {
      const nodeId = options?.nodeId ?? RUN_ID
      nodeIds.add(nodeId)
      return dockerRuntime(nodeId)
    },
    httpGet,
    waitFor: async (predicate, timeoutMs, what) => {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        if (await predicate()) return
        if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
        await sleep(POLL_MS)
      }
    },
    cleanup: async () => {
      // Every container of this run, in every namespace the run used, whatever state a failing test left.
      for (const nodeId of nodeIds) {
        const r = dockerRuntime(nodeId)
        await Promise.all((await r.list()).map((c) => r.remove(c.id)))
      }
    },
  }
}

describeWithDocker('Docker engine', () => runRuntimeSuite('docker', makeHarness))

describe('Docker runtime without an engine', () => {
  const absent = dockerRuntime(`${RUN_ID}-nowhere`, `/tmp/lattice-no-docker-${process.pid}.sock`)
  const spec: ContainerSpec = {
    deploymentId: 'dep-nowhere',
    replica: 0,
    generation: 1,
    epoch: 1,
    name: 'nowhere',
    image: TEST_IMAGE,
    resources: { cpu: 0.25, memoryMB: 32, pidsMax: 16 },
  }

  it('health answers unavailable with a reason and a hint, without throwing', async () => {
    const health = await absent.health()
    expect(health.available).toBe(false)
    if (health.available) return
    expect(health.reason).toContain('lattice-no-docker')
    expect(health.hint).toMatch(/start Docker/)
  })

  it('run fails with RUNTIME_UNAVAILABLE', async () => {
    const error: unknown = await absent.run(spec).catch((err: unknown) => err)
    expect(error).toBeInstanceOf(RuntimeError)
    expect((error as RuntimeError).code).toBe('RUNTIME_UNAVAILABLE')
  })

  it('list, stop and logs fail with RUNTIME_UNAVAILABLE rather than pretending nothing runs', async () => {
    await expect(absent.list()).rejects.toMatchObject({ code: 'RUNTIME_UNAVAILABLE' })
    await expect(absent.stop('x', 1_000)).rejects.toMatchObject({ code: 'RUNTIME_UNAVAILABLE' })
    const reading = (async () => {
      for await (const _line of absent.logs('x', { follow: false })) break
    })()
    await expect(reading).rejects.toMatchObject({ code: 'RUNTIME_UNAVAILABLE' })
  })
})
