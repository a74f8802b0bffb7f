/** What the API needs from the node: init options and components. */
import type { Clock, DeploymentSpec, Logger, Runtime } from '../../core/index.ts'
import type { ClusterState } from '../../crdt/index.ts'
import type { EventBus } from '../events.ts'
import type { NodeMetrics } from '../metrics.ts'
import type { Reconciler } from '../reconciler.ts'
import type { z } from 'zod'
import type { NodeViewSchema } from './schemas.ts'

export interface ApiInit {
  token: string
  bodyBytesMax: number
  sseKeepAliveMs: number
  logTailDefault: number
  logTailMax: number
  ackTimeoutMs: number
}

export type NodeView = z.infer<typeof NodeViewSchema>

export interface NodeInfo {
  peerId: string
  name: string
  version: string
  startedAtMs: number
}

export interface ApiComponents {
  state: ClusterState
  runtime: Runtime
  reconciler: Reconciler
  events: EventBus
  metrics: NodeMetrics
  clock: Clock
  logger: Logger
  nodeInfo: NodeInfo
  newDeploymentId: () => string
  /** This node's view of the mesh. */
  nodesView: () => NodeView[]
  /** The invite line for a new node: this node's addresses and the mesh key. */
  invite: () => string
  /** Why a spec can never fit on any alive node, or undefined. */
  neverFits: (spec: DeploymentSpec) => string | undefined
  /** Resolves true once another peer holds these document heads. */
  waitForPeerAck: (heads: readonly string[], timeoutMs: number) => Promise<boolean>
  /** Drain (true) or undrain (false) this node. */
  setDraining: (draining: boolean) => Promise<void>
}
