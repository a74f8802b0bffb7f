import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { LatticeError } from '../core/index.ts'
import {
  decodeInvite,
  encodeInvite,
  generateMeshKey,
  IDENTITY_FILE,
  INVITE_PREFIX,
  loadOrCreateIdentity,
  loadOrCreateMeshKey,
  MESH_KEY_FILE,
  readMeshKey,
  writeMeshKey,
} from './identity.ts'

let dataDir: string
beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'lattice-identity-'))
})
afterEach(async () => {
  await rm(dataDir, { recursive: true, force: true })
})

const modeOf = async (path: string): Promise<number> => (await stat(path)).mode & 0o777
const ADDRESS = '/ip4/192.168.1.20/tcp/4001/p2p/12D3KooWNfna2zXHzF9kQuQ96nmdFxGXMK8HHaVrBSED3F2aXvdF'

function codeOf(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(LatticeError)
    return (err as LatticeError).code
  }
  throw new Error('expected a LatticeError')
}

describe('node identity', () => {
  it('is created once, kept private, and gives the same PeerId on every later start', async () => {
    const first = await loadOrCreateIdentity(join(dataDir, 'nested'))
    const second = await loadOrCreateIdentity(join(dataDir, 'nested'))
    expect(second.peerId).toBe(first.peerId)
    expect(first.peerId).toMatch(/^12D3KooW/)
    expect(await modeOf(join(dataDir, 'nested', IDENTITY_FILE))).toBe(0o600)
    expect(await modeOf(join(dataDir, 'nested'))).toBe(0o700)
  })

  it('two starts racing on an empty data dir agree on one identity', async () => {
    const results = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateIdentity(dataDir)))
    expect(new Set(results.map((r) => r.peerId)).size).toBe(1)
  })

  it('a corrupted identity file is reported, not silently replaced', async () => {
    await writeFile(join(dataDir, IDENTITY_FILE), 'not a key')
    await expect(loadOrCreateIdentity(dataDir)).rejects.toMatchObject({ code: 'VALIDATION_FAILED' })
    expect(await readFile(join(dataDir, IDENTITY_FILE), 'utf8')).toBe('not a key')
  })
})

describe('mesh key', () => {
  it('is absent until created, then stable and private', async () => {
    expect(await readMeshKey(dataDir)).toBeUndefined()
    const created = await loadOrCreateMeshKey(dataDir)
    expect(await loadOrCreateMeshKey(dataDir)).toEqual(created)
    expect(await readMeshKey(dataDir)).toEqual(created)
    expect(new TextDecoder().decode(created)).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}$/)
    expect(await modeOf(join(dataDir, MESH_KEY_FILE))).toBe(0o600)
  })

  it('writeMeshKey replaces the key (joining another mesh) and refuses junk', async () => {
    await loadOrCreateMeshKey(dataDir)
    const joined = generateMeshKey()
    await writeMeshKey(dataDir, joined)
    expect(await readMeshKey(dataDir)).toEqual(joined)
    expect(await modeOf(join(dataDir, MESH_KEY_FILE))).toBe(0o600)
    await expect(writeMeshKey(dataDir, new TextEncoder().encode('junk'))).rejects.toMatchObject({ code: 'VALIDATION_FAILED' })
    expect(await readMeshKey(dataDir)).toEqual(joined)
  })

  it('a corrupted mesh key file is reported', async () => {
    await writeFile(join(dataDir, MESH_KEY_FILE), '/key/swarm/psk/1.0.0/\n/base16/\nabc')
    await expect(loadOrCreateMeshKey(dataDir)).rejects.toMatchObject({ code: 'VALIDATION_FAILED' })
  })

  it('two keys are never the same', () => {
    expect(generateMeshKey()).not.toEqual(generateMeshKey())
  })
})

describe('invite', () => {
  it('round-trips addresses and mesh key through one line', () => {
    const meshKey = generateMeshKey()
    const invite = encodeInvite({ addresses: [ADDRESS, '/ip4/127.0.0.1/tcp/4001'], meshKey })
    expect(invite.startsWith(INVITE_PREFIX)).toBe(true)
    expect(invite).toMatch(/^lattice1:[A-Za-z0-9_-]+$/)
    expect(decodeInvite(`  ${invite}\n`)).toEqual({ addresses: [ADDRESS, '/ip4/127.0.0.1/tcp/4001'], meshKey })
  })

  it('refuses to encode an invite without addresses or with a bad key', () => {
    expect(() => encodeInvite({ addresses: [], meshKey: generateMeshKey() })).toThrow()
    expect(codeOf(() => encodeInvite({ addresses: [ADDRESS], meshKey: new Uint8Array(95) }))).toBe('VALIDATION_FAILED')
  })

  it('rejects malformed invites with VALIDATION_FAILED and a reason', () => {
    const payload = (value: unknown): string =>
      INVITE_PREFIX + Buffer.from(JSON.stringify(value)).toString('base64url')
    const hex = 'a'.repeat(64)
    const cases: Array<[string, RegExp]> = [
      ['', /must start with "lattice1:"/],
      ['lattice2:abc', /must start with/],
      ['lattice1:not base64!', /not base64url/],
      ['lattice1:' + Buffer.from('{"v":1,').toString('base64url'), /not JSON/],
      [payload({ v: 2, addresses: [ADDRESS], meshKey: hex }), /^invalid invite: v:/],
      [payload({ v: 1, addresses: [], meshKey: hex }), /addresses/],
      [payload({ v: 1, addresses: ['/nonsense/1'], meshKey: hex }), /addresses\.0: not a multiaddr/],
      [payload({ v: 1, addresses: [ADDRESS], meshKey: 'abc' }), /meshKey/],
      [payload({ v: 1, addresses: [ADDRESS], meshKey: hex, extra: true }), /invalid invite/],
      [INVITE_PREFIX + 'A'.repeat(9_000), /longer than/],
    ]
    for (const [text, reason] of cases) {
      try {
        decodeInvite(text)
        throw new Error(`accepted: ${text.slice(0, 40)}`)
      } catch (err) {
        expect(err, text.slice(0, 40)).toBeInstanceOf(LatticeError)
        expect((err as LatticeError).code).toBe('VALIDATION_FAILED')
        expect((err as LatticeError).message).toMatch(reason)
      }
    }
  })
})
