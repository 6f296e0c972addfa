import type { Logger } from 'pino';

import type { Command } from '../content/commands.js';
import { everyMemberAtLeast, type ClusterState } from '../core/clusterState.js';
import type { VersionTables } from '../storage/versionTables.js';

/**
 * The first release that keeps content history. A member of an older release would apply the same writes without
 * keeping versions, and the members' histories would differ for good: history starts only when every member runs
 * this release or a newer one, and a repository made by one starts with it (the bootstrap entry carries it).
 */
export const historySinceVersion = '0.4.0';

export interface HistorySettings {
  readonly versionsPerNodeMax: number;
  readonly retainSeconds: number;
  readonly pruneIntervalMs: number;
  readonly pruneBatchVersionsMax: number;
}

/**
 * Starts history and keeps it within its retention, from the master (and only there: the runtime refuses a proposal
 * elsewhere). Every pruneIntervalMs it proposes startHistory when history has not started and every member can keep
 * it; afterwards pruneVersions when the retention in force is not the settings' or versions have outlived
 * retainSeconds — one entry after another while the batch bound cuts them short. Through the journal, every node
 * drops exactly the same versions. A proposal lost in a failover is made again by the next master (dropping what is
 * already gone changes nothing).
 */
export class HistoryKeeper {
  private timer: NodeJS.Timeout | null = null;
  private running = false;

  constructor(
    private readonly versions: VersionTables,
    private readonly runtime: { propose(command: Command): Promise<unknown>; softState(): { readonly role: string }; clusterState(): ClusterState },
    private readonly settings: HistorySettings,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.keepOnce(), this.settings.pruneIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** One round; resolves with the number of entries proposed (for tests). */
  async keepOnce(): Promise<number> {
    if (this.running || this.runtime.softState().role !== 'master') return 0;
    this.running = true;
    let proposed = 0;
    try {
      const retention = this.versions.retention();
      if (retention === undefined) {
        if (!everyMemberAtLeast(this.runtime.clusterState(), historySinceVersion)) return 0;
        await this.runtime.propose({ type: 'startHistory', versionsPerNodeMax: this.settings.versionsPerNodeMax, time: this.time() });
        this.log.info({ versionsPerNodeMax: this.settings.versionsPerNodeMax }, 'started keeping content history');
        return 1;
      }
      for (;;) {
        const cutoff = this.cutoff();
        const aged = cutoff !== null && this.versions.anySupersededBefore(cutoff);
        const retentionChanged = this.versions.retention()?.versionsPerNodeMax !== this.settings.versionsPerNodeMax;
        if (!aged && !retentionChanged) return proposed;
        await this.runtime.propose({
          type: 'pruneVersions',
          versionsPerNodeMax: this.settings.versionsPerNodeMax,
          // Before any time there is: nothing has aged when retainSeconds is 0.
          supersededBefore: cutoff ?? '',
          versionsMax: this.settings.pruneBatchVersionsMax,
          time: this.time(),
        });
        proposed++;
        this.log.debug({ cutoff }, 'pruned content history');
        if (this.timer === null) return proposed;
      }
    } catch (err) {
      // Not master any more, a full write queue, a full disk: the next round (here or on the next master) tries again.
      this.log.info({ err }, 'keeping content history did not go through; tried again at the next round');
      return proposed;
    } finally {
      this.running = false;
    }
  }

  private time(): string {
    return new Date(this.now()).toISOString();
  }

  /** Versions superseded before this go; null while retainSeconds is 0 (kept whatever their age). */
  private cutoff(): string | null {
    return this.settings.retainSeconds === 0 ? null : new Date(this.now() - this.settings.retainSeconds * 1000).toISOString();
  }
}
