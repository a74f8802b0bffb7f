/** The LevelDB Store adapter passes the Store acceptance suite, on a temp dir. */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Store } from '../core/index.ts'
import { createLevelStore } from '../crdt/level-store.ts'
import { runStoreSuite } from './suites/store-suite.ts'

runStoreSuite('level (LevelDB)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lattice-store-'))
  const path = join(dir, 'db')
  const opened: Store[] = []
  const make = (): Store => {
    const store = createLevelStore({ path })
    opened.push(store)
    return store
  }
  return {
    store: make(),
    reopen: async () => make(),
    cleanup: async () => {
      for (const store of opened) await store.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
})
