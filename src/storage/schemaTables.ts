import type { JsonValue } from '../content/model.js';
import type { SchemaDefinition } from '../content/schema.js';
import type { MigrationFailure, MigrationState, SchemaMigration, SchemaState, StoredSchema, WriteSchema } from '../content/schemaState.js';
import { invariant } from '../errors/catalogue.js';
import { getMeta, setMeta, type Db } from './database.js';

interface SchemaRow {
  type_name: string;
  version: number;
  state: string;
  definition: string;
  idx: number;
  created_at: string;
  created_by: string;
}

interface MigrationRow {
  type_name: string;
  from_version: number | null;
  to_version: number;
  state: string;
  after_id: string;
  nodes_done: number;
  nodes_converted: number;
  nodes_total: number;
  batches: number;
  started_at: string;
  started_by: string;
  started_idx: number;
  updated_at: string;
  finished_at: string | null;
  failure: string | null;
}

function schemaOf(row: SchemaRow): StoredSchema {
  return {
    typeName: row.type_name,
    version: row.version,
    definition: JSON.parse(row.definition) as SchemaDefinition,
    state: row.state as SchemaState,
    index: row.idx,
    createdAt: row.created_at,
    createdBy: row.created_by,
  };
}

function migrationOf(row: MigrationRow): SchemaMigration {
  return {
    typeName: row.type_name,
    fromVersion: row.from_version,
    toVersion: row.to_version,
    state: row.state as MigrationState,
    afterId: row.after_id,
    nodesDone: row.nodes_done,
    nodesConverted: row.nodes_converted,
    nodesTotal: row.nodes_total,
    batches: row.batches,
    startedAt: row.started_at,
    startedBy: row.started_by,
    startedIndex: row.started_idx,
    updatedAt: row.updated_at,
    finishedAt: row.finished_at,
    failure: row.failure === null ? null : (JSON.parse(row.failure) as MigrationFailure),
  };
}

/**
 * The schemas and schema_migrations tables (database.ts), written by apply() through ContentTables and read by the
 * schema routes and the migration job. Every write of a node asks for its type's schema (and its parent's), so the
 * schema writes are checked against stays in memory, by type, until a schema entry changes it, an entry rolls back
 * or the state is replaced (forget()).
 *
 * Statements are prepared at first use: a state file of an older format (no schema tables) is read through
 * ContentTables too, and there every type simply has no schema.
 */
export class SchemaTables {
  private statements: ReturnType<SchemaTables['prepare']> | null = null;
  private readonly writeSchemas = new Map<string, WriteSchema | null>();
  private required: boolean | undefined;
  /** Whether any schema is in force or pending (undefined: read again at next use). */
  private any: boolean | undefined;
  private present: boolean | undefined;

  constructor(private readonly db: Db) {}

  private prepare() {
    const db = this.db;
    return {
      versionsPage: db.prepare('SELECT * FROM schemas WHERE type_name = ? AND version < ? ORDER BY version DESC LIMIT ?'),
      active: db.prepare(`SELECT * FROM schemas WHERE type_name = ? AND state = 'active'`),
      one: db.prepare('SELECT * FROM schemas WHERE type_name = ? AND version = ?'),
      last: db.prepare('SELECT max(version) FROM schemas WHERE type_name = ?').pluck(),
      forWrites: db.prepare(`SELECT * FROM schemas WHERE type_name = ? AND state IN ('active', 'pending') ORDER BY version DESC LIMIT 1`),
      insert: db.prepare(
        'INSERT INTO schemas (type_name, version, state, definition, idx, created_at, created_by) VALUES (@type_name, @version, @state, @definition, @idx, @created_at, @created_by)',
      ),
      setState: db.prepare('UPDATE schemas SET state = ? WHERE type_name = ? AND version = ?'),
      anyInForce: db.prepare(`SELECT 1 FROM schemas WHERE state IN ('active', 'pending') LIMIT 1`).pluck(),
      inForce: db.prepare(`SELECT * FROM schemas WHERE state IN ('active', 'pending') AND type_name > ? ORDER BY type_name, version DESC LIMIT ?`),
      migration: db.prepare('SELECT * FROM schema_migrations WHERE type_name = ?'),
      migrationUpsert: db.prepare(
        `INSERT INTO schema_migrations (type_name, from_version, to_version, state, after_id, nodes_done, nodes_converted, nodes_total, batches,
                                       started_at, started_by, started_idx, updated_at, finished_at, failure)
         VALUES (@type_name, @from_version, @to_version, @state, @after_id, @nodes_done, @nodes_converted, @nodes_total, @batches,
                 @started_at, @started_by, @started_idx, @updated_at, @finished_at, @failure)
         ON CONFLICT(type_name) DO UPDATE SET from_version = excluded.from_version, to_version = excluded.to_version, state = excluded.state,
           after_id = excluded.after_id, nodes_done = excluded.nodes_done, nodes_converted = excluded.nodes_converted,
           nodes_total = excluded.nodes_total, batches = excluded.batches, started_at = excluded.started_at, started_by = excluded.started_by,
           started_idx = excluded.started_idx, updated_at = excluded.updated_at, finished_at = excluded.finished_at, failure = excluded.failure`,
      ),
      pendingMigrations: db.prepare(`SELECT * FROM schema_migrations WHERE state IN ('running', 'failed') ORDER BY started_idx`),
      countOfType: db.prepare('SELECT count(*) FROM nodes WHERE type = ?').pluck(),
      ofTypeAfter: db.prepare('SELECT * FROM nodes WHERE type = ? AND id > ? ORDER BY id LIMIT ?'),
    };
  }

  private get sql(): ReturnType<SchemaTables['prepare']> {
    this.statements ??= this.prepare();
    return this.statements;
  }

  /** Whether the tables exist (a state file of format 4 or older has none). */
  tableExists(): boolean {
    this.present ??= this.db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schemas'`).pluck().get() !== undefined;
    return this.present;
  }

  /** What this object keeps in memory is read again at next use. */
  forget(): void {
    this.writeSchemas.clear();
    this.required = undefined;
    this.present = undefined;
    this.any = undefined;
  }

  writeSchema(typeName: string): WriteSchema | undefined {
    let cached = this.writeSchemas.get(typeName);
    if (cached === undefined) {
      const row = this.tableExists() ? (this.sql.forWrites.get(typeName) as SchemaRow | undefined) : undefined;
      cached = row === undefined ? null : { schema: schemaOf(row), migrating: row.state === 'pending' };
      // Types without a schema are cached too (null), up to a bound: a client inventing types costs one map entry each.
      if (this.writeSchemas.size >= writeSchemasCachedMax) this.writeSchemas.clear();
      this.writeSchemas.set(typeName, cached);
    }
    return cached ?? undefined;
  }

  /** Versions of the type's schema below `before`, newest first: a page of its listing. */
  versionsPage(typeName: string, before: number, limit: number): StoredSchema[] {
    if (!this.tableExists()) return [];
    return (this.sql.versionsPage.all(typeName, before, limit) as SchemaRow[]).map(schemaOf);
  }

  active(typeName: string): StoredSchema | undefined {
    if (!this.tableExists()) return undefined;
    const row = this.sql.active.get(typeName) as SchemaRow | undefined;
    return row && schemaOf(row);
  }

  version(typeName: string, version: number): StoredSchema | undefined {
    if (!this.tableExists()) return undefined;
    const row = this.sql.one.get(typeName, version) as SchemaRow | undefined;
    return row && schemaOf(row);
  }

  lastVersion(typeName: string): number {
    if (!this.tableExists()) return 0;
    return (this.sql.last.get(typeName) as number | null) ?? 0;
  }

  insert(schema: StoredSchema): void {
    this.writeSchemas.delete(schema.typeName);
    this.any = undefined;
    this.sql.insert.run({
      type_name: schema.typeName,
      version: schema.version,
      state: schema.state,
      definition: JSON.stringify(schema.definition),
      idx: schema.index,
      created_at: schema.createdAt,
      created_by: schema.createdBy,
    });
  }

  setState(typeName: string, version: number, state: SchemaState): void {
    this.writeSchemas.delete(typeName);
    this.any = undefined;
    const changed = this.sql.setState.run(state, typeName, version).changes;
    invariant(changed === 1, `schema ${typeName} version ${version} does not exist`);
  }

  /** The schemas in force or pending, by type name, after `afterType`: a page of the listing. */
  inForcePage(afterType: string, limit: number): StoredSchema[] {
    if (!this.tableExists()) return [];
    return (this.sql.inForce.all(afterType, limit) as SchemaRow[]).map(schemaOf);
  }

  migration(typeName: string): SchemaMigration | undefined {
    if (!this.tableExists()) return undefined;
    const row = this.sql.migration.get(typeName) as MigrationRow | undefined;
    return row && migrationOf(row);
  }

  /** Migrations running or failed, the oldest first: the order the migration job takes them in. */
  pendingMigrations(): SchemaMigration[] {
    if (!this.tableExists()) return [];
    return (this.sql.pendingMigrations.all() as MigrationRow[]).map(migrationOf);
  }

  saveMigration(migration: SchemaMigration): void {
    this.writeSchemas.delete(migration.typeName);
    this.sql.migrationUpsert.run({
      type_name: migration.typeName,
      from_version: migration.fromVersion,
      to_version: migration.toVersion,
      state: migration.state,
      after_id: migration.afterId,
      nodes_done: migration.nodesDone,
      nodes_converted: migration.nodesConverted,
      nodes_total: migration.nodesTotal,
      batches: migration.batches,
      started_at: migration.startedAt,
      started_by: migration.startedBy,
      started_idx: migration.startedIndex,
      updated_at: migration.updatedAt,
      finished_at: migration.finishedAt,
      failure: migration.failure === null ? null : JSON.stringify(migration.failure),
    });
  }

  schemasRequired(): boolean {
    this.required ??= getMeta<number>(this.db, 'schemas_required') === 1;
    return this.required;
  }

  /** Whether any write could meet a schema: one in force or pending, or schemas required (kept in memory). */
  inUse(): boolean {
    this.any ??= this.tableExists() && this.sql.anyInForce.get() !== undefined;
    return this.any || this.schemasRequired();
  }

  setSchemasRequired(required: boolean): void {
    this.required = required;
    setMeta(this.db, 'schemas_required', required ? 1 : 0);
  }

  countNodesOfType(typeName: string): number {
    return this.sql.countOfType.get(typeName) as number;
  }

  /** Rows of nodes of the type after `afterId`, bounded by count and properties bytes; the caller turns them into nodes. */
  nodeRowsOfTypeAfter(typeName: string, afterId: string, limit: number, bytesMax: number): Array<{ properties: string }> {
    const rows: Array<{ properties: string }> = [];
    let bytes = 0;
    for (const row of this.sql.ofTypeAfter.iterate(typeName, afterId, limit) as IterableIterator<{ properties: string }>) {
      if (rows.length > 0 && bytes + row.properties.length > bytesMax) break;
      rows.push(row);
      bytes += row.properties.length;
    }
    return rows;
  }

  /**
   * The content digest's lines of the schemas (src/replication/contentDigest.ts): every version by type and version,
   * every migration by type, and the policy when schemas are required. None in a state without schemas.
   */
  *digestLines(): Generator<JsonValue> {
    if (!this.tableExists()) return;
    for (const row of this.db.prepare('SELECT * FROM schemas ORDER BY type_name, version').iterate() as IterableIterator<SchemaRow>) {
      const s = schemaOf(row);
      yield ['schema', s.typeName, s.version, s.state, s.definition as unknown as JsonValue, s.index, s.createdAt, s.createdBy];
    }
    for (const row of this.db.prepare('SELECT * FROM schema_migrations ORDER BY type_name').iterate() as IterableIterator<MigrationRow>) {
      const m = migrationOf(row);
      yield [
        'migration', m.typeName, m.fromVersion, m.toVersion, m.state, m.afterId, m.nodesDone, m.nodesConverted, m.nodesTotal, m.batches,
        m.startedAt, m.startedBy, m.startedIndex, m.updatedAt, m.finishedAt, m.failure as unknown as JsonValue,
      ];
    }
    if (this.schemasRequired()) yield ['schemasRequired', true];
  }
}

/** Types whose schema (or its absence) stays in memory; past it the cache starts over. */
const writeSchemasCachedMax = 4096;
