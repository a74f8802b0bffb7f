/**
 * sim/network-libp2p — the simulator's scenarios over real libp2p nodes in
 * one process (loopback, system clock), to check the simulated network's
 * figures against the real stack's. `runMembershipScenarioLibp2p` has the
 * simulated scenario's options and report; `runMembershipComparison` runs
 * both and returns them side by side.
 */
export { LIBP2P_CLUSTER_DEFAULTS, allSeeAlive, startLibp2pCluster, type Libp2pCluster, type Libp2pClusterNode, type Libp2pClusterOptions } from './cluster.ts'
export { LIBP2P_SCENARIO_NODES_MAX } from './limits.ts'
export { runMembershipScenarioLibp2p, type Libp2pMembershipScenarioOptions } from './membership.ts'
export { formatMembershipComparison, runMembershipComparison, type MembershipComparison, type MembershipComparisonRow } from './compare.ts'
