/**
 * The node's data dir: where it keeps its identity, mesh key, document,
 * config overrides and API credentials. `--data-dir`, then LATTICE_DATA_DIR,
 * then ~/.lattice.
 */
import { randomBytes } from 'node:crypto'
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { z } from 'zod'
import { LatticeError, parseJsonOrUndefined } from '../core/index.ts'
import { NodeConfigSchema, type NodeConfigInput } from './config.ts'

export function resolveDataDir(flag?: string): string {
  const chosen = flag ?? process.env.LATTICE_DATA_DIR ?? join(homedir(), '.lattice')
  return resolve(chosen)
}

export async function ensureDataDir(dataDir: string): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
}

export const ApiCredentialsSchema = z.strictObject({
  url: z.string().url(),
  token: z.string().min(32),
})
export type ApiCredentials = z.infer<typeof ApiCredentialsSchema>

const apiFile = (dataDir: string): string => join(dataDir, 'api.json')

/** Reads D/api.json; undefined when absent. A malformed file is an error: it names the path. */
export async function readApiCredentials(dataDir: string): Promise<ApiCredentials | undefined> {
  let text: string
  try {
    text = await readFile(apiFile(dataDir), 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
  const parsed = ApiCredentialsSchema.safeParse(parseJsonOrUndefined(text))
  if (!parsed.success) throw new LatticeError('BAD_REQUEST', `${apiFile(dataDir)} is malformed: ${parsed.error.issues[0]?.message ?? 'invalid'}`)
  return parsed.data
}

/** The token survives restarts; a new one is made on first start. */
export async function loadOrCreateApiToken(dataDir: string): Promise<string> {
  const existing = await readApiCredentials(dataDir).catch(() => undefined)
  return existing?.token ?? randomBytes(32).toString('base64url')
}

/** Written atomically with mode 0600: the token is the key to the node. */
export async function writeApiCredentials(dataDir: string, credentials: ApiCredentials): Promise<void> {
  const target = apiFile(dataDir)
  const temporary = `${target}.${process.pid}.tmp`
  await writeFile(temporary, JSON.stringify(credentials, null, 2) + '\n', { mode: 0o600 })
  await chmod(temporary, 0o600)
  await rename(temporary, target)
}

/** Optional D/config.json with NodeConfig overrides. */
export async function readConfigFile(dataDir: string): Promise<NodeConfigInput> {
  const path = join(dataDir, 'config.json')
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw error
  }
  const parsed = NodeConfigSchema.partial().safeParse(parseJsonOrUndefined(text))
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new LatticeError('VALIDATION_FAILED', `${path}: ${issue?.path.join('.') ?? ''} ${issue?.message ?? 'invalid'}`.trim())
  }
  return parsed.data as NodeConfigInput
}
