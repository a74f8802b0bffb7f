/**
 * The cluster-state document's layout and the few Automerge facts every
 * other module relies on: the sections, the shared genesis change, actor ids
 * and change times.
 *
 * Layout (DESIGN.md §4):
 *   nodes[peerId], deployments[id], placements[id][replica],
 *   status[id][replica][peerId]
 * Replica indexes are map keys written as decimal strings.
 */
import { createHash } from 'node:crypto'
import * as A from '@automerge/automerge'
import { LatticeError } from '../core/index.ts'
import type { DocMap } from './doc-codec.ts'

/** The document as stored. Its content is validated on read, so its type says nothing more. */
export type ClusterDoc = DocMap

export const SECTIONS = ['nodes', 'deployments', 'placements', 'status'] as const
export type SectionName = (typeof SECTIONS)[number]

/** How many keys below the section name identify one entry. */
export const ENTRY_DEPTH: Readonly<Record<SectionName, number>> = { nodes: 1, deployments: 1, placements: 2, status: 3 }

export function isSectionName(value: unknown): value is SectionName {
  return typeof value === 'string' && (SECTIONS as readonly string[]).includes(value)
}

export function replicaKey(replica: number): string {
  return String(replica)
}

/**
 * Every replica starts from the same genesis change, which creates the four
 * section maps. Were each node to create `nodes = {}` itself, two nodes'
 * maps would conflict on merge and one node's whole registry would vanish.
 * The change is built from a fixed actor and time, so every node produces
 * the same bytes and the same hash (GENESIS_HASH, checked when first built:
 * a library upgrade that changed it would split old and new nodes).
 */
const GENESIS_ACTOR = '4c61747469636547656e65736973000a' // "LatticeGenesis" + padding
export const GENESIS_HASH = 'c1973b97c3ec0cd6ce90e8a79868633e821494af44c84dc1ad065fe123f43551'

let genesis: Uint8Array | undefined

export function genesisChange(): Uint8Array {
  if (genesis === undefined) {
    const doc = A.change(A.init<ClusterDoc>({ actor: GENESIS_ACTOR }), { message: 'genesis', time: 0 }, (draft) => {
      for (const section of SECTIONS) draft[section] = {}
    })
    const change = A.getLastLocalChange(doc)
    const hash = change === undefined ? undefined : A.decodeChange(change).hash
    if (change === undefined || hash !== GENESIS_HASH) {
      // Refuse to start rather than fork silently from every other node.
      throw new LatticeError('INTERNAL', `genesis change hash ${String(hash)} differs from ${GENESIS_HASH}: incompatible Automerge encoding`)
    }
    genesis = change
  }
  return genesis
}

/**
 * A fresh actor id for each start of a node. Reusing one across restarts is
 * unsafe: if the node lost chunks (corruption), it would reissue sequence
 * numbers its peers already hold with different content. Derived from the
 * node id, a persisted boot count and the start time rather than drawn at
 * random, so a simulation replays with identical change hashes.
 */
export function deriveActorId(selfId: string, boot: number, nowMs: number): string {
  return createHash('sha256').update(`${selfId}\n${boot}\n${nowMs}`).digest('hex').slice(0, 32)
}

/**
 * Automerge's change time is advisory and in seconds; omitting it makes
 * Automerge read the wall clock, so it always comes from the Clock port.
 */
export function changeTimeSeconds(nowMs: number): number {
  return Math.floor(nowMs / 1000)
}
