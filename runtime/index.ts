/**
 * runtime/ — adapters of the Runtime port (core/runtime.ts), which runs
 * workloads as containers in a node's own namespace (label lattice.node).
 * `createDockerRuntime` is the real adapter: Docker through dockerode, with
 * safe defaults on every container (memory = swap limit, CPU and pids limits,
 * all capabilities dropped but the spec's, no-new-privileges, an init, no
 * Docker restart policy), deadlines on every engine call, and an explanation
 * with a fix when the engine is unreachable. `createFakeRuntime` is the
 * in-memory adapter for tests and the simulator: driven only by the Clock and
 * the Rng, with injectable start delays, start failures, crashes and outages,
 * and a `FakeEngine` that several instances can share to model a node
 * restart. Both pass test/suites/runtime-suite.ts.
 */
export {
  createDockerRuntime,
  type DockerRuntimeInit,
  type DockerRuntimeComponents,
} from './docker-runtime.ts'
export {
  createFakeRuntime,
  FAKE_TEST_IMAGE,
  type FakeRuntime,
  type FakeRuntimeInit,
  type FakeRuntimeComponents,
} from './fake-runtime.ts'
export { createFakeEngine, type FakeEngine, type FakeEngineInit } from './fake-engine.ts'
export { START_DOCKER_HINT } from './docker-errors.ts'
