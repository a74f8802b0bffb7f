/**
 * Rendezvous (highest-random-weight) hashing: every node ranks the alive
 * peers for a replica round by a hash of (deployment, replica, generation,
 * peer) and takes the top K. Each node computes the same shortlist from the
 * same membership view, with no coordination, and a peer joining or leaving
 * moves only the rounds it ranks in.
 *
 * Cost: one string hash per round plus one integer mix per peer (the peer's
 * own hash is computed once), so ranking n peers is O(n) cheap operations —
 * the simulator ranks thousands of rounds over hundreds of nodes.
 */
import { fnv1a32 } from '../../core/index.ts'

export interface RoundKey {
  deploymentId: string
  replica: number
  generation: number
}

const peerHashes = new Map<string, number>()
const PEER_HASH_CACHE_MAX = 100_000

function peerHash(peerId: string): number {
  let hash = peerHashes.get(peerId)
  if (hash === undefined) {
    hash = fnv1a32(peerId)
    if (peerHashes.size >= PEER_HASH_CACHE_MAX) peerHashes.clear()
    peerHashes.set(peerId, hash)
  }
  return hash
}

export function roundHash(round: RoundKey): number {
  return fnv1a32(`${round.deploymentId}\u0000${round.replica}\u0000${round.generation}`)
}

/** murmur3's 32-bit finalizer: a well-mixed weight from the round and peer hashes. */
function mix(x: number): number {
  x ^= x >>> 16
  x = Math.imul(x, 0x85ebca6b)
  x ^= x >>> 13
  x = Math.imul(x, 0xc2b2ae35)
  x ^= x >>> 16
  return x >>> 0
}

export function rendezvousWeight(round: RoundKey | number, peerId: string): number {
  const base = typeof round === 'number' ? round : roundHash(round)
  return mix(base ^ Math.imul(peerHash(peerId), 0x9e3779b1))
}

const byWeight = (a: { peerId: string; weight: number }, b: { peerId: string; weight: number }): number =>
  b.weight - a.weight || (a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0)

/** The best `count` peers for a round, best first (ties by peerId). */
export function topPeers(round: RoundKey, peerIds: Iterable<string>, count: number): string[] {
  const base = roundHash(round)
  const best: Array<{ peerId: string; weight: number }> = []
  for (const peerId of peerIds) {
    const entry = { peerId, weight: rendezvousWeight(base, peerId) }
    if (best.length < count) {
      best.push(entry)
      best.sort(byWeight)
    } else if (count > 0 && byWeight(entry, best[best.length - 1]!) < 0) {
      best[best.length - 1] = entry
      best.sort(byWeight)
    }
  }
  return best.map((entry) => entry.peerId)
}

/** The 0-based rank of `peerId` among `peerIds` for a round (peerIds need not contain it). */
export function rankOf(round: RoundKey, peerIds: Iterable<string>, peerId: string): number {
  const base = roundHash(round)
  const mine = { peerId, weight: rendezvousWeight(base, peerId) }
  let rank = 0
  for (const other of peerIds) {
    if (other === peerId) continue
    if (byWeight({ peerId: other, weight: rendezvousWeight(base, other) }, mine) < 0) rank++
  }
  return rank
}
