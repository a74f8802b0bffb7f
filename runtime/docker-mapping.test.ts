import type Docker from 'dockerode'
import { describe, expect, it } from 'vitest'
import type { ContainerSpec } from '../core/index.ts'
import { createOptions, executableCandidates, toContainerStats } from './docker-mapping.ts'

const spec: ContainerSpec = {
  deploymentId: 'd1',
  replica: 1,
  generation: 2,
  epoch: 3,
  name: 'web',
  image: 'img',
  command: ['sh'],
  ports: [{ container: 80, protocol: 'tcp' }, { container: 53, protocol: 'udp' }],
  resources: { cpu: 1.5, memoryMB: 100, pidsMax: 64 },
}

function image(config: { Entrypoint?: string[]; Env?: string[] }): Docker.ImageInspectInfo {
  return { Config: config } as unknown as Docker.ImageInspectInfo
}

describe('docker mapping', () => {
  it('the create request carries the safe defaults and lets Docker choose host ports', () => {
    const options = createOptions(spec, { nodeId: 'n1', name: 'lattice-web-1-abc', publishHostIp: '127.0.0.1' })
    expect(options.HostConfig).toMatchObject({
      Memory: 100 * 1024 * 1024,
      MemorySwap: 100 * 1024 * 1024,
      NanoCpus: 1_500_000_000,
      PidsLimit: 64,
      Init: true,
      CapDrop: ['ALL'],
      Privileged: false,
      RestartPolicy: { Name: 'no' },
      PortBindings: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }], '53/udp': [{ HostIp: '127.0.0.1', HostPort: '' }] },
    })
    expect(options.Tty).toBe(false)
  })

  it('the executable is looked up on PATH unless the image has an entrypoint', () => {
    expect(executableCandidates(spec, image({ Env: ['PATH=/bin:/usr/bin'] }))).toEqual(['/bin/sh', '/usr/bin/sh'])
    expect(executableCandidates({ ...spec, command: ['/opt/app'] }, image({}))).toEqual(['/opt/app'])
    expect(executableCandidates({ ...spec, command: ['./app'] }, image({}))).toEqual([])
    expect(executableCandidates(spec, image({ Entrypoint: ['/entry'] }))).toEqual([])
    expect(executableCandidates({ ...spec, command: undefined }, image({}))).toEqual([])
  })

  it('CPU share is the container delta over the system delta, times the CPUs; memory excludes inactive page cache', () => {
    const raw = {
      cpu_stats: { cpu_usage: { total_usage: 300, percpu_usage: [] }, system_cpu_usage: 2_000, online_cpus: 2 },
      precpu_stats: { cpu_usage: { total_usage: 100, percpu_usage: [] }, system_cpu_usage: 1_000, online_cpus: 2 },
      memory_stats: { usage: 10_000, limit: 50_000, stats: { total_inactive_file: 4_000 } },
      pids_stats: { current: 3 },
    } as unknown as Docker.ContainerStats
    expect(toContainerStats(raw)).toEqual({ cpuPercent: 40, memoryBytes: 6_000, memoryLimitBytes: 50_000, pids: 3 })
  })

  it('a stopped container\'s empty stats read as zeros', () => {
    const raw = { cpu_stats: {}, precpu_stats: {}, memory_stats: {} } as unknown as Docker.ContainerStats
    expect(toContainerStats(raw)).toEqual({ cpuPercent: 0, memoryBytes: 0, memoryLimitBytes: 0, pids: 0 })
  })
})
