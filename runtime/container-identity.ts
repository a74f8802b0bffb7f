/**
 * What makes a container a Lattice container, shared by every adapter so they
 * name, label and report containers identically: the labels written at
 * create time and read back on list, the unique container name, and the key
 * under which a published port is reported.
 */
import { LABEL, type ContainerSpec, type PortRequest } from '../core/index.ts'

/** The fields of a ContainerInfo that come from labels. */
export interface LabelledIdentity {
  nodeId: string
  deploymentId: string
  replica: number
  generation: number
  epoch: number
}

export function labelsFor(nodeId: string, spec: ContainerSpec): Record<string, string> {
  return {
    [LABEL.node]: nodeId,
    [LABEL.deployment]: spec.deploymentId,
    [LABEL.replica]: String(spec.replica),
    [LABEL.generation]: String(spec.generation),
    [LABEL.epoch]: String(spec.epoch),
  }
}

/** Reads labels back; a missing or garbled number reads as -1 so it never matches a real one. */
export function identityFromLabels(labels: Record<string, string> | null | undefined): LabelledIdentity {
  const get = (key: string): string => labels?.[key] ?? ''
  const int = (key: string): number => {
    const value = Number.parseInt(get(key), 10)
    return Number.isFinite(value) ? value : -1
  }
  return {
    nodeId: get(LABEL.node),
    deploymentId: get(LABEL.deployment),
    replica: int(LABEL.replica),
    generation: int(LABEL.generation),
    epoch: int(LABEL.epoch),
  }
}

/** Docker's name rule is [a-zA-Z0-9][a-zA-Z0-9_.-]+; anything else becomes '-'. */
const NAME_PART_CHARS_MAX = 63

export function containerName(prefix: string, spec: Pick<ContainerSpec, 'name' | 'replica'>, suffix: string): string {
  const part = spec.name.replace(/[^a-zA-Z0-9_.-]/g, '-').slice(0, NAME_PART_CHARS_MAX)
  return `${prefix}-${part}-${spec.replica}-${suffix}`
}

/** TCP ports are reported as "80" (the contract's shape), UDP ones as "53/udp" so both can coexist. */
export function hostPortKey(port: PortRequest): string {
  return port.protocol === 'tcp' ? String(port.container) : `${port.container}/udp`
}
