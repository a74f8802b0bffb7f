/**
 * The fault machinery of the simulator: per-node clocks (skew, jumps, pause),
 * the network's pause and one-way partitions, slow and failing container
 * starts, and the fault schedule's draws (one seed, one schedule).
 */
import { describe, expect, it } from 'vitest'
import { createRng } from '../core/index.ts'
import { createFakeEngine, createFakeRuntime } from '../runtime/index.ts'
import { FaultScheduler, type FaultEvent } from '../sim/faults.ts'
import { createNodeClock } from '../sim/node-clock.ts'
import { FaultScheduleSchema } from '../sim/scenario-file.ts'
import { createSimCluster } from '../sim/sim-cluster.ts'
import { createSimNetwork } from '../sim/sim-network.ts'
import { createVirtualClock } from '../sim/virtual-clock.ts'

const SPEC = { deploymentId: 'd1', name: 'web', replica: 0, generation: 1, epoch: 1, image: 'lattice-test/busybox:latest', command: ['/bin/httpd', '-f', '-p', '80', '-h', '/www'], resources: { cpu: 0.1, memoryMB: 16, pidsMax: 64 } }

describe('per-node clock', () => {
  it('skews and jumps its own time only, and holds timers while paused', async () => {
    const base = createVirtualClock(1_000)
    const a = createNodeClock(base)
    const b = createNodeClock(base)
    a.setOffset(5_000)
    expect(a.nowMs()).toBe(6_000)
    expect(b.nowMs()).toBe(1_000)
    a.jump(-7_000)
    expect(a.nowMs()).toBe(-1_000)

    const fired: string[] = []
    a.setTimer(100, () => fired.push('a'))
    b.setTimer(100, () => fired.push('b'))
    a.pause()
    await base.advance(500)
    expect(fired).toEqual(['b'])
    expect(a.heldTimers()).toBe(1)
    const cancelled = a.setTimer(10, () => fired.push('cancelled'))
    await base.advance(50)
    cancelled.cancel()
    a.resume()
    await base.advance(1)
    expect(fired).toEqual(['b', 'a'])
  })
})

describe('simulated network faults', () => {
  it('a paused peer handles nothing until it resumes, then everything in order', async () => {
    const clock = createVirtualClock(0)
    const network = createSimNetwork({ latencyMs: { min: 5, max: 5 }, lossRate: 0, duplicateRate: 0 }, { clock, rng: createRng(1) })
    const a = network.transport('a')
    const b = network.transport('b')
    await a.start()
    await b.start()
    const got: string[] = []
    b.subscribe('t', (m) => got.push(new TextDecoder().decode(m.data)))
    network.pause('b')
    await a.publish('t', new TextEncoder().encode('1'))
    await a.publish('t', new TextEncoder().encode('2'))
    await clock.advance(1_000)
    expect(got).toEqual([])
    network.resume('b')
    await clock.advance(1)
    expect(got).toEqual(['1', '2'])
  })

  it('a one-way partition cuts one direction only, and heal removes it', () => {
    const clock = createVirtualClock(0)
    const network = createSimNetwork({ latencyMs: { min: 1, max: 1 }, lossRate: 0, duplicateRate: 0 }, { clock, rng: createRng(1) })
    network.partitionOneWay(['a'], ['b', 'c'])
    expect(network.reachable('a', 'b')).toBe(false)
    expect(network.reachable('b', 'a')).toBe(true)
    expect(network.reachable('b', 'c')).toBe(true)
    network.heal()
    expect(network.reachable('a', 'b')).toBe(true)
  })
})

describe('fake runtime start faults', () => {
  it('slow starts wait longer and failing starts fail, as set while running', async () => {
    const clock = createVirtualClock(0)
    const runtime = createFakeRuntime({ nodeId: 'n', engine: createFakeEngine(), startDelayMs: 100 })({ clock, rng: createRng(2) })
    runtime.setStartFaults({ slowRate: 1, slowDelayMs: 5_000 })
    let done = false
    void runtime.run(SPEC).then(() => {
      done = true
    })
    await clock.advance(4_000)
    expect(done).toBe(false)
    await clock.advance(1_200)
    expect(done).toBe(true)
    runtime.setStartFaults({ slowRate: 0, failureRate: 1 })
    const failing = runtime.run({ ...SPEC, replica: 1 })
    const caught = failing.catch((err: Error) => err.message)
    await clock.advance(200)
    expect(await caught).toContain('injected start failure')
    expect(runtime.startFaults()).toEqual({ failureRate: 1, slowRate: 0, slowDelayMs: 5_000 })
    expect(() => runtime.setStartFaults({ failureRate: 2 })).toThrow(/0\.\.1/)
  })
})

describe('fault schedule', () => {
  it('draws the same faults from the same seed, obeys the bound on faulty nodes, and heals everything', async () => {
    const schedule = FaultScheduleSchema.parse({
      maxFaultyFraction: 0.25,
      kill: { probability: 0.3, minDurationS: 2, maxDurationS: 4 },
      pause: { probability: 0.3, minDurationS: 1 },
      clockSkew: { probability: 0.3, minDurationS: 1, maxOffsetMs: 1_000 },
      partition: { probability: 0.2, minDurationS: 2 },
      loss: { probability: 0.3, minDurationS: 1, rate: 0.1 },
    })
    const run = async (seed: number): Promise<{ events: string[]; maxFaulty: number; cluster: ReturnType<typeof createSimCluster> }> => {
      const cluster = createSimCluster({ nodes: 8, seed: 11 })
      await cluster.startAll()
      const events: string[] = []
      const scheduler = new FaultScheduler(cluster, schedule, { latencyMs: { min: 1, max: 10 }, loss: 0, duplicate: 0 }, createRng(seed), 8, {
        onEvent: (e: FaultEvent) => events.push(`${e.atMs} ${e.kind} ${e.phase} ${e.node ?? ''} ${e.detail}`),
      })
      let maxFaulty = 0
      for (let i = 0; i < 20; i++) {
        await scheduler.step()
        maxFaulty = Math.max(maxFaulty, scheduler.faultyNodes().size)
        await cluster.driver.runFor(1_000)
      }
      await scheduler.healAll()
      await cluster.driver.runUntil(() => cluster.nodes.every((n) => n.running), 60_000)
      return { events, maxFaulty, cluster }
    }
    const a = await run(1)
    const b = await run(1)
    expect(a.events).toEqual(b.events)
    expect(a.events.some((e) => e.includes('kill start'))).toBe(true)
    expect(a.maxFaulty).toBeLessThanOrEqual(2)
    // healed: every node runs, none paused, clocks agree, the network is whole
    for (const node of a.cluster.nodes) {
      expect(node.running).toBe(true)
      expect(a.cluster.isPaused(node)).toBe(false)
      expect(node.clock.offsetMs()).toBe(0)
    }
    expect(a.cluster.network.reachable(a.cluster.nodes[0]!.peerId, a.cluster.nodes[7]!.peerId)).toBe(true)
    await a.cluster.stopAll()
    await b.cluster.stopAll()
  }, 60_000)
})

describe('safety checkers catch planted violations', () => {
  it('a deployment no node holds, a copy run past the grace, and a healthy node declared dead', async () => {
    const { checkAcceptedDeploymentsDurable, checkNoHealthyNodeDeclaredDead, UnwonRunWatch, takeCensus } = await import('../sim/invariants.ts')
    const cluster = createSimCluster({ nodes: 4, seed: 5 })
    await cluster.startAll()
    const [a, b] = cluster.nodes
    const id = await cluster.deploy(a!, { name: 'w', image: 'lattice-test/busybox:latest', command: ['/bin/httpd', '-f', '-p', '80', '-h', '/www'], resources: { cpu: 0.1, memoryMB: 16 } })
    await cluster.driver.runFor(5_000)
    // Durable: a crashed node still holds what it accepted; an id nobody wrote is lost.
    await cluster.kill(a!)
    expect(checkAcceptedDeploymentsDurable(cluster.nodes, [id])).toEqual([])
    expect(checkAcceptedDeploymentsDurable(cluster.nodes, [id, 'd-never'])).toEqual([expect.stringContaining('held by no node at all, e.g. d-never')])

    // Unwon: the real copy is fine; a planted generation-9 copy is reported only once it outlives the grace.
    const census = await takeCensus(cluster.alive())
    const real = census.running.find((r) => r.container.deploymentId === id)!
    const watch = new UnwonRunWatch(2_000)
    expect(watch.observe(0, census)).toEqual([])
    const planted = { running: [...census.running, { node: real.node, container: { ...real.container, id: 'planted', generation: 9 } }] }
    expect(watch.observe(1_000, planted)).toEqual([])
    expect(watch.observe(3_500, planted)).toEqual([expect.stringContaining(`runs ${id}/0 generation 9, which it did not win`)])
    expect(watch.observe(4_000, planted)).toEqual([]) // reported once

    // False death: a running node declared dead is one; a crashed one is not.
    expect(checkNoHealthyNodeDeclaredDead([{ atMs: 1, observer: 2, subject: b!, subjectPaused: false }])).toEqual([expect.stringContaining('declared healthy node 1 dead')])
    expect(checkNoHealthyNodeDeclaredDead([{ atMs: 1, observer: 2, subject: a!, subjectPaused: false }, { atMs: 1, observer: 2, subject: b!, subjectPaused: true }])).toEqual([])
    await cluster.stopAll()
  }, 60_000)
})
