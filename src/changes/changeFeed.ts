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
  /**
   * The reader's access (src/http/readAccess.ts): an event is delivered only when the reader may read its path at
   * delivery. `readerKey` names the reader for the pages streams share (equal keys, equal access).
   */
  readonly visible?: (nodeId: string, path: string) => boolean;
  readonly readerKey?: string;
}

/**
 * An event with its JSON and its Server-Sent Events frame as the API sends them, made once however many readers
 * send them; the frame already in UTF-8, so that a stream copies bytes instead of encoding the same text again.
 */
export interface FeedItem {
  readonly event: ChangeEvent;
  readonly json: string;
  readonly frame: Buffer;
}

function itemOf(event: ChangeEvent): FeedItem {
  const json = JSON.stringify(eventJson(event));
  return { event, json, frame: Buffer.from(`id: ${formatFeedPosition(positionOf(event))}\ndata: ${json}\n\n`, 'utf8') };
}

/**
 * A reader that follows the feed for as long as it lives (an event stream): woken once per round of news instead of
 * waiting on a promise, a timer and an abort listener of its own each time — with many streams, those were a good
 * part of what each event cost the node.
 */
export interface FeedFollower {
  /** Entries may have been applied since the last round: read on, unless busy (the next step reads them anyway). */
  wake(): void;
}

/** A page, and the frames of its items one after the other (empty for an empty page). */
export interface FeedChunk {
  readonly page: FeedPage;
  readonly frames: Buffer;
}

/** Names a filter: equal filters, equal keys. */
export function filterKey(filter: FeedFilter): string {
  return JSON.stringify([filter.under ?? null, filter.types === undefined ? null : [...filter.types].sort(), filter.ops === undefined ? null : [...filter.ops].sort(), filter.readerKey ?? null]);
}

export interface FeedPage {
  readonly items: FeedItem[];
  /** Where the next page starts: after the last event read (matching or not), or the applied index at the end. */
  readonly next: FeedPosition;
  /** Whether the page stopped at its limit (or the scan's) before the end of the feed: more may be read at once. */
  readonly more: boolean;
}

/**
 * What the feed needs of the node (the runtime): its applied index, and word after each drain that applied entries
 * or installed a snapshot — onChange, not onApplied, which a snapshot install does not call.
 */
export interface AppliedSource {
  readonly appliedIndex: number;
  onChange(listener: () => void): () => void;
}

export interface FeedLimits {
  /** Events read (matching the filter or not) per page at most: a narrow filter cannot make one page scan the table. */
  readonly scanEventsMax: number;
  /** The newest events kept in memory, with their JSON, for the readers that follow the feed closely. */
  readonly recentEventsMax: number;
  /** And at most this many bytes of their JSON. */
  readonly recentBytesMax: number;
  /** Word of new events goes to waiting readers at most this often: one wake-up per reader for many Readys. */
  readonly fanOutIntervalMs: number;
}

export function matches(event: ChangeEvent, filter: FeedFilter): boolean {
  if (filter.types !== undefined && !filter.types.has(event.type)) return false;
  if (filter.ops !== undefined && !filter.ops.has(event.op)) return false;
  if (filter.visible !== undefined && !filter.visible(event.id, event.path)) return false;
  if (filter.under === undefined) return true;
  return isSameOrDescendant(event.path, filter.under) || (event.from !== undefined && isSameOrDescendant(event.from, filter.under));
}

/** Orders positions; "after all of entry N" (ordinal null) comes after every event of N. */
function compare(a: FeedPosition, b: FeedPosition): number {
  if (a.index !== b.index) return a.index - b.index;
  if (a.ordinal === b.ordinal) return 0;
  if (a.ordinal === null) return 1;
  if (b.ordinal === null) return -1;
  return a.ordinal - b.ordinal;
}

/** Events read from the table per statement when the memory catches up with applied entries. */
const refreshBatchEvents = 256;

/** The position of an event itself (index and ordinal, whether or not it is its entry's last). */
const exactly = (event: ChangeEvent): FeedPosition => ({ index: event.index, ordinal: event.ordinal });

/**
 * Reads the change feed (the events apply() recorded, src/storage/changeLog.ts) for the HTTP API: pages from a
 * position, and a wait for new events. Everything here runs on the event loop between Readys, so a page and the
 * applied index it reports always agree: every entry up to it has recorded its events.
 *
 * Readers that follow the feed closely (every stream, most long-polls) read the newest events over and over: they
 * are kept in memory, each with its JSON made once, and read from the table once per applied batch however many
 * readers there are. Older positions are read from the table.
 */
export class ChangeFeed {
  /** The newest events, complete after `recentAfter` and through `recentThrough` (an applied index). */
  private recent: FeedItem[] = [];
  private recentBytes = 0;
  private recentAfter: FeedPosition | null = null;
  private recentThrough = 0;
  private recentGeneration = -1;
  private readonly waiting = new Set<() => void>();
  private readonly followers = new Set<FeedFollower>();
  /** Pages with their frames in one buffer, by filter, position and limit, for the applied index and generation they were read at. */
  private readonly chunks = new Map<string, FeedChunk>();
  private chunksBytes = 0;
  private chunksAt = { applied: -1, generation: -1 };
  private fanOut: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;

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
   * scanEventsMax events and, with `bytesMax`, stopping before the events' JSON would pass it (the first is always
   * taken). Throws CHANGES_COMPACTED if retention dropped events after `since`.
   */
  page(since: FeedPosition, filter: FeedFilter, limit: number, bytesMax = Infinity): FeedPage {
    this.checkAvailable(since);
    this.refreshRecent();
    const items: FeedItem[] = [];
    let scanned = 0;
    let bytes = 0;
    let next = since;
    for (const found of this.itemsAfter(since)) {
      if (items.length === limit || scanned === this.limits.scanEventsMax) return { items, next, more: true };
      const event = 'frame' in found ? found.event : found;
      if (matches(event, filter)) {
        // From the table, an event's JSON is made only once it is known to be sent.
        const item = 'frame' in found ? found : itemOf(found);
        bytes += item.json.length + 1;
        if (bytes > bytesMax && items.length > 0) return { items, next, more: true };
        items.push(item);
      }
      scanned++;
      next = positionOf(event);
    }
    // Read to the end: every entry up to the applied index has recorded its events, so the next page starts
    // after it (entries without events — users, cluster state — need no reading again).
    const applied = this.source.appliedIndex;
    return { items, next: applied > next.index ? { index: applied, ordinal: null } : next, more: false };
  }

  /**
   * page(), with every item's frame in one buffer: what a stream writes. Streams that follow the feed closely with
   * the same filter ask for the same page at every round, so it is made once per round and the same bytes go to each
   * of them — per stream, a round costs one socket write, not a pass over the events. `filterKey` names the filter
   * (equal keys, equal filters); `bytesMax` as for page(). Only pages read from memory are remembered (the readers
   * that follow closely are the ones that share), until the applied index or the table moves, and within the
   * memory's own bounds: at most recentEventsMax chunks holding at most recentBytesMax between them. A reader far
   * behind gets a chunk of its own that nothing keeps.
   */
  chunk(since: FeedPosition, filter: FeedFilter, filterKey: string, limit: number, bytesMax: number): FeedChunk {
    const applied = this.source.appliedIndex;
    if (this.chunksAt.applied !== applied || this.chunksAt.generation !== this.log.generation) {
      this.chunks.clear();
      this.chunksBytes = 0;
      this.chunksAt = { applied, generation: this.log.generation };
    }
    const key = `${limit} ${bytesMax} ${formatFeedPosition(since)} ${filterKey}`;
    const known = this.chunks.get(key);
    // Retention may have pruned since the chunk was made: a reader from before it is refused as page() would.
    if (known !== undefined) {
      this.checkAvailable(since);
      return known;
    }
    const page = this.page(since, filter, limit, bytesMax);
    let bytes = 0;
    for (const item of page.items) bytes += item.frame.length;
    const made: FeedChunk = { page, frames: page.items.length === 1 ? page.items[0]!.frame : Buffer.concat(page.items.map((item) => item.frame), bytes) };
    const fromMemory = this.recentAfter !== null && compare(since, this.recentAfter) >= 0;
    if (fromMemory && this.chunks.size < this.limits.recentEventsMax && this.chunksBytes + bytes <= this.limits.recentBytesMax) {
      this.chunks.set(key, made);
      this.chunksBytes += bytes;
    }
    return made;
  }

  /**
   * Resolves once an entry after `index` is applied (at once if one is), or when `timeoutMs` passes or `signal`
   * aborts; false in those two cases. Word of new entries comes at most every fanOutIntervalMs.
   */
  waitForEntryAfter(index: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.source.appliedIndex > index) return Promise.resolve(true);
    if (signal?.aborted === true) return Promise.resolve(false);
    this.listen();
    return new Promise<boolean>((resolve) => {
      const finish = (outcome: boolean) => {
        clearTimeout(timer);
        this.waiting.delete(onNews);
        signal?.removeEventListener('abort', onAbort);
        resolve(outcome);
      };
      const onAbort = () => finish(false);
      const onNews = () => {
        if (this.source.appliedIndex > index) finish(true);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      this.waiting.add(onNews);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Wakes `follower` at every round of news from now on, until the returned function is called. */
  follow(follower: FeedFollower): () => void {
    this.listen();
    this.followers.add(follower);
    return () => this.followers.delete(follower);
  }

  /** Stops listening to the node (at its stop; waiters left resolve at their timeouts). */
  close(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    if (this.fanOut !== null) clearTimeout(this.fanOut);
    this.fanOut = null;
  }

  private listen(): void {
    if (this.unsubscribe !== null) return;
    this.unsubscribe = this.source.onChange(() => this.armFanOut());
  }

  /** The next round of word to waiting readers, fanOutIntervalMs from the first news after the last round. */
  private armFanOut(): void {
    if (this.fanOut !== null || (this.waiting.size === 0 && this.followers.size === 0)) return;
    this.fanOut = setTimeout(() => {
      this.fanOut = null;
      for (const wake of [...this.waiting]) wake();
      for (const follower of [...this.followers]) follower.wake();
    }, this.limits.fanOutIntervalMs);
  }

  /** The events after `since`: from memory (with their JSON) when it holds all of them, else from the table. */
  private *itemsAfter(since: FeedPosition): Generator<FeedItem | ChangeEvent> {
    if (this.recentAfter !== null && compare(since, this.recentAfter) >= 0) {
      // The first event after `since`: a binary search over positions that only grow.
      let low = 0;
      let high = this.recent.length;
      while (low < high) {
        const mid = (low + high) >>> 1;
        if (compare(exactly(this.recent[mid]!.event), since) > 0) high = mid;
        else low = mid + 1;
      }
      for (let i = low; i < this.recent.length; i++) yield this.recent[i]!;
      return;
    }
    yield* this.log.eventsAfter(since);
  }

  /**
   * Brings the recent events up to the applied index: one read of the table for what was applied since, shared by
   * every reader. Starts empty at the applied index the first time, and again after a snapshot install replaced
   * the table or a batch larger than the memory's bound; drops what retention pruned and what passes its bound.
   */
  private refreshRecent(): void {
    const applied = this.source.appliedIndex;
    if (this.recentGeneration !== this.log.generation || this.recentAfter === null || applied < this.recentThrough) {
      this.resetRecent(applied);
      return;
    }
    if (applied === this.recentThrough) return;
    const from = this.recent.length > 0 ? positionOf(this.recent[this.recent.length - 1]!.event) : this.recentAfter;
    const added: FeedItem[] = [];
    let addedBytes = 0;
    // Read in batches into arrays (stepping a statement row by row costs a crossing into SQLite per row), and no
    // further than the memory's bounds.
    for (let cursor = from; ; ) {
      const batch = this.log.eventsAfterList(cursor, refreshBatchEvents);
      for (const event of batch) {
        const item = itemOf(event);
        addedBytes += item.json.length + item.frame.length;
        // More than the memory holds in one go (a recursive delete of a large subtree): readers go to the table.
        if (added.length === this.limits.recentEventsMax || addedBytes > this.limits.recentBytesMax) {
          this.resetRecent(applied);
          return;
        }
        added.push(item);
      }
      if (batch.length < refreshBatchEvents) break;
      cursor = positionOf(batch[batch.length - 1]!);
    }
    // One at a time: a spread of a long array overflows the call stack.
    for (const item of added) this.recent.push(item);
    this.recentBytes += addedBytes;
    this.recentThrough = applied;
    const pruned = this.log.prunedThrough();
    let drop = 0;
    let dropBytes = 0;
    while (
      drop < this.recent.length &&
      (this.recent.length - drop > this.limits.recentEventsMax || this.recentBytes - dropBytes > this.limits.recentBytesMax || this.recent[drop]!.event.index <= pruned)
    ) {
      dropBytes += this.recent[drop]!.json.length + this.recent[drop]!.frame.length;
      drop++;
    }
    if (drop > 0) {
      this.recentAfter = positionOf(this.recent[drop - 1]!.event);
      this.recent = this.recent.slice(drop);
      this.recentBytes -= dropBytes;
    }
    if (this.recentAfter.index < pruned) this.recentAfter = { index: pruned, ordinal: null };
  }

  private resetRecent(applied: number): void {
    this.recent = [];
    this.recentBytes = 0;
    this.recentAfter = { index: applied, ordinal: null };
    this.recentThrough = applied;
    this.recentGeneration = this.log.generation;
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
