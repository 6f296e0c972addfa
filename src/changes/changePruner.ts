import type { Logger } from 'pino';

import type { Command } from '../content/commands.js';
import { everyMemberAtLeast, type ClusterState } from '../core/clusterState.js';
import type { ChangeLog } from '../storage/changeLog.js';

/** The first release that applies pruneChanges entries: none is proposed while an older member could meet one. */
export const pruneChangesSinceVersion = '0.2.0';

export interface ChangeRetention {
  readonly retainEvents: number;
  readonly retainSeconds: number;
  readonly pruneIntervalMs: number;
  readonly pruneBatchEventsMax: number;
}

/**
 * Keeps the change feed within its retention: every pruneIntervalMs the master (and only it: the runtime refuses a
 * proposal elsewhere) works out from its own copy how far the feed may be pruned and proposes one pruneChanges entry
 * for it. Through the journal, every node drops exactly the same events at the same index, so the oldest position
 * the feed answers is the same everywhere. One proposal at a time; a proposal lost in a failover is simply made
 * again by the next master (pruning through an index twice changes nothing).
 */
export class ChangePruner {
  private timer: NodeJS.Timeout | null = null;
  private running = false;

  constructor(
    private readonly changes: ChangeLog,
    private readonly runtime: { propose(command: Command): Promise<unknown>; softState(): { readonly role: string }; clusterState(): ClusterState },
    private readonly retention: ChangeRetention,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    /** Webhooks that still need events (src/webhooks/webhookRetention.ts): pruning stops short of them. */
    private readonly holds?: { limit(through: number): number },
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.pruneOnce(), this.retention.pruneIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * Proposes pruning if this node is master and the feed exceeds its retention, a batch after another while the
   * batch bound cuts them short (so pruning keeps up with any write rate); resolves with the index pruned through,
   * or 0.
   */
  async pruneOnce(): Promise<number> {
    if (this.running || this.runtime.softState().role !== 'master') return 0;
    // During a rolling upgrade from a release without the feed, the feed grows until every member can prune it.
    if (!everyMemberAtLeast(this.runtime.clusterState(), pruneChangesSinceVersion)) return 0;
    this.running = true;
    try {
      let pruned = 0;
      for (;;) {
        const cutoffAt = new Date(this.now() - this.retention.retainSeconds * 1000).toISOString();
        const candidate = this.changes.pruneCandidate(this.retention.retainEvents, cutoffAt, this.retention.pruneBatchEventsMax);
        // Webhooks hold pruning back at what they have not delivered (within their backlog bound).
        const through = candidate.through === 0 || this.holds === undefined ? candidate.through : this.holds.limit(candidate.through);
        if (through <= this.changes.prunedThrough()) return pruned;
        await this.runtime.propose({ type: 'pruneChanges', through, time: new Date(this.now()).toISOString() });
        this.log.debug({ through }, 'pruned the change feed');
        pruned = through;
        if (!candidate.more || through < candidate.through || this.timer === null) return pruned;
      }
    } catch (err) {
      // Not master any more, a full write queue, a full disk: the next round (here or on the next master) tries again.
      this.log.info({ err }, 'pruning the change feed did not go through; tried again at the next round');
      return 0;
    } finally {
      this.running = false;
    }
  }
}
