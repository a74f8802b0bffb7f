/**
 * Keeps this node connected to its bootstrap addresses: dials each at start,
 * retries a failed dial with capped exponential backoff, and redials a
 * bootstrap peer after it disconnects. Jitter is derived from this node's id
 * and the address (no Rng needed): nodes that lost the same peer at the same
 * moment spread their redials instead of arriving together.
 */
import type { Clock, Logger, Startable, TimerHandle } from '../core/index.ts'
import { fnv1a32 } from '../core/index.ts'

export interface BootstrapBackoff {
  /** Delay before the first retry, and before redialling a lost peer. */
  initialDelayMs: number
  /** Upper bound of the delay between attempts. */
  delayMaxMs: number
  /** Each consecutive failure multiplies the delay by this. */
  factor: number
  /** Fraction of the delay added as per-node jitter, in [0, 1]. */
  jitterRatio: number
}

export interface BootstrapDialerInit {
  addresses: string[]
  backoff: BootstrapBackoff
  /** Seeds the jitter; this node's PeerId. */
  selfId: string
}

export interface BootstrapDialerComponents {
  clock: Clock
  logger: Logger
  /** Dials an address and resolves to the remote PeerId. */
  dial: (address: string) => Promise<string>
  isConnected: (peerId: string) => boolean
}

export interface BootstrapDialer extends Startable {
  /** Tells the dialer a peer disconnected; a bootstrap peer is redialled. */
  peerDisconnected(peerId: string): void
  /** Dial attempts made since start (successful or not). */
  attempts(): number
}

interface Target {
  address: string
  peerId: string | undefined
  failures: number
  timer: TimerHandle | undefined
  dialing: boolean
}

/** The delay before attempt number `failures` (>= 1) is retried. */
export function backoffDelayMs(backoff: BootstrapBackoff, failures: number, jitterKey: string): number {
  const base = Math.min(backoff.delayMaxMs, backoff.initialDelayMs * backoff.factor ** Math.max(0, failures - 1))
  const unit = fnv1a32(`${jitterKey}#${failures}`) / 0x1_0000_0000
  return Math.round(base * (1 + backoff.jitterRatio * unit))
}

export function createBootstrapDialer(init: BootstrapDialerInit, components: BootstrapDialerComponents): BootstrapDialer {
  const { clock, logger, dial, isConnected } = components
  const targets: Target[] = init.addresses.map((address) => ({
    address,
    peerId: peerIdOf(address),
    failures: 0,
    timer: undefined,
    dialing: false,
  }))
  let running = false
  let attemptCount = 0

  const schedule = (target: Target, delayMs: number): void => {
    target.timer?.cancel()
    target.timer = clock.setTimer(delayMs, () => {
      target.timer = undefined
      void attempt(target)
    })
  }

  const attempt = async (target: Target): Promise<void> => {
    if (!running || target.dialing) return
    if (target.peerId !== undefined && isConnected(target.peerId)) {
      target.failures = 0
      return
    }
    target.dialing = true
    attemptCount++
    try {
      target.peerId = await dial(target.address)
      target.failures = 0
      logger.debug({ address: target.address, peerId: target.peerId }, 'bootstrap peer connected')
    } catch (err) {
      target.failures++
      const delayMs = backoffDelayMs(init.backoff, target.failures, `${init.selfId} ${target.address}`)
      logger.debug({ address: target.address, failures: target.failures, delayMs, err: String(err) }, 'bootstrap dial failed')
      if (running) schedule(target, delayMs)
    } finally {
      target.dialing = false
    }
  }

  return {
    start: async () => {
      running = true
      for (const target of targets) schedule(target, 0)
    },
    stop: async () => {
      running = false
      for (const target of targets) {
        target.timer?.cancel()
        target.timer = undefined
      }
    },
    peerDisconnected: (peerId) => {
      if (!running) return
      for (const target of targets) {
        if (target.peerId === peerId && target.timer === undefined && !target.dialing) {
          schedule(target, backoffDelayMs(init.backoff, 1, `${init.selfId} ${target.address}`))
        }
      }
    },
    attempts: () => attemptCount,
  }
}

/** The PeerId an address names in its `/p2p/` part, if any (not validated: the dial is). */
export function peerIdOf(address: string): string | undefined {
  const match = /\/p2p\/([^/]+)/.exec(address)
  return match?.[1]
}
