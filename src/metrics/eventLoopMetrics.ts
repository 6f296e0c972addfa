import { performance } from 'node:perf_hooks';
import { Histogram, type Registry } from 'prom-client';

/** How often the event loop is sampled: a stall overlapping a sample's due time is measured by how late it runs. */
const sampleIntervalMs = 20;

/**
 * The event loop's delay as a histogram: a timer due every 20 ms records how late it ran. A held loop delays
 * heartbeats and timeouts (a master whose loop stalls past an election timeout loses its mastership), and a
 * histogram sums across nodes and scrapes: rate() and histogram_quantile() give the delay over any window, whoever
 * scrapes how often. (prom-client's nodejs_eventloop_lag_* gauges reset at every scrape, so two scrapers each see
 * half, and a scrape right after another reads NaN: they are left out.)
 */
export class EventLoopMetrics {
  private readonly delay: Histogram;
  private timer: NodeJS.Timeout | null = null;

  constructor(registry: Registry) {
    this.delay = new Histogram({
      name: 'conclave_event_loop_delay_seconds',
      help: `How late a timer due every ${sampleIntervalMs} ms ran: the event loop's delay, sampled.`,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
  }

  start(): void {
    if (this.timer !== null) return;
    let dueMs = performance.now() + sampleIntervalMs;
    this.timer = setInterval(() => {
      const now = performance.now();
      this.delay.observe(Math.max(0, now - dueMs) / 1000);
      dueMs = now + sampleIntervalMs;
    }, sampleIntervalMs);
    // The sampling keeps no process alive.
    this.timer.unref();
  }

  close(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
