/**
 * sim/ — the simulator: the real node code in virtual time. A discrete-event
 * driver (`createSimDriver`) owns one virtual clock (`createVirtualClock`)
 * and one root seeded Rng that every random choice forks from; the simulated
 * network (`createSimNetwork`, the Transport port in memory with seeded
 * latency, loss, duplication and partitions) plus `FaultyTransport` (loss on
 * request/response legs) carry the traffic; scenarios (`scenarios/`) run N
 * nodes, inject faults, record every membership transition into a hashed
 * `Trace` and report figures and invariants. `runSimCommand` is `lattice sim`.
 * Scenarios are files (`scenario-file.ts`, library in `scenarios/library/`);
 * `scheduled` ones run a VOPR-style fault schedule (`faults.ts`) over the
 * whole node core with per-node clocks (`node-clock.ts`), checked by
 * `invariants.ts`. Benchmarks live in `bench/`.
 */
export { createVirtualClock, type VirtualClock } from './virtual-clock.ts'
export { createSimNetwork, type LatencyModel, type SimNetwork, type SimNetworkInit } from './sim-network.ts'
export { createSimDriver, laggingClock, type SimDriver } from './driver.ts'
export { FaultyTransport, type RequestFaults } from './request-faults.ts'
export { simPeerId, simPeerIds } from './peer-ids.ts'
export { Trace } from './trace.ts'
export { runMembershipScenario, type MembershipScenarioOptions, type MembershipScenarioReport } from './scenarios/membership.ts'
export { SCENARIOS, parseSimFlags, replayCommand, runSimCommand, type SimFlags } from './cli.ts'
export { createNodeClock, type NodeClock } from './node-clock.ts'
export { FaultScheduler, type FaultEvent } from './faults.ts'
export { ScenarioFileSchema, loadScenarioFile, loadLibraryScenario, libraryNames, parseScenarioText, type ScenarioSpec, type ScheduledSpec } from './scenario-file.ts'
export { runScheduledScenario, type ScheduledScenarioOptions, type ScheduledScenarioReport } from './scenarios/scheduled.ts'
export { createTraceFile, type TraceLine, type TraceSink } from './trace.ts'
