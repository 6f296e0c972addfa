import type { ChangeStamp } from '../content/changes.js';
import { versionsPerNodeMin, type HistoryRetention, type NodeVersion, type VersionOp, type VersionSummary } from '../content/history.js';
import type { ContentNode, JsonObject } from '../content/model.js';
import { descendantRange } from '../content/paths.js';
import { invariant } from '../errors/catalogue.js';
import { getMeta, setMeta, type Db } from './database.js';

/** The node columns a version copies, in the nodes table's names. */
const nodeColumns = 'path, name, parent_id, position, type, properties, binaries, created_at, created_by, modified_at, modified_by';
const versionColumns = `node_id, version, op, idx, restored_from, superseded_at, ${nodeColumns}`;

type VersionRow = [
  string, number, string | null, number | null, number | null, string | null,
  string, string, string | null, number, string, string, string, string, string, string, string,
];

function versionOf(row: VersionRow): NodeVersion {
  const [id, version, , , , , path, name, parentId, position, type, properties, binaries] = row;
  const [createdAt, createdBy, modifiedAt, modifiedBy] = row.slice(13) as string[];
  const node: ContentNode = {
    id,
    path,
    name,
    parentId,
    position,
    type,
    properties: JSON.parse(properties) as JsonObject,
    binaries: JSON.parse(binaries) as ContentNode['binaries'],
    version,
    createdAt: createdAt!,
    createdBy: createdBy!,
    modifiedAt: modifiedAt!,
    modifiedBy: modifiedBy!,
  };
  return { ...summaryOf(row), node };
}

function summaryOf(row: VersionRow): VersionSummary {
  return {
    id: row[0],
    version: row[1],
    op: row[2] as VersionOp | null,
    index: row[3],
    restoredFrom: row[4],
    supersededAt: row[5],
    path: row[6],
    type: row[10],
    at: row[15],
    by: row[16],
  };
}

/**
 * The versions table (database.ts): written by apply() through ContentTables, inside the transaction of the entry
 * that makes each version, and read by the history routes. A node's current version is its nodes row; a change
 * copies it here first, with one statement of SQL and no JSON handled here, and a create copies nothing: keeping
 * history must cost a write little.
 *
 * Statements are prepared at first use: a state file of an older format (no versions table) is read through
 * ContentTables too.
 */
export class VersionTables {
  private statements: ReturnType<VersionTables['prepare']> | null = null;
  /** undefined: not read yet; null: history has not started. */
  private retentionKnown: HistoryRetention | null | undefined = undefined;

  constructor(
    private readonly db: Db,
    /** The journal index of the entry being applied (ChangeLog tracks it). */
    private readonly entryIndex: () => number,
  ) {}

  private get sql(): ReturnType<VersionTables['prepare']> {
    this.statements ??= this.prepare();
    return this.statements;
  }

  private prepare() {
    const db = this.db;
    // The current version of a node: its row in nodes, with what made it.
    const currentOf = `SELECT id, version, op, idx, restored_from, NULL, ${nodeColumns} FROM nodes`;
    return {
      // The version a change replaces, copied as it is, superseded at `at`.
      supersede: db.prepare(
        `INSERT INTO versions (${versionColumns})
         SELECT id, version, op, idx, restored_from, @at, ${nodeColumns} FROM nodes WHERE id = @id`,
      ),
      trim: db.prepare('DELETE FROM versions WHERE node_id = ? AND version <= ?'),
      supersedeRange: db.prepare(
        `INSERT INTO versions (${versionColumns})
         SELECT id, version, op, idx, restored_from, @at, ${nodeColumns} FROM nodes WHERE path = @path OR (path > @low AND path < @high)`,
      ),
      // A deleted node's last version: its last state, stamped with the delete, superseded by it at once (so that
      // retention by age takes a deleted node's history once the delete is old enough).
      tombstones: db.prepare(
        `INSERT INTO versions (${versionColumns})
         SELECT id, version + 1, 'deleted', @idx, NULL, @at, path, name, parent_id, position, type, properties, binaries,
                created_at, created_by, @at, @by
         FROM nodes WHERE path = @path OR (path > @low AND path < @high)`,
      ),
      // The versions of a deleted subtree beyond the retention, its delete counted.
      trimRange: db.prepare(
        `DELETE FROM versions WHERE rowid IN (
           SELECT v.rowid FROM nodes n JOIN versions v ON v.node_id = n.id
           WHERE (n.path = @path OR (n.path > @low AND n.path < @high)) AND v.version <= n.version + 1 - @max)`,
      ),
      one: db.prepare(`SELECT ${versionColumns} FROM versions WHERE node_id = ? AND version = ?`).raw(true),
      current: db.prepare(`${currentOf} WHERE id = ?`).raw(true),
      lastNumber: db.prepare('SELECT max(version) FROM versions WHERE node_id = ?').pluck(),
      deletedPlace: db.prepare(`SELECT path, parent_id AS parentId FROM versions WHERE node_id = ? AND op = 'deleted' ORDER BY version DESC LIMIT 1`),
      // Newest first: the current version (a live node's) and the kept ones.
      page: db
        .prepare(
          `SELECT * FROM (
             SELECT ${versionColumns} FROM versions WHERE node_id = @id AND version < @before
             UNION ALL
             ${currentOf} WHERE id = @id AND version < @before)
           ORDER BY version DESC LIMIT @limit`,
        )
        .raw(true),
      // A deleted node is one whose newest version is a delete and that no live node carries (a restore re-creates it
      // under its id, after which its delete is history like any version).
      deletedAt: db
        .prepare(
          `SELECT node_id FROM versions v WHERE op = 'deleted' AND path = ?
             AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = v.node_id)
             AND version = (SELECT max(version) FROM versions w WHERE w.node_id = v.node_id)
           ORDER BY idx DESC, node_id LIMIT 1`,
        )
        .pluck(),
      deletedChildren: db
        .prepare(
          `SELECT ${versionColumns} FROM versions v WHERE op = 'deleted' AND parent_id = @parent
             AND (idx < @idx OR (idx = @idx AND node_id > @id))
             AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = v.node_id)
             AND version = (SELECT max(version) FROM versions w WHERE w.node_id = v.node_id)
           ORDER BY idx DESC, node_id LIMIT @limit`,
        )
        .raw(true),
      prune: db.prepare(
        `DELETE FROM versions WHERE rowid IN (
           SELECT rowid FROM versions WHERE superseded_at IS NOT NULL AND superseded_at < ?
           ORDER BY superseded_at, node_id, version LIMIT ?)`,
      ),
      perNode: db.prepare(`SELECT value FROM meta WHERE key = 'history_versions_per_node'`).pluck(),
      anyBefore: db.prepare('SELECT 1 FROM versions WHERE superseded_at IS NOT NULL AND superseded_at < ? LIMIT 1').pluck(),
    };
  }

  // ---- retention: set by the entries that start and prune history

  /** The retention in force, or undefined while history has not started (nothing is kept then). */
  retention(): HistoryRetention | undefined {
    if (this.retentionKnown === undefined) {
      const perNode = this.sql.perNode.get() as unknown;
      // Written only by startHistory and pruneVersions entries, which apply checks: anything else is a corrupt state.
      invariant(perNode === undefined || (typeof perNode === 'number' && Number.isSafeInteger(perNode) && perNode >= versionsPerNodeMin), `history keeps ${String(perNode)} versions per node`);
      this.retentionKnown = perNode === undefined ? null : { versionsPerNodeMax: perNode };
    }
    return this.retentionKnown ?? undefined;
  }

  /** Starts history (once; later calls only set the retention). */
  start(retention: HistoryRetention, at: string): void {
    if (getMeta<string>(this.db, 'history_started_at') === undefined) setMeta(this.db, 'history_started_at', at);
    this.setRetention(retention);
  }

  /** Read again at its next use, from the same transaction: a rollback of this entry then leaves nothing stale here. */
  setRetention(retention: HistoryRetention): void {
    invariant(Number.isSafeInteger(retention.versionsPerNodeMax) && retention.versionsPerNodeMax >= 1, `versionsPerNodeMax ${retention.versionsPerNodeMax}`);
    setMeta(this.db, 'history_versions_per_node', retention.versionsPerNodeMax);
    this.retentionKnown = undefined;
  }

  /** When history started, or undefined. */
  startedAt(): string | undefined {
    return getMeta<string>(this.db, 'history_started_at');
  }

  /**
   * The state machine was replaced under this object (a snapshot install), or a transaction that read or wrote the
   * retention rolled back (ContentTables.rolledBack): what it knew of the retention is read again.
   */
  forget(): void {
    this.retentionKnown = undefined;
  }

  // ---- writes, by apply() through ContentTables; each a no-op before history starts

  /**
   * What the nodes row records of the version it holds, for the node's next version: null while history has not
   * started (nodes of a release before history, applying the same entries, record nothing either).
   */
  madeBy(op: VersionOp, restoredFrom: number | null): { op: VersionOp | null; idx: number | null; restored_from: number | null } {
    if (this.retention() === undefined) return { op: null, idx: null, restored_from: null };
    return { op, idx: this.entryIndex(), restored_from: restoredFrom };
  }

  /**
   * Before node `id` changes to version `next`: its current version is kept, superseded at `at`, and the oldest go
   * beyond the retention (which counts the current version).
   */
  supersede(id: string, next: number, at: string): void {
    const retention = this.retention();
    if (retention === undefined) return;
    this.sql.supersede.run({ id, at });
    this.trim(id, next);
  }

  /** Drops the versions of node `id` beyond the retention, its current one being `current`. */
  trim(id: string, current: number): void {
    const retention = this.retention();
    if (retention === undefined || current <= retention.versionsPerNodeMax) return;
    this.sql.trim.run(id, current - retention.versionsPerNodeMax);
  }

  /** Before the subtree at `path` is deleted: every node in it gets its last version, stamped with the delete. */
  keepDeleted(path: string, stamp: ChangeStamp): void {
    if (this.retention() === undefined) return;
    const { low, high } = descendantRange(path);
    this.sql.supersedeRange.run({ path, low, high, at: stamp.at });
    this.sql.tombstones.run({ path, low, high, at: stamp.at, by: stamp.by, idx: this.entryIndex() });
    this.sql.trimRange.run({ path, low, high, max: this.retention()!.versionsPerNodeMax });
  }

  /** Drops up to `rowsMax` versions superseded before `before`, oldest first; returns how many went. */
  pruneSupersededBefore(before: string, rowsMax: number): number {
    return this.sql.prune.run(before, rowsMax).changes;
  }

  /** Whether any version was superseded before `before` (what the pruner asks before proposing). */
  anySupersededBefore(before: string): boolean {
    return this.sql.anyBefore.get(before) !== undefined;
  }

  // ---- reads

  /** Whether the state holds the table at all (one of a data format before history does not). */
  tableExists(): boolean {
    return this.db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'versions'`).pluck().get() !== undefined;
  }

  /** Version `version` of node `id`: a kept one, or its current one. */
  version(id: string, version: number): NodeVersion | undefined {
    const row = (this.sql.one.get(id, version) as VersionRow | undefined) ?? (this.sql.current.get(id) as VersionRow | undefined);
    if (row === undefined || row[1] !== version) return undefined;
    return versionOf(row);
  }

  /** Where deleted node `id` was when it was last deleted (its delete version's path and parent), or undefined. */
  deletedPlace(id: string): { path: string; parentId: string | null } | undefined {
    return this.sql.deletedPlace.get(id) as { path: string; parentId: string | null } | undefined;
  }

  /** The newest version number node `id` has had (its delete, for a deleted node), or undefined. */
  lastVersionNumber(id: string): number | undefined {
    return (this.sql.lastNumber.get(id) as number | null) ?? undefined;
  }

  /** Up to `limit` versions of node `id` older than `before`, newest first, and whether more follow. */
  page(id: string, before: number, limit: number): { readonly items: VersionSummary[]; readonly more: boolean } {
    const rows = this.sql.page.all({ id, before, limit: limit + 1 }) as VersionRow[];
    return { items: rows.slice(0, limit).map(summaryOf), more: rows.length > limit };
  }

  /** The id of the node most recently deleted at `path` and not restored since, or undefined. */
  deletedAt(path: string): string | undefined {
    return this.sql.deletedAt.get(path) as string | undefined;
  }

  /**
   * Deleted children of node `parentId` not restored since, the most recently deleted first, after the cursor
   * (idx, id) of the previous page; each is its delete version.
   */
  deletedChildren(parentId: string, after: { idx: number; id: string } | undefined, limit: number, visible: ((id: string, path: string) => boolean) | null = null): { readonly items: VersionSummary[]; readonly more: boolean } {
    const params = { parent: parentId, idx: after?.idx ?? Number.MAX_SAFE_INTEGER, id: after?.id ?? '', limit: visible === null ? limit + 1 : -1 };
    const items: VersionSummary[] = [];
    // Deleted nodes the reader may not read (where they were) are passed over: never listed, never a cursor.
    for (const row of this.sql.deletedChildren.iterate(params) as Iterable<VersionRow>) {
      if (visible !== null && !visible(row[0], row[6])) continue;
      if (items.length === limit) return { items, more: true };
      items.push(summaryOf(row));
    }
    return { items, more: false };
  }

  /**
   * Every version history knows, by node id and version (the digest's order): the kept ones, and the current ones
   * made since history started. Nothing in a state of a format before history.
   */
  *all(): Generator<NodeVersion> {
    if (!this.tableExists()) return;
    const rows = this.db
      .prepare(
        `SELECT * FROM (
           SELECT ${versionColumns} FROM versions
           UNION ALL
           SELECT id, version, op, idx, restored_from, NULL, ${nodeColumns} FROM nodes WHERE op IS NOT NULL)
         ORDER BY node_id, version`,
      )
      .raw(true)
      .iterate() as Iterable<VersionRow>;
    for (const row of rows) yield versionOf(row);
  }
}
