import type { ChangeEvent, ChangeOp, ChangeStamp, ContentChange, FeedPosition } from '../content/changes.js';
import { boundAfter } from '../content/changes.js';
import { descendantRange } from '../content/paths.js';
import { invariant } from '../errors/catalogue.js';
import { getMeta, setMeta, type Db } from './database.js';

type ChangeRow = [number, number, string, string, string | null, string, string, number, string, string, string | null, number];

const eventColumns = 'idx, ordinal, op, path, from_path, node_id, type, version, changed_by, changed_at, property';
/** The newest event's sequence number (see `seq` in database.ts). */
const lastSeqSql = 'SELECT seq FROM changes ORDER BY idx DESC, ordinal DESC LIMIT 1';

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
  private statements: ReturnType<ChangeLog['prepare']> | null = null;
  private prunedThroughKnown: number | null = null;
  /** Counts replacements of the whole table (snapshot installs). */
  generation = 0;

  /** Statements are prepared at first use: a format-2 state file (no changes table) is read through ContentTables too. */
  constructor(private readonly db: Db) {}

  private get sql(): ReturnType<ChangeLog['prepare']> {
    this.statements ??= this.prepare();
    return this.statements;
  }

  private prepare() {
    const db = this.db;
    return {
      // The sequence number in the same statement: one step into SQLite per event on the write path, not two.
      insert: db.prepare(
        `INSERT INTO changes (${eventColumns}, seq)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, coalesce((${lastSeqSql}), 0) + 1)`,
      ),
      lastSeq: db.prepare(lastSeqSql).pluck(),
      firstSeqAfter: db.prepare('SELECT seq FROM changes WHERE (idx, ordinal) > (?, ?) ORDER BY idx, ordinal LIMIT 1').pluck(),
      firstAtAfter: db.prepare('SELECT changed_at FROM changes WHERE (idx, ordinal) > (?, ?) ORDER BY idx, ordinal LIMIT 1').pluck(),
      // Descendants in path order, after the events already recorded for this entry; for a move, the old path is
      // the new one with the old prefix (substr/length count characters as SQLite sees them, as moveRange does in
      // contentTables.ts).
      insertDescendants: db.prepare(
        `INSERT INTO changes (${eventColumns}, seq)
         SELECT ?, ? + row_number() OVER (ORDER BY path) - 1, ?, path,
                CASE WHEN ? IS NULL THEN NULL ELSE ? || substr(path, length(?) + 1) END,
                id, type, version, ?, ?, NULL, ? + row_number() OVER (ORDER BY path)
         FROM nodes WHERE path > ? AND path < ? ORDER BY path`,
      ),
      // Whether an event is its entry's last: one primary-key probe per row read. A negative limit: no limit.
      after: db
        .prepare(
          `SELECT ${eventColumns}, NOT EXISTS (SELECT 1 FROM changes n WHERE n.idx = c.idx AND n.ordinal = c.ordinal + 1) AS last
           FROM changes c WHERE (idx, ordinal) > (?, ?) ORDER BY idx, ordinal LIMIT ?`,
        )
        .raw(true),
      prune: db.prepare('DELETE FROM changes WHERE idx <= ?'),
      lastIndex: db.prepare('SELECT max(idx) FROM changes').pluck(),
    };
  }

  /** The events recorded from now on belong to entry `index` (called before each entry is applied). */
  beginEntry(index: number): void {
    this.entryIndex = index;
    this.nextOrdinal = 0;
  }

  record(change: ContentChange): void {
    this.sql.insert.run(
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
    const count = this.sql.insertDescendants.run(this.entryIndex, this.nextOrdinal, op, old, old, path, stamp.by, stamp.at, this.lastSeq(), low, high).changes;
    this.nextOrdinal += count;
  }

  /** Drops the events of entries up to `through` (a pruneChanges entry: every node drops the same). */
  pruneThrough(through: number): void {
    if (through <= this.prunedThrough()) return;
    this.sql.prune.run(through);
    setMeta(this.db, 'changes_pruned_through', through);
    this.prunedThroughKnown = null;
  }

  /**
   * Positions from here on are answered; anything before was pruned (or predates the feed on this node). Remembered
   * between reads, but never from inside a transaction (it may still roll back).
   */
  prunedThrough(): number {
    if (this.prunedThroughKnown !== null && !this.db.inTransaction) return this.prunedThroughKnown;
    const value = getMeta<number>(this.db, 'changes_pruned_through') ?? 0;
    this.prunedThroughKnown = this.db.inTransaction ? null : value;
    return value;
  }

  /**
   * The whole table was replaced under this object (a snapshot install): what it remembers goes, and readers that
   * keep events in memory (the feed's recent events) see `generation` move and read again.
   */
  replaced(): void {
    this.prunedThroughKnown = null;
    this.generation++;
  }

  /** The events after `position`, in feed order; the caller stops reading when its page is full. */
  *eventsAfter(position: FeedPosition): Generator<ChangeEvent> {
    const bound = boundAfter(position);
    for (const row of this.sql.after.iterate(bound.index, bound.ordinal, -1) as Iterable<ChangeRow>) yield eventOf(row);
  }

  /** At most `limit` events after `position`, in feed order, read in one go (the feed's recent events). */
  eventsAfterList(position: FeedPosition, limit: number): ChangeEvent[] {
    const bound = boundAfter(position);
    return (this.sql.after.all(bound.index, bound.ordinal, limit) as ChangeRow[]).map(eventOf);
  }

  /**
   * How many events follow `position` (what a webhook at that mark still has to go through): two lookups, whatever
   * the number (events are numbered without gaps from the oldest kept to the newest, see `seq` in database.ts).
   */
  countAfter(position: FeedPosition): number {
    const bound = boundAfter(position);
    const first = this.sql.firstSeqAfter.get(bound.index, bound.ordinal) as number | undefined;
    return first === undefined ? 0 : this.lastSeq() - first + 1;
  }

  /** When the first event after `position` was made (undefined: none follows). */
  firstAtAfter(position: FeedPosition): string | undefined {
    const bound = boundAfter(position);
    return this.sql.firstAtAfter.get(bound.index, bound.ordinal) as string | undefined;
  }

  private lastSeq(): number {
    return (this.sql.lastSeq.get() as number | undefined) ?? 0;
  }

  /** The index of the newest entry that recorded an event, or 0. */
  lastIndex(): number {
    return (this.sql.lastIndex.get() as number | null) ?? 0;
  }

  /**
   * Where retention would prune through now: the largest entry index such that dropping every event up to it leaves
   * at most `retainEvents` events, or drops only events older than `cutoffAt` — whichever drops more — but never
   * more than about `batchMax` events in one go (whole entries: an entry's events go together); `more` says the batch
   * bound cut it short. 0: nothing to prune. Every lookup walks the primary key a bounded distance: at most
   * retainEvents or batchMax rows, and a binary search for the age (entry times rise with the index, give or take
   * the clocks of successive masters, which moves the cut by as much).
   */
  pruneCandidate(retainEvents: number, cutoffAt: string, batchMax: number): { through: number; more: boolean } {
    const prunedThrough = this.prunedThrough();
    const newest = this.db.prepare('SELECT idx FROM changes ORDER BY idx DESC, ordinal DESC LIMIT 1 OFFSET ?').pluck();
    let through = (newest.get(retainEvents) as number | undefined) ?? 0;
    const firstFrom = this.db.prepare('SELECT idx, changed_at FROM changes WHERE idx >= ? ORDER BY idx, ordinal LIMIT 1');
    const first = firstFrom.get(0) as { idx: number; changed_at: string } | undefined;
    if (first !== undefined && first.changed_at < cutoffAt) {
      let low = first.idx;
      let high = this.lastIndex();
      while (low < high) {
        const mid = low + Math.ceil((high - low) / 2);
        const row = firstFrom.get(mid) as { idx: number; changed_at: string };
        if (row.changed_at < cutoffAt) low = row.idx;
        else high = mid - 1;
      }
      if (low > through) through = low;
    }
    if (through <= prunedThrough) return { through: 0, more: false };
    const batchEnd = this.db.prepare('SELECT idx FROM changes ORDER BY idx, ordinal LIMIT 1 OFFSET ?').pluck().get(batchMax - 1) as number | undefined;
    if (batchEnd !== undefined && batchEnd < through) return { through: batchEnd, more: true };
    return { through, more: false };
  }
}
