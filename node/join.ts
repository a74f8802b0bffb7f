/**
 * Joining a mesh from the data dir: the mesh key (created, or taken from an
 * invite) and the bootstrap peers, remembered in D/peers.json so a restarted
 * node rejoins without the invite.
 */
import { access, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import { LatticeError } from '../core/index.ts'
import { decodeInvite, loadOrCreateMeshKey, readMeshKey, writeMeshKey } from '../mesh/index.ts'

const PeersFileSchema = z.object({ bootstrap: z.array(z.string().max(512)).max(64) })

export interface MeshMembershipFiles {
  meshKey: Uint8Array
  /** Multiaddrs ending in /p2p/<peerId>. */
  bootstrap: string[]
  /** This data dir made the mesh's key (D/founder): its node is the founder, the first epoch agreement's one acceptor. */
  founder: boolean
}

const peersFile = (dataDir: string): string => join(dataDir, 'peers.json')
const founderFile = (dataDir: string): string => join(dataDir, 'founder')

/** The founder mark is written before the key it stands for: a crash between the two still makes the key here, as the founder's. */
async function markFounder(dataDir: string): Promise<void> {
  await writeFile(founderFile(dataDir), 'this node made the mesh key\n', { mode: 0o600 })
}

async function isFounder(dataDir: string): Promise<boolean> {
  return access(founderFile(dataDir)).then(
    () => true,
    () => false,
  )
}

/** The mesh key and bootstrap peers for `start`, applying an invite when given. */
export async function prepareMesh(dataDir: string, inviteText?: string): Promise<MeshMembershipFiles> {
  if (inviteText === undefined) {
    if ((await readMeshKey(dataDir)) === undefined) await markFounder(dataDir)
    const meshKey = await loadOrCreateMeshKey(dataDir)
    return { meshKey, bootstrap: await readBootstrap(dataDir), founder: await isFounder(dataDir) }
  }
  const invite = decodeInvite(inviteText)
  const existing = await readMeshKey(dataDir)
  if (existing !== undefined && Buffer.compare(Buffer.from(existing), Buffer.from(invite.meshKey)) !== 0) {
    throw new LatticeError('CONFLICT', `${dataDir} already belongs to another mesh (its mesh.key differs from the invite's); join with a fresh --data-dir`)
  }
  if (existing === undefined) {
    // A mark left by a key this dir never made (a crash before it): the mesh is the invite's, founded elsewhere.
    await rm(founderFile(dataDir), { force: true })
    await writeMeshKey(dataDir, invite.meshKey)
  }
  const bootstrap = [...new Set([...invite.addresses, ...(await readBootstrap(dataDir))])]
  await writeFile(peersFile(dataDir), JSON.stringify({ bootstrap }, null, 2) + '\n', { mode: 0o600 })
  return { meshKey: invite.meshKey, bootstrap, founder: await isFounder(dataDir) }
}

/** Peers remembered across restarts (D/peers.json); the freshest first, at most this many. */
export const REMEMBERED_PEERS_MAX = 32

/**
 * Remembers addresses of members this node saw alive, so a restarted node
 * (whose bootstrap peers may be gone or moved) can find the mesh again.
 */
export async function rememberPeers(dataDir: string, addresses: string[]): Promise<void> {
  const merged = [...new Set([...addresses, ...(await readBootstrap(dataDir).catch(() => []))])].slice(0, REMEMBERED_PEERS_MAX)
  await writeFile(peersFile(dataDir), JSON.stringify({ bootstrap: merged }, null, 2) + '\n', { mode: 0o600 })
}

async function readBootstrap(dataDir: string): Promise<string[]> {
  let text: string
  try {
    text = await readFile(peersFile(dataDir), 'utf8')
  } catch {
    return []
  }
  const parsed = PeersFileSchema.safeParse(JSON.parse(text))
  if (!parsed.success) throw new LatticeError('VALIDATION_FAILED', `${peersFile(dataDir)} is malformed: ${parsed.error.issues[0]?.message ?? 'invalid'}`)
  return parsed.data.bootstrap
}

/** The PeerId at the end of a multiaddr, if it names one. */
export function peerIdOf(address: string): string | undefined {
  try {
    const component = multiaddr(address).getComponents().findLast((c) => c.name === 'p2p')
    return component?.value
  } catch {
    return undefined
  }
}
