/** Two replicas exchanging changes through onLocalChange / applyChanges / changesSince. */
import { automergeEngine } from './automerge-engine.ts'
import { describe, expect, it, vi } from 'vitest'
import * as A from '@automerge/automerge'
import { createVirtualClock, type VirtualClock } from '../sim/virtual-clock.ts'
import type { ClusterChangeEvent, ClusterState } from './cluster-state.ts'
import { createMemoryStore } from './level-store.ts'
import type { PlacementInput } from './schema.ts'
import { sampleNode, sampleStatus, startState, type Started, type StartOptions } from './test-support.ts'

/** Starts a ClusterState on a memory store and a fresh virtual clock unless given. */
const start = (options: Partial<StartOptions<VirtualClock>> = {}): Promise<Started<VirtualClock>> =>
  startState({ clock: createVirtualClock(), ...options })

function view(state: ClusterState): unknown {
  return {
    heads: state.heads(),
    nodes: state.nodes(),
    deployments: state.deployments(),
    placements: state.deployments().map((d) => [...state.placements(d.id)]),
    statuses: state.deployments().map((d) => state.statuses(d.id)),
  }
}

/** Collects a replica's local changes so a test decides when (and in what order) they are delivered. */
function outbox(state: ClusterState): { take(): Uint8Array[] } {
  let pending: Uint8Array[] = []
  state.onLocalChange((change) => pending.push(change))
  return {
    take: () => {
      const out = pending
      pending = []
      return out
    },
  }
}

async function pair(): Promise<{ a: ClusterState; b: ClusterState; exchange(): Promise<void> }> {
  const clock = createVirtualClock()
  const a = (await start({ selfId: 'node-a', clock })).state
  const b = (await start({ selfId: 'node-b', clock })).state
  const fromA = outbox(a)
  const fromB = outbox(b)
  return {
    a,
    b,
    exchange: async () => {
      const toB = fromA.take()
      const toA = fromB.take()
      await b.applyChanges(toB)
      await a.applyChanges(toA)
    },
  }
}

const placement = (winner: string, score: number): PlacementInput => ({
  generation: 1,
  winners: [winner],
  bids: [{ peerId: winner, score, atMs: 10 }],
  shortlist: ['node-a', 'node-b'],
  closedBy: winner,
  openedAtMs: 0,
  closedAtMs: 20,
  history: [],
})

describe('cluster state sync between replicas', () => {
  it('two replicas exchanging their local changes converge to equal heads and equal entries', async () => {
    const { a, b, exchange } = await pair()
    await a.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx', replicas: 2 }, owner: 'node-a' })
    await b.upsertSelfNode(sampleNode)
    await exchange()
    await b.reportStatus('d1', 1, sampleStatus)
    await a.setDesired('d1', 'stopped')
    await exchange()
    expect(a.heads()).toEqual(b.heads())
    expect(view(a)).toEqual(view(b))
    expect(b.deployment('d1')?.desired).toBe('stopped')
    expect(a.statuses('d1').map((s) => [s.replica, s.peerId])).toEqual([[1, 'node-b']])
  })

  it('two fresh nodes that register before ever syncing both stay registered (shared genesis)', async () => {
    const { a, b, exchange } = await pair()
    await a.upsertSelfNode(sampleNode)
    await b.upsertSelfNode({ ...sampleNode, name: 'desktop' })
    await a.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await b.createDeployment({ id: 'd2', spec: { name: 'api', image: 'nginx' }, owner: 'node-b' })
    await exchange()
    expect(a.nodes().map((n) => n.peerId)).toEqual(['node-a', 'node-b'])
    expect(b.deployments().map((d) => d.id).sort()).toEqual(['d1', 'd2'])
    expect(view(a)).toEqual(view(b))
  })

  it('concurrent reports for the same replica from two nodes are both kept', async () => {
    const { a, b, exchange } = await pair()
    await a.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await exchange()
    await a.reportStatus('d1', 0, sampleStatus)
    await b.reportStatus('d1', 0, { ...sampleStatus, state: 'stopped' })
    await exchange()
    expect(a.statuses('d1').map((s) => [s.peerId, s.state])).toEqual([['node-a', 'running'], ['node-b', 'stopped']])
    expect(view(a)).toEqual(view(b))
  })

  it('a concurrent stop on one node and scale on another both survive the merge', async () => {
    const { a, b, exchange } = await pair()
    await a.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await exchange()
    await a.setDesired('d1', 'stopped')
    await b.setReplicas('d1', 4)
    await exchange()
    expect(a.deployment('d1')).toMatchObject({ desired: 'stopped', replicas: 4 })
    expect(view(a)).toEqual(view(b))
  })

  it('concurrent stop, restart and scale on three nodes all survive the merge, each field from its own writer', async () => {
    const clock = createVirtualClock()
    const nodes = await Promise.all(['node-a', 'node-b', 'node-c'].map(async (selfId) => (await start({ selfId, clock })).state))
    const [a, b, c] = nodes as [ClusterState, ClusterState, ClusterState]
    await a.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    for (const peer of [b, c]) await peer.mergeSnapshot(a.saveSnapshot())
    await a.setDesired('d1', 'stopped')
    await b.bumpEpoch('d1')
    await c.setReplicas('d1', 3)
    const all = nodes.flatMap((node) => node.changesSince([]))
    for (const node of nodes) await node.applyChanges(all)
    for (const node of nodes) expect(node.deployment('d1')).toMatchObject({ desired: 'stopped', epoch: 2, replicas: 3 })
    expect(view(b)).toEqual(view(a))
    expect(view(c)).toEqual(view(a))
  })

  it('two nodes scaling up at once, each reporting the new replica before they merge, keep both reports', async () => {
    const { a, b, exchange } = await pair()
    await a.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await exchange()
    await a.setReplicas('d1', 3)
    await a.reportStatus('d1', 2, sampleStatus)
    await b.setReplicas('d1', 3)
    await b.reportStatus('d1', 2, { ...sampleStatus, state: 'starting' })
    await exchange()
    for (const node of [a, b]) expect(node.statuses('d1').map((s) => [s.replica, s.peerId, s.state])).toEqual([[2, 'node-a', 'running'], [2, 'node-b', 'starting']])
  })

  it('a deployment reads back the same on a peer that merged its snapshot and after a restart (definition round trip)', async () => {
    const clock = createVirtualClock(1_234)
    const store = createMemoryStore()
    const a = (await start({ selfId: 'node-a', clock, store })).state
    const spec = {
      name: 'web',
      image: 'ghcr.io/acme/web:1.2',
      command: ['serve', '--port', '8080'],
      env: { MODE: 'prod', QUOTE: 'say "hi" \\ ünïcode' },
      ports: [{ container: 8080 }, { container: 53, protocol: 'udp' as const }],
      resources: { cpu: 1.5, memoryMB: 512 },
      replicas: 2,
      restart: 'on-failure' as const,
      constraints: { labels: { zone: 'home' } },
      strategy: 'binpack' as const,
      capAdd: ['NET_ADMIN'],
    }
    const created = await a.createDeployment({ id: 'd1', spec, owner: 'node-a' })
    expect(a.deployment('d1')).toEqual(created)
    const fresh = (await start({ selfId: 'node-b', clock })).state
    await fresh.mergeSnapshot(a.saveSnapshot())
    expect(fresh.deployment('d1')).toEqual(created)
    await a.stop()
    const restarted = (await start({ selfId: 'node-a', clock, store })).state
    expect(restarted.deployment('d1')).toEqual(created)
  })

  it('two concurrent closes of the same round converge to one whole record, never a mix', async () => {
    const { a, b, exchange } = await pair()
    await a.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await exchange()
    await a.writePlacement('d1', 0, placement('node-a', 0.7))
    await b.writePlacement('d1', 0, placement('node-b', 0.9))
    await exchange()
    const winner = a.placement('d1', 0)
    expect(b.placement('d1', 0)).toEqual(winner)
    expect([placement('node-a', 0.7), placement('node-b', 0.9)]).toContainEqual(winner)
  })

  it('applying the same change twice is a no-op the second time: no event, no chunk', async () => {
    const { a, b } = await pair()
    const fromA = outbox(a)
    await a.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    const changes = fromA.take()
    const events: ClusterChangeEvent[] = []
    b.onChange((event) => events.push(event))
    await b.applyChanges(changes)
    const after = { heads: b.heads(), chunks: b.stats().chunks }
    await b.applyChanges(changes)
    expect(events).toEqual([{ local: false, deployments: new Set(['d1']), nodes: false }])
    expect({ heads: b.heads(), chunks: b.stats().chunks }).toEqual(after)
  })

  it('a change that arrives before its dependency is held, then applied when the dependency arrives', async () => {
    const { a, b } = await pair()
    const fromA = outbox(a)
    await a.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    const [create] = fromA.take()
    await a.setDesired('d1', 'stopped')
    const [stop] = fromA.take()
    const events: ClusterChangeEvent[] = []
    b.onChange((event) => events.push(event))
    await b.applyChanges([stop!])
    expect(b.deployment('d1')).toBeUndefined()
    expect(events).toEqual([])
    await b.applyChanges([create!])
    expect(b.deployment('d1')?.desired).toBe('stopped')
    expect(b.heads()).toEqual(a.heads())
    expect(events).toEqual([{ local: false, deployments: new Set(['d1']), nodes: false }])
  })

  it('bytes that are not Automerge changes are rejected with VALIDATION_FAILED and change nothing', async () => {
    const { a } = await pair()
    await a.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    const before = view(a)
    await expect(a.applyChanges([new Uint8Array([1, 2, 3, 4])])).rejects.toMatchObject({ code: 'VALIDATION_FAILED' })
    expect(view(a)).toEqual(before)
    await a.setDesired('d1', 'stopped') // still writable
    expect(a.deployment('d1')?.desired).toBe('stopped')
  })

  it('Automerge itself failing (a WebAssembly trap) is INTERNAL, logged once, not blamed on the changes; the state stays failed, as does every document of its engine, until a restart reloads it from the store', async () => {
    const clock = createVirtualClock()
    const a = (await start({ selfId: 'node-a', clock })).state
    // An engine of its own: the trap below marks its engine dead for the rest of this process.
    const engine = automergeEngine(3)
    const started = await start({ selfId: 'node-b', clock, automerge: engine })
    const neighbour = (await start({ selfId: 'node-c', clock, automerge: engine })).state
    const b = started.state
    const failures: string[] = []
    b.onFailure((reason) => failures.push(reason))
    const fromA = outbox(a)
    await a.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    const changes = fromA.take()
    // Every handle of the engine is an instance of its WASM Automerge class: make its apply trap, as it does out of memory.
    const probe = engine.create()
    const handleClass = Object.getPrototypeOf(probe) as { applyChanges(changes: Uint8Array[]): void }
    probe.free()
    const spy = vi.spyOn(handleClass, 'applyChanges').mockImplementation(() => {
      throw new (globalThis as unknown as { WebAssembly: { RuntimeError: new (message: string) => Error } }).WebAssembly.RuntimeError('unreachable')
    })
    try {
      expect(b.failure()).toBeUndefined()
      await expect(b.applyChanges(changes)).rejects.toMatchObject({ code: 'INTERNAL' })
      expect(started.logger.at('error').map((record) => record.msg)).toContain('Automerge failed: the document is gone; restart the node (it reloads from its store)')
      expect(b.failure()).toMatch(/Automerge failed while applying remote changes: unreachable/)
    } finally {
      spy.mockRestore()
    }
    // Latched: after a trap every later call into the module fails ("Module terminated"), so nothing is tried.
    await expect(b.applyChanges(changes)).rejects.toMatchObject({ code: 'INTERNAL', message: expect.stringMatching(/restart the node/) })
    await expect(b.createDeployment({ id: 'd2', spec: { name: 'db', image: 'postgres' }, owner: 'node-b' })).rejects.toMatchObject({ code: 'INTERNAL' })
    expect(() => b.generateSyncMessage(A.initSyncState())).toThrow(expect.objectContaining({ code: 'INTERNAL' }))
    expect(b.stats().changeCount).toBe(0) // health can still answer
    expect(failures).toEqual([b.failure()])
    expect(started.logger.at('error').filter((record) => (record.msg ?? '').startsWith('Automerge failed'))).toHaveLength(1)
    // The engine's other documents are gone too: the next call into one says so instead of trapping.
    expect(() => neighbour.heads()).toThrow(expect.objectContaining({ code: 'INTERNAL', message: expect.stringMatching(/another document of this Automerge engine failed/) }))
    expect(neighbour.failure()).toBeDefined()
    expect(a.failure()).toBeUndefined() // another engine: unharmed
    // A new process (here: a new state on the same store, in a live engine) reloads and applies the same changes.
    const restarted = (await start({ selfId: 'node-b', clock, store: started.store })).state
    await restarted.applyChanges(changes)
    expect(restarted.deployment('d1')?.spec.name).toBe('web')
    expect(restarted.failure()).toBeUndefined()
  })

  it('a trap while making a local change fails the state the same way', async () => {
    const engine = automergeEngine(4)
    const started = await start({ selfId: 'node-a', clock: createVirtualClock(), automerge: engine })
    const probe = engine.create()
    const handleClass = Object.getPrototypeOf(probe) as { commit(...args: unknown[]): unknown }
    probe.free()
    const spy = vi.spyOn(handleClass, 'commit').mockImplementation(() => {
      throw new Error('Module terminated')
    })
    try {
      await expect(started.state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })).rejects.toMatchObject({ code: 'INTERNAL' })
    } finally {
      spy.mockRestore()
    }
    expect(started.state.failure()).toMatch(/while making a local change: Module terminated/)
  })

  it('changesSince(a peer’s heads) is exactly what that peer is missing', async () => {
    const { a, b, exchange } = await pair()
    await a.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await exchange()
    await a.setReplicas('d1', 3)
    await a.bumpEpoch('d1')
    const missing = a.changesSince(b.heads())
    expect(missing.map((change) => A.decodeChange(change).message)).toEqual(['scale d1 3', 'restart d1'])
    await b.applyChanges(missing)
    expect(view(b)).toEqual(view(a))
    expect(a.changesSince([])).toHaveLength(a.stats().changeCount)
  })

  it('changesSince with heads this replica never saw sends everything; malformed heads are VALIDATION_FAILED', async () => {
    const { a } = await pair()
    await a.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    expect(a.changesSince(['00'.repeat(32)])).toHaveLength(a.stats().changeCount)
    expect(() => a.changesSince(['not-a-hash'])).toThrow(expect.objectContaining({ code: 'VALIDATION_FAILED' }))
  })

  it('remote changes are persisted: a restarted replica still has them', async () => {
    const clock = createVirtualClock()
    const store = createMemoryStore()
    const a = (await start({ selfId: 'node-a', clock })).state
    const b = (await start({ selfId: 'node-b', clock, store })).state
    await a.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await b.applyChanges(a.changesSince(b.heads()))
    await b.stop()
    const restarted = (await start({ selfId: 'node-b', clock, store })).state
    expect(restarted.deployment('d1')).toEqual(a.deployment('d1'))
    expect(restarted.heads()).toEqual(a.heads())
  })

  it('a full snapshot from a peer can be replayed as changes into a fresh node', async () => {
    const { a } = await pair()
    await a.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-a' })
    await a.upsertSelfNode(sampleNode)
    const fresh = (await start({ selfId: 'node-c' })).state
    await fresh.applyChanges(A.getAllChanges(A.load(a.saveSnapshot())))
    expect(view(fresh)).toEqual(view(a))
  })
})
