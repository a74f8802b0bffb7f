import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { DeploymentSpecSchema } from '../../core/index.ts'
import { chooseWinners } from './placer.ts'
import { rankOf, topPeers } from './rendezvous.ts'
import { bidScore, fits } from './score.ts'

const peers = Array.from({ length: 200 }, (_, i) => `12D3KooPeer${String(i).padStart(4, '0')}`)
const round = { deploymentId: 'd-abcdefghijkl', replica: 0, generation: 1 }

describe('winners are a pure function of the closing record', () => {
  it('the same bids in any order give the same winners on every node', () => {
    fc.assert(fc.property(
      fc.array(fc.record({ peerId: fc.constantFrom(...peers.slice(0, 20)), score: fc.integer({ min: 0, max: 1000 }) }), { minLength: 1, maxLength: 10 }),
      fc.integer(),
      (bids, seed) => {
        const unique = [...new Map(bids.map((b) => [b.peerId, b])).values()]
        const shuffled = [...unique].sort((a, b) => ((a.peerId.charCodeAt(12) * seed) % 7) - ((b.peerId.charCodeAt(12) * seed) % 7))
        expect(chooseWinners(round, shuffled)).toEqual(chooseWinners(round, unique))
      },
    ))
  })

  it('the best score wins; equal scores are broken by the rendezvous weight, not by arrival', () => {
    const bids = [{ peerId: peers[0]!, score: 500 }, { peerId: peers[1]!, score: 900 }, { peerId: peers[2]!, score: 100 }]
    expect(chooseWinners(round, bids)).toEqual([peers[1]])
    const tied = [{ peerId: peers[3]!, score: 700 }, { peerId: peers[4]!, score: 700 }]
    expect(chooseWinners(round, tied)).toEqual(chooseWinners(round, [...tied].reverse()))
  })
})

describe('shortlists', () => {
  it('every node computes the same shortlist from the same view, in any order', () => {
    expect(topPeers(round, [...peers].reverse(), 5)).toEqual(topPeers(round, peers, 5))
    expect(topPeers(round, peers, 5)).toHaveLength(5)
  })

  it('a peer joining or leaving moves a shortlist only if it ranks in it', () => {
    const before = topPeers(round, peers, 5)
    const outsider = peers.find((p) => !before.includes(p))!
    expect(topPeers(round, peers.filter((p) => p !== outsider), 5)).toEqual(before)
    const leaving = before[2]!
    const after = topPeers(round, peers.filter((p) => p !== leaving), 5)
    expect(after.filter((p) => before.includes(p))).toEqual(before.filter((p) => p !== leaving))
    const joined = topPeers(round, [...peers, 'newcomer'], 5)
    expect(joined.filter((p) => p !== 'newcomer')).toEqual(before.slice(0, joined.includes('newcomer') ? 4 : 5))
  })

  it("a peer's rank agrees with its place in the ranking", () => {
    const ranking = topPeers(round, peers, peers.length)
    for (const index of [0, 3, 50, 199]) expect(rankOf(round, peers, ranking[index]!)).toBe(index)
  })

  it('different generations of one replica get different shortlists (a failover round asks other peers)', () => {
    expect(topPeers({ ...round, generation: 2 }, peers, 5)).not.toEqual(topPeers(round, peers, 5))
  })
})

describe('fit and score', () => {
  const spec = DeploymentSpecSchema.parse({ name: 'web', image: 'x', resources: { cpu: 1, memoryMB: 1024 } })
  const capacity = { cpu: 4, memoryMB: 8192, diskMB: 0, gpus: 0 }

  it('a node without the memory or CPU does not fit, and says why', () => {
    expect(fits(spec, { ...capacity, memoryMB: 512 }, {})).toMatchObject({ fits: false })
    expect(fits(spec, { ...capacity, cpu: 0.5 }, {}).reason).toContain('CPU')
    expect(fits(spec, capacity, {}).fits).toBe(true)
  })

  it('label constraints must be offered', () => {
    const zoned = DeploymentSpecSchema.parse({ name: 'web', image: 'x', constraints: { labels: { zone: 'home' } } })
    expect(fits(zoned, capacity, {}).fits).toBe(false)
    expect(fits(zoned, capacity, { zone: 'home' }).fits).toBe(true)
  })

  it('spread prefers the emptier node, binpack the fuller one', () => {
    const empty = capacity
    const busy = { ...capacity, cpu: 2, memoryMB: 2048 }
    expect(bidScore('spread', spec, capacity, empty)).toBeGreaterThan(bidScore('spread', spec, capacity, busy))
    expect(bidScore('binpack', spec, capacity, busy)).toBeGreaterThan(bidScore('binpack', spec, capacity, empty))
  })
})
