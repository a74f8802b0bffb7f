/**
 * The whole node core at scale, in virtual time (issues 4 and 5):
 *
 * - placement, failover and partition in one cluster: M deployments of 1–3
 *   replicas accepted through random nodes; after convergence every replica
 *   runs on exactly one alive node that won it, replicas of a deployment on
 *   distinct nodes; 10 % of the nodes crash → every replica runs again on a
 *   survivor; a 50/50 partition with deploys on both sides, then heal →
 *   duplicates removed, exactly one copy of each replica, equal heads;
 * - state sync on a larger cluster: a 50/50 partition, writes on both
 *   sides, heal → equal heads and every write on every node.
 *
 * Sizes are what fits the CI budget on two cores (see docs/ARCHITECTURE.md,
 * "What limits the size of whole-cluster runs", for what each size costs);
 * LATTICE_SIM_SCALE_NODES / _DEPLOYMENTS / LATTICE_SIM_SYNC_NODES run them
 * larger by hand.
 */
import { describe, expect, it } from 'vitest'
import type { DeploymentSpecInput } from '../core/index.ts'
import { checkEqualHeads, checkEqualMembershipViews, checkNoAcceptedDeploymentLost, checkReplicaPlacement, takeCensus } from '../sim/invariants.ts'
import { createSimCluster, type SimCluster, type SimNode } from '../sim/sim-cluster.ts'

const SCALE_NODES = Number(process.env.LATTICE_SIM_SCALE_NODES ?? 60)
const SCALE_DEPLOYMENTS = Number(process.env.LATTICE_SIM_SCALE_DEPLOYMENTS ?? 120)
const SYNC_NODES = Number(process.env.LATTICE_SIM_SYNC_NODES ?? 200)
/** Virtual time each phase may take to converge. */
const BUDGET_MS = 180_000
const CHECK_EVERY_MS = 1_000
const WALL_TIMEOUT_MS = 20 * 60_000

function spec(index: number, int: (n: number) => number): DeploymentSpecInput {
  return {
    name: `app-${index}`,
    image: 'lattice-test/busybox:latest',
    command: ['/bin/httpd', '-f', '-p', '80', '-h', '/www'],
    replicas: 1 + int(3),
    resources: { cpu: [0.05, 0.1, 0.25][int(3)]!, memoryMB: [16, 32, 64][int(3)]! },
    strategy: int(2) === 0 ? 'spread' : 'binpack',
  }
}

interface Harness {
  cluster: SimCluster
  accepted: string[]
  deploy(count: number, spreadMs: number, via: () => SimNode): Promise<void>
  /** Runs until every invariant holds (or the budget ends); returns what still fails. */
  converge(): Promise<string[]>
}

function harness(cluster: SimCluster): Harness {
  const rng = cluster.rng.fork('scale-test')
  const accepted: string[] = []
  const invariants = async (): Promise<string[]> => {
    const alive = cluster.alive()
    return [
      ...checkNoAcceptedDeploymentLost(alive, accepted),
      ...checkEqualHeads(alive),
      ...checkEqualMembershipViews(alive),
      ...checkReplicaPlacement(alive[0]!, alive, await takeCensus(alive)),
    ]
  }
  return {
    cluster,
    accepted,
    async deploy(count, spreadMs, via) {
      for (let i = 0; i < count; i++) {
        accepted.push(await cluster.deploy(via(), spec(accepted.length, (n) => rng.int(n))))
        await cluster.driver.runFor(Math.max(1, Math.floor(spreadMs / count))) // whole ms: entries hold integer times
      }
    },
    async converge() {
      cluster.network.heal()
      const endMs = cluster.driver.elapsedMs() + BUDGET_MS
      let last: string[] = ['not checked']
      while (cluster.driver.elapsedMs() < endMs) {
        await cluster.driver.runFor(CHECK_EVERY_MS)
        last = await invariants()
        if (last.length === 0) break
      }
      return last.slice(0, 10)
    },
  }
}

describe('the node core at scale', () => {
  it(`${SCALE_NODES} nodes, ${SCALE_DEPLOYMENTS} deployments of 1–3 replicas: placed once each on distinct nodes; 10 % crash → all re-placed; 50/50 partition and heal → exactly one copy each`, async () => {
    const cluster = createSimCluster({ nodes: SCALE_NODES, seed: 11 })
    const h = harness(cluster)
    const rng = cluster.rng.fork('scale-test-choices')
    const randomAlive = (): SimNode => {
      const alive = cluster.alive()
      return alive[rng.int(alive.length)]!
    }
    try {
      await cluster.startAll(10)
      expect(await cluster.driver.runUntil(() => checkEqualMembershipViews(cluster.alive()).length === 0, BUDGET_MS)).toBe(true)

      // Placement.
      await h.deploy(SCALE_DEPLOYMENTS, 10_000, randomAlive)
      expect(await h.converge()).toEqual([])
      const reference = cluster.alive()[0]!.core.state
      const replicas = h.accepted.reduce((sum, id) => sum + (reference.deployment(id)?.replicas ?? 0), 0)
      expect(replicas).toBeGreaterThanOrEqual(SCALE_DEPLOYMENTS)

      // Failover: 10 % crash; what they held runs again on survivors, at a newer generation.
      const victims = [...cluster.alive()].sort(() => rng.next() - 0.5).slice(0, Math.max(1, Math.floor(SCALE_NODES / 10)))
      const held = h.accepted.flatMap((id) =>
        [...reference.placements(id)].filter(([, record]) => record.winners.some((w) => victims.some((v) => v.peerId === w))).map(([replica, record]) => ({ id, replica, generation: record.generation })),
      )
      expect(held.length).toBeGreaterThan(0)
      for (const victim of victims) await cluster.kill(victim)
      expect(await h.converge()).toEqual([])
      const survivor = cluster.alive()[0]!.core.state
      for (const { id, replica, generation } of held) expect(survivor.placement(id, replica)?.generation).toBeGreaterThan(generation)

      // Partition 50/50 with deploys on both sides, then heal: one copy of each replica, equal heads.
      const alive = cluster.alive()
      const half = alive.slice(0, Math.floor(alive.length / 2))
      const other = alive.slice(half.length)
      cluster.network.partition([half.map((n) => n.peerId), other.map((n) => n.peerId)])
      await cluster.driver.runFor(15_000) // each side declares the other dead and re-places its replicas
      const sideDeploys = Math.max(2, Math.floor(SCALE_DEPLOYMENTS / 20))
      await h.deploy(sideDeploys, 2_000, () => half[rng.int(half.length)]!)
      await h.deploy(sideDeploys, 2_000, () => other[rng.int(other.length)]!)
      await cluster.driver.runFor(10_000)
      expect(await h.converge()).toEqual([])
    } finally {
      await cluster.stopAll()
    }
  }, WALL_TIMEOUT_MS)

  it(`${SYNC_NODES} nodes: a 50/50 partition with writes on both sides, then heal → equal heads and every write everywhere`, async () => {
    const cluster = createSimCluster({ nodes: SYNC_NODES, seed: 12 })
    const rng = cluster.rng.fork('sync-test')
    try {
      await cluster.startAll(10)
      expect(await cluster.driver.runUntil(() => checkEqualMembershipViews(cluster.alive()).length === 0, BUDGET_MS)).toBe(true)
      const nodes = cluster.alive()
      const half = nodes.slice(0, Math.floor(nodes.length / 2))
      const other = nodes.slice(half.length)
      const accepted: string[] = []
      const first = await cluster.deploy(nodes[0]!, spec(0, (n) => rng.int(n)))
      accepted.push(first)
      await cluster.driver.runUntil(() => checkNoAcceptedDeploymentLost(cluster.alive(), accepted).length === 0, BUDGET_MS)

      cluster.network.partition([half.map((n) => n.peerId), other.map((n) => n.peerId)])
      for (let i = 0; i < 10; i++) {
        for (const side of [half, other]) {
          const node = side[rng.int(side.length)]!
          accepted.push(await cluster.deploy(node, spec(accepted.length, (n) => rng.int(n))))
          await cluster.driver.runFor(300)
        }
      }
      // Concurrent writes to one deployment from both sides.
      await half[0]!.core.state.setReplicas(first, 3)
      await other[0]!.core.state.setDesired(first, 'stopped')
      await cluster.driver.runFor(10_000)
      expect(checkEqualHeads(cluster.alive())).not.toEqual([]) // the sides really diverged

      cluster.network.heal()
      const converged = await cluster.driver.runUntil(
        () => checkEqualHeads(cluster.alive()).length === 0 && checkNoAcceptedDeploymentLost(cluster.alive(), accepted).length === 0,
        BUDGET_MS,
      )
      expect(checkEqualHeads(cluster.alive())).toEqual([])
      expect(checkNoAcceptedDeploymentLost(cluster.alive(), accepted)).toEqual([])
      expect(converged).toBe(true)
      for (const node of cluster.alive()) expect(node.core.state.deployment(first)).toMatchObject({ replicas: 3, desired: 'stopped' })
    } finally {
      await cluster.stopAll()
    }
  }, WALL_TIMEOUT_MS)
})
