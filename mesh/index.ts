/**
 * mesh/ — how a node joins and talks to the private mesh. `identity.ts` keeps
 * the key material of a data dir (the node's Ed25519 key, so its PeerId is
 * stable, and the mesh's pnet key) and encodes/decodes the one-line invite
 * (`lattice1:…`: bootstrap addresses + mesh key). `createLibp2pTransport` is
 * the real adapter of core's Transport port: libp2p over TCP with pnet, noise,
 * yamux, identify, ping, gossipsub (signed, scored topics) and a private
 * Kademlia DHT; request/response runs one length-prefixed exchange per stream
 * with size and time bounds on both ends; bootstrap peers are redialled with
 * capped, jittered exponential backoff. Presets: `lan` (defaults) and `test`
 * (many nodes on loopback). Membership (heartbeats, failure detection) builds
 * on the Transport port, not on libp2p, so it runs unchanged in the simulator.
 */
// First: makes @libp2p/pnet use the pure-JS cipher (see pnet-cipher.ts).
import './pnet-cipher.ts'
export {
  IDENTITY_FILE,
  INVITE_PREFIX,
  MESH_KEY_FILE,
  assertMeshKey,
  decodeInvite,
  encodeInvite,
  generateMeshKey,
  loadOrCreateIdentity,
  loadOrCreateMeshKey,
  readMeshKey,
  writeMeshKey,
  type Invite,
  type NodeIdentity,
} from './identity.ts'
export {
  LIBP2P_TRANSPORT_DEFAULTS,
  LIBP2P_TRANSPORT_PRESETS,
  createLibp2pTransport,
  resolveLibp2pTransportConfig,
  type Libp2pTransport,
  type Libp2pTransportComponents,
  type Libp2pTransportConfig,
  type Libp2pTransportCounters,
  type Libp2pTransportInit,
} from './libp2p-transport.ts'
export { backoffDelayMs, type BootstrapBackoff } from './bootstrap-dialer.ts'
export { createMembership } from './membership.ts'
export { MEMBERSHIP_PRESETS, MEMBERSHIP_TOPIC, resolveMembershipConfig, type MembershipConfig, type MembershipPreset } from './membership-config.ts'
export type { MemberMeta, MemberState, MemberView, Membership, MembershipEvent, MembershipCounters, MembershipHealth, Resources } from './membership-types.ts'
