import { collectDefaultMetrics, type Registry } from 'prom-client';

/** prom-client's event-loop gauges: reset at each scrape (see eventLoopMetrics.ts for what replaces them). */
const perScrapeEventLoopGauges = ['', '_min', '_max', '_mean', '_stddev', '_p50', '_p90', '_p99'].map((suffix) => `nodejs_eventloop_lag${suffix}_seconds`);

/**
 * The process's own series from prom-client, under their usual names (process_cpu_seconds_total,
 * process_resident_memory_bytes, process_open_fds, nodejs_heap_size_used_bytes, nodejs_gc_duration_seconds…):
 * dashboards for any Node.js service read them as they are, so they keep no conclave_ prefix.
 */
export function registerProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
  for (const name of perScrapeEventLoopGauges) registry.removeSingleMetric(name);
}
