import type { Logger } from 'pino';

import type { ClusterChange, ClusterState } from '../core/clusterState.js';
import type { ChangeLog } from '../storage/changeLog.js';

/**
 * What webhooks ask of the change feed's retention (src/changes/changePruner.ts): an active webhook keeps the events
 * after its committed mark, as long as they number at most webhooks.backlogEventsMax and the oldest of them is at
 * most webhooks.backlogSecondsMax old. A webhook further behind, whose
 * events retention would drop, is proposed broken with CHANGES_COMPACTED (shown by GET /api/v1/webhooks/{id}) and
 * holds nothing back any more: the operator decides (docs/operations.md).
 */
export class WebhookRetention {
  constructor(
    private readonly changes: ChangeLog,
    private readonly runtime: { clusterState(): ClusterState; proposeClusterChange(change: ClusterChange): void },
    private readonly backlog: { readonly eventsMax: number; readonly secondsMax: number },
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** The index retention may prune through, at most `through`, given the active webhooks' committed marks. */
  limit(through: number): number {
    let limited = through;
    for (const hook of Object.values(this.runtime.clusterState().webhooks)) {
      if (hook.state !== 'active') continue;
      // "After event k of entry N" needs the rest of entry N: pruning goes whole entries.
      const keepAfter = hook.mark.ordinal === null ? hook.mark.index : hook.mark.index - 1;
      if (keepAfter >= limited) continue;
      const pending = this.changes.countAfter(hook.mark);
      // Held too long as well as too many: a dead receiver on a quiet cluster must not keep old events (paths of
      // deleted content among them) past any retention.
      const oldestAt = this.changes.firstAtAfter(hook.mark);
      const heldMs = oldestAt === undefined ? 0 : this.now() - Date.parse(oldestAt);
      if (pending <= this.backlog.eventsMax && heldMs <= this.backlog.secondsMax * 1000) {
        limited = keepAfter;
        continue;
      }
      const why =
        pending > this.backlog.eventsMax
          ? `${pending} events were waiting for this webhook, more than webhooks.backlogEventsMax (${this.backlog.eventsMax})`
          : `its oldest undelivered event was ${Math.round(heldMs / 1000)} s old, more than webhooks.backlogSecondsMax (${this.backlog.secondsMax})`;
      const message =
        `${why}, and retention pruned the change feed through index ${through}: events were dropped before it got them. ` +
        'Delete it and register it again (resynchronise the receiver first).';
      this.log.warn({ webhook: hook.id, pending, through }, 'a webhook fell too far behind the change feed: marked broken, and retention goes on');
      try {
        this.runtime.proposeClusterChange({ type: 'webhookBroken', id: hook.id, code: 'CHANGES_COMPACTED', message, at: new Date(this.now()).toISOString() });
      } catch (err) {
        // Its delivery meets CHANGES_COMPACTED anyway once the events are gone, and marks it broken itself.
        this.log.info({ err, webhook: hook.id }, 'marking a webhook broken did not go through');
      }
    }
    return limited;
  }
}
