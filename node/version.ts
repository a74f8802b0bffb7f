/** The package version, reported by health, heartbeats and the CLI. */
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
export const LATTICE_VERSION: string = (require('../package.json') as { version: string }).version
