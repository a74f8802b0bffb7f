/**
 * Failures campaigns found, kept as scenario files (sim/scenarios/regressions/)
 * and replayed with the flags of the run that failed: each must now hold
 * every invariant. A file's header names the bug and the fix.
 */
import { describe, expect, it, vi } from 'vitest'
import { runSimCommand } from '../sim/cli.ts'

const REGRESSIONS: Array<{ file: string; flags: string[] }> = [
  // A slow container start held back the removal of a copy the node no longer owned (node/reconciler.ts).
  { file: 'sim/scenarios/regressions/slow-start-blocks-reconciler.yaml', flags: ['--nodes', '8', '--seed', '4', '--duration-s', '20', '--deployments', '30'] },
]

describe('simulator regressions', () => {
  for (const { file, flags } of REGRESSIONS) {
    it(`${file} ${flags.join(' ')} holds every invariant`, async () => {
      const stderr: string[] = []
      vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => (stderr.push(String(chunk)), true))
      vi.spyOn(process.stdout, 'write').mockImplementation(() => true)
      try {
        expect(await runSimCommand(['--scenario-file', file, ...flags, '--quiet']), stderr.join('')).toBe(0)
      } finally {
        vi.restoreAllMocks()
      }
    }, 180_000)
  }
})
