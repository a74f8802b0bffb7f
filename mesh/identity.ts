/**
 * Key material kept in a node's data dir, and the invite string that carries
 * a mesh's bootstrap addresses and private-network key to a joining node.
 *
 * - `<dataDir>/identity.key`: the node's Ed25519 libp2p key (protobuf bytes),
 *   so its PeerId is stable across restarts.
 * - `<dataDir>/mesh.key`: the pnet swarm key (`/key/swarm/psk/1.0.0/` text
 *   form, as @libp2p/pnet reads it); without it no connection completes.
 *
 * Both files are created with mode 0600 inside a 0700 directory, and created
 * atomically (write a temporary file, then hard-link it into place), so two
 * processes racing on an empty data dir agree on one key and a crash never
 * leaves half a key behind.
 */
// Must precede @libp2p/pnet: see pnet-cipher.ts.
import './pnet-cipher.ts'
import { randomBytes } from 'node:crypto'
import { link, mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { generateKey } from '@libp2p/pnet'
import { multiaddr } from '@multiformats/multiaddr'
import { fromString as bytesFromString, toString as bytesToString } from 'uint8arrays'
import { z } from 'zod'
import { LatticeError } from '../core/index.ts'

export const IDENTITY_FILE = 'identity.key'
export const MESH_KEY_FILE = 'mesh.key'

const FILE_MODE = 0o600
const DIR_MODE = 0o700

export interface NodeIdentity {
  privateKey: PrivateKey
  peerId: string
}

/** Loads this node's libp2p key from the data dir, creating one on first use. */
export async function loadOrCreateIdentity(dataDir: string): Promise<NodeIdentity> {
  const path = join(dataDir, IDENTITY_FILE)
  let bytes = await readIfExists(path)
  if (bytes === undefined) {
    const created = await generateKeyPair('Ed25519')
    bytes = await createExclusive(dataDir, path, privateKeyToProtobuf(created))
  }
  let privateKey: PrivateKey
  try {
    privateKey = privateKeyFromProtobuf(bytes)
  } catch (err) {
    throw new LatticeError('VALIDATION_FAILED', `${path} is not a libp2p private key; move it away to create a new identity`, { cause: String(err) })
  }
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey).toString() }
}

// ---------------------------------------------------------------- mesh key

const SWARM_KEY_HEADER = '/key/swarm/psk/1.0.0/\n/base16/\n'
const SWARM_KEY_HEX_CHARS = 64
/** Length of a swarm key file as @libp2p/pnet's generateKey writes it. */
const SWARM_KEY_BYTES = SWARM_KEY_HEADER.length + SWARM_KEY_HEX_CHARS
const SWARM_KEY_PATTERN = /^\/key\/swarm\/psk\/1\.0\.0\/\r?\n\/base16\/\r?\n([0-9a-fA-F]{64})\s*$/

/** Creates a new, random mesh (pnet swarm) key. */
export function generateMeshKey(): Uint8Array {
  const key = new Uint8Array(SWARM_KEY_BYTES)
  generateKey(key)
  return key
}

/** Throws VALIDATION_FAILED unless `key` is a pnet v1 swarm key. */
export function assertMeshKey(key: Uint8Array): void {
  meshKeySecretHex(key)
}

/** The mesh key in the data dir, or undefined when this node has none yet. */
export async function readMeshKey(dataDir: string): Promise<Uint8Array | undefined> {
  const path = join(dataDir, MESH_KEY_FILE)
  const bytes = await readIfExists(path)
  if (bytes !== undefined) assertMeshKeyAt(bytes, path)
  return bytes
}

/** Loads the mesh key from the data dir, creating a new mesh's key on first use. */
export async function loadOrCreateMeshKey(dataDir: string): Promise<Uint8Array> {
  const existing = await readMeshKey(dataDir)
  if (existing !== undefined) return existing
  const path = join(dataDir, MESH_KEY_FILE)
  const bytes = await createExclusive(dataDir, path, generateMeshKey())
  assertMeshKeyAt(bytes, path)
  return bytes
}

/** Stores a mesh key (e.g. from an invite), replacing any previous one atomically. */
export async function writeMeshKey(dataDir: string, key: Uint8Array): Promise<void> {
  assertMeshKey(key)
  await ensureDir(dataDir)
  const path = join(dataDir, MESH_KEY_FILE)
  const temporary = temporaryPath(path)
  await writeFile(temporary, key, { mode: FILE_MODE, flag: 'wx' })
  try {
    await rename(temporary, path)
  } catch (err) {
    await unlink(temporary).catch(() => {})
    throw err
  }
}

function meshKeySecretHex(key: Uint8Array): string {
  const match = SWARM_KEY_PATTERN.exec(bytesToString(key, 'utf8'))
  if (match?.[1] === undefined) {
    throw new LatticeError('VALIDATION_FAILED', 'mesh key is not a pnet swarm key (/key/swarm/psk/1.0.0/, base16, 32 bytes)')
  }
  return match[1].toLowerCase()
}

function meshKeyFromSecretHex(hex: string): Uint8Array {
  return bytesFromString(SWARM_KEY_HEADER + hex.toLowerCase(), 'utf8')
}

function assertMeshKeyAt(bytes: Uint8Array, path: string): void {
  try {
    assertMeshKey(bytes)
  } catch {
    throw new LatticeError('VALIDATION_FAILED', `${path} is not a pnet swarm key`)
  }
}

// ----------------------------------------------------------------- invites

export const INVITE_PREFIX = 'lattice1:'
/** An invite is pasted on a command line: keep it well under shell limits. */
const INVITE_CHARS_MAX = 8_192
const INVITE_ADDRESSES_MAX = 32
const ADDRESS_CHARS_MAX = 512

export interface Invite {
  /** Bootstrap multiaddrs of a running member, ideally with /p2p/<peerId>. */
  addresses: string[]
  /** The mesh's pnet swarm key (full key file bytes). */
  meshKey: Uint8Array
}

const inviteAddressSchema = z
  .string()
  .min(1)
  .max(ADDRESS_CHARS_MAX)
  .refine(isMultiaddr, { message: 'not a multiaddr' })

const invitePayloadSchema = z
  .object({
    v: z.literal(1),
    addresses: z.array(inviteAddressSchema).min(1).max(INVITE_ADDRESSES_MAX),
    meshKey: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex characters'),
  })
  .strict()

/** One line: `lattice1:` + base64url(JSON { v, addresses, meshKey }). */
export function encodeInvite(invite: Invite): string {
  const payload = invitePayloadSchema.parse({ v: 1, addresses: invite.addresses, meshKey: meshKeySecretHex(invite.meshKey) })
  return INVITE_PREFIX + bytesToString(bytesFromString(JSON.stringify(payload), 'utf8'), 'base64url')
}

/** Parses an invite; throws VALIDATION_FAILED with the reason when malformed. */
export function decodeInvite(text: string): Invite {
  const trimmed = text.trim()
  if (trimmed.length > INVITE_CHARS_MAX) throw invalidInvite(`longer than ${INVITE_CHARS_MAX} characters`)
  if (!trimmed.startsWith(INVITE_PREFIX)) throw invalidInvite(`it must start with "${INVITE_PREFIX}"`)
  const body = trimmed.slice(INVITE_PREFIX.length)
  if (!/^[A-Za-z0-9_-]+$/.test(body)) throw invalidInvite('the part after the prefix is not base64url')
  let json: unknown
  try {
    json = JSON.parse(bytesToString(bytesFromString(body, 'base64url'), 'utf8'))
  } catch {
    throw invalidInvite('the payload is not JSON (truncated when copied?)')
  }
  const parsed = invitePayloadSchema.safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const where = issue === undefined || issue.path.length === 0 ? '' : `${issue.path.join('.')}: `
    throw invalidInvite(`${where}${issue?.message ?? 'invalid payload'}`)
  }
  return { addresses: parsed.data.addresses, meshKey: meshKeyFromSecretHex(parsed.data.meshKey) }
}

function invalidInvite(reason: string): LatticeError {
  return new LatticeError('VALIDATION_FAILED', `invalid invite: ${reason}`)
}

function isMultiaddr(text: string): boolean {
  try {
    multiaddr(text)
    return true
  } catch {
    return false
  }
}

// -------------------------------------------------------------- file helpers

async function readIfExists(path: string): Promise<Uint8Array | undefined> {
  try {
    return new Uint8Array(await readFile(path))
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT')) return undefined
    throw err
  }
}

async function ensureDir(dataDir: string): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: DIR_MODE })
}

/**
 * Writes `bytes` to `path` only if no file is there yet; returns what ends up
 * at `path` (ours, or the one a concurrent process created first).
 */
async function createExclusive(dataDir: string, path: string, bytes: Uint8Array): Promise<Uint8Array> {
  await ensureDir(dataDir)
  const temporary = temporaryPath(path)
  await writeFile(temporary, bytes, { mode: FILE_MODE, flag: 'wx' })
  try {
    await link(temporary, path)
    return bytes
  } catch (err) {
    if (!isErrnoCode(err, 'EEXIST')) throw err
    return new Uint8Array(await readFile(path))
  } finally {
    await unlink(temporary).catch(() => {})
  }
}

function temporaryPath(path: string): string {
  return `${path}.${randomBytes(6).toString('hex')}.tmp`
}

function isErrnoCode(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code
}
