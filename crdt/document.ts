/**
 * The cluster-state document's layout and the few Automerge facts every
 * other module relies on: the sections, entry keys, the shared genesis
 * change, actor ids and change times.
 *
 * Layout (DESIGN.md §4; docs/ARCHITECTURE.md, "Document layout", says who
 * writes what and why). Every value sits directly in its section:
 *   nodes[peerId]                       a map of fields
 *   deployments[id]                     the definition, one JSON string
 *   deployments["<id>/<field>"]         desired | replicas | epoch | updatedAtMs, once changed
 *   placements["<id>/<replica>"]        one JSON string
 *   status["<id>/<replica>/<peerId>"]   one JSON string
 * No map below a section is made by more than one writer (two peers each
 * making "the same" map make two, and the merge hides one with everything
 * in it), and an entry written whole costs one op (load time grows with
 * ops). Ids and peer ids cannot contain the separator (schema.ts,
 * ID_PATTERN), so a key splits one way only; replica indexes are canonical
 * decimal strings.
 */
import { createHash } from 'node:crypto'
import * as A from '@automerge/automerge'
import { LatticeError } from '../core/index.ts'
import type { DocMap } from './doc-codec.ts'

/** The document as stored. Its content is validated on read, so its type says nothing more. */
export type ClusterDoc = DocMap

export const SECTIONS = ['nodes', 'deployments', 'placements', 'status'] as const
export type SectionName = (typeof SECTIONS)[number]

/** Joins the parts of a key: not a character of ids, peer ids or replica indexes. */
export const KEY_SEPARATOR = '/'

/** How many parts an entry's key has, per section (the index keys entries by these parts). */
export const ENTRY_KEY_PARTS: Readonly<Record<SectionName, number>> = { nodes: 1, deployments: 1, placements: 2, status: 3 }

/**
 * The fields of a deployment that any node may change, each stored under
 * its own key "<id>/<field>" so that concurrent changes of different fields
 * (a stop here, a scale there) all survive the merge. A field is written
 * the first time it changes; until then its default holds (schema.ts,
 * decodeDeployment), so a deployment nobody changed costs one op.
 */
export const DEPLOYMENT_FIELDS = ['desired', 'replicas', 'epoch', 'updatedAtMs'] as const
export type DeploymentField = (typeof DEPLOYMENT_FIELDS)[number]

export function isSectionName(value: unknown): value is SectionName {
  return typeof value === 'string' && (SECTIONS as readonly string[]).includes(value)
}

export function replicaKey(replica: number): string {
  return String(replica)
}

export function deploymentFieldKey(deploymentId: string, field: DeploymentField): string {
  return `${deploymentId}${KEY_SEPARATOR}${field}`
}

export function placementKey(deploymentId: string, replica: number): string {
  return `${deploymentId}${KEY_SEPARATOR}${replicaKey(replica)}`
}

export function statusKey(deploymentId: string, replica: number, peerId: string): string {
  return `${deploymentId}${KEY_SEPARATOR}${replicaKey(replica)}${KEY_SEPARATOR}${peerId}`
}

/** The key of the entry that a key of `section` belongs to: a deployment's field keys belong to its id. */
export function entryKeyOf(section: SectionName, key: string): string {
  if (section !== 'deployments') return key
  const end = key.indexOf(KEY_SEPARATOR)
  return end < 0 ? key : key.slice(0, end)
}

/** The parts of an entry key of `section`, or undefined when it does not have as many as the section's entries. */
export function splitEntryKey(section: SectionName, key: string): string[] | undefined {
  const parts = ENTRY_KEY_PARTS[section] === 1 ? [key] : key.split(KEY_SEPARATOR)
  return parts.length === ENTRY_KEY_PARTS[section] ? parts : undefined
}

/**
 * A deployment as stored, gathered from its keys: { definition, and each
 * field written so far }, for StoredDeploymentSchema; undefined when
 * nothing is stored under the id. `read` returns the value at a key of the
 * deployments section (undefined when absent).
 */
export function gatherDeployment(id: string, read: (key: string) => unknown): DocMap | undefined {
  const stored: DocMap = {}
  let found = false
  const definition = read(id)
  if (definition !== undefined) {
    stored.definition = definition
    found = true
  }
  for (const field of DEPLOYMENT_FIELDS) {
    const value = read(deploymentFieldKey(id, field))
    if (value === undefined) continue
    stored[field] = value
    found = true
  }
  return found ? stored : undefined
}

/**
 * Every deployment of a materialized deployments section, gathered as
 * gatherDeployment does, keyed by id. Keys "<id>/<other>" that name no
 * field are left out (a newer node's field), as z.object strips unknown
 * fields.
 */
export function gatherDeployments(section: DocMap): Map<string, DocMap> {
  const byId = new Map<string, DocMap>()
  for (const key of Object.keys(section)) {
    const end = key.indexOf(KEY_SEPARATOR)
    const id = end < 0 ? key : key.slice(0, end)
    const field = end < 0 ? 'definition' : key.slice(end + 1)
    if (end >= 0 && !(DEPLOYMENT_FIELDS as readonly string[]).includes(field)) continue
    let stored = byId.get(id)
    if (stored === undefined) byId.set(id, (stored = {}))
    stored[field] = section[key]
  }
  return byId
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
