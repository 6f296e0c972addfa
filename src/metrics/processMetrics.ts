import { collectDefaultMetrics, type Registry } from 'prom-client';

/**
 * The process's own series from prom-client, under their usual names (process_cpu_seconds_total,
 * process_resident_memory_bytes, process_open_fds, nodejs_heap_size_used_bytes, nodejs_gc_duration_seconds, and the
 * event-loop delay nodejs_eventloop_lag_seconds with its p50/p90/p99 and max since the previous scrape): dashboards
 * for any Node.js service read them as they are, so they keep no conclave_ prefix.
 *
 * A held event loop delays heartbeats (a master whose loop stalls past an election timeout loses its mastership), so
 * the delay is sampled every 10 ms.
 */
export function registerProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 10 });
}
