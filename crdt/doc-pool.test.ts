/**
 * The document pool (doc-pool.ts): its reference counting, and replicas that
 * share documents reading exactly what replicas with their own documents
 * read, change for change, through gossip, sync, local writes and restarts.
 */
import { createHash } from 'node:crypto'
import { describe, expect, it, vi } from 'vitest'
import fc from 'fast-check'
import * as A from '@automerge/automerge'
import { silentLogger, type Store } from '../core/index.ts'
import { createVirtualClock } from '../sim/virtual-clock.ts'
import { copyStore } from '../sim/warm-registry.ts'
import { createClusterState, type ClusterState } from './cluster-state.ts'
import { automergeEngine } from './automerge-engine.ts'
import { createHandle } from './doc-handle.ts'
import { createDocPool, createDocPoolShared, headsKey, headsKeyAfter, type DocPool } from './doc-pool.ts'
import { createMemoryStore } from './level-store.ts'
import type { SyncState } from './cluster-state.ts'
import { replicaView } from './sync-test-support.ts'
import { sampleNode, sampleStatus } from './test-support.ts'

function handleWith(actor: string, key: string, value: string) {
  const handle = createHandle(actor)
  handle.put('_root', key, value)
  handle.commit('test', 0)
  return handle
}

const freed = (handle: ReturnType<typeof createHandle>): boolean => {
  try {
    handle.getHeads()
    return false
  } catch {
    return true
  }
}

describe('doc pool', () => {
  it('counts references: the last release frees, an equal adopted handle is dropped for the pooled one', () => {
    const pool = createDocPool()
    const first = handleWith('aa', 'k', 'v')
    const key = headsKey(first.getHeads())
    expect(pool.adopt(first, key)).toBe(first)
    expect(pool.keyOf(first)).toBe(key)
    expect(pool.shared(first)).toBe(false)

    const twin = first.fork('bb') // same history, another handle
    expect(pool.adopt(twin, key)).toBe(first)
    expect(freed(twin)).toBe(true)
    expect(pool.shared(first)).toBe(true)
    expect(() => pool.detach(first)).toThrow(/others hold/)

    expect(pool.acquire(key)).toBe(first)
    expect(pool.acquire('nothing')).toBeUndefined()
    pool.release(first)
    pool.release(first)
    expect(freed(first)).toBe(false)
    pool.release(first)
    expect(freed(first)).toBe(true)
    expect(pool.has(key)).toBe(false)
    expect(pool.stats().documents).toBe(0)
  })

  it('detaches a handle only its caller holds, which then is the caller’s own', () => {
    const pool = createDocPool()
    const handle = handleWith('aa', 'k', 'v')
    const key = headsKey(handle.getHeads())
    pool.adopt(handle, key)
    pool.detach(handle)
    expect(pool.keyOf(handle)).toBeUndefined()
    expect(pool.has(key)).toBe(false)
    expect(() => pool.release(handle)).toThrow(/does not hold/)
    expect(freed(handle)).toBe(false)
    handle.free()
  })

  it('predicts the heads after changes whose dependencies are met, duplicates included', () => {
    const base = handleWith('aa', 'a', '1')
    const other = base.fork('bb')
    other.put('_root', 'b', '2')
    other.commit('b', 0)
    other.put('_root', 'c', '3')
    other.commit('c', 0)
    const concurrent = base.fork('cc')
    concurrent.put('_root', 'd', '4')
    concurrent.commit('d', 0)
    const fresh = other.getChanges(base.getHeads()).map((change) => A.decodeChange(change))
    const target = base.fork('dd')
    target.applyChanges(concurrent.getChanges(base.getHeads()))
    const key = headsKey(target.getHeads())
    const after = headsKeyAfter(key, fresh)
    target.applyChanges(fresh.map((change) => A.encodeChange(change)))
    expect(after).toBe(headsKey(target.getHeads()))
    // Applying them again changes nothing, and the prediction says so.
    expect(headsKeyAfter(after, fresh.slice(1))).toBe(after)
    for (const handle of [base, other, concurrent, target]) handle.free()
  })
})

interface Twins {
  /** Replicas sharing one pool. */
  pooled: ClusterState[]
  /** The same replicas (same ids, same clock: the same actors) each on its own document. */
  own: ClusterState[]
  pool: DocPool
  stores: { pooled: Store[]; own: Store[] }
}

const REPLICAS = 4
/** Compactions within a script's few dozen steps: a pooled document's save bytes are shared (persistence.ts, saveMemo), and restarts load them. */
const COMPACT_AFTER_CHUNKS = 3
const clock = createVirtualClock()

async function startTwins(): Promise<Twins> {
  const pool = createDocPool()
  const stores = { pooled: [] as Store[], own: [] as Store[] }
  const pooled: ClusterState[] = []
  const own: ClusterState[] = []
  for (let i = 0; i < REPLICAS; i++) {
    stores.pooled.push(createMemoryStore())
    stores.own.push(createMemoryStore())
    pooled.push(createClusterState({ selfId: `node-${i}`, compactAfterChunks: COMPACT_AFTER_CHUNKS })({ store: stores.pooled[i]!, clock, logger: silentLogger, docPool: pool }))
    own.push(createClusterState({ selfId: `node-${i}`, compactAfterChunks: COMPACT_AFTER_CHUNKS })({ store: stores.own[i]!, clock, logger: silentLogger }))
  }
  for (const state of [...pooled, ...own]) await state.start()
  return { pooled, own, pool, stores }
}

/** One step of a script, done alike on both sides. */
type Step =
  | { kind: 'write'; replica: number; op: number; arg: number }
  | { kind: 'gossip'; from: number; to: number; lastOnly: boolean }
  | { kind: 'sync'; a: number; b: number }
  | { kind: 'restart'; replica: number }

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('write' as const), replica: fc.nat(REPLICAS - 1), op: fc.nat(5), arg: fc.nat(7) }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('gossip' as const), from: fc.nat(REPLICAS - 1), to: fc.nat(REPLICAS - 1), lastOnly: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('sync' as const), a: fc.nat(REPLICAS - 1), b: fc.nat(REPLICAS - 1) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('restart' as const), replica: fc.nat(REPLICAS - 1) }) },
)

async function write(state: ClusterState, op: number, arg: number): Promise<void> {
  const id = `d${arg % 3}`
  try {
    if (op === 0) await state.createDeployment({ id, spec: { name: `web-${arg % 3}`, image: 'nginx', replicas: 1 + (arg % 2) }, owner: state.selfId })
    else if (op === 1) await state.setReplicas(id, 1 + (arg % 4))
    else if (op === 2) await state.reportStatus(id, arg % 2, { ...sampleStatus, restarts: arg })
    else if (op === 3) await state.upsertSelfNode({ ...sampleNode, name: `${state.selfId}-${arg}` })
    else if (op === 4) await state.setDesired(id, arg % 2 === 0 ? 'stopped' : 'running')
    else await state.upsertSelfNode(sampleNode) // often no change at all
  } catch (err) {
    if (!(err instanceof Error && 'code' in err && (err.code === 'NOT_FOUND' || err.code === 'CONFLICT'))) throw err
  }
}

/** A sync state as comparable data: sets (arrays of hashes, object keys) in sorted order, bytes as numbers. */
function normalized(value: unknown): unknown {
  if (value instanceof Uint8Array) return [...value]
  if (Array.isArray(value)) {
    const items = value.map(normalized)
    return items.every((item) => typeof item === 'string') ? [...(items as string[])].sort() : items
  }
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, normalized(v)]))
  }
  return value
}

/** The sync protocol between two replicas until neither has anything to send: each side's sync state after every message it received. */
async function syncPairStates(a: ClusterState, b: ClusterState): Promise<unknown[]> {
  let stateA: SyncState = A.initSyncState()
  let stateB: SyncState = A.initSyncState()
  const states: unknown[] = []
  for (let round = 0; round < 10; round++) {
    const [nextA, toB] = a.generateSyncMessage(stateA)
    stateA = nextA
    if (toB !== null) {
      stateB = (await b.receiveSyncMessage(stateB, toB)).syncState
      states.push(normalized(stateB))
    }
    const [nextB, toA] = b.generateSyncMessage(stateB)
    stateB = nextB
    if (toA !== null) {
      stateA = (await a.receiveSyncMessage(stateA, toA)).syncState
      states.push(normalized(stateA))
    }
    if (toA === null && toB === null) return states
  }
  throw new Error('sync did not finish in 10 rounds')
}

/** What `to` lacks of `from`'s changes, as gossip hands them over: bytes with their decoded form. */
function gossip(from: ClusterState, to: ClusterState): Uint8Array[] {
  return from.changesSince(to.heads().filter((head) => from.hasChanges([head])))
}

/** Starts a replica on `pool`'s shared documents, or (shared false) on its own document. */
function starter(pool: DocPool): (id: string, shared: boolean) => Promise<ClusterState> {
  return async (id, shared) => {
    const state = createClusterState({ selfId: id })({ store: createMemoryStore(), clock, logger: silentLogger, ...(shared ? { docPool: pool } : {}) })
    await state.start()
    return state
  }
}

/** A sender on its own document; a receiver and a bystander sharing documents; the receiver's twin on its own. */
async function syncCast(pool: DocPool): Promise<Record<'sender' | 'receiver' | 'bystander' | 'twin', ClusterState>> {
  const start = starter(pool)
  return { sender: await start('node-x', false), receiver: await start('node-1', true), bystander: await start('node-2', true), twin: await start('node-1', false) }
}

/** One sync message received by a replica on a pooled document and by its twin on its own: the same sync state, result and reads. */
async function receiveAlike(pooledSide: ClusterState, ownSide: ClusterState, message: Uint8Array, states: [SyncState, SyncState] = [A.initSyncState(), A.initSyncState()]) {
  const pooled = await pooledSide.receiveSyncMessage(states[0], message)
  const own = await ownSide.receiveSyncMessage(states[1], message)
  expect(normalized(pooled.syncState)).toEqual(normalized(own.syncState))
  expect(pooled.result).toEqual(own.result)
  expect(replicaView(pooledSide)).toEqual(replicaView(ownSide))
  return { pooled, own }
}

describe('replicas sharing documents', () => {
  it('read exactly what replicas on their own documents read, step by step, with the same local changes', async () => {
    let reusedTotal = 0
    let forksTotal = 0
    await fc.assert(
      fc.asyncProperty(fc.array(stepArb, { minLength: 10, maxLength: 40 }), async (steps) => {
        const twins = await startTwins()
        const published: { pooled: string[][]; own: string[][] } = { pooled: twins.pooled.map(() => []), own: twins.own.map(() => []) }
        const listen = (side: 'pooled' | 'own', i: number): void => {
          twins[side][i]!.onLocalChange((change) => published[side][i]!.push(A.decodeChange(change).hash))
        }
        for (let i = 0; i < REPLICAS; i++) {
          listen('pooled', i)
          listen('own', i)
        }
        try {
          for (const step of steps) {
            if (step.kind === 'write') {
              await write(twins.pooled[step.replica]!, step.op, step.arg)
              await write(twins.own[step.replica]!, step.op, step.arg)
            } else if (step.kind === 'gossip') {
              if (step.from === step.to) continue
              // Only the last one: its dependencies missing, Automerge queues it (a document at the heads it would lead to must not be taken).
              const lacking = gossip(twins.own[step.from]!, twins.own[step.to]!)
              const changes = step.lastOnly ? lacking.slice(-1) : lacking
              const decoded = changes.map((change) => A.decodeChange(change))
              const results = [
                await twins.pooled[step.to]!.applyChanges(changes, decoded),
                await twins.own[step.to]!.applyChanges(changes, decoded),
              ]
              expect(results[0]).toEqual(results[1])
            } else if (step.kind === 'sync') {
              if (step.a === step.b) continue
              // The sync states move alike too (a pooled document may list changes in another order, so messages may differ in bytes).
              const pooledStates = await syncPairStates(twins.pooled[step.a]!, twins.pooled[step.b]!)
              expect(pooledStates).toEqual(await syncPairStates(twins.own[step.a]!, twins.own[step.b]!))
            } else {
              for (const side of ['pooled', 'own'] as const) {
                const stopped = twins[side][step.replica]!
                await stopped.stop()
                const store = twins.stores[side][step.replica]!
                const fresh = createClusterState({ selfId: stopped.selfId, compactAfterChunks: COMPACT_AFTER_CHUNKS })({ store, clock, logger: silentLogger, ...(side === 'pooled' ? { docPool: twins.pool } : {}) })
                await fresh.start()
                twins[side][step.replica] = fresh
                listen(side, step.replica)
              }
            }
            for (let i = 0; i < REPLICAS; i++) expect(replicaView(twins.pooled[i]!)).toEqual(replicaView(twins.own[i]!))
          }
          // Same actors, same histories: each local change is byte for byte the one the replica on its own document made.
          expect(published.pooled).toEqual(published.own)
          for (let i = 0; i < REPLICAS; i++) {
            expect(A.toJS(A.load(twins.pooled[i]!.saveSnapshot()))).toEqual(A.toJS(A.load(twins.own[i]!.saveSnapshot())))
          }
          reusedTotal += twins.pool.stats().reused
          forksTotal += twins.pool.stats().forks
        } finally {
          for (const state of [...twins.pooled, ...twins.own]) await state.stop()
        }
        // Every replica stopped: nothing is left pooled.
        expect(twins.pool.stats().documents).toBe(0)
      }),
      {
        numRuns: 100,
        examples: [
          [
            [
              // Replica 1 ends up the only holder of a document replica 0 wrote, is handed a change it must queue (so the
              // document leaves the pool), then writes: its change must be by its own actor, not replica 0's.
              { kind: 'write', replica: 0, op: 0, arg: 0 },
              { kind: 'gossip', from: 0, to: 1, lastOnly: false },
              { kind: 'write', replica: 0, op: 0, arg: 1 },
              { kind: 'write', replica: 3, op: 0, arg: 0 },
              { kind: 'write', replica: 3, op: 1, arg: 3 },
              { kind: 'gossip', from: 3, to: 1, lastOnly: true },
              { kind: 'write', replica: 1, op: 0, arg: 2 },
            ],
          ],
          [
            [
              // Replica 1 is handed replica 0's second change without its first, which is concurrent with replica 1's
              // own: replica 2, which has all three, is at exactly the heads that change would lead to.
              { kind: 'write', replica: 0, op: 3, arg: 1 },
              { kind: 'write', replica: 0, op: 3, arg: 2 },
              { kind: 'write', replica: 1, op: 3, arg: 1 },
              { kind: 'gossip', from: 0, to: 2, lastOnly: false },
              { kind: 'gossip', from: 1, to: 2, lastOnly: false },
              { kind: 'gossip', from: 0, to: 1, lastOnly: true },
              { kind: 'gossip', from: 2, to: 3, lastOnly: false },
              { kind: 'write', replica: 3, op: 0, arg: 1 },
              { kind: 'gossip', from: 3, to: 1, lastOnly: false },
            ],
          ],
        ],
      },
    )
    // The shared paths ran: documents were reused and forked.
    expect(reusedTotal).toBeGreaterThan(0)
    expect(forksTotal).toBeGreaterThan(0)
  })

  it('answers which changes it lacks from what another replica on the same pooled document learned, and afresh once its own document moved', async () => {
    const pool = createDocPool()
    const start = (id: string): Promise<ClusterState> => starter(pool)(id, true)
    const sender = await start('node-x')
    const [first, second] = [await start('node-1'), await start('node-2')]
    try {
      await sender.createDeployment({ id: 'd1', spec: { name: 'one', image: 'nginx', replicas: 1 }, owner: sender.selfId })
      const change = sender.changesSince([])
      const hash = A.decodeChange(change[change.length - 1]!).hash
      const held = first.heads()
      expect(second.heads()).toEqual(held) // both on the pooled empty document
      expect(first.missingAmong([hash, ...held])).toEqual(new Set([hash]))
      expect(second.missingAmong([hash, ...held])).toEqual(new Set([hash])) // the memo's answer
      expect(second.hasChanges(held)).toBe(true)
      await second.applyChanges(change)
      // second's document moved on: it now holds the change; first's did not.
      expect(second.missingAmong([hash])).toEqual(new Set())
      expect(first.missingAmong([hash])).toEqual(new Set([hash]))
      expect(second.missingAmong(['00'.repeat(32)])).toEqual(new Set(['00'.repeat(32)]))
    } finally {
      for (const state of [sender, first, second]) await state.stop()
    }
  })

  it('receives a sync message on the pooled document only when that holds every head the sender named', async () => {
    const pool = createDocPool()
    const { sender, receiver, bystander, twin } = await syncCast(pool)
    try {
      await sender.createDeployment({ id: 'd1', spec: { name: 'one', image: 'nginx', replicas: 1 }, owner: sender.selfId })
      const first = sender.changesSince(receiver.heads())
      await sender.createDeployment({ id: 'd2', spec: { name: 'two', image: 'nginx', replicas: 1 }, owner: sender.selfId })
      const second = sender.changesSince([])
      const secondHash = A.decodeChange(second[second.length - 1]!).hash
      // The bystander is already where the first change leads: a pooled result the receiver could take.
      await bystander.applyChanges(first, first.map((change) => A.decodeChange(change)))
      // A message carrying the first change while naming the second as the sender's head (as a bloom filter's false positive leaves it).
      const message = A.encodeSyncMessage({ heads: [secondHash], need: [], have: [], changes: first })
      await receiveAlike(receiver, twin, message)
      expect(replicaView(receiver)).toEqual(replicaView(bystander))
    } finally {
      for (const state of [sender, receiver, bystander, twin]) await state.stop()
    }
  })

  it('receives a sync message carrying only changes it holds on the pooled document, without a fork, as a replica on its own document does', async () => {
    const pool = createDocPool()
    const { sender, receiver, bystander, twin } = await syncCast(pool)
    try {
      await sender.createDeployment({ id: 'd1', spec: { name: 'one', image: 'nginx', replicas: 1 }, owner: sender.selfId })
      const first = sender.changesSince([])
      for (const state of [receiver, bystander, twin]) await state.applyChanges(first, first.map((change) => A.decodeChange(change)))
      expect(pool.stats().documents).toBe(1) // both pooled replicas on one document
      const forks = pool.stats().forks
      // A sync round that crossed gossip: the sender sends again what both already applied.
      const held = A.encodeSyncMessage({ heads: sender.heads(), need: [], have: [], changes: first })
      const { pooled, own } = await receiveAlike(receiver, twin, held)
      expect(pooled.result).toEqual({ applied: false, invalidEntries: [] })
      expect(pool.stats().forks).toBe(forks)
      expect(pool.stats().documents).toBe(1) // both pooled replicas on one document
      // Naming a head it lacks, the message is received whole (Automerge then keeps the shared heads otherwise): still alike.
      await sender.createDeployment({ id: 'd2', spec: { name: 'two', image: 'nginx', replicas: 1 }, owner: sender.selfId })
      const ahead = A.encodeSyncMessage({ heads: sender.heads(), need: [], have: [], changes: first })
      await receiveAlike(receiver, twin, ahead, [pooled.syncState, own.syncState])
      expect(replicaView(receiver)).toEqual(replicaView(bystander))
    } finally {
      for (const state of [sender, receiver, bystander, twin]) await state.stop()
    }
  })

  it('a node registering the entry it registered before writes nothing and leaves the pooled document shared', async () => {
    const pool = createDocPool()
    const stores = [createMemoryStore(), createMemoryStore()]
    const entry = sampleNode
    const on = (id: string, store: Store): ClusterState => createClusterState({ selfId: id })({ store, clock, logger: silentLogger, docPool: pool })
    const [first, second] = [on('node-1', stores[0]!), on('node-2', stores[1]!)]
    try {
      await first.start()
      await second.start()
      await first.upsertSelfNode(entry)
      await second.applyChanges(first.changesSince([]))
      expect(pool.stats().documents).toBe(1) // both replicas on one document
      const before = { forks: pool.stats().forks, heads: first.heads() }
      let changes = 0
      first.onLocalChange(() => changes++)
      await first.upsertSelfNode({ ...entry })
      expect(changes).toBe(0)
      expect(pool.stats().forks).toBe(before.forks)
      expect(first.heads()).toEqual(before.heads)
      expect(pool.stats().documents).toBe(1) // both replicas on one document
      // A changed entry is written (a fork of the shared document), and invalid input still fails as a write does.
      await first.upsertSelfNode({ ...entry, labels: { zone: 'b' } })
      expect(changes).toBe(1)
      expect(pool.stats().forks).toBe(before.forks + 1)
      expect(first.node('node-1')?.labels).toEqual({ zone: 'b' })
      await expect(first.upsertSelfNode({ ...entry, name: '' })).rejects.toThrow(/node entry/)
    } finally {
      for (const state of [first, second]) await state.stop()
    }
  })

  it('takes a bulk merge another replica on the same pooled document made: a whole document, then a backlog of joined changes', async () => {
    const pool = createDocPool()
    const start = starter(pool)
    const sender = await start('node-x', false)
    const [first, second, twin] = [await start('node-1', true), await start('node-2', true), await start('node-2', false)]
    const events: { second: unknown[]; twin: unknown[] } = { second: [], twin: [] }
    second.onChange((event) => events.second.push(normalized({ ...event, deployments: event.deployments === 'all' ? 'all' : [...event.deployments] })))
    twin.onChange((event) => events.twin.push(normalized({ ...event, deployments: event.deployments === 'all' ? 'all' : [...event.deployments] })))
    /** One message from the sender to `to`, answering `to`'s opening message: answers what `to` did with it. */
    const pushFrom = async (to: ClusterState): Promise<{ bytes: number; chunkType: number; state: unknown; result: unknown }> => {
      const [opening, hello] = to.generateSyncMessage(A.initSyncState())
      const senderState = (await sender.receiveSyncMessage(A.initSyncState(), hello!)).syncState
      const [, message] = sender.generateSyncMessage(senderState)
      const received = await to.receiveSyncMessage(opening, message!)
      return { bytes: message!.length, chunkType: A.decodeSyncMessage(message!).changes[0]![8]!, state: normalized(received.syncState), result: received.result }
    }
    try {
      // Settings that do not compress (a chain of hashes), so that a few deployments make a message of bulk size.
      const blobOf = (i: number): string => Array.from({ length: 50 }, (_, j) => createHash('sha256').update(`${i}/${j}`).digest('hex')).join('')
      for (let i = 0; i < 60; i++) {
        await sender.createDeployment({ id: `d${i}`, spec: { name: `web-${i}`, image: 'nginx', replicas: 2, ...(i < 12 ? { env: { BLOB: blobOf(i) } } : {}) }, owner: sender.selfId })
      }
      // A whole document (an empty replica is sent one), large enough to be a bulk merge.
      const toFirst = await pushFrom(first)
      expect(toFirst.chunkType).toBe(0)
      expect(toFirst.bytes).toBeGreaterThanOrEqual(16 * 1024)
      let reused = pool.stats().reused
      const toSecond = await pushFrom(second)
      const toTwin = await pushFrom(twin)
      expect(pool.stats().reused).toBe(reused + 1)
      expect(toSecond.state).toEqual(toTwin.state)
      expect(toSecond.result).toEqual(toTwin.result)
      expect(replicaView(second)).toEqual(replicaView(first))
      expect(replicaView(second)).toEqual(replicaView(twin))

      // A backlog of new entries, as change chunks joined in one byte string: what it touched is read from the diff, once.
      // (Fewer changes than a third of the document's: Automerge would send the whole document again.)
      for (let i = 60; i < 66; i++) await sender.createDeployment({ id: `d${i}`, spec: { name: `web-${i}`, image: 'nginx', replicas: 2, env: { BLOB: blobOf(i) } }, owner: sender.selfId })
      const backlogFirst = await pushFrom(first)
      expect(backlogFirst.chunkType).toBe(1)
      expect(backlogFirst.bytes).toBeGreaterThanOrEqual(16 * 1024)
      reused = pool.stats().reused
      const backlogSecond = await pushFrom(second)
      const backlogTwin = await pushFrom(twin)
      expect(pool.stats().reused).toBe(reused + 1)
      expect(backlogSecond.state).toEqual(backlogTwin.state)
      expect(replicaView(second)).toEqual(replicaView(twin))
      expect(replicaView(second)).toEqual(replicaView(sender))
      // Listeners heard the same deployments: the six new ones, not 'all'.
      expect(events.second).toEqual(events.twin)
      expect(events.second.at(-1)).toEqual(normalized({ local: false, deployments: ['d60', 'd61', 'd62', 'd63', 'd64', 'd65'], nodes: false }))
    } finally {
      for (const state of [sender, first, second, twin]) await state.stop()
    }
  })

  it('replicas rebuilding their index on one pooled document read and check each entry once', async () => {
    const pool = createDocPool()
    const start = starter(pool)
    const sender = await start('node-x', false)
    const [first, second, twin] = [await start('node-1', true), await start('node-2', true), await start('node-2', false)]
    const probe = createHandle('aa')
    const handleClass = Object.getPrototypeOf(probe) as { materialize(...args: unknown[]): unknown }
    probe.free()
    const materialize = vi.spyOn(handleClass, 'materialize')
    /** The whole document, as an empty replica is sent it: large enough to be a bulk merge, so `to` rebuilds its index from it. */
    const pushTo = async (to: ClusterState): Promise<number> => {
      const [opening, hello] = to.generateSyncMessage(A.initSyncState())
      const senderState = (await sender.receiveSyncMessage(A.initSyncState(), hello!)).syncState
      const [, message] = sender.generateSyncMessage(senderState)
      materialize.mockClear()
      await to.receiveSyncMessage(opening, message!)
      expect(message!.length).toBeGreaterThanOrEqual(16 * 1024)
      return materialize.mock.calls.length
    }
    try {
      // Settings that do not compress (a chain of hashes), so that a few deployments make a message of bulk size.
      const blobOf = (i: number): string => Array.from({ length: 120 }, (_, j) => createHash('sha256').update(`${i}/${j}`).digest('hex')).join('')
      for (let i = 0; i < 5; i++) await sender.createDeployment({ id: `d${i}`, spec: { name: `web-${i}`, image: 'nginx', replicas: 2, env: { BLOB: blobOf(i) } }, owner: sender.selfId })
      await sender.upsertSelfNode(sampleNode)
      await sender.reportStatus('d0', 0, sampleStatus)
      expect(await pushTo(first)).toBeGreaterThan(0)
      // On the document the first replica rebuilt at, the second takes what it read: nothing is read from Automerge again.
      expect(await pushTo(second)).toBe(0)
      expect(await pushTo(twin)).toBeGreaterThan(0)
      // Nor is any entry decoded and validated again: the first replica's checked entries serve it.
      expect(second.stats().entriesDecoded).toBe(0)
      expect(twin.stats().entriesDecoded).toBeGreaterThan(5)
      expect(replicaView(second)).toEqual(replicaView(twin))
      expect(replicaView(second)).toEqual(replicaView(sender))
      expect(second.deployments().map((d) => d.id)).toEqual(['d0', 'd1', 'd2', 'd3', 'd4'])
    } finally {
      materialize.mockRestore()
      for (const state of [sender, first, second, twin]) await state.stop()
    }
  })

  it('nodes starting from copies of one stored snapshot load it once; a store with chunks loads on its own', async () => {
    const written = createMemoryStore()
    const writer = createClusterState({ selfId: 'node-w' })({ store: written, clock, logger: silentLogger })
    await writer.start()
    for (let i = 0; i < 5; i++) await writer.createDeployment({ id: `d${i}`, spec: { name: `web-${i}`, image: 'nginx', replicas: 1 }, owner: writer.selfId })
    await writer.compact()
    await writer.stop()
    const copies = await Promise.all(
      [0, 1, 2].map(async () => {
        const store = createMemoryStore()
        await copyStore(written, store)
        return store
      }),
    )
    const pool = createDocPool()
    const on = (id: string, store: Store, shared: boolean): ClusterState =>
      createClusterState({ selfId: id })({ store, clock, logger: silentLogger, ...(shared ? { docPool: pool } : {}) })
    const first = on('node-1', copies[0]!, true)
    const second = on('node-2', copies[1]!, true)
    const twin = on('node-2', copies[2]!, false)
    const withChunk = createMemoryStore()
    await copyStore(written, withChunk)
    const writerAgain = createClusterState({ selfId: 'node-w' })({ store: withChunk, clock, logger: silentLogger })
    await writerAgain.start()
    await writerAgain.setReplicas('d0', 3) // one chunk after the snapshot
    await writerAgain.stop()
    const third = on('node-3', withChunk, true)
    try {
      await first.start()
      expect(pool.stats().loadsShared).toBe(0)
      await second.start()
      expect(pool.stats().loadsShared).toBe(1)
      // The second takes the index the first built there: nothing read or validated again.
      expect(first.stats().entriesDecoded).toBeGreaterThan(0)
      expect(second.stats().entriesDecoded).toBe(0)
      await twin.start()
      expect(replicaView(second)).toEqual(replicaView(twin))
      expect(replicaView(first)).toEqual(replicaView(twin))
      await third.start()
      expect(pool.stats().loadsShared).toBe(1)
      expect(third.deployments().find((d) => d.id === 'd0')?.replicas).toBe(3)
      // Copy on write: the shared document is the second's own once it writes, and the first does not see that.
      await second.createDeployment({ id: 'd9', spec: { name: 'nine', image: 'nginx', replicas: 1 }, owner: second.selfId })
      await twin.createDeployment({ id: 'd9', spec: { name: 'nine', image: 'nginx', replicas: 1 }, owner: twin.selfId })
      expect(replicaView(second)).toEqual(replicaView(twin))
      expect(first.deployments().map((d) => d.id)).not.toContain('d9')
    } finally {
      for (const state of [first, second, twin, third]) await state.stop()
    }
  })

  it('replicas on distinct documents in pools that share their geneses build a cut\'s genesis once, and end as a replica on its own', async () => {
    const shared = createDocPoolShared()
    const [pool, otherEnginesPool] = [createDocPool(shared), createDocPool(shared)]
    const [writer, pooled, elsewhere, away] = [await starter(pool)('node-1', true), await starter(pool)('node-2', true), await starter(otherEnginesPool)('node-3', true), await starter(pool)('node-4', true)]
    const own = await starter(pool)('node-5', false)
    const everyone = [writer, pooled, elsewhere, away, own]
    try {
      await writer.createDeployment({ id: 'd0', spec: { name: 'web', image: 'nginx' }, owner: 'node-1' })
      for (const state of everyone.slice(1)) await state.applyChanges(writer.changesSince(state.heads()))
      await away.createDeployment({ id: 'mine', spec: { name: 'mine', image: 'nginx' }, owner: 'node-4' }) // outside the cut
      await writer.createDeployment({ id: 'd1', spec: { name: 'api', image: 'nginx' }, owner: 'node-1' })
      for (const state of [pooled, elsewhere, own]) await state.applyChanges(writer.changesSince(state.heads()))
      // Distinct documents at the switch: each replica writes outside the cut first.
      const cut = { epoch: 1, heads: writer.heads() }
      for (const [i, state] of [writer, pooled, elsewhere, own].entries()) await state.reportStatus('d0', i, sampleStatus)
      expect(new Set([writer, pooled, elsewhere].map((state) => headsKey(state.heads()))).size).toBe(3)

      await writer.enterEpoch(cut)
      const genesis = [...shared.geneses.values()]
      expect(genesis).toHaveLength(1)
      await pooled.enterEpoch(cut)
      await elsewhere.enterEpoch(cut)
      await own.enterEpoch(cut)
      expect([...shared.geneses.values()]).toEqual(genesis) // the very object: built once, taken twice
      expect(shared.translations.get(genesis[0]!.hash)?.size).toBe(3) // each pooled replica's own write past the cut
      for (const state of [pooled, elsewhere]) expect(state.epoch().genesis).toBe(own.epoch().genesis)
      for (const state of [writer, pooled, elsewhere]) await own.applyChanges(state.changesSince(own.heads()))
      for (const state of [writer, pooled, elsewhere]) await state.applyChanges(own.changesSince(state.heads()))
      for (const state of [writer, pooled, elsewhere]) expect(replicaView(state)).toEqual(replicaView(own))
      expect(own.statuses('d0')).toHaveLength(4)
      // A shared genesis is no way around holding the cut.
      await expect(away.enterEpoch(cut)).rejects.toMatchObject({ code: 'BAD_REQUEST' })
      expect(away.epoch().epoch).toBe(0)
    } finally {
      for (const state of everyone) await state.stop()
    }
  })

  it('replicas sharing a document stop cleanly after Automerge failed (nothing is freed in a dead engine)', async () => {
    const engine = automergeEngine(5) // its own engine: marking it failed harms no other test
    const pool = createDocPool()
    const states = [] as ClusterState[]
    for (const id of ['node-1', 'node-2']) {
      const state = createClusterState({ selfId: id })({ store: createMemoryStore(), clock, logger: silentLogger, automerge: engine, docPool: pool })
      await state.start()
      states.push(state)
    }
    const probe = engine.create()
    const handleClass = Object.getPrototypeOf(probe) as { commit(...args: unknown[]): unknown; free(): void }
    probe.free()
    const dead = (): never => {
      throw new Error('Module terminated')
    }
    const spies = [vi.spyOn(handleClass, 'commit').mockImplementation(dead), vi.spyOn(handleClass, 'free').mockImplementation(dead)]
    try {
      await expect(states[0]!.createDeployment({ id: 'd1', spec: { name: 'web', image: 'nginx' }, owner: 'node-1' })).rejects.toMatchObject({ code: 'INTERNAL' })
      expect(engine.failure()).toMatch(/Module terminated/)
      for (const state of states) await expect(state.stop()).resolves.toBeUndefined()
    } finally {
      for (const spy of spies) spy.mockRestore()
    }
  })
})
