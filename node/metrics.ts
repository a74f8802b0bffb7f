/**
 * Prometheus figures of one node (prom-client). Each node owns a Registry, so
 * several nodes in one process (tests, the in-process mesh) never collide.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

export interface NodeMetrics {
  registry: Registry
  httpRequests: Counter<'method' | 'route' | 'status'>
  httpDurationSeconds: Histogram<'method' | 'route'>
  reconcileRuns: Counter<'outcome'>
  reconcileDurationSeconds: Histogram
  reconcileActions: Counter<'action'>
  replicaRestarts: Counter
  runtimeErrors: Counter<'code'>
  runtimeAvailable: Gauge
  containers: Gauge<'state'>
  acceptToRunningSeconds: Histogram
  /** Registers a gauge whose value is read at scrape time. */
  gaugeFrom(name: string, help: string, read: () => number): void
  /** Registers a gauge with one label whose values are read at scrape time. */
  gaugeByLabel(name: string, help: string, label: string, read: () => Record<string, number>): void
}

export function createNodeMetrics(init: { processMetrics: boolean }): NodeMetrics {
  const registry = new Registry()
  if (init.processMetrics) collectDefaultMetrics({ register: registry, prefix: 'lattice_' })
  const registers = [registry]
  return {
    registry,
    httpRequests: new Counter({ name: 'lattice_http_requests_total', help: 'API requests answered', labelNames: ['method', 'route', 'status'], registers }),
    httpDurationSeconds: new Histogram({ name: 'lattice_http_request_duration_seconds', help: 'API request duration', labelNames: ['method', 'route'], buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers }),
    reconcileRuns: new Counter({ name: 'lattice_reconcile_runs_total', help: 'Reconciler passes by outcome', labelNames: ['outcome'], registers }),
    reconcileDurationSeconds: new Histogram({ name: 'lattice_reconcile_duration_seconds', help: 'Reconciler pass duration', buckets: [0.001, 0.01, 0.05, 0.1, 0.5, 1, 5], registers }),
    reconcileActions: new Counter({ name: 'lattice_reconcile_actions_total', help: 'Container actions taken by the reconciler', labelNames: ['action'], registers }),
    replicaRestarts: new Counter({ name: 'lattice_replica_restarts_total', help: 'Replicas restarted after a crash', registers }),
    runtimeErrors: new Counter({ name: 'lattice_runtime_errors_total', help: 'Runtime calls that failed, by code', labelNames: ['code'], registers }),
    runtimeAvailable: new Gauge({ name: 'lattice_runtime_available', help: '1 when the container engine answers', registers }),
    containers: new Gauge({ name: 'lattice_containers', help: "This node's containers by state", labelNames: ['state'], registers }),
    acceptToRunningSeconds: new Histogram({ name: 'lattice_accept_to_running_seconds', help: 'From deploy accepted to replica running on this node', buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30], registers }),
    gaugeFrom(name, help, read) {
      new Gauge({ name, help, registers, collect() { this.set(read()) } })
    },
    gaugeByLabel(name, help, label, read) {
      new Gauge({
        name,
        help,
        labelNames: [label],
        registers,
        collect() {
          for (const [value, count] of Object.entries(read())) this.set({ [label]: value }, count)
        },
      })
    },
  }
}
