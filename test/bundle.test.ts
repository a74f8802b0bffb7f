/**
 * The bundle `npm ci` builds (dist/lattice.js, what `npx lattice` and
 * `npm run sim` run once it is fresh) behaves as the sources do where it
 * reads files next to itself. It is built here, into dist/ beside the real
 * one, so that the test does not depend on a build having run.
 */
import { spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const BUNDLE = join(ROOT, 'dist', `lattice-bundle-test-${process.pid}.js`)

/** Runs the bundle's main with `args` in a new process. */
function runBundle(args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  const script = `const { main } = await import(${JSON.stringify(BUNDLE)}); process.exit(await main(['node', 'lattice', ...process.argv.slice(1)]))`
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script, '--', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 })
  return { status: child.status, stdout: child.stdout, stderr: child.stderr }
}

describe('the bundle', () => {
  beforeAll(async () => {
    // The options of package.json's `build` script.
    await build({ entryPoints: [join(ROOT, 'node/cli/main.ts')], bundle: true, platform: 'node', format: 'esm', packages: 'external', target: 'node20', outfile: BUNDLE, logLevel: 'warning' })
  })
  afterAll(async () => {
    await rm(BUNDLE, { force: true })
  })

  it('finds the named scenarios and runs one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lattice-bundle-'))
    try {
      const unknown = runBundle(['sim', '--scenario', 'nope'])
      expect(unknown.status).toBe(2)
      expect(unknown.stderr).toMatch(/scenarios: chaos, churn, failover, membership, partition, placement, state \(/)
      const json = join(dir, 'run.json')
      const run = runBundle(['sim', '--scenario', 'membership', '--nodes', '5', '--duration-s', '5', '--seed', '1', '--quiet', '--json', json])
      expect(run.stderr).toBe('')
      expect(run.status).toBe(0)
      const report = JSON.parse(await readFile(json, 'utf8')) as { scenario: string; invariants: { ok: boolean } }
      expect(report).toMatchObject({ scenario: 'membership', invariants: { ok: true } })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('reports the package version', async () => {
    const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }
    const run = runBundle(['--version'])
    expect(run.status).toBe(0)
    expect(run.stdout.trim()).toBe(version)
  })
})
