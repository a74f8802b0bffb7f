/** The mesh files of a data dir: who founded the mesh (the first epoch agreement's acceptor) and who joined it. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { encodeInvite } from '../mesh/index.ts'
import { prepareMesh } from './join.ts'

const dirs: string[] = []
const fresh = async (): Promise<string> => {
  const dir = await mkdtemp(join(tmpdir(), 'lattice-join-'))
  dirs.push(dir)
  return dir
}

afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })))
})

describe('the founder of a mesh', () => {
  it('is the data dir that made the mesh key, across restarts; a dir that joined by invite is not', async () => {
    const founderDir = await fresh()
    const made = await prepareMesh(founderDir)
    expect(made.founder).toBe(true)
    expect((await prepareMesh(founderDir)).founder).toBe(true)
    const invite = encodeInvite({ addresses: ['/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'], meshKey: made.meshKey })
    const joined = await prepareMesh(await fresh(), invite)
    expect(joined.founder).toBe(false)
    expect(Buffer.from(joined.meshKey).equals(Buffer.from(made.meshKey))).toBe(true)
  })

  it('a mark left without its key (a crash between the two) is dropped when the dir joins another mesh by invite', async () => {
    const dir = await fresh()
    await writeFile(join(dir, 'founder'), 'this node made the mesh key\n')
    const other = await prepareMesh(await fresh())
    const joined = await prepareMesh(dir, encodeInvite({ addresses: ['/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'], meshKey: other.meshKey }))
    expect(joined.founder).toBe(false)
    // Without an invite the mark stands for the key made now.
    const again = await fresh()
    await writeFile(join(again, 'founder'), 'this node made the mesh key\n')
    expect((await prepareMesh(again)).founder).toBe(true)
  })
})
