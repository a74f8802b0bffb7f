/** A node whose cluster document failed (Automerge trapped) says so on its health route and events, and a restart recovers it. */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { automergeEngine } from '../crdt/index.ts'
import { startTestNode, type TestNode } from './helpers/test-node.ts'

let nodes: TestNode[] = []
afterEach(async () => {
  vi.restoreAllMocks()
  for (const t of nodes) await t.cleanup()
  nodes = []
})

const SPEC = { name: 'web', image: 'busybox', command: ['httpd', '-f'] }

describe('cluster document failure', () => {
  it('health answers ok:false with the reason, a state.failed event is out, writes answer 500; a restart over the same data dir works again', async () => {
    // An engine of its own: the trap below marks its engine dead for the rest of this process, as a real trap does.
    const engine = automergeEngine(1)
    const t = await startTestNode({ automerge: engine })
    nodes.push(t)
    const api = (method: 'GET' | 'POST', url: string, payload?: object) => t.node.api.inject({ method, url, headers: t.auth, ...(payload !== undefined ? { payload } : {}) })
    expect((await api('POST', '/v1/deployments', { ...SPEC, name: 'before' })).statusCode).toBe(201)
    // Every handle of the engine is an instance of its WASM Automerge class: make its commit trap, as it does out of memory.
    const probe = engine.create()
    const handleClass = Object.getPrototypeOf(probe) as { commit(...args: unknown[]): unknown }
    probe.free()
    vi.spyOn(handleClass, 'commit').mockImplementation(() => {
      throw new Error('Module terminated')
    })
    const refused = await api('POST', '/v1/deployments', SPEC)
    expect(refused.statusCode).toBe(500)
    expect(refused.json().error.code).toBe('INTERNAL')
    vi.restoreAllMocks()
    const health = (await t.node.api.inject({ method: 'GET', url: '/v1/health' })).json()
    expect(health.ok).toBe(false)
    expect(health.stateFailure).toMatch(/Automerge failed while making a local change: Module terminated/)
    expect(t.node.events.recent().filter((event) => event.type === 'state.failed')).toHaveLength(1)
    // Still refused with the engine back: the document is not trusted again until a restart reloads it.
    expect((await api('POST', '/v1/deployments', { ...SPEC, name: 'after' })).statusCode).toBe(500)

    await t.stop({ graceful: false })
    // A new process: a live engine, the same data dir.
    const restarted = await startTestNode({ dataDir: t.dataDir, engine: t.engine })
    nodes.push(restarted)
    const healthAfter = (await restarted.node.api.inject({ method: 'GET', url: '/v1/health' })).json()
    expect(healthAfter.ok).toBe(true)
    expect(healthAfter.stateFailure).toBeUndefined()
    const listed = (await restarted.node.api.inject({ method: 'GET', url: '/v1/deployments', headers: restarted.auth })).json()
    expect(listed.deployments.map((d: { spec: { name: string } }) => d.spec.name)).toEqual(['before'])
    expect((await restarted.node.api.inject({ method: 'POST', url: '/v1/deployments', headers: restarted.auth, payload: { ...SPEC, name: 'after' } })).statusCode).toBe(201)
  })
})
