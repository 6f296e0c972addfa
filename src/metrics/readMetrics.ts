import { Counter, type Registry } from 'prom-client';

import type { ReadAdmission } from '../http/readConsistency.js';

/** How reads of content were admitted (see ReadAdmission): how much of the read load costs the master a round. */
export class ReadMetrics {
  private readonly reads: Counter<'via'>;

  constructor(registry: Registry) {
    this.reads = new Counter({
      name: 'conclave_reads_total',
      help: 'Reads of content admitted, by how: via="lease" (local, under the read lease), "read_index" (confirmed by the master), "stale" (asked for), "no_master".',
      labelNames: ['via'],
      registers: [registry],
    });
    for (const via of ['lease', 'read_index', 'stale', 'no_master']) this.reads.inc({ via }, 0);
  }

  readonly observe = (via: ReadAdmission): void => {
    this.reads.inc({ via });
  };
}
