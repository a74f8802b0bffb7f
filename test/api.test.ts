/**
 * The HTTP API through fastify's in-process inject (no socket), on a real
 * node composition with the fake runtime.
 */
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DeploymentView } from '../node/index.ts'
import { eventually, startTestNode, type TestNode } from './helpers/test-node.ts'

const HTTPD = {
  image: 'lattice-test/busybox:latest',
  command: ['/bin/httpd', '-f', '-p', '80', '-h', '/www'],
  ports: [{ container: 80, protocol: 'tcp' as const }],
  resources: { cpu: 0.25, memoryMB: 32 },
}

let t: TestNode

beforeAll(async () => {
  t = await startTestNode()
})
afterAll(async () => {
  await t.cleanup()
})

const api = (method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown, headers: Record<string, string> = {}) =>
  t.node.api.inject({ method, url, headers: { ...t.auth, ...headers }, ...(body !== undefined ? { payload: body as object } : {}) })

const view = async (id: string): Promise<DeploymentView> => (await api('GET', `/v1/deployments/${id}`)).json<DeploymentView>()

const deploy = async (spec: object): Promise<string> => {
  const response = await api('POST', '/v1/deployments', spec)
  expect(response.statusCode, response.body).toBe(201)
  return response.json<{ id: string }>().id
}

const runningView = (id: string, replicas = 1) => eventually(async () => {
  const v = await view(id)
  return v.phase === 'running' && v.replicas.length === replicas ? v : undefined
}, 10_000, `${id} running`)

describe('health and auth', () => {
  it('health answers without a token, with peer id, version and runtime state', async () => {
    const response = await t.node.api.inject({ method: 'GET', url: '/v1/health' })
    expect(response.statusCode).toBe(200)
    const body = response.json()
    expect(body.ok).toBe(true)
    expect(body.peerId).toBe(t.node.peerId)
    expect(body.version).toMatch(/^\d+\.\d+\.\d+/)
    expect(body.runtime).toMatchObject({ available: true })
    expect(body.document.headsCount).toBeGreaterThan(0)
  })

  it.each(['/v1/deployments', '/v1/nodes', '/metrics', '/openapi.json'])('%s without a token answers 401 UNAUTHORIZED', async (url) => {
    const response = await t.node.api.inject({ method: 'GET', url })
    expect(response.statusCode).toBe(401)
    expect(response.json().error.code).toBe('UNAUTHORIZED')
  })

  it('a wrong token answers 401', async () => {
    const response = await t.node.api.inject({ method: 'GET', url: '/v1/deployments', headers: { authorization: 'Bearer nope' } })
    expect(response.statusCode).toBe(401)
  })

  it('an unknown route answers 404 NOT_FOUND', async () => {
    const response = await api('GET', '/v1/nothing-here')
    expect(response.statusCode).toBe(404)
    expect(response.json().error.code).toBe('NOT_FOUND')
  })

  it('GET /v1/nodes lists this node as alive with its capacity', async () => {
    const { nodes } = (await api('GET', '/v1/nodes')).json()
    expect(nodes).toHaveLength(1)
    expect(nodes[0]).toMatchObject({ peerId: t.node.peerId, state: 'alive', self: true })
    expect(nodes[0].capacity.cpu).toBeGreaterThan(0)
    expect(nodes[0].capacity.memoryMB).toBeGreaterThan(0)
  })
})

describe('bad input gets a coded 4xx naming the field', () => {
  it.each([
    ['a missing name', { image: 'x' }, 'name'],
    ['an uppercase name', { name: 'Web', image: 'x' }, 'name'],
    ['a port out of range', { name: 'a', image: 'x', ports: [{ container: 70_000 }] }, 'ports'],
    ['a bad env key', { name: 'a', image: 'x', env: { '1BAD': 'v' } }, 'env'],
    ['too much memory', { name: 'a', image: 'x', resources: { memoryMB: 10_000_000 } }, 'resources'],
    ['an unknown field', { name: 'a', image: 'x', privileged: true }, 'body'],
    ['a negative replica count', { name: 'a', image: 'x', replicas: -1 }, 'replicas'],
  ])('%s answers 400 VALIDATION_FAILED', async (_label, body, field) => {
    const response = await api('POST', '/v1/deployments', body)
    expect(response.statusCode).toBe(400)
    const { error } = response.json()
    expect(error.code).toBe('VALIDATION_FAILED')
    expect(error.message).toContain(field)
  })

  it('malformed JSON answers 400 BAD_REQUEST', async () => {
    const response = await t.node.api.inject({ method: 'POST', url: '/v1/deployments', headers: { ...t.auth, 'content-type': 'application/json' }, payload: '{"name": ' })
    expect(response.statusCode).toBe(400)
    expect(response.json().error.code).toBe('BAD_REQUEST')
  })

  it('an oversized body answers 413 PAYLOAD_TOO_LARGE', async () => {
    const big = JSON.stringify({ name: 'big', image: 'x', env: { A: 'x'.repeat(2 * 1024 * 1024) } })
    const response = await t.node.api.inject({ method: 'POST', url: '/v1/deployments', headers: { ...t.auth, 'content-type': 'application/json' }, payload: big })
    expect(response.statusCode).toBe(413)
    expect(response.json().error.code).toBe('PAYLOAD_TOO_LARGE')
  })

  it('a body of another media type answers 415', async () => {
    const response = await t.node.api.inject({ method: 'POST', url: '/v1/deployments', headers: { ...t.auth, 'content-type': 'text/plain' }, payload: 'hello' })
    expect(response.statusCode).toBe(415)
    expect(response.json().error.code).toBe('UNSUPPORTED_MEDIA_TYPE')
  })

  it('a scale body with a fractional count answers 400', async () => {
    const id = await deploy({ name: 'scale-bad', ...HTTPD })
    const response = await api('POST', `/v1/deployments/${id}/scale`, { replicas: 1.5 })
    expect(response.statusCode).toBe(400)
    expect(response.json().error.code).toBe('VALIDATION_FAILED')
    await api('DELETE', `/v1/deployments/${id}`)
  })

  it('an unknown deployment answers 404', async () => {
    for (const [method, url] of [['GET', '/v1/deployments/d-nope'], ['POST', '/v1/deployments/d-nope/stop'], ['DELETE', '/v1/deployments/d-nope']] as const) {
      const response = await api(method, url)
      expect(response.statusCode).toBe(404)
      expect(response.json().error.code).toBe('NOT_FOUND')
    }
  })

  it('random JSON thrown at POST /v1/deployments only ever gets 201 or a 4xx, and the node keeps answering', async () => {
    const created: string[] = []
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.jsonValue(), fc.record({ name: fc.string(), image: fc.string(), replicas: fc.jsonValue(), ports: fc.jsonValue() })), async (body) => {
        const response = await t.node.api.inject({ method: 'POST', url: '/v1/deployments', headers: { ...t.auth, 'content-type': 'application/json' }, payload: JSON.stringify(body) })
        if (response.statusCode === 201) created.push(response.json().id)
        return response.statusCode === 201 || (response.statusCode >= 400 && response.statusCode < 500 && typeof response.json().error.code === 'string')
      }),
      { numRuns: 200 },
    )
    for (const id of created) await api('DELETE', `/v1/deployments/${id}`)
    expect((await t.node.api.inject({ method: 'GET', url: '/v1/health' })).statusCode).toBe(200)
  })
})

describe('deployment lifecycle', () => {
  it('a deploy answers 201 with an id and its replica runs with a published port that answers', async () => {
    const id = await deploy({ name: 'web', ...HTTPD })
    const v = await runningView(id)
    expect(v.desired).toBe('running')
    expect(v.replicas[0]).toMatchObject({ index: 0, state: 'running', nodeId: t.node.peerId, generation: 1 })
    const hostPort = v.replicas[0]?.hostPorts['80']
    expect(hostPort).toBeGreaterThan(0)
    expect(t.runtime.respond(hostPort as number)).toContain('hello from lattice')
    expect(v.placement['0']).toMatchObject({ winners: [t.node.peerId], closedBy: t.node.peerId })
  })

  it('a second deployment with a live name answers 409 CONFLICT', async () => {
    const response = await api('POST', '/v1/deployments', { name: 'web', ...HTTPD })
    expect(response.statusCode).toBe(409)
    expect(response.json().error.code).toBe('CONFLICT')
  })

  it('a deployment is found by its name as well as its id', async () => {
    const v = await view('web')
    expect(v.name).toBe('web')
  })

  it('stop stops the replica and keeps the container; start runs a fresh one', async () => {
    const before = await runningView('web')
    const first = before.replicas[0]?.containerId
    expect((await api('POST', '/v1/deployments/web/stop')).statusCode).toBe(202)
    await eventually(async () => ((await view('web')).phase === 'stopped' ? true : undefined), 10_000, 'stopped')
    const stopped = (await t.runtime.list()).filter((c) => c.deploymentId === before.id)
    expect(stopped).toHaveLength(1)
    expect(stopped[0]?.state).toBe('exited')
    expect((await api('POST', '/v1/deployments/web/start')).statusCode).toBe(202)
    const after = await runningView('web')
    expect(after.replicas[0]?.containerId).not.toBe(first)
    expect((await t.runtime.list()).filter((c) => c.deploymentId === before.id && c.state === 'running')).toHaveLength(1)
  })

  it('restart replaces the container', async () => {
    const before = await runningView('web')
    expect((await api('POST', '/v1/deployments/web/restart')).statusCode).toBe(202)
    const after = await eventually(async () => {
      const v = await view('web')
      return v.phase === 'running' && v.replicas[0]?.containerId !== before.replicas[0]?.containerId ? v : undefined
    }, 10_000, 'restarted')
    expect(after.epoch).toBe(before.epoch + 1)
  })

  it('scale to 3 runs three containers; scale to 1 removes two', async () => {
    const { id } = await view('web')
    expect((await api('POST', `/v1/deployments/${id}/scale`, { replicas: 3 })).statusCode).toBe(202)
    await runningView(id, 3)
    expect((await t.runtime.list()).filter((c) => c.deploymentId === id && c.state === 'running')).toHaveLength(3)
    expect((await api('POST', `/v1/deployments/${id}/scale`, { replicas: 1 })).statusCode).toBe(202)
    await eventually(async () => ((await t.runtime.list()).filter((c) => c.deploymentId === id).length === 1 ? true : undefined), 10_000, 'scaled down')
    expect((await runningView(id, 1)).replicas).toHaveLength(1)
  })

  it('logs answer as server-sent events, one event per line', async () => {
    const id = await deploy({ name: 'talker', image: 'lattice-test/busybox:latest', command: ['/bin/sh', '-c', 'echo one; echo two >&2; sleep 3600'] })
    await runningView(id)
    const response = await eventually(async () => {
      const r = await api('GET', `/v1/deployments/${id}/logs?tail=50`)
      return r.statusCode === 200 && r.body.includes('event: log') ? r : undefined
    }, 10_000, 'log lines')
    expect(response.headers['content-type']).toContain('text/event-stream')
    const events = response.body.split('\n\n').filter((block) => block.startsWith('event: log')).map((block) => JSON.parse(block.split('data: ')[1] ?? '{}'))
    expect(events.length).toBeGreaterThan(0)
    expect(events.every((e) => e.replica === 0 && (e.stream === 'stdout' || e.stream === 'stderr'))).toBe(true)
  })

  it('logs with follow=true stream lines written after the request, until the client goes', async () => {
    const v = await runningView('talker')
    const controller = new AbortController()
    const response = await fetch(`${t.node.apiUrl()}/v1/deployments/talker/logs?follow=true&tail=0`, { headers: t.auth, signal: controller.signal })
    expect(response.status).toBe(200)
    const reader = response.body!.getReader()
    t.runtime.emitLog(v.replicas[0]!.containerId!, 'stdout', 'a line written later')
    let text = ''
    const decoder = new TextDecoder()
    while (!text.includes('a line written later')) {
      const { value, done } = await reader.read()
      if (done) break
      text += decoder.decode(value)
    }
    controller.abort()
    expect(text).toContain('"line":"a line written later"')
  })

  it('delete removes the containers; the list hides it unless all=true', async () => {
    const { id } = await view('web')
    expect((await api('DELETE', `/v1/deployments/${id}`)).statusCode).toBe(202)
    await eventually(async () => ((await t.runtime.list()).some((c) => c.deploymentId === id) ? undefined : true), 10_000, 'containers removed')
    const list = (await api('GET', '/v1/deployments')).json<{ deployments: DeploymentView[] }>().deployments
    expect(list.some((d) => d.id === id)).toBe(false)
    const all = (await api('GET', '/v1/deployments?all=true')).json<{ deployments: DeploymentView[] }>().deployments
    expect(all.find((d) => d.id === id)?.desired).toBe('deleted')
    expect((await api('POST', `/v1/deployments/${id}/start`)).statusCode).toBe(404)
  })
})

describe('failures the reconciler handles', () => {
  it('an absent image gives the replica state failed with a reason naming the image', async () => {
    const id = await deploy({ name: 'ghost', image: 'nowhere/absent:1' })
    const v = await eventually(async () => {
      const current = await view(id)
      return current.replicas[0]?.state === 'failed' ? current : undefined
    }, 10_000, 'failed')
    expect(v.replicas[0]?.error).toContain('nowhere/absent:1')
    expect((await t.node.api.inject({ method: 'GET', url: '/v1/health' })).statusCode).toBe(200)
    await api('DELETE', `/v1/deployments/${id}`)
  })

  it('a crashed replica with restart=always is restarted and its restart count grows', async () => {
    const id = await deploy({ name: 'crashy', ...HTTPD, ports: [] })
    const first = await runningView(id)
    t.runtime.crash(first.replicas[0]?.containerId as string, 137)
    const again = await eventually(async () => {
      const v = await view(id)
      return v.phase === 'running' && v.replicas[0]?.containerId !== first.replicas[0]?.containerId ? v : undefined
    }, 10_000, 'restarted after crash')
    expect(again.replicas[0]?.restarts).toBe(1)
    await api('DELETE', `/v1/deployments/${id}`)
  })

  it('a crashed replica with restart=never stays failed with the exit code', async () => {
    const id = await deploy({ name: 'once', ...HTTPD, ports: [], restart: 'never' })
    const first = await runningView(id)
    t.runtime.crash(first.replicas[0]?.containerId as string, 3)
    const v = await eventually(async () => {
      const current = await view(id)
      return current.replicas[0]?.state === 'failed' ? current : undefined
    }, 10_000, 'failed')
    expect(v.replicas[0]?.error).toContain('3')
    await api('DELETE', `/v1/deployments/${id}`)
  })

  it('without a reachable engine the node answers, says how to fix it, and replicas wait in pending until it appears', async () => {
    t.runtime.setAvailable(false)
    try {
      const health = await eventually(async () => {
        const body = (await t.node.api.inject({ method: 'GET', url: '/v1/health' })).json()
        return body.runtime?.available === false ? body : undefined
      }, 30_000, 'runtime unavailable')
      expect(health.runtime.hint.length).toBeGreaterThan(0)
      const id = await deploy({ name: 'patient', ...HTTPD, ports: [] })
      const pending = await eventually(async () => {
        const v = await view(id)
        return v.replicas[0]?.state === 'pending' && v.replicas[0].error !== null ? v : undefined
      }, 30_000, 'pending')
      expect(pending.replicas[0]?.error).toContain('unavailable')
    } finally {
      t.runtime.setAvailable(true)
    }
    await runningView('patient')
    await api('DELETE', '/v1/deployments/patient')
  }, 90_000)
})

describe('observability', () => {
  it('/metrics exposes API, reconciler and runtime figures in Prometheus text', async () => {
    const response = await api('GET', '/metrics')
    expect(response.statusCode).toBe(200)
    expect(response.headers['content-type']).toContain('text/plain')
    for (const name of ['lattice_http_requests_total', 'lattice_reconcile_runs_total', 'lattice_runtime_available', 'lattice_containers', 'lattice_document_bytes']) {
      expect(response.body).toContain(name)
    }
  })

  it('/openapi.json documents every route with its schemas', async () => {
    const doc = (await api('GET', '/openapi.json')).json()
    expect(doc.openapi).toMatch(/^3\./)
    for (const path of ['/v1/health', '/v1/nodes', '/v1/deployments', '/v1/deployments/{id}', '/v1/deployments/{id}/scale', '/v1/deployments/{id}/logs', '/v1/events', '/metrics']) {
      expect(doc.paths[path], path).toBeDefined()
    }
    expect(doc.paths['/v1/deployments'].post.requestBody).toBeDefined()
  })

  it('GET /v1/events streams replica state changes as they happen', async () => {
    const controller = new AbortController()
    const response = await fetch(`${t.node.apiUrl()}/v1/events`, { headers: t.auth, signal: controller.signal })
    expect(response.headers.get('content-type')).toContain('text/event-stream')
    const reader = response.body!.getReader()
    const id = await deploy({ name: 'watched', ...HTTPD, ports: [] })
    let text = ''
    const decoder = new TextDecoder()
    while (!text.includes('"state":"running"')) {
      const { value, done } = await reader.read()
      if (done) break
      text += decoder.decode(value)
    }
    controller.abort()
    expect(text).toContain('event: deployment.created')
    expect(text).toContain(id)
    expect(text).toContain('event: replica.state')
    await api('DELETE', `/v1/deployments/${id}`)
  })
})

describe('restart of the node', () => {
  it('a restarted node keeps its deployments and adopts the running container instead of starting another', async () => {
    const id = await deploy({ name: 'survivor', ...HTTPD })
    const before = await runningView(id)
    await t.stop()
    t = await t.restart()
    const after = await runningView(id)
    expect(after.replicas[0]?.containerId).toBe(before.replicas[0]?.containerId)
    expect((await t.runtime.list()).filter((c) => c.deploymentId === id)).toHaveLength(1)
  })
})
