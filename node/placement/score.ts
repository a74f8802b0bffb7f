/**
 * Fit and score of a bid: pure functions of a node's published capacity and
 * free resources and the spec's needs, so any node can check a bid's score.
 */
import type { DeploymentSpec } from '../../core/index.ts'

export interface ResourceFigures {
  cpu: number
  memoryMB: number
  diskMB: number
  gpus: number
}

export interface Fit {
  fits: boolean
  /** Why not, when it does not fit. */
  reason?: string
}

export function fits(spec: DeploymentSpec, free: ResourceFigures, labels: Record<string, string>): Fit {
  for (const [key, value] of Object.entries(spec.constraints.labels)) {
    if (labels[key] !== value) return { fits: false, reason: `label ${key}=${value} not offered` }
  }
  if (free.memoryMB < spec.resources.memoryMB) return { fits: false, reason: `needs ${spec.resources.memoryMB} MB, ${free.memoryMB} MB free` }
  if (free.cpu + 1e-9 < spec.resources.cpu) return { fits: false, reason: `needs ${spec.resources.cpu} CPU, ${free.cpu} free` }
  return { fits: true }
}

/**
 * Higher is better, in [0, 1000]. `spread` prefers the node left emptiest
 * after placing; `binpack` the one left fullest (but still fitting).
 * Rounded to an integer so every node computes bit-identical scores.
 */
export function bidScore(strategy: DeploymentSpec['strategy'], spec: DeploymentSpec, capacity: ResourceFigures, free: ResourceFigures): number {
  const cpuLeft = capacity.cpu > 0 ? (free.cpu - spec.resources.cpu) / capacity.cpu : 0
  const memoryLeft = capacity.memoryMB > 0 ? (free.memoryMB - spec.resources.memoryMB) / capacity.memoryMB : 0
  const emptiness = Math.max(0, Math.min(1, (cpuLeft + memoryLeft) / 2))
  return Math.round(1000 * (strategy === 'spread' ? emptiness : 1 - emptiness))
}
