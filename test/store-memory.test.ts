/** The memory-level Store adapter passes the Store acceptance suite. */
import { createMemoryStore } from '../crdt/level-store.ts'
import { runStoreSuite } from './suites/store-suite.ts'

runStoreSuite('memory-level', async () => {
  const store = createMemoryStore()
  return {
    store,
    // memory-level keeps its data across close/open of the same instance,
    // which is what a restarted node in the simulator relies on.
    reopen: async () => store,
    cleanup: () => store.close(),
  }
})
