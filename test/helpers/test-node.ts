/**
 * A Lattice node for tests: the real composition root on a temp data dir,
 * with the fake runtime (its engine survives restarts) and LevelDB there.
 */
import { randomInt } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createRng, silentLogger, type Store } from '../../core/index.ts'
import { createLevelStore, type AutomergeEngine } from '../../crdt/index.ts'
import { createLatticeNode, createSystemClock, resolveConfig, type LatticeNode, type NodeConfigInput } from '../../node/index.ts'
import { createFakeEngine, createFakeRuntime, type FakeEngine, type FakeRuntime } from '../../runtime/index.ts'
import { waitFor } from '../../sim/bench/node-processes.ts'

export interface TestNode {
  node: LatticeNode
  runtime: FakeRuntime
  engine: FakeEngine
  store: Store
  dataDir: string
  auth: { authorization: string }
  /** False once stopped. */
  running: boolean
  /** Stops the node (gracefully unless told otherwise), keeping data dir and engine for a restart. */
  stop(options?: { graceful: boolean }): Promise<void>
  /** A new node over the same data dir, store and engine (a process restart). */
  restart(): Promise<TestNode>
  cleanup(): Promise<void>
}

export async function startTestNode(options: { config?: NodeConfigInput; engine?: FakeEngine; store?: Store; dataDir?: string; images?: string[]; join?: string; automerge?: AutomergeEngine } = {}): Promise<TestNode> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'lattice-test-')))
  const engine = options.engine ?? createFakeEngine()
  // LevelDB in the temp data dir: the real store, and it survives a restart.
  const store = options.store ?? createLevelStore({ path: join(dataDir, 'state') })
  const clock = createSystemClock()
  let runtime: FakeRuntime | undefined
  const node = await createLatticeNode({
    dataDir,
    config: resolveConfig('test', options.config ?? {}),
    ...(options.join !== undefined ? { join: options.join } : {}),
    store,
    clock,
    // A distinct seed per node and per start: deployment ids come from it, and two nodes must not mint the same ids.
    rng: createRng(randomInt(0x7fff_ffff)),
    logger: silentLogger,
    ...(options.automerge !== undefined ? { automerge: options.automerge } : {}),
    runtime: (nodeId) => {
      runtime = createFakeRuntime({ nodeId, engine, ...(options.images !== undefined ? { images: options.images } : {}) })({ clock, rng: createRng(7) })
      return runtime
    },
  })
  await node.start()
  if (runtime === undefined) throw new Error('runtime factory was not called')
  const fake = runtime
  const handle: TestNode = {
    node,
    runtime: fake,
    engine,
    store,
    dataDir,
    auth: { authorization: `Bearer ${node.token}` },
    running: true,
    stop: async (stopOptions) => {
      handle.running = false
      await node.stop(stopOptions)
    },
    restart: async () => startTestNode({ ...options, engine, dataDir, join: undefined }),
    cleanup: async () => {
      await node.stop().catch(() => undefined)
      await rm(dataDir, { recursive: true, force: true })
    },
  }
  return handle
}

/** Polls `check` until it returns a value other than undefined, or fails after timeoutMs. */
export function eventually<T>(check: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  return waitFor(async () => check(), timeoutMs, what)
}
