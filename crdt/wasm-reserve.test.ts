import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { automergeBytesFor, automergeEnginesFor, AUTOMERGE_PLANNED_BYTES_PER_ENGINE, AUTOMERGE_RESERVE_BYTES_MAX } from '../sim/automerge-memory.ts'

const RESERVE_MODULE = fileURLToPath(new URL('./wasm-reserve.ts', import.meta.url))

/**
 * In a fresh process: optionally reserve, then grow ~60 MB of documents; answers
 * the major collections V8 ran because of external memory pressure (what every
 * growth of a WebAssembly memory causes).
 */
function pressureCollections(reserveBytes: number): number {
  const script = `
    import * as A from '@automerge/automerge'
    import { PerformanceObserver, constants } from 'node:perf_hooks'
    import { reserveAutomergeMemory } from ${JSON.stringify(RESERVE_MODULE)}
    if (${reserveBytes} > 0) reserveAutomergeMemory(${reserveBytes})
    let count = 0
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR && (e.detail.flags & constants.NODE_PERFORMANCE_GC_FLAGS_ALL_EXTERNAL_MEMORY) !== 0) count++
    }).observe({ entryTypes: ['gc'] })
    const docs = []
    for (let i = 0; i < 1500; i++) docs.push(A.from({ v: new A.ImmutableString('x'.repeat(40000)), i }))
    setTimeout(() => console.log(count), 100)
  `
  return Number(execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', cwd: fileURLToPath(new URL('..', import.meta.url)) }).trim())
}

describe('Automerge memory reserved ahead of need', () => {
  it('documents created after a reserve take its memory instead of growing it: (almost) no collections forced by memory pressure', () => {
    const without = pressureCollections(0)
    const with_ = pressureCollections(256 * 1024 ** 2)
    expect(without).toBeGreaterThan(10)
    expect(with_).toBeLessThanOrEqual(2)
  })

  it('the simulator plans more per node as the cluster grows, and spreads what one wasm32 memory cannot hold over several engines', () => {
    expect(automergeBytesFor(300) / 300).toBeGreaterThan(automergeBytesFor(100) / 100)
    expect(automergeEnginesFor(500)).toBe(1)
    expect(automergeEnginesFor(1_000)).toBeGreaterThan(1)
    // Deployments count too: 500 nodes × 200 deployments overflowed one engine.
    expect(automergeBytesFor(200, 200)).toBeGreaterThan(automergeBytesFor(200))
    expect(automergeEnginesFor(500, 200)).toBeGreaterThanOrEqual(3)
    for (const [nodes, deployments] of [[10, 0], [200, 30], [500, 200], [1_000, 100], [2_000, 0]] as const) {
      expect(automergeBytesFor(nodes, deployments) / automergeEnginesFor(nodes, deployments)).toBeLessThanOrEqual(AUTOMERGE_PLANNED_BYTES_PER_ENGINE)
    }
    expect(AUTOMERGE_RESERVE_BYTES_MAX).toBeLessThan(4 * 1024 ** 3)
  })
})
