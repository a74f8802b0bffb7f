/**
 * A map keyed by paths of strings (e.g. [deploymentId, replica, peerId]) that
 * can list or drop everything under a prefix. The validated index of the
 * document keeps one per section, so "all statuses of deployment X" costs the
 * size of the answer, not of the document.
 */
class TrieNode<E> {
  /** Made with the first child: most nodes are leaves, and an index holds one per entry (tens of thousands). */
  children: Map<string, TrieNode<E>> | undefined
  value: E | undefined
  hasValue = false
}

export class PathTrie<E> {
  private root = new TrieNode<E>()

  get(path: readonly string[]): E | undefined {
    return this.find(path)?.value
  }

  set(path: readonly string[], value: E): void {
    let node = this.root
    for (const key of path) {
      node.children ??= new Map()
      let child = node.children.get(key)
      if (child === undefined) {
        child = new TrieNode<E>()
        node.children.set(key, child)
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
      const child = trail[trail.length - 1]!.children?.get(key)
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
      const child = trail[trail.length - 1]!.children?.get(key)
      if (child === undefined) return
      trail.push(child)
    }
    trail[trail.length - 1]!.children?.delete(prefix[prefix.length - 1]!)
    this.prune(prefix.slice(0, -1), trail)
  }

  /** Values under `prefix` with their full paths, depth first, children in insertion order. */
  *entries(prefix: readonly string[] = []): Generator<[string[], E]> {
    const start = this.find(prefix)
    if (start === undefined) return
    const stack: Array<[string[], TrieNode<E>]> = [[[...prefix], start]]
    while (stack.length > 0) {
      const [path, node] = stack.pop()!
      if (node.hasValue) yield [path, node.value as E]
      const children = node.children === undefined ? [] : [...node.children]
      for (let i = children.length - 1; i >= 0; i--) {
        const [key, child] = children[i]!
        stack.push([[...path, key], child])
      }
    }
  }

  private find(path: readonly string[]): TrieNode<E> | undefined {
    let node: TrieNode<E> | undefined = this.root
    for (const key of path) {
      node = node.children?.get(key)
      if (node === undefined) return undefined
    }
    return node
  }

  /** Drops nodes left without value or children, bottom up, so the trie never keeps empty branches. */
  private prune(path: readonly string[], trail: TrieNode<E>[]): void {
    for (let depth = path.length; depth > 0; depth--) {
      const node = trail[depth]
      if (node === undefined || node.hasValue || (node.children?.size ?? 0) > 0) return
      trail[depth - 1]!.children?.delete(path[depth - 1]!)
    }
  }
}
