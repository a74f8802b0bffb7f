/**
 * The heart of a node, without files, sockets or HTTP: membership over the
 * Transport port, the cluster-state document over the Store port, placement
 * and the reconciler over the Runtime port, all timed by the Clock port. The
 * real node (lattice-node.ts) wraps it with libp2p, LevelDB, Docker and the
 * API; the simulator runs this same code with in-memory adapters.
 */
import type { Clock, Logger, Rng, Runtime, Store, Transport } from '../core/index.ts'
import {
  createClusterState,
  createEpochAgreement,
  createEpochKeeper,
  createStateSync,
  type AutomergeEngine,
  type ClusterState,
  type DocPool,
  type EpochAgreementConfig,
  type EpochKeeper,
  type EpochKeeperConfig,
  type StateSync,
  type StateSyncConfig,
} from '../crdt/index.ts'
// Membership's own modules, not mesh/index.ts: the barrel also exports the libp2p transport, and its imports would make
// every simulator process load libp2p (~0.3 s a start).
import { createMembership } from '../mesh/membership.ts'
import type { MembershipConfig, MembershipPreset } from '../mesh/membership-config.ts'
import type { MemberMeta, Membership } from '../mesh/membership-types.ts'
import type { NodeView } from './api/context.ts'
import type { EventBus } from './events.ts'
import { createPlacer, type Placer, type PlacerInit } from './placement/placer.ts'
import type { NodeMetrics } from './metrics.ts'
import { createReconciler, type Reconciler, type ReconcilerInit } from './reconciler.ts'

export interface Resources {
  cpu: number
  memoryMB: number
  diskMB: number
  gpus: number
}

export interface NodeCoreInit {
  name: string
  version: string
  capacity: Resources
  labels: Record<string, string>
  reconciler: ReconcilerInit
  docCompactAfterChunks: number
  membershipPreset: MembershipPreset
  membership?: Partial<MembershipConfig>
  stateSyncPreset: 'lan' | 'test' | 'sim'
  stateSync?: Partial<StateSyncConfig>
  /** PeerIds to join through (bootstrap peers). */
  seeds: string[]
  placement?: Partial<PlacerInit>
  /** Below this many connections a node dials members it learns of, so the mesh stays connected when its bootstrap peers go. */
  connectionsTarget: number
  /** This node made the mesh (its key): it registers as the founder, the one acceptor of the first epoch agreement. */
  founder?: boolean
  /** When the history is cut into a new epoch (crdt/epoch-keeper.ts). */
  epochs?: Partial<EpochKeeperConfig>
  epochAgreement?: Partial<EpochAgreementConfig>
}

export interface NodeCoreComponents {
  transport: Transport
  store: Store
  runtime: Runtime
  clock: Clock
  rng: Rng
  logger: Logger
  events: EventBus
  metrics: NodeMetrics
  /** The Automerge instance holding the cluster document (the default one; a simulator spreads many nodes over several). */
  automerge?: AutomergeEngine
  /** Documents shared with the other nodes of this process at equal heads (crdt/doc-pool.ts: the simulator's); of the `automerge` engine. */
  docPool?: DocPool
}

export interface NodeCore {
  readonly peerId: string
  readonly state: ClusterState
  readonly stateSync: StateSync
  readonly membership: Membership
  readonly reconciler: Reconciler
  readonly placer: Placer
  readonly epochs: EpochKeeper
  /** This node's view of the mesh: membership liveness, registry names. */
  nodesView(): NodeView[]
  /** Resources not promised to replicas this node won or bid for. */
  freeResources(): Resources
  /** Moves this node's replicas away and takes no new ones (or, with false, takes work again). */
  setDraining(draining: boolean): Promise<void>
  start(): Promise<void>
  /** Graceful: announce `left`, stop loops, keep containers running for adoption. */
  stop(options?: { graceful: boolean }): Promise<void>
}

export function createNodeCore(init: NodeCoreInit): (components: NodeCoreComponents) => NodeCore {
  return (components) => {
    const { transport, store, runtime, clock, rng, logger, events, metrics } = components
    const peerId = transport.selfId
    const state = createClusterState({ selfId: peerId, compactAfterChunks: init.docCompactAfterChunks })({
      store,
      clock,
      logger: logger.child({ module: 'crdt' }),
      ...(components.automerge !== undefined ? { automerge: components.automerge } : {}),
      ...(components.docPool !== undefined ? { docPool: components.docPool } : {}),
    })
    const meta = (): Partial<MemberMeta> => ({ capacity: init.capacity, free: freeResources(), load: 0, labels: init.labels, version: init.version, addresses: transport.addresses() })
    const membership = createMembership({
      preset: init.membershipPreset,
      ...(init.membership !== undefined ? { config: init.membership } : {}),
      seeds: init.seeds,
      meta: { capacity: init.capacity, free: init.capacity, load: 0, labels: init.labels, version: init.version, addresses: [] },
    })({ transport, clock, rng: rng.fork('membership'), logger: logger.child({ module: 'membership' }) })
    // The cached sorted alive list itself: building every member's view per anti-entropy tick was ~2 % of a 1,000-node
    // run, and copying the list without self another 3 % of a quiet stretch (state sync skips self).
    const alivePeers = (): readonly string[] => membership.aliveMembers()
    const stateSync = createStateSync({ preset: init.stateSyncPreset, ...(init.stateSync !== undefined ? { config: init.stateSync } : {}) })({
      state,
      transport,
      clock,
      rng: rng.fork('state-sync'),
      logger: logger.child({ module: 'state-sync' }),
      peers: alivePeers,
    })
    const placer = createPlacer(init.placement ?? {})({
      state,
      transport,
      members: () => membership.members(),
      alive: () => membership.aliveMembers(),
      aliveCount: () => membership.aliveCount(),
      member: (id) => membership.member(id),
      clock,
      logger: logger.child({ module: 'placement' }),
      events,
      capacity: () => init.capacity,
      labels: () => init.labels,
    })
    const reconciler = createReconciler(init.reconciler)({
      state,
      runtime,
      clock,
      logger: logger.child({ module: 'reconciler' }),
      events,
      metrics,
    })
    const agreement = createEpochAgreement({
      selfId: peerId,
      // Read when a ballot runs: the keeper below answers from the document and its epoch record.
      acceptors: (epoch) => epochs.acceptorsOf(epoch),
      ...(init.epochAgreement !== undefined ? { config: init.epochAgreement } : {}),
    })({ transport, store, clock, rng: rng.fork('epoch-agreement'), logger: logger.child({ module: 'epoch-agreement' }) })
    const epochs: EpochKeeper = createEpochKeeper(init.epochs)({
      state,
      agreement,
      clock,
      rng: rng.fork('epochs'),
      logger: logger.child({ module: 'epochs' }),
      alive: () => membership.aliveMembers(),
    })
    const freeResources = (): Resources => placer.freeForBidding()
    const registration = () => ({ name: init.name, addresses: transport.addresses(), labels: init.labels, capacity: init.capacity, version: init.version, draining, ...(init.founder === true ? { founder: true as const } : {}) })
    const dialIfSparse = (addresses: string[]): void => {
      const address = addresses[0]
      if (address === undefined || transport.connectionCount() >= init.connectionsTarget) return
      transport.dial(address).catch((error: unknown) => logger.debug({ address, err: error instanceof Error ? error.message : String(error) }, 'dial of a member failed'))
    }
    let draining = false

    const offs: Array<() => void> = []

    return {
      peerId,
      state,
      stateSync,
      membership,
      reconciler,
      placer,
      epochs,
      freeResources,
      async setDraining(value) {
        draining = value
        await state.upsertSelfNode(registration())
        placer.markDirty()
      },
      nodesView() {
        const nowMs = clock.nowMs()
        return membership.members().map((member) => ({
          peerId: member.peerId,
          name: state.node(member.peerId)?.name ?? member.peerId.slice(-8),
          state: member.state,
          self: member.peerId === peerId,
          capacity: member.capacity,
          free: member.free,
          labels: member.labels,
          addresses: member.addresses,
          version: member.version,
          lastSeenMs: member.peerId === peerId ? 0 : Math.max(0, nowMs - member.lastSeenAtMs),
        }))
      },
      async start() {
        await state.start()
        await transport.start()
        // Before membership: peers that learn of us may sync with us at once.
        await stateSync.start()
        // Acceptors answer from the store the state opened; a decision heard before a restart is acted on once started.
        await agreement.start()
        offs.push(membership.onEvent((event) => {
          events.emit({ type: `node.${event.type}`, peerId: event.peerId })
          placer.membershipChanged(event.peerId)
          if ((event.type === 'joined' || event.type === 'alive') && event.peerId !== peerId) dialIfSparse(event.member.addresses)
        }))
        // A peer whose state changes or sync messages fail validation loses gossip score.
        offs.push(stateSync.onMisbehaviour((peer, reason) => transport.penalize(peer, `state:${reason}`)))
        // The document is gone (Automerge trapped): the operator restarts the node, which reloads from its store.
        offs.push(state.onFailure((reason) => events.emit({ type: 'state.failed', reason })))
        let announcedFree = ''
        offs.push(state.onChange((event) => {
          placer.markDirty(event.deployments)
          if (event.nodes) placer.registryChanged()
          reconciler.trigger(event.deployments)
          // Re-announced only when it moved: encoding the member record on every change cost more than the change.
          const free = freeResources()
          const key = `${free.cpu}/${free.memoryMB}/${free.diskMB}/${free.gpus}`
          if (key !== announcedFree) {
            announcedFree = key
            membership.setLocalMeta({ free })
          }
        }))
        await membership.start()
        membership.setLocalMeta(meta())
        // A joining or restarted node catches up before it places anything (bounded by initialSyncTimeoutMs).
        const synced = await stateSync.initialSync(init.seeds)
        logger.info({ outcome: synced.outcome, peer: synced.peerId, recovered: synced.recovered }, 'initial state sync')
        // Registered on top of what the sync brought: our own entry as the cluster holds it (a store recovered
        // from peers, a draining flag) decides which fields need writing, and the change follows the cluster's.
        draining = state.node(peerId)?.draining === true
        await state.upsertSelfNode(registration())
        await placer.start()
        await reconciler.start()
        epochs.start()
      },
      async stop(options = { graceful: true }) {
        for (const off of offs.splice(0)) off()
        await epochs.stop()
        await placer.stop()
        await reconciler.stop()
        if (options.graceful) await membership.leave()
        else await membership.stop()
        await stateSync.stop()
        await agreement.stop()
        await transport.stop()
        await state.stop()
      },
    }
  }
}
