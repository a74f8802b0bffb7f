#!/usr/bin/env node
// Runs the `lattice` CLI from a checkout (`npx lattice`). `npm ci` builds one
// bundle (dist/lattice.js, `npm run build`) that starts fast and small; when a
// source it was built from is newer than it (a developer editing), the sources
// run directly through tsx's loader instead, so what runs is never stale
// (bundle-freshness.js).
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { bundleIsFresh } from './bundle-freshness.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

let main
if (process.env.LATTICE_FROM_SOURCE !== '1' && bundleIsFresh(root)) {
  ;({ main } = await import(join(root, 'dist', 'lattice.js')))
} else {
  const { register } = await import('tsx/esm/api')
  register()
  ;({ main } = await import('../node/cli/main.ts'))
}
// Exit explicitly: a stopped node must not linger on a stray handle (stdout and
// stderr writes are synchronous on Linux pipes and files).
process.exit(await main(process.argv))
