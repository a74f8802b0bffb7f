/**
 * The validated index of the document (doc-index.ts), kept in the store
 * when a node stops, so that its next start need not read and validate
 * every entry again: at 10,000 deployments that was most of a start in a
 * new process (~370 of ~600 ms; Automerge's load is the rest).
 *
 * It is used only for a document with exactly the heads it was written at,
 * and only by the validation rules it was written under (a fingerprint of
 * the entry schemas and decoders, plus INDEX_CACHE_FORMAT); otherwise the
 * index is rebuilt from the document, as without a cache, and the stale
 * cache is deleted. A crash leaves no cache for its heads: the next start
 * rebuilds.
 *
 * Layout: one sealed blob (envelope.ts) at INDEX_CACHE_KEY holding a JSON
 * header line (format, fingerprint, heads), then the snapshot's JSON,
 * deflated (decoded entries repeat their defaults and peer ids: 12.8 MB of
 * JSON at 10,000 deployments deflates to a few hundred KB, which LevelDB
 * then replays from its log at the next open in a few ms instead of ~60).
 * A stale cache is recognised from its header alone. The header and the
 * snapshot's shape are checked with zod, each entry's key and kind by a
 * loop; the entries' values are this node's own validated output and are
 * not checked again (that check is the cost the cache saves): the
 * envelope's checksum guards them.
 */
import { createHash } from 'node:crypto'
import { deflateRawSync, inflateRawSync } from 'node:zlib'
import { z } from 'zod'
import { parseJsonOrUndefined, type Logger, type Store } from '../core/index.ts'
import { decodeDeployment, decodeNode, decodePlacement, decodeStatus, type IndexSnapshot } from './doc-index.ts'
import { seal, unseal } from './envelope.ts'
import { NodeEntrySchema, StoredDeploymentSchema, StoredPlacementSchema, StoredStatusSchema } from './schema.ts'

export const INDEX_CACHE_KEY = 'doc/index-cache'

/**
 * Bump when what the index keeps per entry changes in a way the
 * fingerprint cannot see: a rule in a refine (JSON Schema leaves it out)
 * or in a helper the decoders call.
 */
const INDEX_CACHE_FORMAT = 1

const NEWLINE = 0x0a

let fingerprint: string | undefined

/** What the validation rules look like: a cache written under other rules is not used. Computed once per process. */
export function indexCacheFingerprint(): string {
  fingerprint ??= createHash('sha256')
    .update(
      JSON.stringify([
        INDEX_CACHE_FORMAT,
        [NodeEntrySchema, StoredDeploymentSchema, StoredPlacementSchema, StoredStatusSchema].map((schema) => z.toJSONSchema(schema, { unrepresentable: 'any', io: 'output' })),
        [decodeNode, decodeDeployment, decodePlacement, decodeStatus].map(String),
      ]),
    )
    .digest('hex')
  return fingerprint
}

const HeaderSchema = z.object({
  format: z.literal(INDEX_CACHE_FORMAT),
  fingerprint: z.string(),
  heads: z.array(z.string()),
})

/** Entries are checked by isSnapshotEntry: zod's tuple check costs ~40 ms at 30,000 entries, a third of what the cache saves. */
const EntriesSchema = z.array(z.unknown()).refine((entries) => entries.every(isSnapshotEntry), 'an entry is not [keys, 0 | 1, value]')

const SnapshotSchema = z.object({
  sections: z.object({ nodes: EntriesSchema, deployments: EntriesSchema, placements: EntriesSchema, status: EntriesSchema }),
  invalid: z.array(z.object({ path: z.array(z.string()), reason: z.string() })),
})

function isSnapshotEntry(entry: unknown): boolean {
  if (!Array.isArray(entry) || entry.length !== 3 || (entry[1] !== 0 && entry[1] !== 1)) return false
  const keys: unknown = entry[0]
  return Array.isArray(keys) && keys.length > 0 && keys.every((key) => typeof key === 'string')
}

const sortedHeads = (heads: readonly string[]): string[] => [...heads].sort()

/** Stores `snapshot` as the index of the document at `heads`. */
export async function writeIndexCache(store: Store, heads: readonly string[], snapshot: IndexSnapshot): Promise<number> {
  const header = JSON.stringify({ format: INDEX_CACHE_FORMAT, fingerprint: indexCacheFingerprint(), heads: sortedHeads(heads) })
  const encoder = new TextEncoder()
  const headerBytes = encoder.encode(`${header}\n`)
  const body = deflateRawSync(encoder.encode(JSON.stringify(snapshot)))
  const payload = new Uint8Array(headerBytes.byteLength + body.byteLength)
  payload.set(headerBytes, 0)
  payload.set(body, headerBytes.byteLength)
  const blob = seal(payload)
  await store.put(INDEX_CACHE_KEY, blob)
  return blob.byteLength
}

/**
 * The cached index of the document at `heads`, or undefined (none, or not
 * usable: logged, and a stale or damaged one deleted). Never throws: a
 * cache that cannot be read, or deleted, must not keep a node from
 * starting; the index is then rebuilt.
 */
export async function readIndexCache(store: Store, heads: readonly string[], logger: Logger): Promise<IndexSnapshot | undefined> {
  let outcome: IndexSnapshot | string
  try {
    const blob = await store.get(INDEX_CACHE_KEY)
    if (blob === undefined) return undefined
    outcome = openCache(blob, sortedHeads(heads))
    if (typeof outcome !== 'string') return outcome
    await store.del(INDEX_CACHE_KEY)
  } catch (err) {
    outcome = `unreadable: ${(err as Error).message}`
  }
  logger.info({ key: INDEX_CACHE_KEY, reason: outcome }, 'index cache not used; the index is rebuilt from the document')
  return undefined
}

/** The snapshot in `blob` if it is usable for `heads` (sorted), or why not. */
function openCache(blob: Uint8Array, heads: readonly string[]): IndexSnapshot | string {
  const opened = unseal(blob)
  if ('damaged' in opened) return `damaged: ${opened.damaged}`
  const { payload } = opened
  const split = payload.indexOf(NEWLINE)
  if (split < 0) return 'no header'
  const decoder = new TextDecoder()
  const header = HeaderSchema.safeParse(parseJsonOrUndefined(decoder.decode(payload.subarray(0, split))))
  if (!header.success) return 'unknown format'
  if (header.data.fingerprint !== indexCacheFingerprint()) return 'written under other validation rules'
  const cachedHeads = header.data.heads
  if (cachedHeads.length !== heads.length || cachedHeads.some((head, i) => head !== heads[i])) return 'written for other heads'
  let body: Uint8Array
  try {
    body = inflateRawSync(payload.subarray(split + 1))
  } catch (err) {
    return `not inflatable: ${(err as Error).message}`
  }
  const snapshot = SnapshotSchema.safeParse(parseJsonOrUndefined(decoder.decode(body)))
  if (!snapshot.success) return 'malformed entries'
  return snapshot.data as IndexSnapshot
}
