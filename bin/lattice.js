#!/usr/bin/env node
// Runs the `lattice` CLI from a checkout (`npx lattice`). `npm ci` builds one
// bundle (dist/lattice.js, `npm run build`) that starts fast and small; when
// any TypeScript source is newer than it (a developer editing), the sources
// run directly through tsx's loader instead, so what runs is never stale.
import { readdirSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const bundle = join(root, 'dist', 'lattice.js')
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

function bundleIsFresh() {
  let bundleMs
  try {
    bundleMs = statSync(bundle).mtimeMs
  } catch {
    return false
  }
  const sourcesMs = Math.max(...SOURCE_DIRS.map((dir) => newestSourceMs(join(root, dir))), statSync(join(root, 'package.json')).mtimeMs)
  return bundleMs >= sourcesMs
}

let main
if (process.env.LATTICE_FROM_SOURCE !== '1' && bundleIsFresh()) {
  ;({ main } = await import(bundle))
} else {
  const { register } = await import('tsx/esm/api')
  register()
  ;({ main } = await import('../node/cli/main.ts'))
}
// Exit explicitly: a stopped node must not linger on a stray handle (stdout and
// stderr writes are synchronous on Linux pipes and files).
process.exit(await main(process.argv))
