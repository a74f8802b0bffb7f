/**
 * The run's trace: every membership state transition as one line
 * "virtualMs observer subject state", folded into a SHA-256 as it is
 * recorded (a 1,000-node run records millions). Same seed → same lines →
 * same traceHash. Observers and subjects are node indices (the seed fixes
 * which PeerId each index has). The last `keep` lines stay readable for
 * debugging a failing seed.
 */
import { createHash, type Hash } from 'node:crypto'

export class Trace {
  private readonly hash: Hash = createHash('sha256')
  private readonly tail: string[] = []
  private count = 0

  constructor(private readonly keep = 200) {}

  record(atMs: number, observer: number, subject: number, state: string): void {
    const line = `${atMs} ${observer} ${subject} ${state}\n`
    this.hash.update(line)
    this.count++
    if (this.keep > 0) {
      this.tail.push(line)
      if (this.tail.length > this.keep) this.tail.shift()
    }
  }

  entries(): number {
    return this.count
  }

  lastLines(): string[] {
    return [...this.tail]
  }

  /** Final digest (hex); the trace cannot be extended afterwards. */
  digest(): string {
    return this.hash.digest('hex')
  }
}
