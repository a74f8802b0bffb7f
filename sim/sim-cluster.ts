/**
 * A simulated cluster: N nodes each running the REAL node core (membership,
 * cluster-state document, state sync, placement, reconciler — node/node-core.ts)
 * over the simulated network, a memory-level store and the fake runtime, all
 * on one virtual clock and one root seed. Nodes can be killed (silent stop:
 * their containers keep running in the engine, as a crashed machine's would
 * until it returns), restarted on their store and engine, and deploys can be
 * accepted through any node, as the API does.
 *
 * Faults on single nodes (used by the fault schedule, sim/faults.ts): each
 * node has its own Clock over the shared virtual one (sim/node-clock.ts) —
 * skew and jumps — and can be paused (timers and message handling freeze,
 * state is kept) and resumed; brand-new nodes join (`addNode`) and nodes
 * leave gracefully (`leave`); container starts can be made slow or failing
 * per node (`node.runtime.setStartFaults`).
 */
import { silentLogger, type DeploymentSpecInput, type Rng, type Store, type Transport } from '../core/index.ts'
import { createDocPool, createDocPoolShared, createMemoryStore, type AutomergeEngine, type DocPool } from '../crdt/index.ts'
import { createEventBus, type EventBus } from '../node/events.ts'
import { createNodeMetrics } from '../node/metrics.ts'
import { createNodeCore, type NodeCore, type NodeCoreInit } from '../node/node-core.ts'
import { createIdGenerator } from '../node/ids.ts'
// The fakes' own modules, not runtime/index.ts: the barrel's Docker runtime would make every simulator process load dockerode.
import { createFakeEngine, type FakeEngine } from '../runtime/fake-engine.ts'
import { createFakeRuntime, type FakeRuntime } from '../runtime/fake-runtime.ts'
import { guardAutomergeMemory, type AutomergeMemoryGuard } from './automerge-memory.ts'
import { createSimDriver, type SimDriver, type SimDriverHooks } from './driver.ts'
import { createNodeClock, type NodeClock } from './node-clock.ts'
import { simPeerId, simPeerIds } from './peer-ids.ts'
import { createSimNetwork, SIM_ADDRESS_PREFIX, type SimNetwork } from './sim-network.ts'
import { buildRegistrySnapshot, copyStore, registryStore } from './warm-registry.ts'

export interface SimClusterOptions {
  nodes: number
  seed: number
  /** One-way latency of a message (virtual ms). */
  latencyMs?: { min: number; max: number }
  loss?: number
  /** Fake container start time (virtual ms). */
  containerStartMs?: number
  /** Overrides of the node core's settings (placement, reconciler, …). */
  core?: Partial<Omit<NodeCoreInit, 'name' | 'capacity' | 'labels' | 'seeds'>>
  /** Called after the driver advances (the progress line). */
  driverHooks?: SimDriverHooks
  /**
   * The initial nodes start with every initial node's registry entry already
   * in their stores (sim/warm-registry.ts): a cluster that ran before. Default
   * false: they register one by one as they start.
   */
  warmRegistry?: boolean
  /** Deployments the run will make: sizes Automerge's memory (sim/automerge-memory.ts) with the nodes; default 0. */
  plannedDeployments?: number
  /**
   * Nodes at equal document heads share one Automerge document
   * (crdt/doc-pool.ts), copied on write. On unless false: it changes what
   * the process does, never what a node sees.
   */
  shareDocuments?: boolean
}

export interface SimNode {
  index: number
  peerId: string
  core: NodeCore
  runtime: FakeRuntime
  events: EventBus
  store: Store
  running: boolean
  /** This node's clock (skew, jumps, pause); kept across restarts, as a machine's clock is. */
  clock: NodeClock
  /** Left gracefully (churn); never restarted. */
  left: boolean
  /** This node's simulated Transport (a crash cuts it first). */
  transport: Transport
}

export interface SimCluster {
  driver: SimDriver
  /** Automerge's memory, grown ahead of the documents (sim/automerge-memory.ts). */
  automergeMemory: AutomergeMemoryGuard
  /** Distinct Automerge documents the nodes hold now, over all engines' pools (0 when sharing is off). */
  pooledDocuments(): number
  network: SimNetwork
  engine: FakeEngine
  nodes: SimNode[]
  rng: Rng
  /** Starts every node, `spacingMs` apart, each joining through node 0 and a random earlier node. */
  startAll(spacingMs?: number): Promise<void>
  /** Accepts a deploy through node `via` as the API does; returns the id. */
  deploy(via: SimNode, spec: DeploymentSpecInput): Promise<string>
  /** Crash: the node stops without a word; its containers stay in the engine. */
  kill(node: SimNode): Promise<void>
  /**
   * Crash at once, without waiting on virtual time: the node is cut off the
   * network and stops running now; the returned promise settles when the rest
   * of its stop (in-flight container starts, the final flush) has finished,
   * which may need the clock to move — do not await it without driving the
   * clock. Restart only after it settled (the store is shared).
   */
  crash(node: SimNode): Promise<void>
  /** The crashed node comes back on its store and engine namespace (with `wait: false`, resolves at once; the node is running once `nodes[index].running`). */
  restart(node: SimNode, options?: { wait?: boolean }): Promise<void>
  alive(): SimNode[]
  stopAll(): Promise<void>
  /** Freezes a running node: its timers and message handling wait; its state stays. */
  pause(node: SimNode): void
  /** Lets a paused node run again; everything held runs in order. */
  resume(node: SimNode): void
  isPaused(node: SimNode): boolean
  /** A brand-new node (new PeerId, empty store) joins through node 0's successor set; resolves once started. */
  addNode(options?: { wait?: boolean }): Promise<SimNode>
  /** Graceful leave: the node announces `left` and stops for good. */
  leave(node: SimNode): Promise<void>
}

/** The version every simulated node announces. */
const SIM_NODE_VERSION = 'sim'

const RECONCILE_SIM = {
  intervalMs: 1_000,
  restartBackoffMinMs: 1_000,
  restartBackoffMaxMs: 60_000,
  restartBackoffResetMs: 30_000,
  containerStopTimeoutMs: 2_000,
  containerPidsMax: 1_024,
  startsConcurrentMax: 4,
  startingReportDelayMs: 1_000,
}

export function createSimCluster(options: SimClusterOptions): SimCluster {
  const automergeMemory = guardAutomergeMemory(options.nodes, options.plannedDeployments ?? 0)
  const docPools = new Map<AutomergeEngine, DocPool>()
  const docPoolShared = createDocPoolShared()
  /** The pool of `engine`'s documents, as the component that hands it to a node (none when sharing is off). */
  const docPoolFor = (engine: AutomergeEngine): { docPool?: DocPool } => {
    if (options.shareDocuments === false) return {}
    let pool = docPools.get(engine)
    if (pool === undefined) docPools.set(engine, (pool = createDocPool(docPoolShared)))
    return { docPool: pool }
  }
  let stateFailure: { node: string; reason: string; atMs: number; engine: number } | undefined
  const driver = createSimDriver(options.seed, undefined, {
    onAdvance: (elapsedMs, events) => {
      // A node whose document failed (Automerge trapped, e.g. out of memory) would only make the rest of the run meaningless: stop it here, loudly.
      if (stateFailure !== undefined) throw new Error(`simulated node ${stateFailure.node} lost its cluster document at ${stateFailure.atMs} virtual ms: ${stateFailure.reason} (Automerge engine ${stateFailure.engine}; the run has ${automergeMemory.engines()})`)
      options.driverHooks?.onAdvance?.(elapsedMs, events)
    },
    // After every step, not every advance: each page the allocator grows makes V8 account the whole memory anew as
    // external memory (automerge-memory.ts), so growth left until the end of an advance was a GC storm at a heal.
    onStep: () => {
      automergeMemory.check()
      options.driverHooks?.onStep?.()
    },
  })
  const rng = driver.rng
  const network = createSimNetwork(
    { latencyMs: options.latencyMs ?? { min: 1, max: 10 }, lossRate: options.loss ?? 0, duplicateRate: 0 },
    { clock: driver.clock, rng: rng.fork('network') },
  )
  const engine = createFakeEngine()
  const peerIdRng = rng.fork('peer-ids')
  const peerIds = simPeerIds(peerIdRng, options.nodes)
  const layoutRng = rng.fork('layout')
  // A resource mix: small and large machines, two zones.
  const drawCapacity = (): { cpu: number; memoryMB: number; diskMB: number; gpus: number } => ({ cpu: [2, 4, 8, 16][layoutRng.int(4)]!, memoryMB: [4_096, 8_192, 16_384, 65_536][layoutRng.int(4)]!, diskMB: 100_000, gpus: 0 })
  const capacities = peerIds.map(() => drawCapacity())
  const zones = peerIds.map(() => (layoutRng.next() < 0.5 ? 'home' : 'office'))
  const clocks: NodeClock[] = []
  const clockOf = (index: number): NodeClock => (clocks[index] ??= createNodeClock(driver.clock))
  const idRng = rng.fork('deployment-ids')
  const newId = createIdGenerator({ rng: idRng })

  /** What node `index` registers at start: the core's init and a warm registry's entry both read it. */
  // Node 0 starts the mesh (the others join through it): it is the founder, the first epoch agreement's acceptor.
  const registration = (index: number): { name: string; version: string; capacity: (typeof capacities)[number]; labels: Record<string, string>; founder?: true } => ({
    name: `n${index}`,
    version: options.core?.version ?? SIM_NODE_VERSION,
    capacity: capacities[index]!,
    labels: { zone: zones[index]! },
    ...(index === 0 ? { founder: true as const } : {}),
  })

  const build = (index: number, store: Store, seeds: string[]): SimNode => {
    const peerId = peerIds[index]!
    const transport = network.transport(peerId)
    const clock = clockOf(index)
    const events = createEventBus({ bufferMax: 100 }, { clock })
    const runtime = createFakeRuntime({ nodeId: peerId, engine, startDelayMs: options.containerStartMs ?? 300 })({ clock, rng: rng.fork(`runtime-${index}`) })
    const automerge = automergeMemory.engineFor(index)
    const core = createNodeCore({
      ...registration(index),
      reconciler: RECONCILE_SIM,
      docCompactAfterChunks: 200,
      membershipPreset: 'sim',
      stateSyncPreset: 'sim',
      connectionsTarget: 8,
      seeds,
      ...options.core,
    })({ transport, store, runtime, clock, rng: rng.fork(`node-${index}`), logger: silentLogger, events, metrics: createNodeMetrics({ processMetrics: false }), automerge, ...docPoolFor(automerge) })
    core.state.onFailure((reason) => {
      stateFailure ??= { node: `n${index}`, reason, atMs: driver.elapsedMs(), engine: automerge.index }
    })
    return { index, peerId, core, runtime, events, store, running: false, clock, left: false, transport }
  }

  const nodes: SimNode[] = []
  const seedsFor = (index: number): string[] => (index === 0 ? [] : [...new Set([peerIds[0]!, peerIds[layoutRng.int(index)]!])])

  const cluster: SimCluster = {
    driver,
    automergeMemory,
    pooledDocuments: () => [...docPools.values()].reduce((sum, pool) => sum + pool.stats().documents, 0),
    network,
    engine,
    nodes,
    rng,
    async startAll(spacingMs = 20) {
      const stores = Array.from({ length: options.nodes }, () => createMemoryStore())
      if (options.warmRegistry === true) {
        const snapshot = await buildRegistrySnapshot(
          peerIds.slice(0, options.nodes).map((peerId, index) => ({ peerId, addresses: [SIM_ADDRESS_PREFIX + peerId], ...registration(index) })),
          driver.clock,
        )
        const template = await registryStore(snapshot, peerIds[0]!, driver.clock)
        for (const store of stores) await copyStore(template, store)
      }
      for (let index = 0; index < options.nodes; index++) {
        const node = build(index, stores[index]!, seedsFor(index))
        nodes.push(node)
        // Start without awaiting the initial sync (it waits on the network, which only moves when the clock does).
        void node.core.start().then(() => {
          node.running = true
        })
        await driver.runFor(spacingMs)
      }
      await driver.runUntil(() => nodes.every((n) => n.running), 120_000)
    },
    async deploy(via, spec) {
      const id = newId()
      await via.core.state.createDeployment({ id, spec, owner: via.peerId })
      return id
    },
    async kill(node) {
      if (!node.running) return
      // A frozen process dies as it is: what it held back never runs (its stop must not wait on frozen timers).
      cluster.resume(node)
      node.running = false
      await node.core.stop({ graceful: false })
    },
    crash(node) {
      if (!node.running) return Promise.resolve()
      cluster.resume(node)
      node.running = false
      const cut = node.transport.stop()
      return cut.then(() => node.core.stop({ graceful: false }))
    },
    async restart(node, restartOptions = {}) {
      if (node.running || node.left || nodes[node.index] !== node) return
      const fresh = build(node.index, node.store, seedsFor(node.index))
      nodes[node.index] = fresh
      void fresh.core.start().then(() => {
        fresh.running = true
      })
      if (restartOptions.wait !== false) await driver.runUntil(() => fresh.running, 60_000)
    },
    alive: () => nodes.filter((n) => n.running),
    async stopAll() {
      for (const node of nodes) if (node.running) await cluster.kill(node)
    },
    pause(node) {
      if (!node.running) return
      node.clock.pause()
      network.pause(node.peerId)
    },
    resume(node) {
      node.clock.resume()
      network.resume(node.peerId)
    },
    isPaused: (node) => node.clock.paused(),
    async addNode(addOptions = {}) {
      const index = peerIds.length
      let peerId = simPeerId(peerIdRng)
      while (peerIds.includes(peerId)) peerId = simPeerId(peerIdRng)
      peerIds.push(peerId)
      capacities.push(drawCapacity())
      zones.push(layoutRng.next() < 0.5 ? 'home' : 'office')
      const live = nodes.filter((n) => n.running)
      const seeds = [...new Set([live[0]?.peerId ?? peerIds[0]!, live[layoutRng.int(Math.max(1, live.length))]?.peerId ?? peerIds[0]!])]
      const node = build(index, createMemoryStore(), seeds)
      nodes.push(node)
      void node.core.start().then(() => {
        node.running = true
      })
      if (addOptions.wait !== false) await driver.runUntil(() => node.running, 60_000)
      return node
    },
    async leave(node) {
      if (!node.running) return
      cluster.resume(node)
      node.running = false
      node.left = true
      await node.core.stop({ graceful: true })
    },
  }
  return cluster
}
