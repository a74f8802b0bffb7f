/**
 * A map keyed by paths of strings (e.g. [deploymentId, replica, peerId]) that
 * can list or drop everything under a prefix. The validated index of the
 * document keeps one per section, so "all statuses of deployment X" costs the
 * size of the answer, not of the document.
 *
 * Most nodes have one child (a deployment with one replica, a replica with
 * one reporter): it is kept inline, and a Map is made only for a second.
 * At 10,000 deployments the Maps were a third of the index's memory, and
 * of the garbage collector's work while a node loads.
 */
class TrieNode<E> {
  /** The only child and its key, while there is at most one (children undefined). */
  onlyKey: string | undefined = undefined
  only: TrieNode<E> | undefined = undefined
  /** Every child, in insertion order, from the second one on. */
  children: Map<string, TrieNode<E>> | undefined = undefined
  value: E | undefined = undefined
  hasValue = false

  child(key: string): TrieNode<E> | undefined {
    if (this.children !== undefined) return this.children.get(key)
    return this.onlyKey === key ? this.only : undefined
  }

  addChild(key: string, child: TrieNode<E>): void {
    if (this.children !== undefined) this.children.set(key, child)
    else if (this.only === undefined) {
      this.onlyKey = key
      this.only = child
    } else {
      this.children = new Map([[this.onlyKey!, this.only]])
      this.children.set(key, child)
      this.onlyKey = undefined
      this.only = undefined
    }
  }

  removeChild(key: string): void {
    if (this.children !== undefined) this.children.delete(key)
    else if (this.onlyKey === key) {
      this.onlyKey = undefined
      this.only = undefined
    }
  }

  get childCount(): number {
    return this.children !== undefined ? this.children.size : this.only === undefined ? 0 : 1
  }

  /** The children in insertion order. */
  childList(): Array<[string, TrieNode<E>]> {
    if (this.children !== undefined) return [...this.children]
    return this.only === undefined ? [] : [[this.onlyKey!, this.only]]
  }
}

export class PathTrie<E> {
  private root = new TrieNode<E>()

  get(path: readonly string[]): E | undefined {
    return this.find(path)?.value
  }

  set(path: readonly string[], value: E): void {
    let node = this.root
    for (const key of path) {
      let child = node.child(key)
      if (child === undefined) {
        child = new TrieNode<E>()
        node.addChild(key, child)
      }
      node = child
    }
    node.value = value
    node.hasValue = true
  }

  /** Removes the value at `path` (not its descendants) and prunes empty nodes. */
  delete(path: readonly string[]): void {
    const trail: TrieNode<E>[] = [this.root]
    for (const key of path) {
      const child = trail[trail.length - 1]!.child(key)
      if (child === undefined) return
      trail.push(child)
    }
    const node = trail[trail.length - 1]!
    node.value = undefined
    node.hasValue = false
    this.prune(path, trail)
  }

  /** Removes every value whose path starts with `prefix` (including at `prefix`). */
  deleteSubtree(prefix: readonly string[]): void {
    if (prefix.length === 0) {
      this.root = new TrieNode<E>()
      return
    }
    const trail: TrieNode<E>[] = [this.root]
    for (const key of prefix.slice(0, -1)) {
      const child = trail[trail.length - 1]!.child(key)
      if (child === undefined) return
      trail.push(child)
    }
    trail[trail.length - 1]!.removeChild(prefix[prefix.length - 1]!)
    this.prune(prefix.slice(0, -1), trail)
  }

  /** True when the trie holds no value. */
  isEmpty(): boolean {
    return !this.root.hasValue && this.root.childCount === 0
  }

  /** Values under `prefix` with their full paths, depth first, children in insertion order. */
  *entries(prefix: readonly string[] = []): Generator<[string[], E]> {
    const start = this.find(prefix)
    if (start === undefined) return
    const stack: Array<[string[], TrieNode<E>]> = [[[...prefix], start]]
    while (stack.length > 0) {
      const [path, node] = stack.pop()!
      if (node.hasValue) yield [path, node.value as E]
      const children = node.childList()
      for (let i = children.length - 1; i >= 0; i--) {
        const [key, child] = children[i]!
        stack.push([[...path, key], child])
      }
    }
  }

  private find(path: readonly string[]): TrieNode<E> | undefined {
    let node: TrieNode<E> | undefined = this.root
    for (const key of path) {
      node = node.child(key)
      if (node === undefined) return undefined
    }
    return node
  }

  /** Drops nodes left without value or children, bottom up, so the trie never keeps empty branches. */
  private prune(path: readonly string[], trail: TrieNode<E>[]): void {
    for (let depth = path.length; depth > 0; depth--) {
      const node = trail[depth]
      if (node === undefined || node.hasValue || node.childCount > 0) return
      trail[depth - 1]!.removeChild(path[depth - 1]!)
    }
  }
}
