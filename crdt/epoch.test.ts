import * as A from '@automerge/automerge'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { LatticeError } from '../core/index.ts'
import { createHandle, draftRoot, forkHandle, plainValue, type DocHandle } from './doc-handle.ts'
import { genesisChange, SECTIONS } from './document.ts'
import type { DocMap } from './doc-codec.ts'
import { readGenesisAlone, saveGenesisAlone } from './epoch-switch.ts'
import { buildEpochGenesis, createEpochTranslator, cutClock, EPOCH_ORPHANS_KEY, inCut, parseEpochGenesis, type EpochGenesis, type EpochTranslations } from './epoch.ts'

const actor = (n: number): string => n.toString(16).padStart(2, '0').repeat(16)

/** A replica of a cluster document: the shared genesis, then whatever the test writes. */
function replica(n: number): DocHandle {
  const handle = createHandle(actor(n))
  handle.applyChanges([genesisChange()])
  return handle
}

/** One change that does what `edit` does to the root (the product's writing semantics: strings are one scalar). */
function write(handle: DocHandle, edit: (root: DocMap) => void, time = 1): void {
  edit(draftRoot(handle))
  handle.commit(null, time)
}

function section(root: DocMap, name: string): DocMap {
  return root[name] as DocMap
}

function merge(into: DocHandle, from: DocHandle): void {
  into.applyChanges(from.getChanges(into.getHeads()))
}

/** The document's sections as plain data (what every reader sees). */
function stateOf(handle: DocHandle, heads?: string[]): DocMap {
  const out: DocMap = {}
  for (const name of SECTIONS) {
    const value = handle.getWithType('_root', name, heads) as [string, string] | null
    out[name] = value === null ? undefined : plainValue(handle.materialize(value[1], heads))
  }
  return out
}

/** The old document's changes outside the genesis's cut, translated in causal order. */
function translateAll(old: DocHandle, genesis: EpochGenesis, memo?: EpochTranslations): Uint8Array[] {
  const translator = createEpochTranslator(genesis, (hash) => old.getChangeMetaByHash(hash), memo)
  const out: Uint8Array[] = []
  for (const change of old.getChanges([])) {
    const next = translator.translate(change)
    if (next !== undefined) out.push(next)
  }
  translator.free()
  return out
}

function epochDoc(genesis: EpochGenesis, translated: Uint8Array[], n = 0xee): DocHandle {
  const handle = createHandle(actor(n))
  handle.applyChanges([genesis.change, ...translated])
  return handle
}

const hashes = (changes: Uint8Array[]): string[] => changes.map((change) => A.decodeChange(change).hash)

/** Two replicas and a cut between them: writes on both, then a cut at the merged heads. */
function clusterWithCut(): { a: DocHandle; b: DocHandle; cut: string[] } {
  const a = replica(1)
  const b = replica(2)
  write(a, (root) => {
    section(root, 'nodes').n1 = { name: 'laptop', addresses: ['/ip4/1.2.3.4/tcp/1'], capacity: { cpu: 4 } }
    section(root, 'deployments').web = '{"image":"nginx"}'
    section(root, 'status')['web/0/n1'] = '{"state":"starting"}'
  })
  merge(b, a)
  write(b, (root) => {
    section(root, 'status')['web/0/n1'] = '{"state":"running"}'
    section(root, 'placements')['web/0'] = '{"winner":"n1"}'
  })
  for (let i = 0; i < 20; i++) write(a, (root) => (section(section(root, 'nodes'), 'n1').load = i))
  merge(a, b)
  merge(b, a)
  return { a, b, cut: a.getHeads() }
}

describe('epoch genesis', () => {
  it('holds the state at the cut and is the same bytes on every replica holding the cut', () => {
    const { a, b, cut } = clusterWithCut()
    const stateAtCut = stateOf(a)
    // Each replica goes on writing past the cut before building the genesis.
    write(a, (root) => (section(root, 'deployments').api = '{"image":"api"}'))
    write(b, (root) => (section(root, 'status')['web/0/n1'] = '{"state":"failed"}'))
    const fromA = buildEpochGenesis(a, { epoch: 1, heads: cut })
    const fromB = buildEpochGenesis(b, { epoch: 1, heads: [...cut].reverse() })
    expect(Buffer.from(fromA.change).equals(Buffer.from(fromB.change))).toBe(true)
    expect(fromA.hash).toBe(fromB.hash)
    // Two replicas that each wrote first and then received the other's change hold one history in two orders: same genesis.
    const x = createHandle('aa'.repeat(16))
    const y = createHandle('bb'.repeat(16))
    for (const replica of [x, y]) replica.applyChanges([genesisChange()])
    write(x, (root) => (section(root, 'deployments').x = '{"image":"x"}'))
    write(y, (root) => (section(root, 'deployments').y = '{"image":"y"}'))
    merge(x, y)
    merge(y, x)
    expect(buildEpochGenesis(x, { epoch: 1, heads: x.getHeads() }).hash).toBe(buildEpochGenesis(y, { epoch: 1, heads: y.getHeads() }).hash)
    const next = epochDoc(fromA, [])
    expect(stateOf(next)).toEqual(stateAtCut)
    expect(next.getChangesMeta([])).toHaveLength(1)
    // Datatypes survive: an integer stays an integer, a string one scalar.
    const nodes = next.getWithType('_root', 'nodes') as [string, string]
    const n1 = next.getWithType(nodes[1], 'n1') as [string, string]
    expect(next.getWithType(n1[1], 'load')?.[0]).toBe('int')
    expect(next.getWithType(n1[1], 'name')?.[0]).toBe('str')
    expect(next.getWithType(n1[1], 'addresses')?.[0]).toBe('list')
  })

  it('keeps every datatype, and a counter incremented past the cut counts on from the cut', () => {
    const doc = replica(1)
    const misc = doc.putObject('_root', 'misc', {})
    doc.put(misc, 'count', 3, 'counter')
    doc.put(misc, 'at', new Date(1_700_000_000_000), 'timestamp')
    doc.put(misc, 'ratio', 0.5, 'f64')
    doc.put(misc, 'big', 7, 'uint')
    doc.put(misc, 'on', true, 'boolean')
    doc.put(misc, 'none', null, 'null')
    doc.put(misc, 'raw', new Uint8Array([1, 2]), 'bytes')
    doc.putObject(misc, 'note', 'text body')
    doc.commit(null, 1)
    const cut = doc.getHeads()
    doc.increment(misc, 'count', 2)
    doc.commit(null, 2)
    const genesis = buildEpochGenesis(doc, { epoch: 1, heads: cut })
    const next = epochDoc(genesis, translateAll(doc, genesis))
    const nextMisc = (next.getWithType('_root', 'misc') as [string, string])[1]
    for (const key of ['at', 'ratio', 'big', 'on', 'none', 'raw']) expect(next.getWithType(nextMisc, key)).toEqual(doc.getWithType(misc, key))
    expect(next.getWithType(nextMisc, 'count')?.[0]).toBe('counter')
    expect(next.materialize(nextMisc)).toMatchObject({ count: new A.Counter(5) })
    expect(next.text((next.getWithType(nextMisc, 'note') as [string, string])[1])).toBe('text body')
  })

  it('records the cut clock and reads its base back from the change alone', () => {
    const { a, cut } = clusterWithCut()
    const genesis = buildEpochGenesis(a, { epoch: 3, heads: cut })
    const again = parseEpochGenesis(genesis.change)
    expect(again.base).toEqual(genesis.base)
    expect(again.base.epoch).toBe(3)
    expect(again.base.cut).toEqual([...cut].sort())
    expect(again.base.clock).toEqual(cutClock(a, cut))
    expect(again.base.clock[actor(1)]?.[0]).toBe(21)
    expect(inCut(again.base, actor(1), 21)).toBe(true)
    expect(inCut(again.base, actor(1), 22)).toBe(false)
    expect(inCut(again.base, actor(9), 1)).toBe(false)
  })

  it('refuses a cut the document does not hold, and changes that are not a genesis', () => {
    const { a } = clusterWithCut()
    expect(() => buildEpochGenesis(a, { epoch: 1, heads: ['ab'.repeat(32)] })).toThrow(/does not hold/)
    expect(() => buildEpochGenesis(a, { epoch: 0, heads: a.getHeads() })).toThrow(LatticeError)
    expect(() => buildEpochGenesis(a, { epoch: 1, heads: [] })).toThrow(/at least one head/)
    expect(() => parseEpochGenesis(genesisChange())).toThrow(/not an epoch genesis/)
    expect(() => parseEpochGenesis(new Uint8Array([1, 2, 3]))).toThrow(/not an Automerge change/)
    const forged = createHandle('4c617474696365457063680000000000')
    forged.put('_root', 'x', 1)
    forged.commit('{"lattice":"epoch","epoch":1,"cut":[],"clock":{},"objects":{}}', 0)
    expect(() => parseEpochGenesis(forged.getLastLocalChange()!)).toThrow(/invalid epoch base/)
  })
})

describe('epoch translation', () => {
  it('carries changes made past the cut into the new epoch, in their causal order', () => {
    const { a, b, cut } = clusterWithCut()
    const genesis = buildEpochGenesis(a, { epoch: 1, heads: cut })
    write(a, (root) => {
      section(root, 'deployments').api = '{"image":"api"}'
      section(section(root, 'nodes'), 'n1').name = 'renamed'
    })
    write(b, (root) => {
      section(root, 'nodes').n2 = { name: 'desk', labels: { zone: 'office' } }
      delete section(root, 'placements')['web/0']
    })
    merge(b, a)
    write(b, (root) => {
      section(section(section(root, 'nodes'), 'n2'), 'labels').zone = 'home'
      section(root, 'deployments').api = '{"image":"api:2"}'
    })
    const translated = translateAll(b, genesis)
    expect(translated).toHaveLength(3)
    const next = epochDoc(genesis, translated)
    expect(next.getMissingDeps([])).toEqual([])
    expect(stateOf(next)).toEqual(stateOf(b))
  })

  it('translates a change to the same bytes on every node that holds it, and the new documents converge', () => {
    const { a, b, cut } = clusterWithCut()
    const genesis = buildEpochGenesis(a, { epoch: 1, heads: cut })
    write(a, (root) => (section(root, 'deployments').api = '{"image":"api"}'))
    write(b, (root) => (section(root, 'status')['web/0/n1'] = '{"state":"failed"}'))
    const onlyA = translateAll(a, genesis)
    const onlyB = translateAll(b, genesis)
    merge(a, b)
    const both = translateAll(a, genesis)
    expect(hashes(both).sort()).toEqual([...hashes(onlyA), ...hashes(onlyB)].sort())
    // Each node carries over what it holds; the new documents then merge as usual.
    const nextA = epochDoc(genesis, onlyA, 0xe1)
    const nextB = epochDoc(genesis, onlyB, 0xe2)
    merge(nextA, nextB)
    merge(nextB, nextA)
    expect(nextA.getHeads()).toEqual(nextB.getHeads())
    expect(stateOf(nextA)).toEqual(stateOf(a))
  })

  it('needs only the genesis to translate: a node that was away carries its own changes over', () => {
    const { a, b, cut } = clusterWithCut()
    const away = forkHandle(b, actor(7))
    write(away, (root) => (section(root, 'status')['web/0/n7'] = '{"state":"running"}'))
    write(away, (root) => (section(root, 'deployments').batch = '{"image":"batch"}'))
    const built = buildEpochGenesis(a, { epoch: 1, heads: cut })
    // The away node holds the cut but learns of the epoch only from the genesis change's bytes.
    const learned = parseEpochGenesis(built.change)
    const own = translateAll(away, learned)
    merge(a, away)
    expect(hashes(own)).toEqual(hashes(translateAll(a, built)))
    const next = epochDoc(learned, own)
    expect(stateOf(next)).toEqual(stateOf(a))
  })

  it('resolves a change made concurrently with the cut as the old document did, the same on every node', () => {
    const { a, b, cut } = clusterWithCut()
    // Concurrent with b's last status write but outside the cut: b's in the cut, a's not.
    const before = forkHandle(a, actor(5))
    const genesisHeads = cut
    write(b, (root) => (section(root, 'status')['web/0/n1'] = '{"state":"stopped"}'))
    write(before, (root) => (section(root, 'status')['web/0/n1'] = '{"state":"exited"}'))
    merge(b, before)
    const cutWithB = b.getHeads().filter((head) => head !== before.getHeads()[0])
    expect(cutWithB).not.toEqual(genesisHeads)
    const genesis = buildEpochGenesis(b, { epoch: 1, heads: cutWithB })
    const next = epochDoc(genesis, translateAll(b, genesis))
    // Automerge shows the higher op id of the two; the new epoch shows the same one, whichever side of the cut it is on.
    expect(stateOf(next)).toEqual(stateOf(b))
    // And a change concurrent with the cut's value at a key, below it in op order, stays out of sight (its value in the orphans).
    const low = replica(0x11)
    write(low, (root) => (section(root, 'deployments').web = '{"image":"stale"}'))
    const high = forkHandle(a, actor(9))
    for (let i = 0; i < 5; i++) write(high, (root) => (section(root, 'deployments')[`pad${i}`] = 'x'))
    write(high, (root) => (section(root, 'deployments').web = '{"image":"fresh"}'))
    const cutHigh = high.getHeads()
    merge(high, low)
    expect((stateOf(high).deployments as DocMap).web).toBe('{"image":"fresh"}')
    const genesisHigh = buildEpochGenesis(high, { epoch: 1, heads: cutHigh })
    const after = epochDoc(genesisHigh, translateAll(high, genesisHigh))
    expect((stateOf(after).deployments as DocMap).web).toBe('{"image":"fresh"}')
    expect(stateOf(after)).toEqual(stateOf(high))
  })

  it('sends an edit of a list element the cut rewrote to the orphans map, and later changes still apply', () => {
    const { a, cut } = clusterWithCut()
    const genesis = buildEpochGenesis(a, { epoch: 1, heads: cut })
    // An in-place list edit (our writers never make one; a newer node might).
    const nodes = a.getWithType('_root', 'nodes') as [string, string]
    const n1 = a.getWithType(nodes[1], 'n1') as [string, string]
    const addresses = a.getWithType(n1[1], 'addresses') as [string, string]
    a.insert(addresses[1], 1, '/ip4/5.6.7.8/tcp/1', 'str')
    a.put(n1[1], 'name', 'after-the-list', 'str')
    a.commit(null, 1)
    write(a, (root) => (section(root, 'deployments').api = '{"image":"api"}'))
    const translated = translateAll(a, genesis)
    const next = epochDoc(genesis, translated)
    expect(next.getMissingDeps([])).toEqual([])
    const state = stateOf(next)
    expect((state.nodes as DocMap).n1).toMatchObject({ name: 'after-the-list', addresses: ['/ip4/1.2.3.4/tcp/1'] })
    expect((state.deployments as DocMap).api).toBe('{"image":"api"}')
    const orphans = next.getWithType('_root', EPOCH_ORPHANS_KEY) as [string, string]
    expect(next.keys(orphans[1])).toHaveLength(1)
    // The epoch after starts with empty orphans, and carries the state on.
    const following = buildEpochGenesis(next, { epoch: 2, heads: next.getHeads() })
    const nextAgain = epochDoc(following, [])
    expect(nextAgain.keys((nextAgain.getWithType('_root', EPOCH_ORPHANS_KEY) as [string, string])[1])).toEqual([])
    expect(stateOf(nextAgain)).toEqual(state)
  })

  it('remembers which ops a shared translation sent to the orphans map: a later change naming one comes out as without sharing', () => {
    const [r1, r2, onlyX] = [replica(1), replica(2), replica(3)]
    write(r1, (root) => (section(root, 'deployments').base = 'b'))
    merge(r2, r1)
    for (let i = 0; i < 5; i++) write(r1, (root) => (section(root, 'status')[`s${i}`] = `v${i}`))
    write(r1, (root) => (section(root, 'deployments').k = 'w')) // W, in the cut
    const genesis = buildEpochGenesis(r1, { epoch: 1, heads: r1.getHeads() })
    write(r2, (root) => (section(root, 'deployments').k = 'x')) // X: concurrent with W and below it, so orphaned
    merge(onlyX, r2)
    for (let i = 0; i < 10; i++) write(r2, (root) => (section(root, 'placements')[`p${i}`] = `v${i}`))
    write(r2, (root) => (section(root, 'deployments').k = 'y')) // Y: overwrites X, above W
    const memo: EpochTranslations = new Map()
    const fromOnlyX = epochDoc(genesis, translateAll(onlyX, genesis, memo))
    expect(fromOnlyX.keys((fromOnlyX.getWithType('_root', EPOCH_ORPHANS_KEY) as [string, string])[1])).toHaveLength(1)
    expect(memo.size).toBe(1)
    // X comes from the memo, Y is translated afresh: it must still know X went to the orphans.
    expect(translateAll(r2, genesis, memo)).toEqual(translateAll(r2, genesis))
    expect(memo.size).toBe(12)
  })

  it('leaves changes the cut holds out, and refuses one whose dependencies were skipped', () => {
    const { a, cut } = clusterWithCut()
    const genesis = buildEpochGenesis(a, { epoch: 1, heads: cut })
    write(a, (root) => (section(root, 'deployments').one = '{"image":"one"}'))
    write(a, (root) => (section(root, 'deployments').two = '{"image":"two"}'))
    const translator = createEpochTranslator(genesis, (hash) => a.getChangeMetaByHash(hash))
    const changes = a.getChanges([])
    expect(translator.translate(changes[0]!)).toBeUndefined()
    expect(() => translator.translate(changes[changes.length - 1]!)).toThrow(/neither in the cut nor translated/)
    const first = translator.translate(changes[changes.length - 2]!)
    expect(first).toBeInstanceOf(Uint8Array)
    expect(translator.translatedHash(A.decodeChange(changes[changes.length - 2]!).hash)).toBe(A.decodeChange(first!).hash)
    expect(() => translator.translate(changes[changes.length - 2]!)).toThrow(/already translated/)
  })
})

describe('epoch translation, any history', () => {
  type Step = { kind: 'write'; replica: number; section: number; key: number; value: number } | { kind: 'delete'; replica: number; section: number; key: number } | { kind: 'merge'; from: number; to: number }
  const step: fc.Arbitrary<Step> = fc.oneof(
    fc.record({ kind: fc.constant('write' as const), replica: fc.integer({ min: 0, max: 2 }), section: fc.integer({ min: 0, max: 3 }), key: fc.integer({ min: 0, max: 4 }), value: fc.integer({ min: 0, max: 99 }) }),
    fc.record({ kind: fc.constant('delete' as const), replica: fc.integer({ min: 0, max: 2 }), section: fc.integer({ min: 0, max: 3 }), key: fc.integer({ min: 0, max: 4 }) }),
    fc.record({ kind: fc.constant('merge' as const), from: fc.integer({ min: 0, max: 2 }), to: fc.integer({ min: 0, max: 2 }) }),
  )
  const apply = (replicas: DocHandle[], s: Step): void => {
    if (s.kind === 'merge') {
      if (s.from !== s.to) merge(replicas[s.to]!, replicas[s.from]!)
      return
    }
    const target = replicas[s.replica]!
    write(target, (root) => {
      const map = section(root, SECTIONS[s.section]!)
      // Node entries are maps of fields (a field written in place), the others one scalar.
      if (s.section === 0) {
        const entry = map[`k${s.key}`] as DocMap | undefined
        if (s.kind === 'write') {
          if (entry === undefined) map[`k${s.key}`] = { load: s.value }
          else entry.load = s.value
        } else if (entry !== undefined) delete entry.load
      } else if (s.kind === 'write') map[`k${s.key}`] = `v${s.value}`
      else delete map[`k${s.key}`]
    })
  }

  it('gives every replica the same translations, and the old state when every change past the cut saw the cut', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 25 }), fc.array(step, { maxLength: 25 }), (beforeCut, afterCut) => {
        const replicas = [replica(1), replica(2), replica(3)]
        for (const s of beforeCut) apply(replicas, s)
        // Everyone learns the cut, then keeps writing (and merging) past it.
        for (const r of replicas.slice(1)) merge(replicas[0]!, r)
        for (const r of replicas.slice(1)) merge(r, replicas[0]!)
        const cut = replicas[0]!.getHeads()
        for (const s of afterCut) apply(replicas, s)
        const genesis = buildEpochGenesis(replicas[1]!, { epoch: 1, heads: cut })
        const perReplica = replicas.map((r) => translateAll(r, genesis))
        const union = replica(4)
        for (const r of replicas) merge(union, r)
        const all = translateAll(union, genesis)
        expect(new Set(perReplica.flatMap(hashes))).toEqual(new Set(hashes(all)))
        const next = epochDoc(genesis, all)
        expect(next.getMissingDeps([])).toEqual([])
        expect(stateOf(next)).toEqual(stateOf(union))
      }),
      { numRuns: 60 },
    )
  })

  it('converges when the cut is taken on one replica while the others write concurrently', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 25 }), fc.array(step, { maxLength: 25 }), (beforeCut, afterCut) => {
        const replicas = [replica(1), replica(2), replica(3)]
        for (const s of beforeCut) apply(replicas, s)
        const cut = replicas[0]!.getHeads()
        const stateAtCut = stateOf(replicas[0]!)
        for (const s of afterCut) apply(replicas, s)
        const genesis = buildEpochGenesis(replicas[0]!, { epoch: 1, heads: cut })
        expect(stateOf(epochDoc(genesis, []))).toEqual(stateAtCut)
        // Each replica carries over what it holds into its own new document; then they gossip.
        const carried = replicas.map((r) => translateAll(r, genesis))
        // Translators sharing their translations (the simulator's replicas) carry over the very same bytes.
        const memo: EpochTranslations = new Map()
        expect(replicas.map((r) => translateAll(r, genesis, memo))).toEqual(carried)
        const next = replicas.map((r, i) => epochDoc(genesis, carried[i]!, 0xe0 + i))
        for (const to of next) for (const from of next) if (to !== from) merge(to, from)
        const [first, ...rest] = next
        for (const other of rest) {
          expect(other.getHeads()).toEqual(first!.getHeads())
          expect(stateOf(other)).toEqual(stateOf(first!))
        }
        // What the old document shows with everything merged, the new one shows: conflicts across the cut resolve alike.
        const union = replica(4)
        for (const r of replicas) merge(union, r)
        expect(stateOf(first!)).toEqual(stateOf(union))
      }),
      { numRuns: 100 },
    )
  })
})

describe('a genesis kept alone', () => {
  it('reads back as the genesis, and is saved once per genesis however many replicas keep it', () => {
    const a = replica(1)
    write(a, (root) => (section(root, 'nodes')['n1'] = { name: 'one' }))
    const genesis = buildEpochGenesis(a, { epoch: 1, heads: a.getHeads() })
    const kept = saveGenesisAlone(genesis)
    expect(readGenesisAlone(kept).hash).toBe(genesis.hash)
    // A second replica's save of the same genesis (its own copy of the change) is the first one's bytes.
    expect(saveGenesisAlone({ change: genesis.change.slice(), hash: genesis.hash })).toBe(kept)
    write(a, (root) => (section(root, 'nodes')['n2'] = { name: 'two' }))
    const later = buildEpochGenesis(a, { epoch: 2, heads: a.getHeads() })
    expect(readGenesisAlone(saveGenesisAlone(later)).hash).toBe(later.hash)
    a.free()
  })
})
