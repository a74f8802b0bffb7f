/**
 * Sticky listen ports. A listen address with port 0 takes a free port; the
 * port bound is remembered in D/listen.json and asked for again at the next
 * start. Peers remember a node by the address it had (peers.json, invites),
 * so without this every restart moved the node, and a cluster restarted as
 * a whole (a power cut) could not find itself again: each node's remembered
 * addresses all pointed at ports nobody listened on any more.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { z } from 'zod'

const ListenFileSchema = z.object({ ports: z.record(z.string().max(512), z.number().int().min(1).max(65_535)) })

const listenFile = (dataDir: string): string => join(dataDir, 'listen.json')

/** `/ip4/H/tcp/0` or `/ip6/H/tcp/0`, nothing after: the only shape whose port we pick. */
const ANY_PORT = /^\/(ip4|ip6)\/([^/]+)\/tcp\/0$/

async function readRemembered(dataDir: string): Promise<Record<string, number>> {
  try {
    const parsed = ListenFileSchema.safeParse(JSON.parse(await readFile(listenFile(dataDir), 'utf8')))
    return parsed.success ? parsed.data.ports : {}
  } catch {
    return {} // absent or unreadable: ports are picked afresh, and remembered after start
  }
}

/** True when `port` on `host` can be bound now (checked by binding it for a moment). */
function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)))
  })
}

/**
 * The listen addresses to start with: each port-0 address becomes the port it
 * bound last time, when that port is free; otherwise it stays port 0.
 */
export async function stickyListenAddresses(dataDir: string, listen: readonly string[]): Promise<string[]> {
  const remembered = await readRemembered(dataDir)
  const addresses: string[] = []
  for (const address of listen) {
    const match = ANY_PORT.exec(address)
    const port = remembered[address]
    if (match === null || port === undefined) {
      addresses.push(address)
      continue
    }
    const [, family, host] = match
    addresses.push((await portFree(host!, port)) ? `/${family}/${host}/tcp/${port}` : address)
  }
  return addresses
}

/** Records the port each port-0 address of `listen` bound, read from the addresses the transport listens on. */
export async function rememberListenPorts(dataDir: string, listen: readonly string[], bound: readonly string[]): Promise<void> {
  const ports: Record<string, number> = {}
  for (const address of listen) {
    const match = ANY_PORT.exec(address)
    if (match === null) continue
    const [, family, host] = match
    const wildcard = host === '0.0.0.0' || host === '::'
    for (const candidate of bound) {
      const found = /^\/(ip4|ip6)\/([^/]+)\/tcp\/(\d+)/.exec(candidate)
      if (found === null || found[1] !== family || (!wildcard && found[2] !== host)) continue
      ports[address] = Number(found[3])
      break
    }
  }
  if (Object.keys(ports).length === 0) return
  await writeFile(listenFile(dataDir), JSON.stringify({ ports }, null, 2) + '\n', { mode: 0o600 })
}
