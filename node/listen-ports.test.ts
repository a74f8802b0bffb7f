import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { rememberListenPorts, stickyListenAddresses } from './listen-ports.ts'

let dataDir: string
beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'lattice-listen-'))
})
afterEach(async () => {
  await rm(dataDir, { recursive: true, force: true })
})

const listenOn = (port: number): Promise<Server> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen({ host: '127.0.0.1', port }, () => resolve(server))
  })
const freePort = async (): Promise<number> => {
  const server = await listenOn(0)
  const port = (server.address() as { port: number }).port
  await new Promise((resolve) => server.close(resolve))
  return port
}

describe('sticky listen ports', () => {
  it('without a remembered port, addresses are left as configured', async () => {
    expect(await stickyListenAddresses(dataDir, ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/4001'])).toEqual(['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/4001'])
  })

  it('a port-0 address asks again for the port it bound last time; fixed ports are untouched', async () => {
    const port = await freePort()
    const listen = ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/4001']
    await rememberListenPorts(dataDir, listen, [`/ip4/127.0.0.1/tcp/${port}/p2p/12D3KooWabc`, '/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWabc'])
    expect(await stickyListenAddresses(dataDir, listen)).toEqual([`/ip4/127.0.0.1/tcp/${port}`, '/ip4/127.0.0.1/tcp/4001'])
  })

  it('a wildcard address takes the port from any bound address of its family', async () => {
    const port = await freePort()
    await rememberListenPorts(dataDir, ['/ip4/0.0.0.0/tcp/0'], ['/ip6/::1/tcp/9/p2p/x', `/ip4/10.1.2.3/tcp/${port}/p2p/x`, `/ip4/127.0.0.1/tcp/${port}/p2p/x`])
    expect(await stickyListenAddresses(dataDir, ['/ip4/0.0.0.0/tcp/0'])).toEqual([`/ip4/0.0.0.0/tcp/${port}`])
  })

  it('a remembered port another process holds now falls back to port 0', async () => {
    const holder = await listenOn(0)
    const port = (holder.address() as { port: number }).port
    try {
      await rememberListenPorts(dataDir, ['/ip4/127.0.0.1/tcp/0'], [`/ip4/127.0.0.1/tcp/${port}`])
      expect(await stickyListenAddresses(dataDir, ['/ip4/127.0.0.1/tcp/0'])).toEqual(['/ip4/127.0.0.1/tcp/0'])
    } finally {
      await new Promise((resolve) => holder.close(resolve))
    }
  })

  it('a damaged listen.json is ignored, not fatal', async () => {
    await writeFile(join(dataDir, 'listen.json'), '{ not json')
    expect(await stickyListenAddresses(dataDir, ['/ip4/127.0.0.1/tcp/0'])).toEqual(['/ip4/127.0.0.1/tcp/0'])
    await writeFile(join(dataDir, 'listen.json'), JSON.stringify({ ports: { '/ip4/127.0.0.1/tcp/0': 70_000 } }))
    expect(await stickyListenAddresses(dataDir, ['/ip4/127.0.0.1/tcp/0'])).toEqual(['/ip4/127.0.0.1/tcp/0'])
  })
})
