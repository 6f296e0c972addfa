import type { ChangeEvent, ChangeOp, FeedPosition } from '../content/changes.js';
import { formatFeedPosition, positionOf } from '../content/changes.js';
import { isSameOrDescendant } from '../content/paths.js';
import { ConclaveError } from '../errors/catalogue.js';
import type { ChangeLog } from '../storage/changeLog.js';

/** Which events a reader wants; every field absent: all. */
export interface FeedFilter {
  /** A subtree: events whose path, or whose old path for a move, is this node or below it. */
  readonly under?: string;
  readonly types?: ReadonlySet<string>;
  readonly ops?: ReadonlySet<ChangeOp>;
}

export interface FeedPage {
  readonly events: ChangeEvent[];
  /** Where the next page starts: after the last event read (matching or not), or the applied index at the end. */
  readonly next: FeedPosition;
  /** Whether the page stopped at its limit (or the scan's) before the end of the feed: more may be read at once. */
  readonly more: boolean;
}

/** What the feed needs of the node: its applied index and word of each applied Ready. */
export interface AppliedSource {
  readonly appliedIndex: number;
  onApplied(listener: () => void): () => void;
}

export interface FeedLimits {
  /** Events read (matching the filter or not) per page at most: a narrow filter cannot make one page scan the table. */
  readonly scanEventsMax: number;
}

export function matches(event: ChangeEvent, filter: FeedFilter): boolean {
  if (filter.types !== undefined && !filter.types.has(event.type)) return false;
  if (filter.ops !== undefined && !filter.ops.has(event.op)) return false;
  if (filter.under === undefined) return true;
  return isSameOrDescendant(event.path, filter.under) || (event.from !== undefined && isSameOrDescendant(event.from, filter.under));
}

/**
 * Reads the change feed (the events apply() recorded, src/storage/changeLog.ts) for the HTTP API: pages from a
 * position, and a wait for the next applied entry. Everything here runs on the event loop between Readys, so a
 * page and the applied index it reports always agree: every entry up to it has recorded its events.
 */
export class ChangeFeed {
  constructor(
    private readonly log: ChangeLog,
    private readonly source: AppliedSource,
    private readonly limits: FeedLimits,
  ) {}

  /** The feed answers positions from here on (the events of entries up to it were pruned). */
  get oldestPosition(): number {
    return this.log.prunedThrough();
  }

  /** Refuses a position the feed no longer answers (retention pruned what follows it), naming the oldest it does. */
  checkAvailable(since: FeedPosition): void {
    const oldest = this.log.prunedThrough();
    // N:k is before the rest of entry N, which pruning through N dropped with the entry.
    if (since.index < oldest || (since.index === oldest && since.ordinal !== null && oldest > 0)) {
      throw new ConclaveError(
        'CHANGES_COMPACTED',
        `The change feed no longer holds the events after ${formatFeedPosition(since)}: retention dropped everything through index ${oldest}. ` +
          `Resynchronise (read the content you follow), then follow the feed from since=${oldest}.`,
        { since: formatFeedPosition(since), oldest },
      );
    }
  }

  /**
   * Up to `limit` matching events after `since` (whose index this node has applied), reading at most
   * scanEventsMax events. Throws CHANGES_COMPACTED if retention dropped events after `since`.
   */
  page(since: FeedPosition, filter: FeedFilter, limit: number): FeedPage {
    this.checkAvailable(since);
    const events: ChangeEvent[] = [];
    let scanned = 0;
    let next = since;
    for (const event of this.log.eventsAfter(since)) {
      if (events.length === limit || scanned === this.limits.scanEventsMax) return { events, next, more: true };
      scanned++;
      next = positionOf(event);
      if (matches(event, filter)) events.push(event);
    }
    // Read to the end: every entry up to the applied index has recorded its events, so the next page starts
    // after it (entries without events — users, cluster state — need no reading again).
    const applied = this.source.appliedIndex;
    return { events, next: applied > next.index ? { index: applied, ordinal: null } : next, more: false };
  }

  /**
   * Resolves once an entry after `index` is applied (at once if one is), or when `timeoutMs` passes or `signal`
   * aborts; false in those two cases.
   */
  waitForEntryAfter(index: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.source.appliedIndex > index) return Promise.resolve(true);
    if (signal?.aborted === true) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const finish = (outcome: boolean) => {
        clearTimeout(timer);
        unsubscribe();
        signal?.removeEventListener('abort', onAbort);
        resolve(outcome);
      };
      const onAbort = () => finish(false);
      const timer = setTimeout(() => finish(false), timeoutMs);
      const unsubscribe = this.source.onApplied(() => {
        if (this.source.appliedIndex > index) finish(true);
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** An event as the API sends it (JSON page item, SSE data). */
export function eventJson(event: ChangeEvent): Record<string, unknown> {
  return {
    position: formatFeedPosition(positionOf(event)),
    index: event.index,
    ordinal: event.ordinal,
    op: event.op,
    path: event.path,
    ...(event.from !== undefined ? { from: event.from } : {}),
    id: event.id,
    type: event.type,
    version: event.version,
    by: event.by,
    at: event.at,
    ...(event.property !== undefined ? { property: event.property } : {}),
  };
}
