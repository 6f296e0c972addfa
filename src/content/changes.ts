import { ConclaveError } from '../errors/catalogue.js';

/**
 * The change feed's events: what apply() records for every content change, in the transaction that applies it.
 *
 * One event per node touched: a recursive delete records the deleted node and then every descendant (in path
 * order), a move the moved node and then every descendant under its new path, each with `from`. A client that
 * purges a cache by path therefore never has to know the tree: every path that stopped or started serving
 * content is named. Users, token keys and cluster state are not content and record nothing.
 */
export const changeOps = ['created', 'updated', 'deleted', 'moved', 'binary-set', 'binary-removed', 'migrated'] as const;
export type ChangeOp = (typeof changeOps)[number];

/** What apply() knows of a change; the store adds the entry's index and the event's ordinal within it. */
export interface ContentChange {
  readonly op: ChangeOp;
  readonly path: string;
  /** For moves: the path before the move. */
  readonly from?: string;
  readonly id: string;
  readonly type: string;
  /** The node's version after the change (for deletes: the last version it had). */
  readonly version: number;
  /** The user who made the change, and when (the entry's own time, the same on every node). */
  readonly by: string;
  readonly at: string;
  /** For binary-set and binary-removed: the binary property. */
  readonly property?: string;
}

/** Who made a change and when: stamped on every event an entry records (descendants of a delete or move too). */
export interface ChangeStamp {
  readonly by: string;
  readonly at: string;
}

export interface ChangeEvent extends ContentChange {
  /** The journal index of the entry that made the change. */
  readonly index: number;
  /** Its place among the entry's events, from 0. */
  readonly ordinal: number;
  /** Whether it is the entry's last event. */
  readonly last: boolean;
}

/**
 * A place in the feed: after every event of entry `index` (ordinal null), or after event `ordinal` of it. The text
 * form is `N` or `N:k`: an event's own position (its SSE id) is `N` when it is its entry's last event, and `N:k`
 * otherwise, so a client resuming from any event id gets exactly the events after it, even in the middle of a
 * recursive delete; `since=N` skips entry N whole.
 */
export interface FeedPosition {
  readonly index: number;
  readonly ordinal: number | null;
}

/** Positions are at most 15 digits each side: well past any journal, and exact in a double. */
const positionPattern = /^(\d{1,15})(?::(\d{1,15}))?$/;

export function parseFeedPosition(text: string, what: string): FeedPosition {
  const match = positionPattern.exec(text.trim());
  if (match === null) {
    throw new ConclaveError('INVALID_REQUEST', `${what} must be a feed position: a journal index N, or N:k for after the k-th event of entry N (an event's id).`, {
      [what]: text.slice(0, 64),
    });
  }
  return { index: Number(match[1]), ordinal: match[2] === undefined ? null : Number(match[2]) };
}

export function formatFeedPosition(position: FeedPosition): string {
  return position.ordinal === null ? String(position.index) : `${position.index}:${position.ordinal}`;
}

/** An event's own position: where a client that has seen it resumes. */
export function positionOf(event: Pick<ChangeEvent, 'index' | 'ordinal' | 'last'>): FeedPosition {
  return { index: event.index, ordinal: event.last ? null : event.ordinal };
}

/** The first event strictly after `position`, as (index, ordinal) bounds: events with (idx, ordinal) > these. */
export function boundAfter(position: FeedPosition): { readonly index: number; readonly ordinal: number } {
  // "After entry N whole" is after any ordinal of N.
  return { index: position.index, ordinal: position.ordinal ?? Number.MAX_SAFE_INTEGER };
}
