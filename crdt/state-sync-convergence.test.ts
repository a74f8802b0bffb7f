/**
 * Convergence as a property (fast-check): whatever order, duplication and
 * loss the state topic delivers changes in, gossip plus a few anti-entropy
 * sessions leave every replica with the same heads and the same state.
 * Replicas are real ClusterStates on memory stores with the real StateSync;
 * the network is a manual one, so the property itself decides what each
 * replica receives and when.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import * as A from '@automerge/automerge'
import { createRng, silentLogger } from '../core/index.ts'
import { createVirtualClock } from '../sim/virtual-clock.ts'
import { createClusterState, type ClusterState } from './cluster-state.ts'
import { createMemoryStore } from './level-store.ts'
import type { PlacementInput } from './schema.ts'
import { createStateSync } from './state-sync.ts'
import { createManualNetwork, replicaView, type ManualNetwork } from './sync-test-support.ts'
import type { StateSync } from './sync-types.ts'
import { sampleNode, sampleStatus } from './test-support.ts'
import type { TopicMessage } from '../core/index.ts'

interface Replica {
  id: string
  state: ClusterState
  sync: StateSync
}

interface Write {
  replica: number
  op: number
  arg: number
}

/** What one published message does on its way to one receiver. */
type Fate = 'once' | 'twice' | 'dropThenRetry' | 'dropped'
const FATES: readonly Fate[] = ['once', 'once', 'once', 'once', 'once', 'twice', 'twice', 'dropThenRetry', 'dropThenRetry', 'dropped']
const DRAWS = 64

const placement = (winner: string, generation: number): PlacementInput => ({
  generation,
  winners: [winner],
  bids: [{ peerId: winner, score: generation / 10, atMs: 10 }],
  shortlist: [winner],
  closedBy: winner,
  openedAtMs: 0,
  closedAtMs: 20,
  history: [],
})

/** One write of any kind, on deployment ids that collide across replicas on purpose. */
async function write(replica: Replica, { op, arg }: Write): Promise<void> {
  const { state } = replica
  const id = `d${arg % 4}`
  try {
    switch (op % 7) {
      case 0:
        await state.createDeployment({ id, spec: { name: `web-${arg % 4}`, image: 'nginx', replicas: 1 + (arg % 3) }, owner: state.selfId })
        break
      case 1:
        await state.setDesired(id, arg % 2 === 0 ? 'stopped' : 'running')
        break
      case 2:
        await state.setReplicas(id, 1 + (arg % 4))
        break
      case 3:
        await state.reportStatus(id, arg % 2, { ...sampleStatus, restarts: arg % 5 })
        break
      case 4:
        await state.upsertSelfNode({ ...sampleNode, name: `${state.selfId}-${arg % 3}` })
        break
      case 5:
        await state.bumpEpoch(id)
        break
      default:
        await state.writePlacement(id, 0, placement(state.selfId, 1 + (arg % 3)))
    }
  } catch (err) {
    // NOT_FOUND / CONFLICT: the deployment is not (yet) visible here, or deleted. Writes, not sync, are refused.
    if (!(err instanceof Error && 'code' in err && (err.code === 'NOT_FOUND' || err.code === 'CONFLICT'))) throw err
  }
}

/** Delivers every message to every other replica: in the drawn order, each once, twice, after the rest, or never. */
async function deliverAll(net: ManualNetwork, replicas: Replica[], keys: number[], fates: number[]): Promise<void> {
  const messages = net.take()
  replicas.forEach((replica, r) => {
    const incoming = messages
      .map((message, m) => ({ message, draw: (m * replicas.length + r) % DRAWS }))
      .filter(({ message }) => message.from !== replica.id)
      .sort((a, b) => keys[a.draw]! - keys[b.draw]! || a.draw - b.draw)
    const retries: TopicMessage[] = []
    for (const { message, draw } of incoming) {
      const fate = FATES[fates[draw]! % FATES.length]!
      if (fate === 'once' || fate === 'twice') net.deliver(replica.id, message)
      if (fate === 'twice') net.deliver(replica.id, message)
      if (fate === 'dropThenRetry') retries.push(message)
    }
    for (const message of retries) net.deliver(replica.id, message)
  })
  await Promise.all(replicas.map((replica) => replica.sync.idle()))
}

async function startReplicas(n: number, net: ManualNetwork): Promise<Replica[]> {
  const clock = createVirtualClock() // never advanced: anti-entropy runs only when the property says so
  const ids = Array.from({ length: n }, (_, i) => `node-${i}`)
  const replicas: Replica[] = []
  for (const id of ids) {
    const state = createClusterState({ selfId: id })({ store: createMemoryStore(), clock, logger: silentLogger })
    await state.start()
    const transport = net.transport(id)
    await transport.start()
    const sync = createStateSync({ preset: 'test' })({
      state,
      transport,
      clock,
      rng: createRng(ids.indexOf(id) + 1),
      logger: silentLogger,
      peers: () => ids.filter((peer) => peer !== id),
    })
    await sync.start()
    replicas.push({ id, state, sync })
  }
  return replicas
}

const writesArb = fc.array(fc.record({ replica: fc.nat(), op: fc.nat(), arg: fc.nat() }), { minLength: 2, maxLength: 12 })
const drawsArb = (max: number) => fc.array(fc.nat({ max }), { minLength: DRAWS, maxLength: DRAWS })

describe('state sync convergence (property)', () => {
  it('for 3–6 replicas, any delivery order, duplication and drop-then-retry of changes plus sync rounds: equal heads and equal state', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 3, max: 6 }), writesArb, writesArb, drawsArb(1_000), drawsArb(FATES.length - 1), async (n, before, after, keys, fates) => {
        const net = createManualNetwork()
        const replicas = await startReplicas(n, net)
        const published = new Set<string>()
        for (const replica of replicas) replica.state.onLocalChange((change) => published.add(A.decodeChange(change).hash))
        try {
          // Writes, a first delivery, more writes (now also on others' deployments), a second delivery.
          for (const w of before) await write(replicas[w.replica % n]!, w)
          await deliverAll(net, replicas, keys, fates)
          for (const w of after) await write(replicas[w.replica % n]!, w)
          await deliverAll(net, replicas, keys.slice().reverse(), fates.slice().reverse())

          // Anti-entropy: two passes round the ring (a session converges both ends).
          for (let pass = 0; pass < 2; pass++) {
            for (let i = 0; i < n; i++) {
              const result = await replicas[i]!.sync.syncNow(replicas[(i + 1) % n]!.id)
              expect(result.ok).toBe(true)
            }
          }
          await Promise.all(replicas.map((replica) => replica.sync.idle()))

          const [first, ...rest] = replicas
          for (const replica of rest) {
            expect(replica.state.heads().sort()).toEqual(first!.state.heads().sort())
            expect(replicaView(replica.state)).toEqual(replicaView(first!.state))
            expect(A.toJS(A.load(replica.state.saveSnapshot()))).toEqual(A.toJS(A.load(first!.state.saveSnapshot())))
          }
          for (const replica of replicas) {
            expect(replica.state.hasChanges([...published])).toBe(true)
            const counters = replica.sync.counters()
            expect(counters.changesPending).toBe(0)
            expect(counters.changesDropped).toMatchObject({ malformed: 0, invalidEntry: 0, oversized: 0, applyFailed: 0 })
            expect(counters.syncSessionsFailed).toBe(0)
          }
        } finally {
          for (const replica of replicas) {
            await replica.sync.stop()
            await replica.state.stop()
          }
        }
      }),
      { numRuns: 25 },
    )
  })
})
