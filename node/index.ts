/**
 * node/ — the composition root. It builds a Lattice node from the four ports
 * (system clock, LevelDB store, Docker runtime, and from step 2 the libp2p
 * transport), runs the reconciler that turns the cluster-state document into
 * containers, serves the local HTTP API and the `lattice` CLI.
 */
export { createLatticeNode, createRootLogger, type LatticeNode, type LatticeNodeOptions } from './lattice-node.ts'
export { resolveConfig, NodeConfigSchema, CONFIG_PRESETS, type NodeConfig, type NodeConfigInput, type ConfigPreset } from './config.ts'
export { createReconciler, type Reconciler, type ReconcilerInit, type ReconcilerComponents } from './reconciler.ts'
export { createEventBus, type EventBus, type ClusterEvent } from './events.ts'
export { createNodeMetrics, type NodeMetrics } from './metrics.ts'
export { createApiServer } from './api/server.ts'
export { deploymentView, phaseOf, type DeploymentView, type ReplicaView } from './deployment-view.ts'
export { createSystemClock } from './system-clock.ts'
export { resolveDataDir, readApiCredentials, writeApiCredentials } from './data-dir.ts'
export { LATTICE_VERSION } from './version.ts'
