import { unlink } from 'node:fs/promises';
import { basename, isAbsolute } from 'node:path';
import type { Logger } from 'pino';

import type { JobState } from '../core/clusterJobs.js';
import type { ClusterState } from '../core/clusterState.js';
import { backupJobName, scheduleProgressOf } from './backupSchedule.js';
import { prunableBy, type ScheduleDirectoryPolicy } from './scheduleDirectory.js';

/**
 * Deletes the scheduled backups this node holds once retention dropped them: on every node, whenever the backup
 * job's committed progress changes, each `pruned` entry whose holder is this node is unlinked — unless a record still
 * names the same file. The entries come only with the commit of a newer backup that verified, so nothing is deleted
 * before its successor is safe; the list keeps the last few, so a holder that was down or installed a snapshot when
 * one was dropped still deletes it when it next sees the job.
 */
export class BackupPruner {
  private lastJob: JobState | undefined;
  /** Paths deleted (or found gone) already: asked of the disk once. Bounded by the pruned list's own bound. */
  private readonly done = new Set<string>();
  private unsubscribe: (() => void) | null = null;

  constructor(
    private readonly runtime: { clusterState(): ClusterState; self(): { id: string }; onChange(listener: () => void): () => void },
    private readonly log: Logger,
    /** Only files in directories this node allows are deleted, whatever the progress names. */
    private readonly directories: ScheduleDirectoryPolicy,
  ) {}

  start(): void {
    this.unsubscribe = this.runtime.onChange(() => void this.prune().catch((err: unknown) => this.failed(err)));
    void this.prune().catch((err: unknown) => this.failed(err));
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  /**
   * Deletes what the committed progress says this node should; resolves with the paths deleted. Never rejects: it
   * runs on every change of the cluster state, and a progress it cannot read must not stop the node.
   */
  async prune(): Promise<string[]> {
    try {
      return await this.pruneNow();
    } catch (err) {
      this.failed(err);
      return [];
    }
  }

  private failed(err: unknown): void {
    this.log.error({ err }, 'deleting the scheduled backups retention dropped failed; tried again at the next change of the backup job');
  }

  private async pruneNow(): Promise<string[]> {
    const job = this.runtime.clusterState().jobs[backupJobName];
    if (job === undefined || job === this.lastJob) return [];
    this.lastJob = job;
    const progress = scheduleProgressOf(job.progress);
    const self = this.runtime.self().id;
    const recorded = new Set(progress.records.filter((r) => r.holder === self).map((r) => r.path));
    const deleted: string[] = [];
    for (const entry of progress.pruned) {
      // Only files the schedule itself names: a path is never taken from the state blindly.
      if (entry.holder !== self || recorded.has(entry.path) || this.done.has(entry.path)) continue;
      if (!isAbsolute(entry.path) || !/^conclave-.+\.backup\.tar$/.test(basename(entry.path))) continue;
      if (!prunableBy(this.directories, entry.path)) {
        this.log.warn({ path: entry.path }, 'a scheduled backup retention dropped is in a directory backup.directoriesAllowed does not allow; not deleted');
        this.done.add(entry.path);
        continue;
      }
      try {
        await unlink(entry.path);
        deleted.push(entry.path);
        this.log.info({ path: entry.path }, 'deleted a scheduled backup that retention dropped');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          this.log.warn({ err, path: entry.path }, 'could not delete a scheduled backup that retention dropped; it stays until deleted by hand');
        }
      }
      this.done.add(entry.path);
    }
    const current = new Set(progress.pruned.map((p) => p.path));
    for (const path of this.done) if (!current.has(path)) this.done.delete(path);
    return deleted;
  }
}
