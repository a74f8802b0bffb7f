/**
 * State sync over the simulated network (virtual time, seeded loss,
 * duplication and partitions), and against a misbehaving peer: gossip plus
 * anti-entropy converge, partitions heal, a node with a damaged store
 * recovers from a peer, bad input is dropped and counted while the node goes
 * on, and every message bound holds.
 */
import { describe, expect, it } from 'vitest'
import { sameHeads, simCluster, type SimCluster, type SimNode } from '../test/helpers/sync-sim-cluster.ts'
import * as A from '@automerge/automerge'
import { createRng, silentLogger, type RequestContext, type Transport } from '../core/index.ts'
import { createVirtualClock } from '../sim/virtual-clock.ts'
import { createClusterState, type ClusterState } from './cluster-state.ts'
import { resolveStateSyncConfig } from './sync-config.ts'
import { toDocValue, type DocMap } from './doc-codec.ts'
import { genesisChange } from './document.ts'
import { createMemoryStore } from './level-store.ts'
import { CHUNK_PREFIX } from './persistence.ts'
import { createStateSync } from './state-sync.ts'
import { STATE_SYNC_PROTOCOL, STATE_TOPIC } from './sync-config.ts'
import { createManualNetwork, replicaView } from './sync-test-support.ts'
import type { StateSync } from './sync-types.ts'
import { decodeSyncResponse, encodeSyncRequest, encodeTopicChange, syncFrameBytes, type DropReason } from './sync-wire.ts'
import { sampleNode, sampleStatus } from './test-support.ts'

function expectConverged(nodes: SimNode[]): void {
  const [first, ...rest] = nodes
  for (const node of rest) {
    expect(node.state.heads().sort()).toEqual(first!.state.heads().sort())
    expect(replicaView(node.state)).toEqual(replicaView(first!.state))
  }
}

const deploy = (node: SimNode, id: string, extra: { env?: Record<string, string> } = {}) =>
  node.state.createDeployment({ id, spec: { name: `app-${id.toLowerCase()}`, image: 'nginx', ...extra }, owner: node.id })

/** Settles a promise that resolves in virtual time. */
async function within<T>(cluster: SimCluster, promise: Promise<T>, budgetMs: number): Promise<T> {
  let settled = false
  let value: T | undefined
  let error: unknown
  promise.then(
    (v) => {
      settled = true
      value = v
    },
    (err: unknown) => {
      settled = true
      error = err
    },
  )
  for (let elapsed = 0; !settled && elapsed <= budgetMs; elapsed += 25) await cluster.run(25)
  if (!settled) throw new Error(`still pending after ${budgetMs} ms of virtual time`)
  if (error !== undefined) throw error
  return value as T
}

/** A document that starts from the shared genesis and holds one change that writes an invalid deployment entry. */
function docWithInvalidEntry(actor: string): A.Doc<DocMap> {
  const [base] = A.applyChanges(A.init<DocMap>({ actor }), [genesisChange()])
  return A.change(base, { time: 0 }, (draft) => {
    ;(draft.deployments as DocMap).evil = toDocValue({ id: 'evil', name: 'evil', replicas: 'many' })
  })
}

/** A raw participant: its own transport on the network, no ClusterState behind it. */
async function mallory(cluster: SimCluster): Promise<Transport> {
  const transport = cluster.net.transport('mallory')
  await transport.start()
  return transport
}

const BYTES = (n: number, seed: number): Uint8Array => {
  const rng = createRng(seed)
  return Uint8Array.from({ length: n }, () => rng.int(256))
}

describe('state sync over the simulated network', () => {
  it('gossip and anti-entropy on 5 nodes with 20 % loss converge to equal heads and equal entries', async () => {
    const ids = ['n0', 'n1', 'n2', 'n3', 'n4']
    const cluster = await simCluster(ids, { seed: 7, lossRate: 0.2, duplicateRate: 0.05 })
    try {
      for (let round = 0; round < 6; round++) {
        for (const [i, id] of ids.entries()) {
          const node = cluster.node(id)
          await deploy(node, `d-${id}-${round}`)
          await node.state.reportStatus(`d-${id}-${round}`, 0, { ...sampleStatus, restarts: round })
          if (round > 0) await node.state.setReplicas(`d-${ids[(i + 1) % ids.length]}-${round - 1}`, 2).catch(() => undefined)
          await cluster.run(25)
        }
      }
      expect(cluster.net.counters().total.messagesLost).toBeGreaterThan(0) // gossip alone missed some
      expect(await cluster.converge(15_000)).toBeLessThanOrEqual(15_000)
      const nodes = [...cluster.nodes.values()]
      expectConverged(nodes)
      expect(nodes[0]!.state.deployments()).toHaveLength(30)
      for (const node of nodes) {
        const counters = node.sync.counters()
        expect(counters.changesApplied).toBeGreaterThan(0)
        expect(counters.syncSessionsOk).toBeGreaterThan(0)
        expect(counters.changesDropped).toMatchObject({ malformed: 0, invalidEntry: 0, oversized: 0 })
        expect(counters.syncBytesIn + counters.syncBytesOut).toBeGreaterThan(0)
        expect(counters.documentHeads).toBe(node.state.heads().length)
      }
    } finally {
      await cluster.stopAll()
    }
  })

  it('anti-entropy picks among the alive list without ever syncing with itself (the list holds self, as membership\'s does)', async () => {
    const cluster = await simCluster(['n0', 'n1'], { seed: 3 })
    await cluster.run(20 * resolveStateSyncConfig('test').antiEntropyIntervalMs)
    const [n0, n1] = [cluster.node('n0').sync.counters(), cluster.node('n1').sync.counters()]
    expect(n0.syncSessionsStarted).toBeGreaterThan(5)
    // Every session one started, the other served: none went to the starter itself.
    expect(n1.syncSessionsServed).toBe(n0.syncSessionsStarted)
    expect(n0.syncSessionsServed).toBe(n1.syncSessionsStarted)
    await cluster.stopAll()
  })

  it('a partitioned cluster writes on both sides; after the heal every node has equal heads', async () => {
    const cluster = await simCluster(['n0', 'n1', 'n2', 'n3', 'n4'], { seed: 3 })
    try {
      await deploy(cluster.node('n0'), 'shared')
      await cluster.converge(2_000)
      cluster.net.partition([['n0', 'n1'], ['n2', 'n3', 'n4']])
      await deploy(cluster.node('n0'), 'left')
      await cluster.node('n1').state.setDesired('shared', 'stopped')
      await deploy(cluster.node('n3'), 'right')
      await cluster.node('n4').state.setReplicas('shared', 3)
      await cluster.run(3_000)
      expect(sameHeads([cluster.node('n0'), cluster.node('n1')])).toBe(true)
      expect(sameHeads([cluster.node('n2'), cluster.node('n3'), cluster.node('n4')])).toBe(true)
      expect(cluster.node('n0').state.deployment('right')).toBeUndefined()
      expect(cluster.node('n3').state.deployment('left')).toBeUndefined()

      cluster.net.heal()
      await cluster.converge(10_000)
      expectConverged([...cluster.nodes.values()])
      expect(cluster.node('n2').state.deployment('shared')).toMatchObject({ desired: 'stopped', replicas: 3 })
      expect(cluster.node('n0').state.deployment('right')).toBeDefined()
    } finally {
      await cluster.stopAll()
    }
  })

  it('a node whose store has a damaged chunk recovers its content from a peer at start, and the next start is clean', async () => {
    const cluster = await simCluster(['a', 'b'], { seed: 5 })
    try {
      const b = cluster.node('b')
      await b.state.upsertSelfNode(sampleNode)
      await deploy(b, 'web') // its own chunk on b's store
      await deploy(cluster.node('a'), 'api')
      await cluster.converge(2_000)
      const store = b.store
      await cluster.stop('b')
      await store.open()
      const chunks = await store.list(CHUNK_PREFIX)
      expect(chunks.length).toBeGreaterThanOrEqual(3)
      await store.put(chunks[1]!.key, BYTES(64, 1)) // the chunk holding 'web'
      await store.close()

      const restarted = await cluster.start('b', { store })
      expect(restarted.state.stats().corruptChunks).toBe(1)
      expect(restarted.state.deployment('web')).toBeUndefined() // lost here, held by a
      const result = await within(cluster, restarted.sync.initialSync(['a']), 5_000)
      expect(result).toMatchObject({ synced: true, outcome: 'synced', peerId: 'a', recovered: true })
      expect(restarted.sync.isReady()).toBe(true)
      expect(await restarted.sync.ready).toEqual(result)
      expect(restarted.state.deployment('web')).toBeDefined()
      expect(restarted.state.node('b')).toBeDefined()
      expect(restarted.state.heads().sort()).toEqual(cluster.node('a').state.heads().sort())

      await cluster.run(200) // the compaction after recovery
      await cluster.stop('b')
      const again = await cluster.start('b', { store })
      expect(again.state.stats().corruptChunks).toBe(0)
      expect(again.state.deployment('web')).toBeDefined()
    } finally {
      await cluster.stopAll()
    }
  })

  it('a joining node syncs fully from its bootstrap peer before it is ready; a lone node is ready at once; an unreachable bootstrap times out', async () => {
    const cluster = await simCluster(['a'], { seed: 11 })
    try {
      const lone = await within(cluster, cluster.node('a').sync.initialSync([]), 100)
      expect(lone).toMatchObject({ synced: false, outcome: 'alone' })
      for (let i = 0; i < 20; i++) await deploy(cluster.node('a'), `d${i}`)

      const joiner = await cluster.start('b')
      expect(joiner.sync.isReady()).toBe(false)
      const joined = await within(cluster, joiner.sync.initialSync(['a']), 5_000)
      expect(joined).toMatchObject({ synced: true, peerId: 'a', recovered: false })
      expect(joiner.state.deployments()).toHaveLength(20)
      expectConverged([cluster.node('a'), joiner])

      const stranded = await cluster.start('c')
      cluster.net.partition([['c'], ['a', 'b']])
      const timedOut = await within(cluster, stranded.sync.initialSync(['a']), 8_000)
      expect(timedOut).toMatchObject({ synced: false, outcome: 'timeout' })
      expect(stranded.sync.isReady()).toBe(true) // the node goes on; anti-entropy catches up
      cluster.net.heal()
      await cluster.converge(5_000)
    } finally {
      await cluster.stopAll()
    }
  })

  it('waitForPeerAck is true once a peer durably holds the heads, false after the timeout when no peer is reachable', async () => {
    const cluster = await simCluster(['a', 'b', 'c'], { seed: 13 })
    try {
      const a = cluster.node('a')
      await deploy(a, 'acked')
      const heads = a.state.heads()
      expect(await within(cluster, a.sync.waitForPeerAck(heads, 2_000), 2_100)).toBe(true)
      expect(a.sync.peersHolding(heads).length).toBeGreaterThan(0)

      cluster.net.partition([['a'], ['b', 'c']])
      await deploy(a, 'unacked')
      const startedAtMs = cluster.clock.nowMs()
      expect(await within(cluster, a.sync.waitForPeerAck(a.state.heads(), 1_000), 1_100)).toBe(false)
      expect(cluster.clock.nowMs() - startedAtMs).toBeGreaterThanOrEqual(1_000)
      expect(a.sync.peersHolding(a.state.heads())).toEqual([])
    } finally {
      await cluster.stopAll()
    }
  })

  it('a change larger than changeBytesMax is not gossiped; anti-entropy carries it', async () => {
    const cluster = await simCluster(['a', 'b'], { seed: 17, config: { changeBytesMax: 512 } })
    try {
      await deploy(cluster.node('a'), 'big', { env: { PAYLOAD: 'x'.repeat(2_000) } })
      expect(cluster.node('a').sync.counters()).toMatchObject({ changesNotPublished: 1, changesPublished: 0 })
      await cluster.converge(2_000)
      expect(cluster.node('b').state.deployment('big')?.spec.env).toEqual({ PAYLOAD: 'x'.repeat(2_000) })
      expect(cluster.node('b').sync.counters().changesReceived).toBe(0)
    } finally {
      await cluster.stopAll()
    }
  })
})

/** Replicas with these ids on a manual network (each message delivered by hand), state sync on the test preset with `config`. */
async function manualReplicas<const Ids extends readonly string[]>(ids: Ids, config: NonNullable<Parameters<typeof createStateSync>[0]>['config'] = {}) {
  const clock = createVirtualClock()
  const net = createManualNetwork()
  const replicas: Array<{ state: ClusterState; sync: StateSync }> = []
  for (const id of ids) {
    const state = createClusterState({ selfId: id })({ store: createMemoryStore(), clock, logger: silentLogger })
    await state.start()
    const transport = net.transport(id)
    await transport.start()
    const sync = createStateSync({ preset: 'test', config })({ state, transport, clock, rng: createRng(1), logger: silentLogger, peers: () => [] })
    await sync.start()
    replicas.push({ state, sync })
  }
  const stopAll = async (): Promise<void> => {
    for (const node of replicas) {
      await node.sync.stop()
      await node.state.stop()
    }
  }
  return { clock, net, replicas: replicas as { [K in keyof Ids]: { state: ClusterState; sync: StateSync } }, stopAll }
}

describe('state sync with out-of-order gossip', () => {
  it('changes that arrive before their dependencies are held, applied when the dependencies come; past pendingChangesMax the oldest is dropped and sync brings it', async () => {
    const { net, replicas: [a, b], stopAll } = await manualReplicas(['a', 'b'], { pendingChangesMax: 2 })
    await a.state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'a' })
    await a.state.setReplicas('d1', 2)
    await a.state.setReplicas('d1', 3)
    await a.state.setDesired('d1', 'stopped')
    const [create, two, three, stop] = net.take()
    for (const message of [stop!, three!, two!]) net.deliver('b', message) // newest first: all held; `stop` pushed out
    await b.sync.idle()
    expect(b.sync.counters()).toMatchObject({ changesPending: 2, changesDropped: expect.objectContaining({ pendingFull: 1 }) })
    expect(b.state.deployment('d1')).toBeUndefined()
    net.deliver('b', create!)
    net.deliver('b', create!)
    await b.sync.idle()
    expect(b.state.deployment('d1')).toMatchObject({ replicas: 3, desired: 'running' })
    expect(b.sync.counters()).toMatchObject({ changesPending: 0, changesApplied: 3, changesDuplicate: 1 })
    expect(await b.sync.syncNow('a')).toMatchObject({ ok: true })
    expect(b.state.deployment('d1')?.desired).toBe('stopped')
    expect(replicaView(b.state)).toEqual(replicaView(a.state))
    await stopAll()
  })

  it('a chain held for a missing change is released at once when a sync brings the chain; a chain still missing its root stays held', async () => {
    const { net, replicas: [a, b], stopAll } = await manualReplicas(['a', 'b'])
    await a.state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'a' })
    for (const replicas of [2, 3, 4]) await a.state.setReplicas('d1', replicas)
    const [, two, three, four] = net.take()
    for (const message of [four!, three!, two!]) net.deliver('b', message) // the creation never arrives: all three held
    await b.sync.idle()
    expect(b.sync.counters()).toMatchObject({ changesPending: 3, changesApplied: 0 })
    await a.state.setDesired('d1', 'stopped')
    net.take()
    expect(await b.sync.syncNow('a')).toMatchObject({ ok: true })
    await b.sync.idle()
    // The sync brought the creation and the whole chain: each held change is now a duplicate, none waits.
    expect(b.sync.counters()).toMatchObject({ changesPending: 0, changesApplied: 0, changesDuplicate: 3 })
    expect(b.state.deployment('d1')).toMatchObject({ replicas: 4, desired: 'stopped' })
    // A second chain whose first change is lost stays held however often the document changes meanwhile.
    for (const replicas of [5, 6]) await a.state.setReplicas('d1', replicas)
    const [five, six] = net.take()
    net.deliver('b', six!)
    await a.state.setDesired('d1', 'running')
    const [running] = net.take()
    net.deliver('b', running!)
    await b.sync.idle()
    expect(b.sync.counters()).toMatchObject({ changesPending: 2 })
    net.deliver('b', five!)
    await b.sync.idle()
    expect(b.sync.counters()).toMatchObject({ changesPending: 0, changesApplied: 3 })
    expect(replicaView(b.state)).toEqual(replicaView(a.state))
    await stopAll()
  })
})

describe('state sync under bad input', () => {
  it('malformed bytes, random JSON and a change that decodes but yields an invalid entry on the state topic are dropped, counted and blamed; the node goes on', async () => {
    const cluster = await simCluster(['n0', 'n1', 'n2'], { seed: 19, config: { changeBytesMax: 4_096 } })
    try {
      const blamed: [string, DropReason][] = []
      cluster.node('n0').sync.onMisbehaviour((peerId, reason) => blamed.push([peerId, reason]))
      const evil = await mallory(cluster)
      await evil.publish(STATE_TOPIC, BYTES(100, 2))
      await evil.publish(STATE_TOPIC, new TextEncoder().encode(JSON.stringify({ change: 'please', deps: [] })))
      await evil.publish(STATE_TOPIC, Uint8Array.from([1, ...BYTES(50, 3)])) // our version byte, then garbage
      await evil.publish(STATE_TOPIC, Uint8Array.from([1, ...BYTES(5_000, 4)]))
      await evil.publish(STATE_TOPIC, encodeTopicChange(A.getLastLocalChange(docWithInvalidEntry('ee'.repeat(16)))!, 0))
      await cluster.run(200)

      for (const node of cluster.nodes.values()) {
        const counters = node.sync.counters()
        expect(counters.changesReceived).toBe(5)
        expect(counters.changesDropped).toMatchObject({ malformed: 3, oversized: 1, invalidEntry: 1 })
        expect(node.state.deployment('evil')).toBeUndefined() // left out of reads...
        expect(node.state.stats().invalidEntries).toBe(1) // ...though the change is in the history, alike everywhere
        expect(node.sync.misbehavingPeers()).toEqual([expect.objectContaining({ peerId: 'mallory', count: 5 })])
      }
      expect(blamed.map(([peer]) => peer)).toEqual(['mallory', 'mallory', 'mallory', 'mallory', 'mallory'])
      expect(blamed.map(([, reason]) => reason).sort()).toEqual(['invalidEntry', 'malformed', 'malformed', 'malformed', 'oversized'])

      await deploy(cluster.node('n0'), 'after')
      await cluster.converge(2_000)
      expectConverged([...cluster.nodes.values()])
      expect(cluster.node('n2').state.deployment('after')).toBeDefined()
    } finally {
      await cluster.stopAll()
    }
  })

  it('malformed sync requests are answered with an error, a synced change with an invalid entry is counted and left out of reads, a peer answering garbage fails the session; the node goes on', async () => {
    const cluster = await simCluster(['n0', 'n1'], { seed: 23 })
    try {
      const n0 = cluster.node('n0')
      const evil = await mallory(cluster)
      const ask = async (data: Uint8Array) => {
        const reply = await within(cluster, evil.request('n0', STATE_SYNC_PROTOCOL, data, { timeoutMs: 1_000, responseBytesMax: 1 << 20 }), 1_100)
        const decoded = decodeSyncResponse(reply, 1 << 20)
        return decoded.ok ? decoded.value.kind : 'undecodable'
      }
      expect(await ask(BYTES(40, 5))).toBe('error')
      expect(await ask(new TextEncoder().encode('{"sync":"me"}'))).toBe('error')
      expect(await ask(encodeSyncRequest({ epoch: 0, start: true, snapshot: false, payload: BYTES(80, 6) }))).toBe('error')
      expect(await ask(encodeSyncRequest({ epoch: 0, start: true, snapshot: true, payload: BYTES(80, 7) }))).toBe('error')
      // A heads round is heads alone, a whole number of 32-byte hashes.
      expect(await ask(encodeSyncRequest({ epoch: 0, start: false, snapshot: false, heads: true, payload: BYTES(33, 8) }))).toBe('error')
      expect(await ask(encodeSyncRequest({ epoch: 0, start: true, snapshot: false, heads: true, payload: BYTES(32, 9) }))).toBe('error')
      expect(await ask(encodeSyncRequest({ epoch: 0, start: false, snapshot: false, heads: true, payload: BYTES(64, 10) }))).toBe('heads')

      // A full session from a peer whose document holds an invalid entry.
      let doc = docWithInvalidEntry('dd'.repeat(16))
      let syncState = A.initSyncState()
      for (let round = 0; round < 8; round++) {
        const [next, message] = A.generateSyncMessage(doc, syncState)
        syncState = next
        if (message === null && round > 0) break
        const reply = await within(cluster, evil.request('n0', STATE_SYNC_PROTOCOL, encodeSyncRequest({ epoch: 0, start: round === 0, snapshot: false, payload: message ?? new Uint8Array(0) }), { timeoutMs: 1_000, responseBytesMax: 1 << 20 }), 1_100)
        const decoded = decodeSyncResponse(reply, 1 << 20)
        if (!decoded.ok || decoded.value.kind !== 'message') throw new Error('unexpected reply')
        if (decoded.value.payload.byteLength > 0) [doc, syncState] = A.receiveSyncMessage(doc, syncState, decoded.value.payload)
      }
      const counters = n0.sync.counters()
      expect(counters.syncDropped).toMatchObject({ malformed: 6, invalidEntry: 1 }) // 4 raw frames + 2 bad heads rounds
      expect(n0.state.deployment('evil')).toBeUndefined()
      expect(n0.state.hasChanges(A.getHeads(doc))).toBe(true)
      expect(n0.sync.misbehavingPeers()).toEqual([expect.objectContaining({ peerId: 'mallory', count: 6, lastReason: 'malformed' })])

      // The other direction: a peer that answers garbage.
      evil.handle(STATE_SYNC_PROTOCOL, async () => BYTES(30, 8), { requestBytesMax: 1 << 20 })
      expect(await within(cluster, n0.sync.syncNow('mallory'), 2_000)).toMatchObject({ ok: false, reason: 'malformed' })
      evil.handle(STATE_SYNC_PROTOCOL, async () => Uint8Array.from([1, 0, ...BYTES(60, 9)]), { requestBytesMax: 1 << 20 })
      expect(await within(cluster, n0.sync.syncNow('mallory'), 2_000)).toMatchObject({ ok: false, reason: 'malformed' })
      expect(n0.sync.counters().syncSessionFailures.malformed).toBe(2)
      expect(n0.sync.misbehavingPeers()[0]).toMatchObject({ peerId: 'mallory', count: 8 })

      await deploy(n0, 'still-fine')
      expect(await within(cluster, n0.sync.syncNow('n1'), 2_000)).toMatchObject({ ok: true })
      expect(cluster.node('n1').state.deployment('still-fine')).toBeDefined()
    } finally {
      await cluster.stopAll()
    }
  })

  it('an oversized sync request is refused before the handler runs, an oversized reply fails the session, and a document that fits in no message is not sent', async () => {
    const cluster = await simCluster(['a', 'b'], { seed: 29, config: { syncMessageBytesMax: 1_024, documentBytesMax: 1_024 } })
    try {
      const a = cluster.node('a')
      const evil = await mallory(cluster)
      const tooBig = encodeSyncRequest({ epoch: 0, start: true, snapshot: false, payload: BYTES(1_025, 10) })
      expect(tooBig.byteLength).toBe(syncFrameBytes(1_025))
      await expect(within(cluster, evil.request('a', STATE_SYNC_PROTOCOL, tooBig, { timeoutMs: 1_000, responseBytesMax: 1 << 20 }), 1_100)).rejects.toMatchObject({ code: 'TOO_LARGE' })
      expect(a.sync.counters().syncRoundsIn).toBe(0) // refused by the transport: the handler never ran

      evil.handle(STATE_SYNC_PROTOCOL, async (_request: RequestContext) => new Uint8Array(4_096), { requestBytesMax: 1 << 20 })
      expect(await within(cluster, a.sync.syncNow('mallory'), 2_000)).toMatchObject({ ok: false, reason: 'oversized' })

      cluster.net.partition([['a'], ['b']])
      // Incompressible content: the whole document is several KiB even saved.
      for (let i = 0; i < 10; i++) await deploy(a, `d${i}`, { env: { NOISE: Buffer.from(BYTES(200, 100 + i)).toString('hex') } })
      expect(a.state.saveSnapshot().byteLength).toBeGreaterThan(1_024)
      await cluster.run(1_000)
      cluster.net.heal()
      const before = cluster.node('b').state.heads()
      const result = await within(cluster, cluster.node('b').sync.syncNow('a'), 3_000)
      expect(result).toMatchObject({ ok: false, reason: 'refused' }) // a answered: too large, even whole
      expect(cluster.node('b').state.heads()).toEqual(before)
      expect(a.sync.counters().syncSnapshotsSent).toBe(0)
      expect(a.sync.counters().syncSessionFailures.oversized).toBeGreaterThan(0) // a's own sessions to b: nothing fits
    } finally {
      await cluster.stopAll()
    }
  })

  it('a sync message over syncMessageBytesMax is replaced by the whole document when that fits', async () => {
    const cluster = await simCluster(['a', 'b'], { seed: 31, config: { syncMessageBytesMax: 4_096, documentBytesMax: 4_096, antiEntropyIntervalMs: 60_000 } })
    try {
      const a = cluster.node('a')
      await deploy(a, 'd1')
      for (let i = 0; i < 150; i++) await a.state.reportStatus('d1', 0, { ...sampleStatus, restarts: i, error: `e${i}` })
      expect(await within(cluster, cluster.node('b').sync.syncNow('a'), 3_000)).toMatchObject({ ok: true })
      cluster.net.partition([['a'], ['b']])
      // 50 more changes: under a third of the history, so Automerge sends them one by one (~7 KB) rather than the document (~2 KB).
      for (let i = 150; i < 200; i++) await a.state.reportStatus('d1', 0, { ...sampleStatus, restarts: i, error: `e${i}` })
      cluster.net.heal()
      expect(await within(cluster, cluster.node('b').sync.syncNow('a'), 3_000)).toMatchObject({ ok: true })
      expect(a.sync.counters().syncSnapshotsSent).toBe(1) // a answered with its document
      expect(cluster.node('b').sync.counters().syncSnapshotsReceived).toBe(1)
      expectConverged([a, cluster.node('b')])

      // The same from the initiator's side: a's own request carries the document.
      cluster.net.partition([['a'], ['b']])
      for (let i = 200; i < 260; i++) await a.state.reportStatus('d1', 0, { ...sampleStatus, restarts: i, error: `e${i}` })
      cluster.net.heal()
      expect(await within(cluster, a.sync.syncNow('b'), 3_000)).toMatchObject({ ok: true })
      expect(a.sync.counters().syncSnapshotsSent).toBe(2)
      expect(cluster.node('b').sync.counters().syncSnapshotsReceived).toBe(2)
      expectConverged([a, cluster.node('b')])
    } finally {
      await cluster.stopAll()
    }
  })
})

describe('anti-entropy opens each session with a heads round', () => {
  it('two replicas in sync end a session after one round of heads, without a Bloom filter of the history', async () => {
    const cluster = await simCluster(['a', 'b'], { seed: 41, config: { antiEntropyIntervalMs: 600_000 } })
    try {
      const a = cluster.node('a')
      const b = cluster.node('b')
      for (let i = 0; i < 40; i++) await deploy(a, `d${i}`)
      expect(await within(cluster, b.sync.syncNow('a'), 3_000)).toMatchObject({ ok: true })
      expectConverged([a, b])
      const before = { a: a.sync.counters(), b: b.sync.counters() }
      expect(await within(cluster, b.sync.syncNow('a'), 3_000)).toEqual({ ok: true, peerId: 'a', rounds: 1 })
      const after = { a: a.sync.counters(), b: b.sync.counters() }
      expect(after.b.syncRoundsOut - before.b.syncRoundsOut).toBe(1)
      expect(after.a.syncSessionsServed - before.a.syncSessionsServed).toBe(1)
      // A heads round is 6 + 32 bytes each way (one head), not a sync message with a filter of 40 changes.
      expect(after.b.syncBytesOut - before.b.syncBytesOut).toBe(6 + 32 * a.state.heads().length)
      expect(b.sync.peersHolding(a.state.heads())).toEqual(['a'])
    } finally {
      await cluster.stopAll()
    }
  })

  it('replicas that differ on both sides still converge after the heads round, in either direction', async () => {
    const cluster = await simCluster(['a', 'b'], { seed: 43, config: { antiEntropyIntervalMs: 600_000 } })
    try {
      const a = cluster.node('a')
      const b = cluster.node('b')
      for (let i = 0; i < 20; i++) await deploy(a, `shared${i}`)
      expect(await within(cluster, b.sync.syncNow('a'), 3_000)).toMatchObject({ ok: true })
      cluster.net.partition([['a'], ['b']])
      for (let i = 0; i < 15; i++) await deploy(a, `a${i}`)
      for (let i = 0; i < 5; i++) await deploy(b, `b${i}`)
      cluster.net.heal()
      const result = await within(cluster, a.sync.syncNow('b'), 3_000)
      expect(result).toMatchObject({ ok: true })
      expect(result.rounds).toBeGreaterThan(1)
      expectConverged([a, b])
      expect(a.state.deployments()).toHaveLength(40)
      // And a replica only behind catches up from one that is only ahead.
      cluster.net.partition([['a'], ['b']])
      for (let i = 15; i < 25; i++) await deploy(a, `a${i}`)
      cluster.net.heal()
      expect(await within(cluster, b.sync.syncNow('a'), 3_000)).toMatchObject({ ok: true })
      expectConverged([a, b])
      expect(b.state.deployments()).toHaveLength(50)
    } finally {
      await cluster.stopAll()
    }
  })
})

describe('state sync applies gossip in batches', () => {
  it('changes from several senders arriving within applyDelayMs are applied, persisted and announced once; none waits longer', async () => {
    const { clock, net, replicas: [a, b, c], stopAll } = await manualReplicas(['a', 'b', 'c'], { applyDelayMs: 50 })
    await clock.advance(50 - (clock.nowMs() % 50)) // on a multiple of applyDelayMs: the next one is a whole period away
    await a.state.createDeployment({ id: 'da', spec: { name: 'web', image: 'nginx' }, owner: 'a' })
    await b.state.createDeployment({ id: 'db', spec: { name: 'api', image: 'nginx' }, owner: 'b' })
    await b.state.setReplicas('db', 2)
    const messages = net.take()
    expect(messages).toHaveLength(3)
    const events: Array<{ afterMs: number; deployments: ReadonlySet<string> | 'all' }> = []
    const deliveredAtMs = clock.nowMs()
    c.state.onChange((event) => events.push({ afterMs: clock.nowMs() - deliveredAtMs, deployments: event.deployments }))
    const chunksBefore = c.state.stats().chunks
    for (const message of messages) net.deliver('c', message)
    await clock.advance(49)
    expect(c.state.deployment('da')).toBeUndefined() // still waiting for more
    await clock.advance(1)
    await c.sync.idle()
    expect(c.state.deployment('da')).toBeDefined()
    expect(c.state.deployment('db')?.replicas).toBe(2)
    expect(events).toEqual([{ afterMs: 50, deployments: new Set(['da', 'db']) }])
    expect(c.state.stats().chunks).toBe(chunksBefore + 1)
    expect(c.sync.counters()).toMatchObject({ changesApplied: 3 })
    await stopAll()
  })

  it('applies at the multiples of applyDelayMs on the node clock: replicas that received the same changes at different times apply them together', async () => {
    const { clock, net, replicas: [a, b, c], stopAll } = await manualReplicas(['a', 'b', 'c'], { applyDelayMs: 50 })
    await a.state.createDeployment({ id: 'da', spec: { name: 'web', image: 'nginx' }, owner: 'a' })
    const [message] = net.take()
    await clock.advance(50 - (clock.nowMs() % 50) + 10) // 10 ms past a multiple
    const appliedAt = new Map<string, number>()
    b.state.onChange(() => appliedAt.set('b', clock.nowMs()))
    c.state.onChange(() => appliedAt.set('c', clock.nowMs()))
    const multiple = clock.nowMs() + 40
    net.deliver('b', message!)
    await clock.advance(25)
    net.deliver('c', message!)
    await clock.advance(14)
    expect(appliedAt.size).toBe(0)
    await clock.advance(1)
    await b.sync.idle()
    await c.sync.idle()
    // Both at the multiple: b did not wait a whole applyDelayMs, c waited 15 ms, not 50.
    expect(Object.fromEntries(appliedAt)).toEqual({ b: multiple, c: multiple })
    await stopAll()
  })
})

describe('a gap in the gossip', () => {
  it('a change held for a lost one brings the next anti-entropy session forward: filled in gapSyncDelayMs, not an interval', async () => {
    const cluster = await simCluster(['a', 'b'], { seed: 5, config: { antiEntropyIntervalMs: 60_000, antiEntropyJitterMs: 0, gapSyncDelayMs: 500, gapSyncIntervalMinMs: 1_000 } })
    try {
      const a = cluster.node('a')
      const b = cluster.node('b')
      await a.state.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'a' })
      await cluster.run(100)
      expect(b.state.deployment('d1')).toBeDefined()
      /** a scales to `lost` (its gossip lost on the way to b), then to `lost + 1` (which arrives and must wait for it). */
      const loseOneThenSend = async (lost: number, stepMs: number): Promise<void> => {
        cluster.net.partitionOneWay(['a'], ['b'])
        await a.state.setReplicas('d1', lost)
        await cluster.run(stepMs)
        cluster.net.heal()
        await a.state.setReplicas('d1', lost + 1)
        await cluster.run(stepMs)
      }
      await loseOneThenSend(2, 100)
      expect(b.state.deployment('d1')?.replicas).toBe(1)
      expect(b.sync.counters()).toMatchObject({ changesPending: 1, gapSyncs: 0 })
      await cluster.run(500)
      expect(b.sync.counters().gapSyncs).toBe(1)
      expect(b.state.deployment('d1')?.replicas).toBe(3)
      expect(sameHeads([a, b])).toBe(true)
      // A gap filled by the gossip itself (reordering) before the delay starts no session.
      await loseOneThenSend(4, 50)
      await b.state.mergeSnapshot(a.state.saveSnapshot()) // what a late copy of the lost change would bring
      await cluster.run(1_000)
      expect(b.sync.counters().gapSyncs).toBe(1)
      expect(b.state.deployment('d1')?.replicas).toBe(5)
    } finally {
      await cluster.stopAll()
    }
  })
})
