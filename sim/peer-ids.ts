/**
 * Simulated PeerIds that look like libp2p's Ed25519 ones ("12D3KooW" + 44
 * base58 characters, 52 in all), drawn from a seeded Rng: message sizes, and
 * so the traffic figures, match what real ids would cost.
 */
import type { Rng } from '../core/index.ts'

const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

export function simPeerId(rng: Rng): string {
  let id = '12D3KooW'
  for (let i = 0; i < 44; i++) id += BASE58[rng.int(BASE58.length)]
  return id
}

/** `count` distinct simulated PeerIds. */
export function simPeerIds(rng: Rng, count: number): string[] {
  const ids = new Set<string>()
  while (ids.size < count) ids.add(simPeerId(rng))
  return [...ids]
}
