/**
 * The bundle `npm ci` builds (dist/lattice.js, what `npx lattice` and
 * `npm run sim` run once it is fresh) behaves as the sources do where it
 * reads files next to itself. It is built here, into dist/ beside the real
 * one, so that the test does not depend on a build having run.
 */
import { spawnSync } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build, type Metafile } from 'esbuild'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bundleIsFresh } from '../bin/bundle-freshness.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** Beside dist/, one level below the root as dist/ is (the bundle reads ../package.json and ../sim/scenarios/). */
const OUT_DIR = join(ROOT, `dist-bundle-test-${process.pid}`)
const BUNDLE = join(OUT_DIR, 'lattice.js')
let metafile: Metafile

/** Runs the bundle's main with `args` in a new process. */
function runBundle(args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  const script = `const { main } = await import(${JSON.stringify(BUNDLE)}); process.exit(await main(['node', 'lattice', ...process.argv.slice(1)]))`
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script, '--', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 })
  return { status: child.status, stdout: child.stdout, stderr: child.stderr }
}

describe('the bundle', () => {
  beforeAll(async () => {
    // The options of package.json's `build` script.
    const result = await build({
      entryPoints: [join(ROOT, 'node/cli/main.ts')],
      bundle: true,
      splitting: true,
      platform: 'node',
      format: 'esm',
      packages: 'external',
      target: 'node20',
      outdir: OUT_DIR,
      entryNames: 'lattice',
      chunkNames: 'chunk-[hash]',
      metafile: true,
      logLevel: 'warning',
    })
    metafile = result.metafile
  })
  afterAll(async () => {
    await rm(OUT_DIR, { recursive: true, force: true })
  })

  it('loads the node stack, the report charts and libp2p only for the commands that use them, the simulator included', () => {
    // Packages a file of the bundle loads at once: its own static imports, and those of the chunks it imports statically.
    const outputs = metafile.outputs
    const loadedAtStart = (file: string, seen = new Set<string>()): Set<string> => {
      const packages = new Set<string>()
      if (seen.has(file)) return packages
      seen.add(file)
      for (const imported of outputs[file]?.imports ?? []) {
        if (imported.kind !== 'import-statement') continue
        if (imported.external) packages.add(imported.path)
        else for (const p of loadedAtStart(imported.path, seen)) packages.add(p)
      }
      return packages
    }
    const entry = Object.keys(outputs).find((file) => file.endsWith('/lattice.js'))!
    const atStart = [...loadedAtStart(entry)]
    for (const heavy of ['libp2p', 'fastify', 'dockerode', 'vega', 'vega-lite', '@automerge/automerge']) expect(atStart).not.toContain(heavy)
    // The simulator's chunk holds the node core (Automerge) but not the charts, the real network or Docker's client.
    const simChunk = Object.keys(outputs).find((file) => Object.keys(outputs[file]!.inputs).includes('sim/cli.ts'))!
    const simAtStart = [...loadedAtStart(simChunk)]
    expect(simAtStart).toContain('@automerge/automerge')
    for (const heavy of ['libp2p', 'fastify', 'dockerode', 'vega']) expect(simAtStart).not.toContain(heavy)
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

  it('counts as fresh against the sources it was built from (its metafile), not tests or benches beside them', async () => {
    const root = await mkdtemp(join(tmpdir(), 'lattice-fresh-'))
    try {
      const write = async (path: string, text: string, mtimeS: number): Promise<void> => {
        await mkdir(dirname(join(root, path)), { recursive: true })
        await writeFile(join(root, path), text)
        await utimes(join(root, path), mtimeS, mtimeS)
      }
      await write('package.json', '{}', 100)
      await write('crdt/doc.ts', 'export {}', 100)
      await write('crdt/doc.test.ts', 'export {}', 100)
      expect(bundleIsFresh(root)).toBe(false) // no bundle
      await write('dist/lattice.js', '', 200)
      await write('dist/lattice.meta.json', JSON.stringify({ inputs: { 'crdt/doc.ts': {} } }), 200)
      expect(bundleIsFresh(root)).toBe(true)
      await write('crdt/doc.test.ts', 'export {}', 300) // a test edited: not in the bundle
      expect(bundleIsFresh(root)).toBe(true)
      await write('crdt/doc.ts', 'export {}', 300) // a source edited
      expect(bundleIsFresh(root)).toBe(false)
      await write('dist/lattice.js', '', 400)
      await write('package.json', '{}', 500)
      expect(bundleIsFresh(root)).toBe(false)
      await write('dist/lattice.js', '', 600)
      expect(bundleIsFresh(root)).toBe(true)
      await rm(join(root, 'crdt/doc.ts'))
      expect(bundleIsFresh(root)).toBe(false) // a source it was built from is gone
      // Without a metafile every TypeScript file in the source folders counts, tests included.
      await rm(join(root, 'dist/lattice.meta.json'))
      expect(bundleIsFresh(root)).toBe(true)
      await write('crdt/doc.test.ts', 'export {}', 700)
      expect(bundleIsFresh(root)).toBe(false)
    } finally {
      await rm(root, { recursive: true, force: true })
    }
  })

  it('reports the package version', async () => {
    const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }
    const run = runBundle(['--version'])
    expect(run.status).toBe(0)
    expect(run.stdout.trim()).toBe(version)
  })
})
