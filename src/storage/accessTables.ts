import type { AccessEntry } from '../content/access.js';
import type { JsonValue } from '../content/model.js';
import { descendantRange } from '../content/paths.js';
import { invariant } from '../errors/catalogue.js';
import type { Db } from './database.js';

/**
 * The access table (database.ts): written by apply() through ContentTables, read on every read of content. What a
 * decision needs — the entries of each node on the way up from a path — is kept in memory by path: one map lookup
 * per level, and none at all while no node carries entries. The map is read again from the table after anything
 * that may change it (entries written, a node with entries deleted, paths moved, a rollback, a snapshot install);
 * it is as large as the entries (`accessEntriesPerNodeMax` each).
 */
export class AccessTables {
  private statements: ReturnType<AccessTables['prepare']> | null = null;
  private present: boolean | undefined;
  /** Entries by the path of the node carrying them; null: read again at next use. */
  private byPath: Map<string, readonly AccessEntry[]> | null = null;

  constructor(private readonly db: Db) {}

  private prepare() {
    const db = this.db;
    return {
      all: db.prepare('SELECT n.path, a.entries FROM access a JOIN nodes n ON n.id = a.node_id'),
      one: db.prepare('SELECT entries FROM access WHERE node_id = ?').pluck(),
      upsert: db.prepare('INSERT INTO access (node_id, entries) VALUES (?, ?) ON CONFLICT(node_id) DO UPDATE SET entries = excluded.entries'),
      remove: db.prepare('DELETE FROM access WHERE node_id = ?'),
      any: db.prepare('SELECT 1 FROM access LIMIT 1').pluck(),
      removeRange: db.prepare('DELETE FROM access WHERE node_id IN (SELECT id FROM nodes WHERE path = ? OR (path > ? AND path < ?))'),
    };
  }

  private get sql(): ReturnType<AccessTables['prepare']> {
    this.statements ??= this.prepare();
    return this.statements;
  }

  /** Whether the table exists (a state file of format 5 or older has none). */
  tableExists(): boolean {
    this.present ??= this.db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'access'`).pluck().get() !== undefined;
    return this.present;
  }

  /** What this object keeps in memory is read again at next use. */
  forget(): void {
    this.byPath = null;
    this.present = undefined;
  }

  private map(): Map<string, readonly AccessEntry[]> {
    if (this.byPath === null) {
      const map = new Map<string, readonly AccessEntry[]>();
      if (this.tableExists()) {
        for (const row of this.sql.all.all() as Array<{ path: string; entries: string }>) map.set(row.path, JSON.parse(row.entries) as AccessEntry[]);
      }
      this.byPath = map;
    }
    return this.byPath;
  }

  /** The entries the node at `path` carries, or undefined. */
  readonly entriesAt = (path: string): readonly AccessEntry[] | undefined => this.map().get(path);

  /** Whether any node carries entries (when none does, the roles alone decide). */
  any(): boolean {
    return this.map().size > 0;
  }

  /** Paths of the nodes strictly below `path` that carry entries. */
  pathsUnder(path: string): string[] {
    const { low, high } = descendantRange(path);
    return [...this.map().keys()].filter((p) => p > low && p < high);
  }

  /** The entries node `nodeId` carries ([] for none). */
  entriesOf(nodeId: string): AccessEntry[] {
    if (!this.tableExists()) return [];
    const json = this.sql.one.get(nodeId) as string | undefined;
    return json === undefined ? [] : (JSON.parse(json) as AccessEntry[]);
  }

  /** Replaces the entries of node `nodeId` (none: its row goes). */
  set(nodeId: string, entries: readonly AccessEntry[]): void {
    invariant(this.tableExists(), 'the database has no access table');
    this.byPath = null;
    if (entries.length === 0) this.sql.remove.run(nodeId);
    else this.sql.upsert.run(nodeId, JSON.stringify(entries));
  }

  /**
   * Before the subtree at `path` is deleted. While history is kept, its nodes' entries stay (by node id): what the
   * history of a deleted node shows is decided by the entries it carried, and a node restored under its id has them
   * again; they go when its history does (dropOrphans). Without history they go with the nodes.
   */
  removingSubtree(path: string, keptForHistory: boolean): void {
    if (!this.tableExists() || this.sql.any.get() === undefined) return;
    this.byPath = null;
    if (keptForHistory) return;
    const { low, high } = descendantRange(path);
    this.sql.removeRange.run(path, low, high);
  }

  /** Drops the entries of nodes neither in the tree nor in the history (a pruning of history took their last version). */
  dropOrphans(): void {
    if (!this.tableExists() || this.sql.any.get() === undefined) return;
    this.db
      .prepare('DELETE FROM access WHERE node_id NOT IN (SELECT id FROM nodes) AND NOT EXISTS (SELECT 1 FROM versions v WHERE v.node_id = access.node_id)')
      .run();
  }

  /** Whether any node, in the tree or deleted and kept by the history, carries entries. */
  anyRows(): boolean {
    return this.tableExists() && this.sql.any.get() !== undefined;
  }

  /** Paths under `path` moved: the map, keyed by path, is read again. */
  moved(): void {
    if (this.byPath?.size !== 0) this.byPath = null;
  }

  /** The content digest's lines (src/replication/contentDigest.ts): ["access", nodeId, entries] by node id. */
  *digestLines(): Generator<JsonValue> {
    if (!this.tableExists()) return;
    for (const row of this.db.prepare('SELECT node_id, entries FROM access ORDER BY node_id').iterate() as Iterable<{ node_id: string; entries: string }>) {
      yield ['access', row.node_id, JSON.parse(row.entries) as JsonValue];
    }
  }
}
