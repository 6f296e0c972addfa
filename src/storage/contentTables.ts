import { createHash } from 'node:crypto';

import type { ChangeStamp, ContentChange } from '../content/changes.js';
import type { HistoryRetention, NodeVersion, VersionMade } from '../content/history.js';
import { legacyTokenKeyId } from '../content/commands.js';
import type { AccessEntry } from '../content/access.js';
import type { ContentNode, JsonObject, JsonValue, Role, User } from '../content/model.js';
import { descendantRange, rootPath } from '../content/paths.js';
import { takePropertiesJson } from '../content/validate.js';
import type { QueryCursor, QuerySpec, ScalarValue, SortKey } from '../content/query.js';
import type { ContentStore } from '../content/store.js';
import type { SchemaMigration, StoredSchema, WriteSchema } from '../content/schemaState.js';
import { invariant } from '../errors/catalogue.js';
import { ChangeLog } from './changeLog.js';
import { getMeta, setMeta, type Db } from './database.js';
import { SchemaTables } from './schemaTables.js';
import { jsonPath, nodeFilterSql } from './nodeFilters.js';
import { SearchIndex, untypedMetaKey } from './searchIndex.js';
import { AccessTables } from './accessTables.js';
import { VersionTables } from './versionTables.js';

interface NodeRow {
  id: string;
  path: string;
  name: string;
  parent_id: string | null;
  position: number;
  type: string;
  properties: string;
  binaries: string;
  version: number;
  created_at: string;
  created_by: string;
  modified_at: string;
  modified_by: string;
}

function toNode(row: NodeRow): ContentNode {
  return {
    id: row.id,
    path: row.path,
    name: row.name,
    parentId: row.parent_id,
    position: row.position,
    type: row.type,
    properties: JSON.parse(row.properties) as JsonObject,
    binaries: JSON.parse(row.binaries) as ContentNode['binaries'],
    version: row.version,
    createdAt: row.created_at,
    createdBy: row.created_by,
    modifiedAt: row.modified_at,
    modifiedBy: row.modified_by,
  };
}

function toParams(node: ContentNode) {
  return {
    id: node.id,
    path: node.path,
    name: node.name,
    parent_id: node.parentId,
    position: node.position,
    type: node.type,
    properties: takePropertiesJson(node.properties),
    binaries: JSON.stringify(node.binaries),
    version: node.version,
    created_at: node.createdAt,
    created_by: node.createdBy,
    modified_at: node.modifiedAt,
    modified_by: node.modifiedBy,
  };
}

/**
 * A node as a read sends it: the properties and binaries as the JSON text they are stored as. That text is
 * JSON.stringify's (toParams), so it is what serialising them again would give, byte for byte: a read need not
 * parse and serialise 1 KB of properties only to send the same bytes.
 */
export interface StoredNode extends Omit<ContentNode, 'properties' | 'binaries'> {
  readonly propertiesJson: string;
  readonly binariesJson: string;
}

/** The columns of a node, in the order storedNodeOf reads them. */
const storedNodeColumns = 'id, path, name, parent_id, position, type, properties, binaries, version, created_at, created_by, modified_at, modified_by';
type StoredNodeRow = [string, string, string, string | null, number, string, string, string, number, string, string, string, string];

function storedNodeOf(row: StoredNodeRow): StoredNode {
  return {
    id: row[0],
    path: row[1],
    name: row[2],
    parentId: row[3],
    position: row[4],
    type: row[5],
    propertiesJson: row[6],
    binariesJson: row[7],
    version: row[8],
    createdAt: row[9],
    createdBy: row[10],
    modifiedAt: row[11],
    modifiedBy: row[12],
  };
}

/**
 * Decides, node by node, whether a page goes on: false ends the page before this node (the cursor continues at it).
 * It must take the first node of every page, whatever its size, or a client could never get past it.
 */
export type PageTake = (node: StoredNode) => boolean;
/** Which paths a reader may read (src/http/readAccess.ts); null: every one. */
export type Visible = ((path: string) => boolean) | null;
/** Rows a page reads: one past the page, or all there are when some may be passed over (SQLite: LIMIT -1). */
function rowsFor(limit: number, visible: Visible): number {
  return visible === null ? limit + 1 : -1;
}
const takeAll: PageTake = () => true;

export interface Page<T> {
  readonly items: T[];
  /** The cursor position after the last item, or undefined on the last page. */
  readonly next?: QueryCursor;
}

function sortExpression(sort: SortKey): { sql: string; params: unknown[] } {
  switch (sort.kind) {
    case 'path':
      return { sql: 'path', params: [] };
    case 'name':
      return { sql: 'name', params: [] };
    case 'created':
      return { sql: 'created_at', params: [] };
    case 'modified':
      return { sql: 'modified_at', params: [] };
    case 'property':
      return { sql: 'json_extract(properties, ?)', params: [jsonPath(sort.property)] };
  }
}

/**
 * The content tables: the ContentStore that apply() writes through, and the reads the HTTP layer serves.
 * Statements are prepared once; better-sqlite3 runs them synchronously on the calling thread.
 */
export class ContentTables implements ContentStore {
  private readonly byPath;
  private readonly storedByPath;
  private readonly byId;
  private writes: ReturnType<ContentTables['prepareWrites']> | null = null;
  private readonly anyChild;
  private readonly childRows;
  private readonly lastPosition;
  private readonly setPosition;
  private readonly deleteRange;
  private readonly deleteOne;
  private readonly moveRange;
  private readonly moveOne;
  private readonly childPage;
  private readonly userRow;
  private readonly userUpsert;
  private readonly userDelete;
  private readonly userRows;
  private readonly userPageRows;
  private usersChanges = 0;
  /** The change feed's events, recorded by apply() through this store. */
  readonly changes: ChangeLog;
  /** Every version of every node since history started, kept by apply() through this store. */
  readonly versions: VersionTables;
  /** The schemas and their migrations, kept by apply() through this store. */
  readonly schemas: SchemaTables;
  readonly search: SearchIndex;
  readonly access: AccessTables;
  private entryIndex = 0;
  private readonly childOutsideStatements = new Map<number, ReturnType<Db['prepare']>>();

  constructor(private readonly db: Db) {
    this.changes = new ChangeLog(db);
    this.versions = new VersionTables(db, () => this.entryIndex);
    this.schemas = new SchemaTables(db);
    this.search = new SearchIndex(db, this.schemas);
    this.access = new AccessTables(db);
    this.byPath = db.prepare('SELECT * FROM nodes WHERE path = ?');
    // Rows as arrays: better-sqlite3 builds an object with named columns at some cost on the read path.
    this.storedByPath = db.prepare(`SELECT ${storedNodeColumns} FROM nodes WHERE path = ?`).raw(true);
    this.byId = db.prepare('SELECT * FROM nodes WHERE id = ?');
    this.anyChild = db.prepare('SELECT 1 FROM nodes WHERE parent_id = ? LIMIT 1').pluck();
    this.childRows = db.prepare('SELECT * FROM nodes WHERE parent_id = ? ORDER BY position, id');
    this.lastPosition = db.prepare('SELECT max(position) FROM nodes WHERE parent_id = ?').pluck();
    this.setPosition = db.prepare('UPDATE nodes SET position = ? WHERE id = ?');
    this.deleteRange = db.prepare('DELETE FROM nodes WHERE path > ? AND path < ?');
    this.deleteOne = db.prepare('DELETE FROM nodes WHERE id = ?');
    // substr and length count characters, as SQLite sees them: the prefix length must be measured there too
    // (a JavaScript length counts UTF-16 units, which differs for characters outside the BMP).
    this.moveRange = db.prepare('UPDATE nodes SET path = ? || substr(path, length(?) + 1) WHERE path > ? AND path < ?');
    this.moveOne = db.prepare('UPDATE nodes SET path = ? WHERE path = ?');
    this.childPage = db
      .prepare(`SELECT ${storedNodeColumns} FROM nodes WHERE parent_id = ? AND (position > ? OR (position = ? AND id > ?)) ORDER BY position, id LIMIT ?`)
      .raw(true);
    this.userRow = db.prepare('SELECT * FROM users WHERE name = ?');
    this.userUpsert = db.prepare(
      `INSERT INTO users (name, password_hash, roles, version, created_at, modified_at)
       VALUES (@name, @password_hash, @roles, @version, @created_at, @modified_at)
       ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash, roles = excluded.roles,
         version = excluded.version, modified_at = excluded.modified_at`,
    );
    this.userDelete = db.prepare('DELETE FROM users WHERE name = ?');
    this.userRows = db.prepare('SELECT * FROM users ORDER BY name');
    this.userPageRows = db.prepare('SELECT name FROM users WHERE name > ? OR ? ORDER BY name LIMIT ?');
  }

  /**
   * The statements that write nodes, prepared at first use: they name the columns of this build's data format, and a
   * state file of an older one (a backup being verified) is read through this class too.
   */
  private prepareWrites() {
    const db = this.db;
    return {
      insert: db.prepare(
        `INSERT INTO nodes (id, path, name, parent_id, position, type, properties, binaries, version,
                            created_at, created_by, modified_at, modified_by, op, idx, restored_from)
         VALUES (@id, @path, @name, @parent_id, @position, @type, @properties, @binaries, @version,
                 @created_at, @created_by, @modified_at, @modified_by, @op, @idx, @restored_from)`,
      ),
      update: db.prepare(
        `UPDATE nodes SET path = @path, name = @name, parent_id = @parent_id, position = @position, type = @type,
                properties = @properties, binaries = @binaries, version = @version, created_at = @created_at,
                created_by = @created_by, modified_at = @modified_at, modified_by = @modified_by,
                op = @op, idx = @idx, restored_from = @restored_from
         WHERE id = @id RETURNING rowid`,
      ),
    };
  }

  private get write(): ReturnType<ContentTables['prepareWrites']> {
    this.writes ??= this.prepareWrites();
    return this.writes;
  }

  // ---- ContentStore: used by apply() ----

  nodeByPath(path: string): ContentNode | undefined {
    const row = this.byPath.get(path) as NodeRow | undefined;
    return row && toNode(row);
  }

  nodeById(id: string): ContentNode | undefined {
    const row = this.byId.get(id) as NodeRow | undefined;
    return row && toNode(row);
  }

  hasChildren(id: string): boolean {
    return this.anyChild.get(id) !== undefined;
  }

  children(id: string): ContentNode[] {
    return (this.childRows.all(id) as NodeRow[]).map(toNode);
  }

  lastChildPosition(id: string): number {
    const max = this.lastPosition.get(id) as number | null;
    return max ?? -1;
  }

  insertNode(node: ContentNode, made: VersionMade): void {
    const { lastInsertRowid } = this.write.insert.run({ ...toParams(node), ...this.versions.madeBy(made.op, made.restoredFrom ?? null) });
    this.search.added(lastInsertRowid, node);
    // A deleted node restored under its id carries the entries it had again: the map by path is read again.
    if (node.version > 1) this.access.moved();
    // A deleted node restored under its id keeps its history, within the retention.
    if (node.version > 1) this.versions.trim(node.id, node.version);
  }

  updateNode(node: ContentNode, made: VersionMade): void {
    const row = this.write.update.get({ ...toParams(node), ...this.versions.madeBy(made.op, made.restoredFrom ?? null) }) as { rowid: number } | undefined;
    invariant(row !== undefined, `update of node ${node.id} changed no row`);
    this.search.changed(row.rowid, node);
  }

  setPositions(positions: ReadonlyArray<{ id: string; position: number }>): void {
    for (const { id, position } of positions) this.setPosition.run(position, id);
  }

  deleteSubtree(node: ContentNode): number {
    invariant(node.path !== rootPath, 'the root is never deleted');
    const { low, high } = descendantRange(node.path);
    this.search.removingSubtree(node.path);
    this.access.removingSubtree(node.path, this.versions.retention() !== undefined);
    const descendants = this.deleteRange.run(low, high).changes;
    return descendants + this.deleteOne.run(node.id).changes;
  }

  movePaths(from: string, to: string): void {
    this.access.moved();
    invariant(from !== rootPath, 'the root is never moved');
    const { low, high } = descendantRange(from);
    // Keep everything after the old prefix, i.e. "/rest" of each descendant.
    this.moveRange.run(to, from, low, high);
    const moved = this.moveOne.run(to, from).changes;
    invariant(moved === 1, `move of ${from} found ${moved} nodes`);
  }

  subtreeExtent(path: string): { depthMax: number; bytesMax: number } {
    const { low, high } = descendantRange(path);
    const row = this.db
      .prepare(
        `SELECT max(length(path) - length(replace(path, '/', ''))) AS depth, max(length(CAST(path AS BLOB))) AS bytes
         FROM nodes WHERE path = ? OR (path > ? AND path < ?)`,
      )
      .get(path, low, high) as { depth: number | null; bytes: number | null };
    return { depthMax: row.depth ?? 0, bytesMax: row.bytes ?? 0 };
  }

  userByName(name: string): User | undefined {
    const row = this.userRow.get(name) as
      | { name: string; password_hash: string; roles: string; version: number; created_at: string; modified_at: string }
      | undefined;
    if (row === undefined) return undefined;
    return {
      name: row.name,
      passwordHash: row.password_hash,
      roles: JSON.parse(row.roles) as Role[],
      version: row.version,
      createdAt: row.created_at,
      modifiedAt: row.modified_at,
    };
  }

  /**
   * Counts the changes to the users table seen by this object (a write, or the whole table replaced by a snapshot
   * install: `usersReplaced`), so that a reader may keep users in memory while it stays the same. It may move
   * without a change that lasted (a rolled-back transaction): that only costs a reader one lookup more.
   */
  get usersVersion(): number {
    return this.usersChanges;
  }

  /** The state machine was replaced under this object (a snapshot install): the users and the change feed. */
  usersReplaced(): void {
    this.usersChanges++;
    this.changes.replaced();
    this.versions.forget();
    this.schemas.forget();
    this.search.forget();
    this.access.forget();
  }

  putUser(user: User): void {
    this.usersChanges++;
    this.userUpsert.run({
      name: user.name,
      password_hash: user.passwordHash,
      roles: JSON.stringify(user.roles),
      version: user.version,
      created_at: user.createdAt,
      modified_at: user.modifiedAt,
    });
  }

  deleteUser(name: string): void {
    this.usersChanges++;
    this.userDelete.run(name);
  }

  adminCount(): number {
    return this.db.prepare(`SELECT count(*) FROM users, json_each(users.roles) WHERE json_each.value = 'admin'`).pluck().get() as number;
  }

  setTokenKeyId(keyId: string): void {
    setMeta(this.db, 'token_key_id', keyId);
  }

  /** The entry whose changes are recorded next (the runtime calls this before applying each entry). */
  beginEntry(index: number): void {
    this.entryIndex = index;
    this.changes.beginEntry(index);
  }

  /** What an entry (or a whole Ready) wrote was rolled back: what this object keeps of the state is read again. */
  rolledBack(): void {
    this.search.forget();
    this.versions.forget();
    this.schemas.forget();
    this.access.forget();
  }

  recordChange(change: ContentChange): void {
    this.changes.record(change);
  }

  recordDescendantChanges(path: string, op: 'deleted' | 'moved', stamp: ChangeStamp, from?: string): void {
    this.changes.recordDescendants(path, op, stamp, from);
  }

  pruneChanges(through: number): void {
    this.changes.pruneThrough(through);
  }

  historyRetention(): HistoryRetention | undefined {
    return this.versions.retention();
  }

  startHistory(retention: HistoryRetention, at: string): void {
    this.versions.start(retention, at);
  }

  setHistoryRetention(retention: HistoryRetention): void {
    this.versions.setRetention(retention);
  }

  supersedeVersion(node: ContentNode, at: string): void {
    this.versions.supersede(node.id, node.version + 1, at);
  }

  keepDeletedVersions(path: string, stamp: ChangeStamp): void {
    this.versions.keepDeleted(path, stamp);
  }

  nodeVersion(id: string, version: number): NodeVersion | undefined {
    return this.versions.version(id, version);
  }

  lastVersionNumber(id: string): number | undefined {
    return this.versions.lastVersionNumber(id);
  }

  pruneVersions(before: string, rowsMax: number): number {
    const pruned = this.versions.pruneSupersededBefore(before, rowsMax);
    if (pruned > 0) this.access.dropOrphans();
    return pruned;
  }

  currentEntryIndex(): number {
    return this.entryIndex;
  }

  writeSchema(typeName: string): WriteSchema | undefined {
    return this.schemas.writeSchema(typeName);
  }

  activeSchema(typeName: string): StoredSchema | undefined {
    return this.schemas.active(typeName);
  }

  schemaVersion(typeName: string, version: number): StoredSchema | undefined {
    return this.schemas.version(typeName, version);
  }

  lastSchemaVersion(typeName: string): number {
    return this.schemas.lastVersion(typeName);
  }

  insertSchema(schema: StoredSchema): void {
    const before = this.search.derivation(schema.typeName);
    this.schemas.insert(schema);
    this.search.derivationChanged(schema.typeName, before);
  }

  setSchemaState(typeName: string, version: number, state: StoredSchema['state']): void {
    const before = this.search.derivation(typeName);
    this.schemas.setState(typeName, version, state);
    this.search.derivationChanged(typeName, before);
  }

  schemaMigration(typeName: string): SchemaMigration | undefined {
    return this.schemas.migration(typeName);
  }

  saveSchemaMigration(migration: SchemaMigration): void {
    const before = this.search.derivation(migration.typeName);
    this.schemas.saveMigration(migration);
    this.search.derivationChanged(migration.typeName, before);
  }

  schemasRequired(): boolean {
    return this.schemas.schemasRequired();
  }

  setSchemasRequired(required: boolean): void {
    this.schemas.setSchemasRequired(required);
  }

  accessEntriesAt(path: string): readonly AccessEntry[] | undefined {
    return this.access.entriesAt(path);
  }

  setSearchIndexesUntyped(on: boolean): number {
    return this.search.setIndexesUntyped(on);
  }

  accessInUse(): boolean {
    return this.access.any();
  }

  accessPathsUnder(path: string): string[] {
    return this.access.pathsUnder(path);
  }

  setAccessEntries(nodeId: string, entries: readonly AccessEntry[]): void {
    this.access.set(nodeId, entries);
  }

  /** The state's lines of the content digest besides nodes, users and versions: schemas, then access entries. */
  *stateDigestLines(): Generator<JsonValue> {
    yield* this.schemas.digestLines();
    yield* this.access.digestLines();
    if (getMeta<number>(this.db, untypedMetaKey) === 0) yield ['searchPolicy', { indexUntypedNodes: false }];
  }

  schemasInUse(): boolean {
    return this.schemas.inUse();
  }

  countNodesOfType(typeName: string): number {
    return this.schemas.countNodesOfType(typeName);
  }

  nodesOfTypeAfter(typeName: string, afterId: string, limit: number, bytesMax: number): ContentNode[] {
    return (this.schemas.nodeRowsOfTypeAfter(typeName, afterId, limit, bytesMax) as unknown as NodeRow[]).map(toNode);
  }

  childOutsideTypes(parentId: string, types: readonly string[]): ContentNode | undefined {
    // One statement per number of types (at most schemaChildTypesMax of them), prepared once.
    let statement = this.childOutsideStatements.get(types.length);
    if (statement === undefined) {
      const list = types.length === 0 ? '' : `AND type NOT IN (${types.map(() => '?').join(', ')})`;
      statement = this.db.prepare(`SELECT * FROM nodes WHERE parent_id = ? ${list} ORDER BY position, id LIMIT 1`);
      this.childOutsideStatements.set(types.length, statement);
    }
    const row = statement.get([parentId, ...types]) as NodeRow | undefined;
    return row && toNode(row);
  }

  // ---- Reads for the HTTP layer ----

  storedNodeByPath(path: string): StoredNode | undefined {
    const row = this.storedByPath.get(path) as StoredNodeRow | undefined;
    return row && storedNodeOf(row);
  }

  /**
   * The token key id; undefined until the repository's bootstrap entry has applied. A repository bootstrapped by an
   * older release (which journaled a raw key, now ignored) or restored from its snapshot has none stored: it uses
   * legacyTokenKeyId until the first rotation.
   */
  tokenKeyId(): string | undefined {
    const keyId = getMeta<string>(this.db, 'token_key_id');
    if (keyId !== undefined) return keyId;
    return this.nodeByPath(rootPath) === undefined ? undefined : legacyTokenKeyId;
  }

  users(): User[] {
    return (this.userRows.all() as Array<{ name: string }>).map((r) => this.userByName(r.name)!);
  }

  /** Users by name after `after` (exclusive), at most `limit`, and whether more follow. */
  usersPage(after: string | undefined, limit: number): { readonly items: User[]; readonly more: boolean } {
    const rows = this.userPageRows.all(after ?? '', after === undefined ? 1 : 0, limit + 1) as Array<{ name: string }>;
    return { items: rows.slice(0, limit).map((r) => this.userByName(r.name)!), more: rows.length > limit };
  }

  /**
   * One page of a node's children in order. `take` (see page()) may end the page before `limit`: rows are read one
   * at a time and the rest are never read.
   */
  childrenPage(parentId: string, after: QueryCursor | undefined, limit: number, take: PageTake = takeAll, visible: Visible = null): Page<StoredNode> {
    const position = after === undefined ? -1 : Number(after.value);
    const rows = this.childPage.iterate(parentId, position, position, after?.id ?? '', rowsFor(limit, visible)) as Iterable<StoredNodeRow>;
    return this.page(rows, limit, take, (row) => ({ value: row[4], id: row[0] }), visible);
  }

  /** One page of a query's results; `take` as for childrenPage. */
  query(spec: QuerySpec, take: PageTake = takeAll, visible: Visible = null): Page<StoredNode> {
    const { where, params } = nodeFilterSql(spec);
    const sort = sortExpression(spec.sort);
    const cmp = spec.descending ? '<' : '>';
    if (spec.cursor !== undefined) {
      // Keyset pagination on (sort value, id), nulls last in both directions; see the ORDER BY below.
      if (spec.cursor.value === null) {
        where.push(`(${sort.sql}) IS NULL AND id ${cmp} ?`);
        params.push(...sort.params, spec.cursor.id);
      } else {
        where.push(`((${sort.sql}) ${cmp} ? OR ((${sort.sql}) = ? AND id ${cmp} ?) OR (${sort.sql}) IS NULL)`);
        params.push(...sort.params, spec.cursor.value, ...sort.params, spec.cursor.value, spec.cursor.id, ...sort.params);
      }
    }
    const direction = spec.descending ? 'DESC' : 'ASC';
    const sql =
      `SELECT ${storedNodeColumns}, (${sort.sql}) AS sort_value FROM nodes` +
      (where.length > 0 ? ` WHERE ${where.join(' AND ')}` : '') +
      ` ORDER BY (sort_value IS NULL), sort_value ${direction}, id ${direction} LIMIT ?`;
    const rows = this.db.prepare(sql).raw(true).iterate(...sort.params, ...params, rowsFor(spec.limit, visible)) as Iterable<[...StoredNodeRow, ScalarValue]>;
    return this.page(rows, spec.limit, take, (row) => ({ value: row[13] ?? null, id: row[0] }), visible);
  }

  /** Every node, by id: a stable order that owes nothing to when or where the rows were written. */
  *nodesById(): Generator<ContentNode> {
    for (const row of this.db.prepare('SELECT * FROM nodes ORDER BY id').iterate() as Iterable<NodeRow>) yield toNode(row);
  }

  /**
   * Every blob the content references, once each, with its size: the nodes' binaries and those of every kept
   * version (a restore may make one current again, so a blob lives as long as a version names it).
   */
  blobReferences(): Array<{ sha256: string; size: number }> {
    return this.db
      .prepare(
        `SELECT json_extract(b.value, '$.sha256') AS sha256, max(json_extract(b.value, '$.size')) AS size
         FROM (${this.binariesSources()}) AS r, json_each(r.binaries) AS b GROUP BY 1`,
      )
      .all() as Array<{ sha256: string; size: number }>;
  }

  /** Whether any node or kept version references the blob (a scan: for the rare retry, not for every request). */
  isBlobReferenced(sha256: string): boolean {
    return (
      this.db
        .prepare(`SELECT 1 FROM (${this.binariesSources()}) AS r, json_each(r.binaries) AS b WHERE json_extract(b.value, '$.sha256') = ? LIMIT 1`)
        .pluck()
        .get(sha256) !== undefined
    );
  }

  /** The binaries columns that reference blobs: the versions' too where the table exists (a state of an older format has none). */
  private binariesSources(): string {
    return this.versions.tableExists() ? `SELECT binaries FROM nodes WHERE binaries <> '{}' UNION ALL SELECT binaries FROM versions WHERE binaries <> '{}'` : `SELECT binaries FROM nodes`;
  }

  /**
   * Up to `limit` nodes from `rows` (which hold one more, to tell whether a next page exists), ending early where
   * `take` refuses a node. Leaving the loop early ends the statement: the rows after are never read.
   */
  private page<R extends StoredNodeRow | [...StoredNodeRow, ScalarValue]>(
    rows: Iterable<R>,
    limit: number,
    take: PageTake,
    cursorOf: (row: R) => QueryCursor,
    visible: Visible = null,
  ): Page<StoredNode> {
    const items: StoredNode[] = [];
    let last: R | undefined;
    for (const row of rows) {
      // A node the reader may not read is passed over as if it were not there: it is never an item, never the
      // row a cursor names, and a page says more follow only when a node it may read does.
      if (visible !== null && !visible((row as StoredNodeRow)[1])) continue;
      if (items.length === limit) return { items, next: cursorOf(last!) };
      const node = storedNodeOf(row as StoredNodeRow);
      if (!take(node)) {
        invariant(items.length > 0, 'a page always takes its first node');
        return { items, next: cursorOf(last!) };
      }
      items.push(node);
      last = row;
    }
    return { items };
  }

  /**
   * SHA-256 over every node, user and kept version in a fixed order: two nodes that applied the same journal prefix have the
   * same digest. Binaries are covered by their content hashes.
   */
  digest(): string {
    const hash = createHash('sha256');
    for (const row of this.db.prepare('SELECT * FROM nodes ORDER BY id').iterate() as Iterable<NodeRow>) {
      hash.update(JSON.stringify(row));
      hash.update('\n');
    }
    for (const row of this.db.prepare('SELECT * FROM users ORDER BY name').iterate()) {
      hash.update(JSON.stringify(row));
      hash.update('\n');
    }
    for (const version of this.versions.all()) {
      hash.update(JSON.stringify(version));
      hash.update('\n');
    }
    for (const line of this.schemas.digestLines()) {
      hash.update(JSON.stringify(line));
      hash.update('\n');
    }
    return hash.digest('hex');
  }
}
