import type { FastifyInstance } from 'fastify';

import { backupJobName, retryDelayMs, scheduleProgressOf, scheduleSettings } from '../../backup/backupSchedule.js';
import { nextSlotAfter } from '../../backup/scheduleSlots.js';
import { effectiveSettings } from '../../config/dynamicSettings.js';

/**
 *   GET /api/v1/admin/backups   (admin) the scheduled backups cluster-wide: every record (holder, file, index, size),
 *                               the last outcome and the last failure, the schedule settings and the job's claim
 *
 * Read from the cluster state this node has applied (the same on every node at an index), never forwarded.
 */
export async function scheduledBackupRoutes(app: FastifyInstance): Promise<void> {
  const { runtime } = app.conclave;

  app.get('/api/v1/admin/backups', { config: { permission: 'admin' } }, async () => {
    const state = runtime.clusterState();
    const job = state.jobs[backupJobName];
    const progress = scheduleProgressOf(job?.progress ?? null);
    const settings = scheduleSettings(state);
    const nameOf = (id: string) => state.nodes.find((n) => n.id === id)?.name ?? null;
    const effective = effectiveSettings(state.settings);
    const lastSlot = progress.lastSlot === null ? null : Date.parse(progress.lastSlot);
    const next = settings === null ? null : nextSlotAfter(settings.interval, lastSlot ?? Date.now());
    const failed = progress.lastOutcome !== null && !progress.lastOutcome.ok ? progress.lastOutcome : null;
    return {
      schedule: {
        enabled: settings !== null,
        directory: effective['backup.schedule.directory'],
        interval: effective['backup.schedule.interval'],
        keep: effective['backup.schedule.keep'],
        nextSlot: next === null ? null : new Date(next).toISOString(),
        ...(failed !== null ? { retryAfter: new Date(Date.parse(failed.at) + retryDelayMs(progress.failuresInARow)).toISOString() } : {}),
      },
      claim: job?.claim == null ? null : { owner: job.claim.owner, ownerName: nameOf(job.claim.owner), term: job.claim.term },
      version: job?.version ?? 0,
      lastSlot: progress.lastSlot,
      lastOutcome: progress.lastOutcome,
      lastFailure: progress.lastFailure,
      failuresInARow: progress.failuresInARow,
      skipped: { total: progress.skippedTotal, atLastBackup: progress.lastSkipped },
      backups: [...progress.records].reverse().map((r) => ({ ...r, holderName: nameOf(r.holder) ?? r.holderName })),
    };
  });
}
