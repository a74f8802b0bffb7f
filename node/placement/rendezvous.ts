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

export function peerHash(peerId: string): number {
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

/**
 * A membership view prepared for ranking many rounds: the peers' hashes
 * computed once, so ranking a round is a tight loop of integer mixes.
 */
export interface RankingView {
  ids: readonly string[]
  hashes: Uint32Array
}

export function rankingView(peerIds: readonly string[]): RankingView {
  const hashes = new Uint32Array(peerIds.length)
  for (let i = 0; i < peerIds.length; i++) hashes[i] = peerHash(peerIds[i]!)
  return { ids: peerIds, hashes }
}

/**
 * rankOf over a RankingView, counting only up to `cap` (the answer is
 * min(rank, cap)): a peer far down the list stops after finding `cap`
 * better peers, so most peers of a large cluster answer in O(cap) steps.
 */
export function cappedRank(round: RoundKey | number, view: RankingView, peerId: string, cap: number): number {
  const base = typeof round === 'number' ? round : roundHash(round)
  const mine = mix(base ^ Math.imul(peerHash(peerId), 0x9e3779b1))
  const { ids, hashes } = view
  let rank = 0
  for (let i = 0; i < hashes.length && rank < cap; i++) {
    const weight = mix(base ^ Math.imul(hashes[i]!, 0x9e3779b1))
    if (weight > mine) rank++
    else if (weight === mine) {
      const other = ids[i]!
      if (other !== peerId && other < peerId) rank++
    }
  }
  return rank
}

/** topPeers over a RankingView (same answer, no per-peer allocation). */
export function topPeersOf(round: RoundKey, view: RankingView, count: number): string[] {
  const base = roundHash(round)
  const { ids, hashes } = view
  const bestWeights: number[] = []
  const bestIds: string[] = []
  for (let i = 0; i < hashes.length; i++) {
    const weight = mix(base ^ Math.imul(hashes[i]!, 0x9e3779b1))
    const peerId = ids[i]!
    const n = bestIds.length
    if (n === count && (weight < bestWeights[n - 1]! || (weight === bestWeights[n - 1]! && peerId > bestIds[n - 1]!))) continue
    if (count <= 0) break
    // Insert in order: weight descending, ties by peerId ascending.
    let at = n
    while (at > 0 && (bestWeights[at - 1]! < weight || (bestWeights[at - 1] === weight && bestIds[at - 1]! > peerId))) at--
    bestWeights.splice(at, 0, weight)
    bestIds.splice(at, 0, peerId)
    if (bestIds.length > count) {
      bestWeights.pop()
      bestIds.pop()
    }
  }
  return bestIds
}
