/**
 * The Store port: an ordered key-value store of bytes. Real adapter: `level`
 * (LevelDB on disk); test and simulator adapter: `memory-level`. Both sit
 * behind crdt/level-store.ts and pass core's store acceptance suite
 * (test/suites/store-suite.ts).
 */
export type StoreOp =
  | { type: 'put'; key: string; value: Uint8Array }
  | { type: 'del'; key: string }

export interface StoreEntry {
  key: string
  value: Uint8Array
}

export interface Store {
  open(): Promise<void>
  close(): Promise<void>
  get(key: string): Promise<Uint8Array | undefined>
  put(key: string, value: Uint8Array): Promise<void>
  del(key: string): Promise<void>
  /** Applies all operations atomically, in order. */
  batch(ops: readonly StoreOp[]): Promise<void>
  /** Entries whose key starts with `prefix`, in ascending key order. */
  list(prefix: string, options?: { limit?: number }): Promise<StoreEntry[]>
}
