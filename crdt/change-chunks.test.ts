import { deflateRawSync } from 'node:zlib'
import * as A from '@automerge/automerge'
import { describe, expect, it } from 'vitest'
import { changeMeta, documentHeads, splitChunks, type Chunk } from './change-chunks.ts'

/** A document written by three actors, with concurrent changes (several heads) and values long and short. */
function threeActorDoc(): A.Doc<Record<string, string>> {
  let a = A.change(A.init<Record<string, string>>({ actor: 'aaaa' }), (d) => void (d['root'] = 'x'))
  let b = A.clone(a, { actor: 'bbbb' })
  let c = A.clone(a, { actor: 'cccc' })
  for (let i = 0; i < 20; i++) {
    a = A.change(a, (d) => void (d[`a${i}`] = 'v'.repeat(i * 37)))
    b = A.change(b, (d) => void (d[`b${i}`] = String(i)))
    if (i % 5 === 0) c = A.change(c, (d) => void (d[`c${i}`] = 'w'))
  }
  return A.merge(A.merge(a, b), c)
}

function only(bytes: Uint8Array): Chunk {
  const chunks = splitChunks(bytes)
  expect(chunks).toHaveLength(1)
  return chunks![0]!
}

describe('change chunks', () => {
  it("reads each change's hash and dependencies as Automerge decodes them", () => {
    const changes = A.getAllChanges(threeActorDoc())
    expect(changes.length).toBeGreaterThan(40)
    for (const change of changes) {
      const decoded = A.decodeChange(change)
      expect(changeMeta(only(change))).toEqual({ hash: decoded.hash, deps: decoded.deps })
    }
  })

  it('splits changes joined in one byte string, in order', () => {
    const changes = A.getAllChanges(threeActorDoc())
    const joined = Buffer.concat(changes)
    const chunks = splitChunks(joined)!
    expect(chunks.map((chunk) => changeMeta(chunk)!.hash)).toEqual(changes.map((change) => A.decodeChange(change).hash))
  })

  it('reads a compressed change through Automerge', () => {
    const change = A.getAllChanges(A.change(A.init<{ text: string }>(), (d) => void (d.text = 'v'.repeat(1000))))[0]!
    const plain = only(change)
    const body = deflateRawSync(change.subarray(plain.bodyStart))
    const compressed = Buffer.concat([change.subarray(0, 8), Buffer.from([2]), uleb(body.length), body])
    const chunk = only(compressed)
    expect(chunk.type).toBe('compressed-change')
    expect(changeMeta(chunk)).toEqual(changeMeta(plain))
  })

  it("reads a saved document's heads, and those of a whole document a sync message carries", () => {
    const doc = threeActorDoc()
    expect(A.getHeads(doc).length).toBeGreaterThan(1)
    expect(new Set(documentHeads(only(A.save(doc))))).toEqual(new Set(A.getHeads(doc)))
    // A peer with none of a document's history is sent the document whole.
    let sender = A.initSyncState()
    let receiver = A.initSyncState()
    let empty = A.init<Record<string, string>>()
    let message: Uint8Array | null
    ;[receiver, message] = A.generateSyncMessage(empty, receiver)
    ;[, sender] = A.receiveSyncMessage(doc, sender, message!)
    ;[sender, message] = A.generateSyncMessage(doc, sender)
    const carried = A.decodeSyncMessage(message!).changes
    expect(carried).toHaveLength(1)
    const chunk = only(carried[0]!)
    expect(chunk.type).toBe('document')
    expect(new Set(documentHeads(chunk))).toEqual(new Set(A.getHeads(doc)))
    ;[empty] = A.receiveSyncMessage(empty, receiver, message!)
    expect(A.getHeads(empty).sort()).toEqual(A.getHeads(doc).sort())
  })

  it('knows a change it hashed lately by its bytes, from any buffer, and still refuses a damaged copy of it', () => {
    const change = A.getAllChanges(threeActorDoc())[7]!
    const expected = A.decodeChange(change).hash
    expect(changeMeta(only(change))?.hash).toBe(expected)
    // The same bytes inside another message: the same answer.
    const joined = Buffer.concat([A.getAllChanges(threeActorDoc())[3]!, change])
    expect(changeMeta(splitChunks(joined)![1]!)?.hash).toBe(expected)
    // Same checksum and length, one byte of the body changed: not the remembered change.
    const damaged = Uint8Array.from(change)
    damaged[damaged.length - 2]! ^= 0x10
    expect(changeMeta(only(damaged))).toBeUndefined()
    expect(changeMeta(only(change))?.hash).toBe(expected)
  })

  it('refuses damaged, truncated or foreign bytes, and answers only for its own chunk type', () => {
    const change = A.getAllChanges(threeActorDoc())[5]!
    const flipped = Uint8Array.from(change)
    flipped[flipped.length - 1]! ^= 0xff
    expect(changeMeta(only(flipped))).toBeUndefined()
    expect(splitChunks(change.subarray(0, change.length - 1))).toBeUndefined()
    expect(splitChunks(Buffer.concat([change, change.subarray(0, 5)]))).toBeUndefined()
    const foreign = Uint8Array.from(change)
    foreign[0] = 0x42
    expect(splitChunks(foreign)).toBeUndefined()
    const unknownType = Uint8Array.from(change)
    unknownType[8] = 9
    expect(splitChunks(unknownType)).toBeUndefined()
    expect(documentHeads(only(change))).toBeUndefined()
    const saved = A.save(threeActorDoc())
    expect(changeMeta(only(saved))).toBeUndefined()
    const damagedDoc = Uint8Array.from(saved)
    damagedDoc[damagedDoc.length - 3]! ^= 0x01
    expect(documentHeads(only(damagedDoc))).toBeUndefined()
    expect(splitChunks(new Uint8Array(0))).toEqual([])
  })
})

function uleb(value: number): Buffer {
  const bytes: number[] = []
  do {
    let byte = value & 0x7f
    value = Math.floor(value / 128)
    if (value > 0) byte |= 0x80
    bytes.push(byte)
  } while (value > 0)
  return Buffer.from(bytes)
}
