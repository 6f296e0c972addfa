import Database from 'better-sqlite3';
import { createHash, randomUUID } from 'node:crypto';
import { closeSync, createReadStream, fsyncSync, openSync, readSync, renameSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

import type { CoordinatorSnapshotData } from '../core/clusterCoordinator.js';
import type { Snapshot } from '../core/types.js';
import { ConclaveError, errorCatalogue, invariant, type ErrorCode } from '../errors/catalogue.js';
import { joinCommitPoint, type CommitPointCells } from './commitPoint.js';
import { rebuildSearchIndexIfPresent } from './searchIndex.js';
import { columnsSinceFormat, databaseSchema, dataFormatVersion, indexesSinceFormat, metaKeysSinceFormat, tablesSinceFormat, type Db } from './database.js';

/**
 * A snapshot file: a SQLite database with the node's schema holding the state machine as of one applied index —
 * the content tables, the users, the token key — and that index itself (meta `applied_index`), so the file says
 * exactly which point of the journal it stands for. The journal table is empty; nothing node-specific (id,
 * secret, hard state) is in it.
 *
 * Writing one leaves the event loop alone: a worker thread opens the live database itself and reads it in one
 * read transaction (WAL: it sees one commit point, whatever the node commits meanwhile), extracts the
 * state-machine tables into the snapshot file, fsyncs it and hashes it. No copy of the whole database is made.
 */

/** The tables apply() writes (src/content/apply.ts): a new one must be added here, or snapshots would lose it. */
export const stateMachineTables = ['nodes', 'users', 'changes', 'versions', 'schemas', 'schema_migrations', 'access'] as const;
/** The meta keys apply() writes (besides the applied index). */
export const stateMachineMetaKeys = ['token_key_id', 'changes_pruned_through', 'history_started_at', 'history_versions_per_node', 'schemas_required', 'search_index_untyped'] as const;

export interface SnapshotFileInfo {
  /** The applied index the file holds. */
  readonly index: number;
  readonly bytes: number;
  /** SHA-256 of the whole file, hex. */
  readonly sha256: string;
}

const hashChunkBytes = 1024 * 1024;

/**
 * Writes a snapshot of `db`'s state machine into `tmpDir`, from a worker thread that reads the live database in one
 * read transaction (WAL: it sees one commit however long it reads, while the node goes on writing; the event loop is
 * not involved at all). Resolves with the file's path (in tmpDir: the caller moves it into place) and what it holds.
 * `signal` abandons the work (the worker is stopped and the partial file removed).
 */
export async function writeSnapshotFile(db: Db, tmpDir: string, signal?: AbortSignal): Promise<{ path: string; info: SnapshotFileInfo }> {
  const outPath = join(tmpDir, `${randomUUID()}.db`);
  try {
    const work: SnapshotWorkerData = { sourcePath: db.name, outPath };
    const info = await runFileWorker<SnapshotFileInfo>(new URL('./snapshotWorker.js', import.meta.url), work, 'Writing the snapshot file', signal);
    return { path: outPath, info };
  } catch (err) {
    removeDatabaseFileInBackground(outPath, tmpDir);
    throw err;
  }
}

/** What the snapshot worker is given. */
export interface SnapshotWorkerData {
  /** The node's live database (read in one transaction) or a copy of it. */
  readonly sourcePath: string;
  readonly outPath: string;
  /** Shared with other workers that must read the same commit (see commitPoint.ts). */
  readonly commitPoint?: CommitPointCells;
  /** The worker thread's nice value (Linux: per thread), so the work yields the CPU to the node's serving. */
  readonly nice?: number;
  /**
   * False for a file read back once and removed (a backup's state part): no fsync, so its bytes may never reach the
   * disk at all, and the writes the node serves meanwhile do not queue their fsyncs behind hundreds of megabytes.
   */
  readonly durable?: boolean;
}

/**
 * The young generation, in MiB, of a worker run with `smallHeap` (V8's default is 16 or more): a backup's two state
 * workers stream rows and keep almost nothing, so a small one cost them no time, and together they take some 30 MB
 * less of the node's memory (measured on 255 MB: 144 MB extra RSS with the default, 108 with this).
 */
const smallHeapYoungGenerationMb = 2;

/**
 * Runs `script` in a worker thread (work on files that must stay off the event loop) and resolves with what it
 * posts as `{ result }`; `{ error, code? }` rejects with that catalogue code (else STORAGE_ERROR), prefixed by `what`. `signal` stops the worker.
 */
export function runFileWorker<T>(script: URL, workerData: unknown, what: string, signal: AbortSignal | undefined, options: { smallHeap?: boolean } = {}): Promise<T> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted === true) return reject(signal.reason instanceof Error ? signal.reason : new ConclaveError('STORAGE_ERROR', `${what}: stopped before it began.`));
    const worker = new Worker(script, { workerData, ...(options.smallHeap === true ? { resourceLimits: { maxYoungGenerationSizeMb: smallHeapYoungGenerationMb } } : {}) });
    const onAbort = () => void worker.terminate();
    signal?.addEventListener('abort', onAbort, { once: true });
    let settled = false;
    worker.once('message', (message: { result?: T; error?: string; code?: string }) => {
      settled = true;
      if (message.result !== undefined) return resolve(message.result);
      // A worker that failed with an operating error keeps its code (a backup that does not verify stays BACKUP_CORRUPT).
      const code = message.code !== undefined && message.code in errorCatalogue ? (message.code as ErrorCode) : 'STORAGE_ERROR';
      reject(new ConclaveError(code, `${what} failed: ${message.error ?? 'unknown error'}`));
    });
    worker.once('error', (err) => {
      settled = true;
      reject(err);
    });
    worker.once('exit', (code) => {
      signal?.removeEventListener('abort', onAbort);
      if (!settled) reject(new ConclaveError('STORAGE_ERROR', `${what}: the worker stopped (exit code ${code}) before it finished.`));
    });
  });
}

/**
 * Runs in the worker thread: creates the snapshot file from the node's database (or a copy of it), fsyncs it (unless not `durable`) and
 * hashes it. The source is read in one transaction, so the file is exactly the state at one applied index however
 * much the node commits meanwhile; with `commitPoint`, the same one other workers read. Synchronous (the worker has
 * nothing else to do); exported for tests.
 */
export function extractSnapshot(sourcePath: string, outPath: string, commitPoint?: CommitPointCells, durable = true): SnapshotFileInfo {
  const out = new Database(outPath);
  let index = 0;
  try {
    // Nothing here needs a rollback journal or a sync per statement: the file is fsynced once at the end, and a
    // crash leaves a temporary file that the next start removes.
    out.pragma('main.journal_mode = OFF');
    out.pragma('main.synchronous = OFF');
    out.exec(databaseSchema);
    // Attached read-write only because this build of SQLite takes no URI file names (`?mode=ro`): nothing here
    // writes to it (every write names `main`), and a connection that is not the last one open never checkpoints it.
    out.prepare('ATTACH DATABASE ? AS source').run(sourcePath);
    out.exec('BEGIN');
    try {
      const begin = () => {
        index = (out.prepare(`SELECT value FROM source.meta WHERE key = 'applied_index'`).pluck().get() as number | undefined) ?? 0;
      };
      if (commitPoint === undefined) begin();
      else joinCommitPoint(commitPoint, begin);
      for (const table of stateMachineTables) {
        const columns = columnList(out, 'main', table);
        out.exec(`INSERT INTO main.${table} (${columns}) SELECT ${columns} FROM source.${table}`);
      }
      const keys = stateMachineMetaKeys.map((k) => `'${k}'`).join(', ');
      out.exec(`INSERT INTO main.meta (key, value) SELECT key, value FROM source.meta WHERE key IN (${keys})`);
      const setMeta = out.prepare('INSERT INTO main.meta (key, value) VALUES (?, ?)');
      setMeta.run('format_version', dataFormatVersion);
      setMeta.run('applied_index', index);
      out.exec('COMMIT');
    } finally {
      if (out.inTransaction) out.exec('ROLLBACK');
    }
    out.exec('DETACH DATABASE source');
  } finally {
    out.close();
  }
  if (durable) fsyncFile(outPath);
  const { bytes, sha256 } = hashFileSync(outPath);
  return { index, bytes, sha256 };
}

/** A worker's failure for want of disk (SQLite's SQLITE_FULL, or ENOSPC): reported as DISK_FULL, not STORAGE_ERROR. */
export function diskFull(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_FULL' || code === 'ENOSPC';
}

/** `a, b, c`: the table's columns as the node's schema has them (the same in the file and the database). */
function columnList(db: Db, schema: string, table: string): string {
  const columns = db.pragma(`${schema}.table_info(${table})`) as Array<{ name: string }>;
  invariant(columns.length > 0, `no table ${schema}.${table}`);
  return columns.map((c) => `"${c.name}"`).join(', ');
}

export function fsyncFile(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function hashFileSync(path: string): { bytes: number; sha256: string } {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(hashChunkBytes);
  const fd = openSync(path, 'r');
  let bytes = 0;
  try {
    for (;;) {
      const read = readSync(fd, buffer, 0, buffer.length, bytes);
      if (read === 0) break;
      hash.update(buffer.subarray(0, read));
      bytes += read;
    }
  } finally {
    closeSync(fd);
  }
  return { bytes, sha256: hash.digest('hex') };
}

/** SHA-256 and size of a file, streamed (the event loop stays free between chunks). */
export async function hashFile(path: string): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: hashChunkBytes })) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { bytes, sha256: hash.digest('hex') };
}

/**
 * Removes a database file (and its journals) without holding the event loop: unlinking a file of hundreds of MB takes
 * the file system 100 ms and more. Each file is renamed into `trashDir` first (a metadata step, so nothing can take
 * its name meanwhile; a crash leaves it where the next start empties) and unlinked from the thread pool.
 */
export function removeDatabaseFileInBackground(path: string, trashDir: string): void {
  for (const suffix of ['', '-journal', '-wal', '-shm']) {
    const trashed = join(trashDir, `${randomUUID()}.deleting`);
    try {
      renameSync(`${path}${suffix}`, trashed);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    void rm(trashed, { force: true }).catch(() => undefined);
  }
}

/** A database file and the journals SQLite may have left beside it. */
export function removeDatabaseFile(path: string): void {
  for (const suffix of ['', '-journal', '-wal', '-shm']) rmSync(`${path}${suffix}`, { force: true });
}

// ------------------------------------------------------------------ the schema of a state file from elsewhere

interface SchemaObject {
  readonly type: string;
  readonly name: string;
  readonly tbl_name: string;
  readonly sql: string | null;
}

let expectedSchema: { objects: ReadonlyMap<string, SchemaObject>; columns: ReadonlyMap<string, string> } | null = null;

/** The objects (and each table's columns) a database made from databaseSchema holds: what a state file may hold. */
function schemaOfThisBuild(): NonNullable<typeof expectedSchema> {
  if (expectedSchema !== null) return expectedSchema;
  const db = new Database(':memory:');
  try {
    db.exec(databaseSchema);
    const objects = new Map((db.prepare('SELECT type, name, tbl_name, sql FROM sqlite_master').all() as SchemaObject[]).map((o) => [o.name, o]));
    const columns = new Map([...objects.values()].filter((o) => o.type === 'table').map((o) => [o.name, columnsOf(db, 'main', o.name)]));
    expectedSchema = { objects, columns };
    return expectedSchema;
  } finally {
    db.close();
  }
}

/**
 * The schema of an older data format: this build's without the tables a later format added (tablesSinceFormat) and
 * their indexes (and the indexes it added to older tables). A state file of that format reads as one whose feed
 * starts at its index, that kept no history, or that has no schemas.
 */
function schemaOfFormat(format: number): NonNullable<typeof expectedSchema> {
  const current = schemaOfThisBuild();
  if (format === dataFormatVersion) return current;
  const later = (name: string) => {
    const table = current.objects.get(name)?.tbl_name ?? name;
    return (tablesSinceFormat[table] ?? 0) > format || (indexesSinceFormat[name] ?? 0) > format;
  };
  // Columns a later format added to a table this one has (columnsOf's JSON: [name, type, notnull, pk, hidden]).
  const columnsThen = (table: string, json: string) => {
    const added = columnsSinceFormat[table] ?? {};
    return JSON.stringify((JSON.parse(json) as Array<[string, ...unknown[]]>).filter(([name]) => (added[name] ?? 0) <= format));
  };
  return {
    objects: new Map([...current.objects].filter(([name]) => !later(name))),
    columns: new Map([...current.columns].filter(([name]) => !later(name)).map(([name, json]) => [name, columnsThen(name, json)])),
  };
}

/** The data formats whose state files this build reads, newest first. */
export const readableStateFormats: readonly number[] = Array.from({ length: dataFormatVersion - 1 }, (_, i) => dataFormatVersion - i);

/**
 * The data format of a state file from elsewhere, told by its schema alone (nothing of the file is read before its
 * schema is known to be ours): this build's or an older one it reads, or null with this build's objection.
 */
export function stateFormatOf(db: Db, schema: string): { format: number; problem: null } | { format: null; problem: string } {
  const problem = stateSchemaProblem(db, schema);
  if (problem === null) return { format: dataFormatVersion, problem: null };
  for (const format of readableStateFormats.slice(1)) if (stateSchemaProblem(db, schema, format) === null) return { format, problem: null };
  return { format: null, problem };
}

function columnsOf(db: Db, schema: string, table: string): string {
  const rows = db.pragma(`"${schema}".table_xinfo("${table.replace(/"/g, '""')}")`) as Array<{ name: string; type: string; notnull: number; pk: number; hidden: number }>;
  return JSON.stringify(rows.map((c) => [c.name, c.type, c.notnull, c.pk, c.hidden]));
}

/**
 * Why the schema of a state file that came from elsewhere (a backup, a peer's snapshot) is not this build's, or null.
 * Checked before any query touches it: a view or a trigger runs SQL of the file's author when the file is read or
 * copied — one that answers differently when attached than when opened alone passes a digest check and restores other
 * content; a recursive one never ends — and a generated column computes what is read. Only the tables and indexes
 * databaseSchema makes, with the same columns, are accepted (an index's SQL exactly; a table by its columns, so that
 * the text of a CREATE TABLE may differ between releases of one data format).
 */
export function stateSchemaProblem(db: Db, schema: string, format: number = dataFormatVersion): string | null {
  invariant(readableStateFormats.includes(format), `no schema of data format ${format} is known`);
  const expected = schemaOfFormat(format);
  const objects = db.prepare(`SELECT type, name, tbl_name, sql FROM "${schema}".sqlite_master`).all() as SchemaObject[];
  const seen = new Set<string>();
  for (const object of objects) {
    const wanted = expected.objects.get(object.name);
    if (object.type !== 'table' && object.type !== 'index') return `it holds a ${object.type} (${object.name}), which no state file has`;
    if (wanted === undefined || wanted.type !== object.type || wanted.tbl_name !== object.tbl_name) return `it holds a ${object.type} ${object.name} that no state file has`;
    if (object.type === 'index' && object.sql !== wanted.sql) return `its index ${object.name} is not this build's`;
    if (object.type === 'table' && columnsOf(db, schema, object.name) !== expected.columns.get(object.name)) return `its table ${object.name} has other columns than this build's`;
    seen.add(object.name);
  }
  for (const name of expected.objects.keys()) if (!seen.has(name)) return `it lacks ${expected.objects.get(name)!.type} ${name}`;
  return null;
}

// ------------------------------------------------------------------ install

const attachedName = 'snapshot_source';

/**
 * Attaches a snapshot file to the node's database for `replaceStateMachine`. SQLite refuses ATTACH inside a
 * transaction, so this runs before the Ready's transaction; the returned function detaches it (always call it).
 */
export function attachSnapshot(db: Db, path: string): () => void {
  db.prepare(`ATTACH DATABASE ? AS ${attachedName}`).run(path);
  return () => db.exec(`DETACH DATABASE ${attachedName}`);
}

/**
 * Replaces the state machine — content tables, users, token key, applied index — with the attached snapshot's
 * (inside the caller's transaction). The file must hold exactly `index`: its checksum was verified against what
 * the master announced, so anything else is a broken invariant, not an operating error.
 */
export function replaceStateMachine(db: Db, index: number): void {
  // The file's SHA-256 matched what its sender announced (or a restore verified it): a foreign schema here means a
  // sender that is not this build's, or not honest. Its data format is read first (from a table, never a view), so
  // that a node of another release says so rather than that the schema differs.
  const metaType = db.prepare(`SELECT type FROM ${attachedName}.sqlite_master WHERE name = 'meta'`).pluck().get();
  invariant(metaType === 'table', 'the state file being installed has no meta table');
  const meta = (key: string) => db.prepare(`SELECT value FROM ${attachedName}.meta WHERE key = ?`).pluck().get(key) as number | undefined;
  const format = meta('format_version');
  // An older format is read too: a node of a previous release may still send its snapshot.
  if (format === undefined || !readableStateFormats.includes(format)) {
    throw new ConclaveError('STORAGE_ERROR', `The snapshot file has data format ${format ?? 'none'}; this build reads ${readableStateFormats.at(-1)} to ${dataFormatVersion}. Run the same version on every node.`);
  }
  const problem = stateSchemaProblem(db, attachedName, format);
  invariant(problem === null, `the state file being installed is not a state file of this build: ${problem}`);
  const held = meta('applied_index');
  invariant(held === index, `the snapshot file holds index ${held ?? 'none'}, not ${index}`);
  for (const table of stateMachineTables) {
    db.exec(`DELETE FROM main.${table}`);
    if ((tablesSinceFormat[table] ?? 0) > format) continue;
    // The file's columns (checked above to be this build's, or an older format's: a prefix of them); a column it
    // lacks takes its default, null.
    const columns = columnList(db, attachedName, table);
    db.exec(`INSERT INTO main.${table} (${columns}) SELECT ${columns} FROM ${attachedName}.${table}`);
  }
  const keys = stateMachineMetaKeys.map((k) => `'${k}'`).join(', ');
  db.exec(`DELETE FROM main.meta WHERE key IN (${keys})`);
  const keysThen = stateMachineMetaKeys.filter((k) => (metaKeysSinceFormat[k] ?? 0) <= format).map((k) => `'${k}'`).join(', ');
  db.exec(`INSERT INTO main.meta (key, value) SELECT key, value FROM ${attachedName}.meta WHERE key IN (${keysThen})`);
  // A format-2 state has no feed: this node's starts at the snapshot's index, as an upgraded data directory's does.
  if (format === 2) db.prepare(`INSERT INTO main.meta (key, value) VALUES ('changes_pruned_through', ?)`).run(index);
  db.prepare(`INSERT INTO main.meta (key, value) VALUES ('applied_index', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`).run(index);
  // The full-text index is derived, not carried: built again from the new state within the install's transaction.
  rebuildSearchIndexIfPresent(db);
}

// ------------------------------------------------------------------ the reference a Snapshot carries

/**
 * What a coordinator snapshot carries as its state machine (`CoordinatorSnapshotData.stateMachine`): not the data
 * — a snapshot travels in a transport message — but the name of the file holding it: the index and term it stands
 * for, its size and SHA-256, and the node that wrote it. A follower downloads the file from the node that sent it
 * the snapshot (every node keeps the file of its latest snapshot, written or installed) and verifies both.
 */
export interface SnapshotFileRef extends SnapshotFileInfo {
  readonly term: number;
  readonly holder: string;
}

export function fileRefOf(snapshot: Snapshot): SnapshotFileRef {
  const ref = (snapshot.data as CoordinatorSnapshotData | null)?.stateMachine as SnapshotFileRef | undefined;
  invariant(ref !== undefined && ref !== null && ref.index === snapshot.index, `snapshot ${snapshot.index} names no file of its own`);
  return ref;
}
