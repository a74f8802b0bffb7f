#!/usr/bin/env node
// Runs the TypeScript CLI straight from a checkout (`npx lattice`), through
// tsx's ESM loader: no build step between editing and running.
import { register } from 'tsx/esm/api'

register()
const { main } = await import('../node/cli/main.ts')
// Exit explicitly: a stopped node must not linger on a stray handle (stdout/stderr writes are synchronous on Linux pipes and files).
process.exit(await main(process.argv))
