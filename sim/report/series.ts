/**
 * Time series a scenario records for the report's plots, and the recorder
 * that keeps them small. A report's optional `series` field is a `SimSeries`;
 * every series is optional, and a plot whose series is absent is skipped (the
 * report says so).
 *
 * Bounded memory: each series keeps at most `pointsMax` points (default
 * 2,000). Points arrive in order; the recorder keeps every `stride`-th one,
 * and when the buffer is full it drops every other kept point and doubles the
 * stride, so what remains is an even sample of the whole run, never just its
 * start; a series over the bound ends with between pointsMax/2 and pointsMax
 * points. `aliveCount` keeps at most `observersMax` observers (default 4):
 * the first ones it is given; samples for others are ignored; each observer
 * gets an equal share of the bound (pointsMax / observersMax). `totals` says
 * how many points each series was offered (for the kept observers), so a
 * reader can tell a sample from the whole. Deterministic: no randomness.
 *
 * Times are virtual milliseconds since the run began (SimDriver.elapsedMs()).
 */

export interface AliveCountPoint {
  tMs: number
  /** Who is counting: a node index or PeerId, as a string. */
  observer: string
  /** Members this observer currently holds alive (itself included). */
  alive: number
}

export interface DetectionPoint {
  /** The killed node. */
  subject: string
  killedAtMs: number
  /** When `observer` marked `subject` dead. */
  detectedAtMs: number
  observer: string
}

export interface FailoverPoint {
  /** The replica that had to move, e.g. "web/0". */
  replica: string
  /** When the node running it was killed. */
  killedAtMs: number
  /** When the replacement ran on another node. */
  runningAtMs: number
}

export interface GossipBytesPoint {
  tMs: number
  /** Bytes received per alive node per second over the sample interval. */
  bytesPerNodePerSecond: number
}

export interface HeadsPoint {
  tMs: number
  /** Distinct document heads across alive nodes; 1 means converged. */
  distinctHeads: number
}

export interface SimSeries {
  aliveCount?: AliveCountPoint[]
  detections?: DetectionPoint[]
  failovers?: FailoverPoint[]
  /** Accept → running latency of each placement, ms (a sample when over the bound). */
  placeLatenciesMs?: number[]
  gossipBytes?: GossipBytesPoint[]
  heads?: HeadsPoint[]
  /** Points offered per series before sampling (present for every recorded series). */
  totals?: Partial<Record<SeriesName, number>>
}

export type SeriesName = 'aliveCount' | 'detections' | 'failovers' | 'placeLatenciesMs' | 'gossipBytes' | 'heads'

export const SERIES_NAMES: readonly SeriesName[] = ['aliveCount', 'detections', 'failovers', 'placeLatenciesMs', 'gossipBytes', 'heads']

export interface SeriesRecorderInit {
  /** Points kept per series at most. Default 2,000. */
  pointsMax?: number
  /** Observers kept for aliveCount; samples from further observers are ignored. Default 4. */
  observersMax?: number
}

export const SERIES_DEFAULTS: Required<SeriesRecorderInit> = { pointsMax: 2_000, observersMax: 4 }

/** Keeps an even sample of at most `capacity` items of a stream (see the header). */
export class Decimator<T> {
  private readonly kept: T[] = []
  private stride = 1
  private offered = 0

  constructor(private readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 2) throw new RangeError('Decimator capacity must be an integer ≥ 2')
  }

  push(item: T): void {
    const index = this.offered++
    if (index % this.stride !== 0) return
    if (this.kept.length >= this.capacity) {
      // Keep the items at even positions: those whose index is a multiple of the doubled stride.
      let write = 0
      for (let read = 0; read < this.kept.length; read += 2) this.kept[write++] = this.kept[read] as T
      this.kept.length = write
      this.stride *= 2
      if (index % this.stride !== 0) return
    }
    this.kept.push(item)
  }

  /** Items offered so far, kept or not. */
  total(): number {
    return this.offered
  }

  values(): T[] {
    return [...this.kept]
  }
}

/**
 * What a scenario calls while it runs; `toSeries()` gives the report's
 * `series` field (only the series that received points).
 */
export class SeriesRecorder {
  readonly pointsMax: number
  readonly observersMax: number
  private readonly alive = new Map<string, Decimator<AliveCountPoint>>()
  /** Points offered for the kept observers (others are not sampled, just not recorded). */
  private aliveOffered = 0
  private readonly detectionPoints: Decimator<DetectionPoint>
  private readonly failoverPoints: Decimator<FailoverPoint>
  private readonly placeLatencies: Decimator<number>
  private readonly gossipPoints: Decimator<GossipBytesPoint>
  private readonly headsPoints: Decimator<HeadsPoint>

  constructor(init: SeriesRecorderInit = {}) {
    this.pointsMax = init.pointsMax ?? SERIES_DEFAULTS.pointsMax
    this.observersMax = init.observersMax ?? SERIES_DEFAULTS.observersMax
    this.detectionPoints = new Decimator(this.pointsMax)
    this.failoverPoints = new Decimator(this.pointsMax)
    this.placeLatencies = new Decimator(this.pointsMax)
    this.gossipPoints = new Decimator(this.pointsMax)
    this.headsPoints = new Decimator(this.pointsMax)
  }

  /** `observer` holds `alive` members alive at `tMs`. Sample a few observers every few virtual seconds. */
  aliveCount(tMs: number, observer: string | number, alive: number): void {
    const key = String(observer)
    let series = this.alive.get(key)
    if (series === undefined) {
      if (this.alive.size >= this.observersMax) return
      series = new Decimator(Math.max(2, Math.floor(this.pointsMax / this.observersMax)))
      this.alive.set(key, series)
    }
    this.aliveOffered++
    series.push({ tMs, observer: key, alive })
  }

  /** `observer` marked `subject`, killed at `killedAtMs`, dead at `detectedAtMs`. */
  detection(subject: string | number, killedAtMs: number, detectedAtMs: number, observer: string | number): void {
    this.detectionPoints.push({ subject: String(subject), killedAtMs, detectedAtMs, observer: String(observer) })
  }

  /** `replica` lost its node at `killedAtMs` and ran again elsewhere at `runningAtMs`. */
  failover(replica: string, killedAtMs: number, runningAtMs: number): void {
    this.failoverPoints.push({ replica, killedAtMs, runningAtMs })
  }

  /** One placement's accept → running latency. */
  placeLatency(ms: number): void {
    this.placeLatencies.push(ms)
  }

  gossipBytes(tMs: number, bytesPerNodePerSecond: number): void {
    this.gossipPoints.push({ tMs, bytesPerNodePerSecond })
  }

  heads(tMs: number, distinctHeads: number): void {
    this.headsPoints.push({ tMs, distinctHeads })
  }

  toSeries(): SimSeries {
    const series: SimSeries = {}
    const totals: Partial<Record<SeriesName, number>> = {}
    if (this.alive.size > 0) {
      series.aliveCount = [...this.alive.values()].flatMap((d) => d.values())
      totals.aliveCount = this.aliveOffered
    }
    const add = <K extends Exclude<SeriesName, 'aliveCount'>>(name: K, d: Decimator<NonNullable<SimSeries[K]>[number]>): void => {
      if (d.total() === 0) return
      ;(series as Record<K, unknown>)[name] = d.values()
      totals[name] = d.total()
    }
    add('detections', this.detectionPoints)
    add('failovers', this.failoverPoints)
    add('placeLatenciesMs', this.placeLatencies)
    add('gossipBytes', this.gossipPoints)
    add('heads', this.headsPoints)
    if (Object.keys(totals).length > 0) series.totals = totals
    return series
  }
}
