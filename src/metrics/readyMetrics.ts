import { Histogram, type Registry } from 'prom-client';

import type { ClusterReady } from '../core/clusterCoordinator.js';
import type { ReadyObserver } from '../node/clusterRuntime.js';

/**
 * The runtime's Ready transactions (src/node/clusterRuntime.ts: one SQLite transaction per Ready, fsynced at its
 * commit, that writes the journal entries and hard state and applies the committed entries): how long each took and
 * how many entries it carried. Readies that wrote nothing (messages only) are left out: they cost no fsync and
 * would hide the ones that did.
 */
export class ReadyMetrics implements ReadyObserver {
  private readonly duration: Histogram;
  private readonly entries: Histogram<'kind'>;

  constructor(registry: Registry) {
    this.duration = new Histogram({
      name: 'conclave_ready_persist_duration_seconds',
      help: 'Time of one Ready transaction that wrote something: journal entries, hard state and applied entries, with its fsync.',
      // An fsync on a good SSD is ~0.1-1 ms; a loaded disk or a network volume takes tens or hundreds.
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    });
    this.entries = new Histogram({
      name: 'conclave_ready_entries',
      help: 'Entries per Ready that carried any: kind="appended" new journal entries, kind="applied" committed entries applied.',
      labelNames: ['kind'],
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096],
      registers: [registry],
    });
  }

  persisted(ready: ClusterReady, durationMs: number): void {
    const wrote = ready.entries.length > 0 || ready.committed.length > 0 || ready.hardState !== undefined || ready.snapshot !== undefined;
    if (!wrote) return;
    this.duration.observe(durationMs / 1000);
    if (ready.entries.length > 0) this.entries.observe({ kind: 'appended' }, ready.entries.length);
    if (ready.committed.length > 0) this.entries.observe({ kind: 'applied' }, ready.committed.length);
  }
}
