/**
 * The round trip this node sees to its peers, smoothed (Jacobson/Karels, as
 * TCP's retransmission timer, RFC 6298): a probe timeout below the actual
 * round trip fails every direct ping, so each probe round falls back to
 * helpers whose pings fail the same way — a slow network then carries several
 * times its usual probe traffic and sees suspicions it did not earn. The
 * timeout follows srtt + 4 × rttvar, never below the configured floor (which
 * holds on a healthy network) nor above the ceiling (a slower answer is
 * treated as none).
 *
 * Samples come from direct pings only, including acks that arrive after the
 * probe gave up on them (membership.ts keeps the request open for that), so
 * a network slower than the current timeout is still measured.
 */

/** Weight of a new sample in the smoothed round trip (RFC 6298's α). */
const SMOOTHING = 1 / 8
/** Weight of a new deviation in the smoothed variation (RFC 6298's β). */
const VARIATION_SMOOTHING = 1 / 4
/** Variations above the mean a timeout allows (RFC 6298's K). */
const VARIATIONS = 4

export class RoundTripEstimator {
  private smoothedMs: number | undefined
  private variationMs = 0

  sample(roundTripMs: number): void {
    if (!Number.isFinite(roundTripMs) || roundTripMs < 0) return
    if (this.smoothedMs === undefined) {
      this.smoothedMs = roundTripMs
      this.variationMs = roundTripMs / 2
      return
    }
    this.variationMs = (1 - VARIATION_SMOOTHING) * this.variationMs + VARIATION_SMOOTHING * Math.abs(this.smoothedMs - roundTripMs)
    this.smoothedMs = (1 - SMOOTHING) * this.smoothedMs + SMOOTHING * roundTripMs
  }

  /** The smoothed round trip, or undefined before the first sample. */
  smoothed(): number | undefined {
    return this.smoothedMs
  }

  /** srtt + 4 × rttvar within [floorMs, ceilingMs]; the floor until a sample arrives. */
  timeoutMs(floorMs: number, ceilingMs: number): number {
    if (this.smoothedMs === undefined) return floorMs
    return Math.min(Math.max(floorMs, ceilingMs), Math.max(floorMs, Math.ceil(this.smoothedMs + VARIATIONS * this.variationMs)))
  }
}
