/**
 * What one change costs must not grow with the document: every node of the
 * simulator applies every change to a document of thousands of deployments.
 * Counted (entries decoded per change) and timed as a ratio of a large
 * document to a small one, so a loaded machine slows both alike.
 */
import { describe, expect, it } from 'vitest'
import { silentLogger } from '../core/index.ts'
import { createVirtualClock } from '../sim/virtual-clock.ts'
import { createClusterState, type ClusterState } from './cluster-state.ts'
import { createMemoryStore } from './level-store.ts'
import { sampleStatus } from './test-support.ts'

const BATCH = 100

async function documentOf(deployments: number): Promise<{ source: ClusterState; reporter: ClusterState; changes: Uint8Array[] }> {
  const clock = createVirtualClock()
  const make = (selfId: string): ClusterState => createClusterState({ selfId })({ store: createMemoryStore(), clock, logger: silentLogger })
  const source = make('node-source')
  await source.start()
  for (let first = 0; first < deployments; first += BATCH) {
    await source.batch((tx) => {
      for (let i = first; i < Math.min(deployments, first + BATCH); i++) {
        const id = `d${i}`
        tx.createDeployment({ id, spec: { name: `app-${i}`, image: 'nginx' }, owner: 'node-source' })
        tx.writePlacement(id, 0, {
          generation: 1,
          winners: ['node-reporter'],
          bids: [{ peerId: 'node-reporter', score: 1, atMs: 1 }],
          shortlist: ['node-reporter'],
          closedBy: 'node-source',
          openedAtMs: 1,
          closedAtMs: 2,
          history: [],
        })
      }
    })
  }
  const reporter = make('node-reporter')
  await reporter.start()
  await reporter.mergeSnapshot(source.saveSnapshot())
  const changes: Uint8Array[] = []
  reporter.onLocalChange((change) => changes.push(change))
  return { source, reporter, changes }
}

/** The fastest of `runs` status changes applied one by one to `source`: the least disturbed by other load. */
async function fastestApplyMs(deployments: number, runs: number): Promise<number> {
  const { source, reporter, changes } = await documentOf(deployments)
  for (let i = 0; i < runs + 5; i++) await reporter.reportStatus(`d${i}`, 0, sampleStatus)
  let fastest = Number.POSITIVE_INFINITY
  for (const [i, change] of changes.entries()) {
    const startedAt = performance.now()
    await source.applyChanges([change])
    if (i >= 5) fastest = Math.min(fastest, performance.now() - startedAt) // the first few warm the JIT
  }
  await Promise.all([source.stop(), reporter.stop()])
  return fastest
}

describe('cluster state cost per change', () => {
  it('applying one status change to a document of 2,000 deployments decodes only the entries it touched', async () => {
    const { source, reporter, changes } = await documentOf(2_000)
    await reporter.reportStatus('d1234', 0, sampleStatus)
    const before = source.stats().entriesDecoded
    expect(await source.applyChanges(changes)).toEqual({ applied: true, invalidEntries: [] })
    expect(source.stats().entriesDecoded - before).toBe(1)
    expect(source.statuses('d1234')).toHaveLength(1)

    // A local write, too: the one entry it wrote.
    const local = reporter.stats().entriesDecoded
    await reporter.reportStatus('d1999', 0, { ...sampleStatus, restarts: 1 })
    expect(reporter.stats().entriesDecoded - local).toBe(1)
    await Promise.all([source.stop(), reporter.stop()])
  }, 120_000)

  it('one change applied to 2,000 deployments costs less than 2× one applied to 100', async () => {
    let small = await fastestApplyMs(100, 30)
    let large = await fastestApplyMs(2_000, 30)
    // Sub-millisecond timings on a shared machine: a burst of other load during the large document's
    // runs is answered by measuring both once more (a real regression is slow both times).
    if (large / small >= 2) {
      small = Math.min(small, await fastestApplyMs(100, 30))
      large = Math.min(large, await fastestApplyMs(2_000, 30))
    }
    // ≈ 1 now; ≈ 3 while the document was materialized (an Automerge.Doc
    // copies every map on the changed path, here a map of every deployment).
    expect(large / small).toBeLessThan(2)
  }, 120_000)
})
