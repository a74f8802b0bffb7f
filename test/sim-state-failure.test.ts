/** A separate file: the trap below marks the simulator's Automerge engine dead for the rest of the process it runs in, as a real trap does. */
import { describe, expect, it, vi } from 'vitest'
import { automergeEngine } from '../crdt/automerge-engine.ts'
import { FIRST_SIMULATED_ENGINE } from '../sim/automerge-memory.ts'
import { createSimCluster } from '../sim/sim-cluster.ts'

describe('a simulated node whose document fails', () => {
  it('stops the run with the node, the virtual time and the reason, instead of running on with a node that can no longer change state', async () => {
    const cluster = createSimCluster({ nodes: 4, seed: 3 })
    await cluster.startAll()
    const probe = automergeEngine(FIRST_SIMULATED_ENGINE).create()
    const handleClass = Object.getPrototypeOf(probe) as { commit(...args: unknown[]): unknown }
    probe.free()
    const spy = vi.spyOn(handleClass, 'commit').mockImplementationOnce(() => {
      throw new Error('Module terminated')
    })
    try {
      await expect(cluster.deploy(cluster.alive()[1]!, { name: 'x', image: 'lattice-test/busybox:latest', command: ['/bin/true'] })).rejects.toMatchObject({ code: 'INTERNAL' })
      await expect(cluster.driver.runFor(1_000)).rejects.toThrow(/simulated node n1 lost its cluster document at \d+ virtual ms: Automerge failed while making a local change: Module terminated \(Automerge engine 1; the run has 1\)/)
    } finally {
      spy.mockRestore()
      await cluster.stopAll().catch(() => undefined)
    }
  }, 60_000)
})

