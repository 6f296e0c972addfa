import { Counter, Gauge, type Registry } from 'prom-client';

import type { BackupObserver } from '../backup/backupService.js';

/**
 * Backups this node wrote: through the API (streamed to a client) or by the schedule (to a directory, on the master).
 * A streamed backup is completed once its client has read the last byte; a scheduled one once it is written,
 * synced and verified.
 */
export class BackupMetrics implements BackupObserver {
  private readonly backups: Counter<'outcome'>;
  private readonly written: Counter;
  private readonly lastSuccess: Gauge;
  private readonly lastBytes: Gauge;

  constructor(registry: Registry, inProgress: () => number) {
    const registers = [registry];
    this.backups = new Counter({
      name: 'conclave_backups_total',
      help: 'Backups this node wrote, by outcome ("completed" or "failed").',
      labelNames: ['outcome'],
      registers,
    });
    this.backups.inc({ outcome: 'completed' }, 0);
    this.backups.inc({ outcome: 'failed' }, 0);
    this.written = new Counter({
      name: 'conclave_backup_bytes_total',
      help: 'Bytes of the archives of completed backups.',
      registers,
    });
    this.lastSuccess = new Gauge({
      name: 'conclave_backup_last_success_timestamp_seconds',
      help: 'When this node last completed a backup, in seconds since the epoch (0: none since it started).',
      registers,
    });
    this.lastBytes = new Gauge({
      name: 'conclave_backup_last_success_bytes',
      help: 'Bytes of the archive of the last backup this node completed.',
      registers,
    });
    new Gauge({
      name: 'conclave_backups_in_progress',
      help: 'Backups this node is writing now.',
      registers,
      collect() {
        this.set(inProgress());
      },
    });
  }

  completed(bytes: number): void {
    this.backups.inc({ outcome: 'completed' });
    this.written.inc(bytes);
    this.lastSuccess.set(Date.now() / 1000);
    this.lastBytes.set(bytes);
  }

  failed(): void {
    this.backups.inc({ outcome: 'failed' });
  }
}
