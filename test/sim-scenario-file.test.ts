/** Scenario files (YAML/JSON, zod), the library, flags over files, and clear errors (exit 2). */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { parseSimFlags, replayCommand, runSimCommand } from '../sim/cli.ts'
import { libraryNames, loadLibraryScenario, parseScenarioText } from '../sim/scenario-file.ts'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lattice-scenario-file-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})
afterEach(() => vi.restoreAllMocks())

function silence(): () => string {
  let err = ''
  vi.spyOn(process.stdout, 'write').mockImplementation(() => true)
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => ((err += String(chunk)), true))
  return () => err
}

describe('scenario library', () => {
  it('ships membership, state, placement, failover, partition, churn and chaos, each valid', () => {
    expect(libraryNames()).toEqual(['chaos', 'churn', 'failover', 'membership', 'partition', 'placement', 'state'])
    for (const name of libraryNames()) expect(loadLibraryScenario(name).name).toBe(name)
    const chaos = loadLibraryScenario('chaos')
    if (chaos.script !== 'scheduled') throw new Error('chaos must be scheduled')
    // everything at once
    for (const kind of ['kill', 'restart', 'pause', 'partition', 'loss', 'delay', 'duplicate', 'clockSkew', 'clockJump', 'containers'] as const) expect(chaos.faults[kind].probability, kind).toBeGreaterThan(0)
    expect(chaos.faults.churn.joinPerMinute).toBeGreaterThan(0)
    expect(chaos.faults.churn.leavePerMinute).toBeGreaterThan(0)
  })

  it('the scripted library files keep the flags’ old defaults', () => {
    const parsed = parseSimFlags(['--scenario', 'failover'])
    expect(parsed).toMatchObject({ ok: true, flags: { scenario: 'failover', script: 'failover', nodes: 100, seed: 1, durationS: 600, loss: 0.1, kill: 0.01, killMode: 'crash', partition: false, deployments: 50 } })
  })
})

describe('scenario files and flags', () => {
  it('a YAML file runs as given, flags override its values, and the replay command names the file', async () => {
    const file = join(dir, 'mine.yaml')
    await writeFile(file, ['name: mine', 'script: scheduled', 'nodes: 9', 'durationS: 40', 'deployments: { count: 7 }', 'network: { loss: 0.05 }', 'faults:', '  kill: { probability: 0.1, minDurationS: 3 }', '  pause: { probability: 0.2, minDurationS: 1, maxDurationS: 2 }', ''].join('\n'))
    const fromFile = parseSimFlags(['--scenario-file', file])
    expect(fromFile).toMatchObject({ ok: true, flags: { scenario: 'mine', scenarioFile: file, nodes: 9, durationS: 40, deployments: 7, loss: 0.05, kill: 0.1, partition: false } })
    const overridden = parseSimFlags(['--scenario-file', file, '--nodes', '5', '--loss', '0', '--kill', '0.3', '--partition', '--seed', '4'])
    if (!overridden.ok) throw new Error(overridden.error)
    const { spec } = overridden.flags
    if (spec.script !== 'scheduled') throw new Error('scheduled expected')
    expect(spec.nodes).toBe(5)
    expect(spec.network.loss).toBe(0)
    expect(spec.faults.kill.probability).toBe(0.3)
    expect(spec.faults.kill.minDurationS).toBe(3)
    expect(spec.faults.partition.probability).toBeGreaterThan(0)
    expect(spec.faults.pause).toMatchObject({ probability: 0.2, minDurationS: 1, maxDurationS: 2 })
    const replay = replayCommand(overridden.flags)
    expect(replay).toContain(`--scenario-file ${file}`)
    expect(parseSimFlags(replay.split(' ').slice(4))).toEqual(overridden)
  })

  it('JSON works too (YAML is a superset)', () => {
    const spec = parseScenarioText(JSON.stringify({ name: 'j', script: 'scheduled', nodes: 4, faults: { loss: { probability: 0.5, minDurationS: 1, rate: 0.3 } } }), 'j.json')
    expect(spec).toMatchObject({ name: 'j', nodes: 4, faults: { loss: { probability: 0.5, rate: 0.3 } } })
  })

  it('--deploy-spread-ms sets how fast the scripted scenarios submit deployments (0: all at once) and round-trips in the replay', () => {
    const parsed = parseSimFlags(['--scenario', 'placement', '--nodes', '20', '--deployments', '40', '--deploy-spread-ms', '0'])
    if (!parsed.ok) throw new Error(parsed.error)
    expect(parsed.flags.spec.script !== 'scheduled' && parsed.flags.spec.deployments.spreadMs).toBe(0)
    expect(replayCommand(parsed.flags)).toContain('--deploy-spread-ms 0')
    expect(parseSimFlags(replayCommand(parsed.flags).split(' ').slice(4))).toEqual(parsed)
    const unset = parseSimFlags(['--scenario', 'placement'])
    if (!unset.ok) throw new Error(unset.error)
    expect(unset.flags.spec.script !== 'scheduled' && unset.flags.spec.deployments.spreadMs).toBeUndefined()
    expect(replayCommand(unset.flags)).not.toContain('--deploy-spread-ms')
  })

  it('the chaos replay command round-trips', () => {
    const parsed = parseSimFlags(['--scenario', 'chaos', '--nodes', '20', '--seed', '9', '--duration-s', '30'])
    if (!parsed.ok) throw new Error(parsed.error)
    expect(parseSimFlags(replayCommand(parsed.flags).split(' ').slice(4))).toEqual(parsed)
  })

  it('bad files and bad flags exit 2 with a reason that names the field', async () => {
    const write = async (name: string, text: string): Promise<string> => {
      const file = join(dir, name)
      await writeFile(file, text)
      return file
    }
    const cases: Array<[string[], RegExp]> = [
      [['--scenario-file', await write('typo.yaml', 'name: t\nscript: scheduled\nfaults: { kil: { probability: 0.1 } }\n')], /faults.*kil/],
      [['--scenario-file', await write('prob.yaml', 'name: t\nscript: scheduled\nfaults: { kill: { probability: 1.5 } }\n')], /faults\.kill\.probability/],
      [['--scenario-file', await write('minmax.yaml', 'name: t\nscript: scheduled\nfaults: { pause: { probability: 0.1, minDurationS: 5, maxDurationS: 2 } }\n')], /maxDurationS must be ≥ minDurationS/],
      [['--scenario-file', await write('yaml.yaml', 'name: [unclosed\n')], /not YAML or JSON/],
      [['--scenario-file', await write('scripted-faults.yaml', 'name: t\nscript: failover\nfaults: { kill: { probability: 0.1 } }\n')], /faults/],
      [['--scenario-file', join(dir, 'missing.yaml')], /cannot read/],
      [['--scenario', 'nope'], /unknown scenario "nope"/],
      [['--scenario', 'chaos', '--scenario-file', join(dir, 'x.yaml')], /not both/],
      [['--scenario', 'chaos', '--kill-mode', 'vanish'], /membership scenario only/],
      [['--scenario', 'chaos', '--network', 'libp2p'], /--network libp2p: runs the membership scenario only/],
      [['--scenario', 'membership', '--network', 'both', '--nodes', '201'], /at most 200 real nodes/],
      [['--scenario', 'membership', '--network', 'libp2p', '--partition'], /partition cannot be made on loopback/],
      [['--scenario', 'membership', '--network', 'libp2p', '--trace', join(dir, 't.jsonl')], /--trace and --report/],
      [['--scenario', 'membership', '--network', 'tcp'], /--network/],
      [['--scenario', 'chaos', '--nodes', '2'], /--nodes/],
      [['--scenario', 'chaos', '--deploy-spread-ms', '0'], /--deploy-spread-ms: applies to the scripted cluster scenarios only/],
      [['--scenario', 'placement', '--deploy-spread-ms', '-5'], /--deploy-spread-ms/],
    ]
    for (const [argv, reason] of cases) {
      const err = silence()
      expect(await runSimCommand(argv), argv.join(' ')).toBe(2)
      expect(err(), argv.join(' ')).toMatch(reason)
      expect(err()).toContain('usage: lattice sim')
      vi.restoreAllMocks()
    }
  })
})

describe('progress line', () => {
  it('a run prints virtual time, events per second and violations on stderr, and nothing with --quiet', async () => {
    const err = silence()
    expect(await runSimCommand(['--scenario', 'membership', '--nodes', '12', '--duration-s', '10', '--kill', '0', '--seed', '2'])).toBe(0)
    expect(err()).toMatch(/\[membership n=12 seed=2\] virtual \d+\.\d s · [\d,]+ events\/s · 0 violations · wall/)
    vi.restoreAllMocks()
    const quiet = silence()
    expect(await runSimCommand(['--scenario', 'membership', '--nodes', '12', '--duration-s', '10', '--kill', '0', '--seed', '2', '--quiet'])).toBe(0)
    expect(quiet()).toBe('')
  })
})
