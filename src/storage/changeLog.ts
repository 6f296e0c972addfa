import type { ChangeEvent, ChangeOp, ChangeStamp, ContentChange, FeedPosition } from '../content/changes.js';
import { boundAfter } from '../content/changes.js';
import { descendantRange } from '../content/paths.js';
import { invariant } from '../errors/catalogue.js';
import { getMeta, setMeta, type Db } from './database.js';

type ChangeRow = [number, number, string, string, string | null, string, string, number, string, string, string | null, number];

const eventColumns = 'idx, ordinal, op, path, from_path, node_id, type, version, changed_by, changed_at, property';

function eventOf(row: ChangeRow): ChangeEvent {
  return {
    index: row[0],
    ordinal: row[1],
    op: row[2] as ChangeOp,
    path: row[3],
    ...(row[4] !== null ? { from: row[4] } : {}),
    id: row[5],
    type: row[6],
    version: row[7],
    by: row[8],
    at: row[9],
    ...(row[10] !== null ? { property: row[10] } : {}),
    last: row[11] === 1,
  };
}

/**
 * The change feed's table (see database.ts): written by apply() through ContentTables, inside the transaction of the
 * entry being applied, and read by the feed (src/changes/). Ordinals count from 0 within an entry; `beginEntry`
 * says which entry the next events belong to (an entry applied again after a rolled-back Ready starts from 0 again).
 */
export class ChangeLog {
  private entryIndex = 0;
  private nextOrdinal = 0;
  private readonly insert;
  private readonly insertDescendants;
  private readonly after;
  private readonly prune;
  private readonly lastIndexQuery;
  private readonly countAfterQuery;

  constructor(private readonly db: Db) {
    this.insert = db.prepare(`INSERT INTO changes (${eventColumns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    // Descendants in path order, after the events already recorded for this entry; for a move, the old path is the
    // new one with the old prefix (substr/length count characters as SQLite sees them, as moveRange does in
    // contentTables.ts).
    this.insertDescendants = db.prepare(
      `INSERT INTO changes (${eventColumns})
       SELECT ?, ? + row_number() OVER (ORDER BY path) - 1, ?, path,
              CASE WHEN ? IS NULL THEN NULL ELSE ? || substr(path, length(?) + 1) END,
              id, type, version, ?, ?, NULL
       FROM nodes WHERE path > ? AND path < ? ORDER BY path`,
    );
    // Whether an event is its entry's last: one primary-key probe per row read.
    this.after = db
      .prepare(
        `SELECT ${eventColumns}, NOT EXISTS (SELECT 1 FROM changes n WHERE n.idx = c.idx AND n.ordinal = c.ordinal + 1) AS last
         FROM changes c WHERE (idx, ordinal) > (?, ?) ORDER BY idx, ordinal`,
      )
      .raw(true);
    this.prune = db.prepare('DELETE FROM changes WHERE idx <= ?');
    this.lastIndexQuery = db.prepare('SELECT max(idx) FROM changes').pluck();
    this.countAfterQuery = db.prepare('SELECT count(*) FROM changes WHERE (idx, ordinal) > (?, ?)').pluck();
  }

  /** The events recorded from now on belong to entry `index` (called before each entry is applied). */
  beginEntry(index: number): void {
    this.entryIndex = index;
    this.nextOrdinal = 0;
  }

  record(change: ContentChange): void {
    this.insert.run(
      this.entryIndex,
      this.nextOrdinal++,
      change.op,
      change.path,
      change.from ?? null,
      change.id,
      change.type,
      change.version,
      change.by,
      change.at,
      change.property ?? null,
    );
  }

  /**
   * One `op` event for every descendant of `path` (not the node itself), in path order: `deleted` before they are
   * deleted, `moved` after their paths were rewritten from under `from` to under `path` (the event names both).
   */
  recordDescendants(path: string, op: 'deleted' | 'moved', stamp: ChangeStamp, from?: string): void {
    invariant((op === 'moved') === (from !== undefined), 'a move names where it came from, a delete nothing');
    const { low, high } = descendantRange(path);
    const old = from ?? null;
    const count = this.insertDescendants.run(this.entryIndex, this.nextOrdinal, op, old, old, path, stamp.by, stamp.at, low, high).changes;
    this.nextOrdinal += count;
  }

  /** Drops the events of entries up to `through` (a pruneChanges entry: every node drops the same). */
  pruneThrough(through: number): void {
    if (through <= this.prunedThrough()) return;
    this.prune.run(through);
    setMeta(this.db, 'changes_pruned_through', through);
  }

  /** Positions from here on are answered; anything before was pruned (or predates the feed on this node). */
  prunedThrough(): number {
    return getMeta<number>(this.db, 'changes_pruned_through') ?? 0;
  }

  /** The events after `position`, in feed order; the caller stops reading when its page is full. */
  *eventsAfter(position: FeedPosition): Generator<ChangeEvent> {
    const bound = boundAfter(position);
    for (const row of this.after.iterate(bound.index, bound.ordinal) as Iterable<ChangeRow>) yield eventOf(row);
  }

  /** How many events follow `position` (what a webhook at that mark still has to go through). */
  countAfter(position: FeedPosition): number {
    const bound = boundAfter(position);
    return this.countAfterQuery.get(bound.index, bound.ordinal) as number;
  }

  /** The index of the newest entry that recorded an event, or 0. */
  lastIndex(): number {
    return (this.lastIndexQuery.get() as number | null) ?? 0;
  }

  /**
   * Where retention would prune through now: the largest entry index such that dropping every event up to it keeps
   * at least `retainEvents` events, or drops only events older than `cutoffAt` — whichever drops more — but never
   * more than about `batchMax` events in one go (whole entries: an entry's events go together). 0: nothing to prune.
   */
  pruneCandidate(retainEvents: number, cutoffAt: string, batchMax: number): number {
    const prunedThrough = this.prunedThrough();
    const total = this.db.prepare('SELECT count(*) FROM changes').pluck().get() as number;
    let through = 0;
    if (total > retainEvents) {
      const excess = total - retainEvents;
      through = this.db.prepare('SELECT idx FROM changes ORDER BY idx, ordinal LIMIT 1 OFFSET ?').pluck().get(excess - 1) as number;
    }
    const old = this.db.prepare('SELECT max(idx) FROM changes WHERE changed_at < ?').pluck().get(cutoffAt) as number | null;
    if (old !== null && old > through) through = old;
    if (through === 0) return 0;
    const batchEnd = this.db.prepare('SELECT idx FROM changes ORDER BY idx, ordinal LIMIT 1 OFFSET ?').pluck().get(batchMax - 1) as number | undefined;
    if (batchEnd !== undefined && batchEnd < through) through = batchEnd;
    return through > prunedThrough ? through : 0;
  }
}
