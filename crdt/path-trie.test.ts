/** PathTrie against a plain Map model, under random operation sequences. */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { PathTrie } from './path-trie.ts'

const key = fc.constantFrom('a', 'b', 'c', '0', '1')
const path = fc.array(key, { minLength: 1, maxLength: 3 })
const op = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), path, value: fc.integer() }),
  fc.record({ kind: fc.constant('delete' as const), path }),
  fc.record({ kind: fc.constant('deleteSubtree' as const), path: fc.array(key, { maxLength: 2 }) }),
)

const id = (p: readonly string[]): string => JSON.stringify(p)
const startsWith = (p: readonly string[], prefix: readonly string[]): boolean => prefix.every((k, i) => p[i] === k)

describe('PathTrie', () => {
  it('agrees with a Map model for get, entries under any prefix, and subtree deletion', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), fc.array(key, { maxLength: 2 }), (ops, prefix) => {
        const trie = new PathTrie<number>()
        const model = new Map<string, { path: string[]; value: number }>()
        for (const o of ops) {
          if (o.kind === 'set') {
            trie.set(o.path, o.value)
            model.set(id(o.path), { path: o.path, value: o.value })
          } else if (o.kind === 'delete') {
            trie.delete(o.path)
            model.delete(id(o.path))
          } else {
            trie.deleteSubtree(o.path)
            for (const [k, entry] of model) if (startsWith(entry.path, o.path)) model.delete(k)
          }
        }
        for (const entry of model.values()) expect(trie.get(entry.path)).toBe(entry.value)
        const listed = [...trie.entries(prefix)].map(([p, value]) => [id(p), value] as const).sort()
        const expected = [...model.values()]
          .filter((entry) => startsWith(entry.path, prefix))
          .map((entry) => [id(entry.path), entry.value] as const)
          .sort()
        expect(listed).toEqual(expected)
      }),
      { numRuns: 300, seed: 7 },
    )
  })

  it('leaves no empty branches behind: deleting every value empties the trie', () => {
    const trie = new PathTrie<number>()
    trie.set(['d1', '0', 'node-a'], 1)
    trie.set(['d1', '1', 'node-a'], 2)
    trie.delete(['d1', '0', 'node-a'])
    trie.deleteSubtree(['d1', '1'])
    expect([...trie.entries()]).toEqual([])
    expect(trie.isEmpty()).toBe(true)
  })

  it('lists children in insertion order, a lone child inline or not', () => {
    const trie = new PathTrie<number>()
    trie.set(['d1', '1', 'node-b'], 1)
    trie.set(['d1', '0', 'node-a'], 2)
    trie.set(['d1', '0', 'node-c'], 3)
    trie.delete(['d1', '1', 'node-b'])
    trie.set(['d1', '1', 'node-b'], 4)
    trie.set(['d0', '0', 'node-a'], 5)
    expect([...trie.entries()].map(([path, value]) => [path.join('/'), value])).toEqual([
      ['d1/0/node-a', 2],
      ['d1/0/node-c', 3],
      ['d1/1/node-b', 4],
      ['d0/0/node-a', 5],
    ])
    expect(trie.isEmpty()).toBe(false)
  })
})
