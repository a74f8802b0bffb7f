/**
 * Helpers for the cluster-state tests (not part of crdt's public surface):
 * a logger that records, a store wrapper that fails on demand, and a way to
 * start a ClusterState on a memory store. The clock is passed in (the tests
 * use sim's virtual clock) so that crdt/ itself never imports sim/.
 */
import * as A from '@automerge/automerge'
import type { AutomergeEngine } from './automerge-engine.ts'
import type { Clock, Logger, Store, StoreOp } from '../core/index.ts'
import { createClusterState, type ClusterState } from './cluster-state.ts'
import type { DocMap } from './doc-codec.ts'
import { createMemoryStore } from './level-store.ts'
import type { SelfNodeInput, StatusInput } from './schema.ts'

export interface LogRecord {
  level: 'debug' | 'info' | 'warn' | 'error'
  obj: Record<string, unknown>
  msg: string | undefined
}

export interface RecordingLogger extends Logger {
  records: LogRecord[]
  at(level: LogRecord['level']): LogRecord[]
}

export function recordingLogger(): RecordingLogger {
  const records: LogRecord[] = []
  const log = (level: LogRecord['level']) => (obj: object, msg?: string): void => {
    records.push({ level, obj: obj as Record<string, unknown>, msg })
  }
  const logger: RecordingLogger = {
    records,
    at: (level) => records.filter((record) => record.level === level),
    debug: log('debug'),
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
    child: () => logger,
  }
  return logger
}

/** A Store whose next put or batch can be made to fail once, as a full disk would. */
export interface FlakyStore extends Store {
  failNextPut(): void
  failNextBatch(): void
}

export function flakyStore(inner: Store): FlakyStore {
  let failPut = false
  let failBatch = false
  return {
    open: () => inner.open(),
    close: () => inner.close(),
    get: (key) => inner.get(key),
    del: (key) => inner.del(key),
    list: (prefix, options) => inner.list(prefix, options),
    put: async (key: string, value: Uint8Array) => {
      if (failPut) {
        failPut = false
        throw new Error('injected put failure')
      }
      await inner.put(key, value)
    },
    batch: async (ops: readonly StoreOp[]) => {
      if (failBatch) {
        failBatch = false
        throw new Error('injected batch failure')
      }
      await inner.batch(ops)
    },
    failNextPut: () => {
      failPut = true
    },
    failNextBatch: () => {
      failBatch = true
    },
  }
}

export interface Started<C extends Clock> {
  state: ClusterState
  store: Store
  clock: C
  logger: RecordingLogger
}

export interface StartOptions<C extends Clock> {
  clock: C
  selfId?: string
  store?: Store
  compactAfterChunks?: number
  indexCacheEntriesMin?: number
  automerge?: AutomergeEngine
}

export async function startState<C extends Clock>(options: StartOptions<C>): Promise<Started<C>> {
  const store = options.store ?? createMemoryStore()
  const logger = recordingLogger()
  const state = createClusterState({
    selfId: options.selfId ?? 'node-a',
    ...(options.compactAfterChunks === undefined ? {} : { compactAfterChunks: options.compactAfterChunks }),
    ...(options.indexCacheEntriesMin === undefined ? {} : { indexCacheEntriesMin: options.indexCacheEntriesMin }),
  })({ store, clock: options.clock, logger, ...(options.automerge !== undefined ? { automerge: options.automerge } : {}) })
  await state.start()
  return { state, store, clock: options.clock, logger }
}

export const sampleNode: SelfNodeInput = {
  name: 'laptop',
  addresses: ['/ip4/127.0.0.1/tcp/4001'],
  labels: { zone: 'home' },
  capacity: { cpu: 8, memoryMB: 16_384, diskMB: 500_000, gpus: 0 },
  version: '0.1.0',
}

export const sampleStatus: StatusInput = {
  generation: 1,
  epoch: 1,
  state: 'running',
  containerId: 'c0ffee',
  hostPorts: { '80': 49_153 },
  restarts: 0,
}

/** Opens a store a stopped ClusterState closed, runs `fn` on it, closes it again. */
export async function withOpen<T>(store: Store, fn: () => Promise<T>): Promise<T> {
  await store.open()
  try {
    return await fn()
  } finally {
    await store.close()
  }
}

/** A change made by another replica that writes whatever `edit` wants, bypassing validation. */
export function foreignChange(state: ClusterState, edit: (doc: DocMap) => void): Uint8Array {
  const foreign = A.load<DocMap>(state.saveSnapshot(), { actor: 'ff'.repeat(16) })
  const changed = A.change(foreign, { time: 0 }, edit)
  return A.getLastLocalChange(changed)!
}
