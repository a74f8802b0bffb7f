/**
 * Deployment ids: short, URL-safe, drawn from the node's seeded PRNG so the
 * simulator's ids replay with its seed. Real nodes seed the PRNG from crypto.
 */
import type { Rng } from '../core/index.ts'

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567'
export const DEPLOYMENT_ID_PATTERN = /^d-[a-z2-7]{12}$/

export function createIdGenerator(components: { rng: Rng }): () => string {
  const rng = components.rng.fork('deployment-ids')
  return () => {
    let id = 'd-'
    for (let i = 0; i < 12; i++) id += ALPHABET[rng.int(ALPHABET.length)]
    return id
  }
}
