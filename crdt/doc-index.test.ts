/**
 * DocIndex on its own: what its caches answer after the index is replaced
 * wholesale (a restored snapshot), which no entry listener is told of, and
 * its entry count against a walk of its entries.
 */
import { describe, expect, it } from 'vitest'
import { silentLogger } from '../core/index.ts'
import { createVirtualClock } from '../sim/virtual-clock.ts'
import type { ClusterState } from './cluster-state.ts'
import type { DocMap } from './doc-codec.ts'
import { DocIndex, type IndexSnapshot, type SnapshotEntry } from './doc-index.ts'
import { foreignChange, sampleNode, sampleStatus, startState } from './test-support.ts'

const placement = (generation: number, winner: string): unknown => ({
  generation,
  winners: [winner],
  bids: [{ peerId: winner, score: 0.5, atMs: 990 }],
  shortlist: [winner],
  closedBy: winner,
  openedAtMs: 900,
  closedAtMs: 1_000,
  history: [],
})

const snapshot = (placements: SnapshotEntry[]): IndexSnapshot => ({
  sections: { nodes: [], deployments: [], placements, status: [] },
  invalid: [],
})

describe('doc index', () => {
  it('placements read before a restore answer the restored records, not the ones cached before it', () => {
    const index = new DocIndex(silentLogger)
    index.restore(snapshot([[['d1', '0'], 0, placement(1, 'node-a')], [['d2', '0'], 0, placement(1, 'node-a')]]))
    expect([...index.placements('d1').keys()]).toEqual([0])
    expect([...index.placements('d2').keys()]).toEqual([0])
    // d1 is gone from the restored index without an entry of it being written: only the clear says so.
    index.restore(snapshot([
      [['d2', '0'], 0, placement(2, 'node-b')],
      [['d2', '1'], 0, placement(1, 'node-c')],
    ]))
    expect(index.placements('d1').size).toBe(0)
    expect([...index.placements('d2').keys()]).toEqual([0, 1])
    expect(index.placements('d2').get(0)?.winners).toEqual(['node-b'])
    expect(index.entryCount()).toBe(2)
  })
})

describe('doc index counts', () => {
  it('the entry count kept by every write equals a walk of the entries, through writes, peers\' changes, an invalid entry and a deletion', async () => {
    const clock = createVirtualClock()
    const a = await startState({ clock, selfId: 'node-a' })
    const b = await startState({ clock, selfId: 'node-b' })
    const indexOf = (state: ClusterState): DocIndex => (state as unknown as { index: DocIndex }).index
    const walked = (index: DocIndex): number => Object.values(index.exportSnapshot().sections).reduce((sum, entries) => sum + entries.length, 0)
    await a.state.upsertSelfNode(sampleNode)
    for (const id of ['d1', 'd2', 'd3']) {
      await a.state.createDeployment({ id, spec: { name: `web-${id}`, image: 'nginx', replicas: 2 }, owner: 'node-a' })
      await a.state.reportStatus(id, 0, sampleStatus)
    }
    await b.state.upsertSelfNode(sampleNode)
    await b.state.applyChanges(a.state.changesSince([]))
    await b.state.applyChanges([foreignChange(b.state, (doc) => {
      ;(doc.nodes as DocMap)['node-x'] = 'not a node entry'
    })])
    await b.state.setDesired('d2', 'deleted')
    await a.state.applyChanges(b.state.changesSince(a.state.heads()))
    for (const state of [a.state, b.state]) {
      expect(indexOf(state).entryCount()).toBe(walked(indexOf(state)))
      expect(indexOf(state).entryCount()).toBeGreaterThan(5)
    }
    await a.state.stop()
    await b.state.stop()
  })
})
