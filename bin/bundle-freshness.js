// Whether a checkout's bundle (dist/lattice.js) is at least as new as what it
// was built from: bin/lattice.js runs it then, and the sources through tsx
// otherwise. The build's metafile (dist/lattice.meta.json, esbuild's) names
// those sources, so editing a test or a bench does not send every run (a
// campaign's hundred seeds) through tsx; without a metafile, every TypeScript
// file in the source folders counts.
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'

const SOURCE_DIRS = ['core', 'node', 'mesh', 'crdt', 'runtime', 'sim', 'desktop']

function newestSourceMs(dir) {
  let newest = 0
  let entries
  try {
    entries = readdirSync(dir, { withFileTypes: true })
  } catch {
    return 0
  }
  for (const entry of entries) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules' && entry.name !== 'dist') newest = Math.max(newest, newestSourceMs(path))
    } else if (entry.name.endsWith('.ts') || entry.name.endsWith('.tsx')) {
      newest = Math.max(newest, statSync(path).mtimeMs)
    }
  }
  return newest
}

/** The files the bundle was built from (paths from the checkout's root), or undefined without a readable metafile. */
function bundleInputs(root) {
  try {
    const inputs = Object.keys(JSON.parse(readFileSync(join(root, 'dist', 'lattice.meta.json'), 'utf8')).inputs)
    return inputs.length > 0 ? inputs : undefined
  } catch {
    return undefined
  }
}

/** True when `root`'s dist/lattice.js exists and is no older than package.json and every source it was built from. */
export function bundleIsFresh(root) {
  let bundleMs
  try {
    bundleMs = statSync(join(root, 'dist', 'lattice.js')).mtimeMs
  } catch {
    return false
  }
  let sourcesMs = statSync(join(root, 'package.json')).mtimeMs
  const inputs = bundleInputs(root)
  if (inputs === undefined) return bundleMs >= Math.max(sourcesMs, ...SOURCE_DIRS.map((dir) => newestSourceMs(join(root, dir))))
  for (const input of inputs) {
    try {
      sourcesMs = Math.max(sourcesMs, statSync(join(root, input)).mtimeMs)
    } catch {
      return false // a source the bundle was built from is gone
    }
  }
  return bundleMs >= sourcesMs
}
