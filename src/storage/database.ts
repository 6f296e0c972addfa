import Database from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { ConclaveError } from '../errors/catalogue.js';

/**
 * Version of the on-disk format. A node refuses a data directory written by a newer format, and by format 1 (the
 * single-node development releases, whose journal held bare commands without a voting configuration). Format 3
 * added the change feed's table, format 4 the content history's, format 5 the schemas', format 6 the full-text index
 * (a live directory's own, built from its state when missing: src/storage/searchIndex.ts): an older directory is upgraded in place at open
 * (below), and a state file of an older format is read as one without the tables it lacks (snapshotFile.ts).
 */
export const dataFormatVersion = 6;

/** The format that added each table after format 2; a state file of an older format lacks them. */
export const tablesSinceFormat: Readonly<Record<string, number>> = { changes: 3, versions: 4, schemas: 5, schema_migrations: 5, access: 6 };
/** The format that added each index to a table of an earlier format; an older state file lacks them. */
export const indexesSinceFormat: Readonly<Record<string, number>> = { nodes_type_id: 5 };
/** The format that added each column to a table of format 2 (always at its end); an older state file lacks them. */
export const columnsSinceFormat: Readonly<Record<string, Readonly<Record<string, number>>>> = { nodes: { op: 4, idx: 4, restored_from: 4 } };
/** The format that added each state-machine meta key after format 2: a state of an older one has no say over them. */
export const metaKeysSinceFormat: Readonly<Record<string, number>> = { changes_pruned_through: 3, history_started_at: 4, history_versions_per_node: 4, schemas_required: 5, search_index_untyped: 6 };

export type Db = Database.Database;

/** The tables of a node's database; a snapshot file has the same (with an empty journal). */
export const databaseSchema = `
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value ANY
) STRICT;

-- The journal: every change, in order, as the coordination core replicates it (payload: msgpack EntryPayload).
-- checksum covers index, term and payload (see journal.ts). Hard state and bootstrap view live in meta.
CREATE TABLE IF NOT EXISTS journal (
  idx      INTEGER PRIMARY KEY,
  term     INTEGER NOT NULL,
  payload  BLOB    NOT NULL,
  checksum INTEGER NOT NULL
) STRICT;

-- Content state. Written only by apply(), inside the transaction that records the applied index.
CREATE TABLE IF NOT EXISTS nodes (
  id          TEXT PRIMARY KEY,
  path        TEXT NOT NULL UNIQUE,
  name        TEXT NOT NULL,
  parent_id   TEXT,
  position    INTEGER NOT NULL,
  type        TEXT NOT NULL,
  properties  TEXT NOT NULL,
  binaries    TEXT NOT NULL,
  version     INTEGER NOT NULL,
  created_at  TEXT NOT NULL,
  created_by  TEXT NOT NULL,
  modified_at TEXT NOT NULL,
  modified_by TEXT NOT NULL,
  -- What made the current version, once history has started (null before): see the versions table.
  op            TEXT,
  idx           INTEGER,
  restored_from INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS nodes_children ON nodes(parent_id, position);
CREATE INDEX IF NOT EXISTS nodes_type ON nodes(type, path);
CREATE INDEX IF NOT EXISTS nodes_modified ON nodes(modified_at, id);
CREATE INDEX IF NOT EXISTS nodes_created ON nodes(created_at, id);
-- A schema migration walks the nodes of a type in id order (src/content/applySchemas.ts).
CREATE INDEX IF NOT EXISTS nodes_type_id ON nodes(type, id);

CREATE TABLE IF NOT EXISTS users (
  name          TEXT PRIMARY KEY,
  password_hash TEXT NOT NULL,
  roles         TEXT NOT NULL,
  version       INTEGER NOT NULL,
  created_at    TEXT NOT NULL,
  modified_at   TEXT NOT NULL
) STRICT;

-- The change feed (src/content/changes.ts): one row per content event, written by apply() in the transaction that
-- applies its entry (idx), in the order it made them (ordinal); pruned by pruneChanges entries, so every node keeps
-- the same history. changes_pruned_through in meta: the feed answers positions from there on.
CREATE TABLE IF NOT EXISTS changes (
  idx        INTEGER NOT NULL,
  ordinal    INTEGER NOT NULL,
  op         TEXT    NOT NULL,
  path       TEXT    NOT NULL,
  from_path  TEXT,
  node_id    TEXT    NOT NULL,
  type       TEXT    NOT NULL,
  version    INTEGER NOT NULL,
  changed_by TEXT    NOT NULL,
  changed_at TEXT    NOT NULL,
  property   TEXT,
  -- This node's count of events recorded, 1 more for each (the newest's + 1): how many events lie between two
  -- positions is a difference of two lookups, not a count (a webhook's backlog). Not part of the feed.
  seq        INTEGER NOT NULL,
  PRIMARY KEY (idx, ordinal)
) STRICT, WITHOUT ROWID;

-- Content history (src/storage/versionTables.ts): the versions of every node that a newer one replaced since history
-- started (meta history_started_at), each the node's whole row as that version left it, copied from nodes when the
-- next change comes (the current version is the nodes row, whose op, idx and restored_from say what made it). Written
-- by apply() in the entry's transaction, so every node holds the same history. op: what made the version (a feed op,
-- 'restored', or null before history started); idx: the entry that made it. A deleted node's last row is op
-- 'deleted', holding its last state. superseded_at: when a newer version (or the delete) replaced it: retention by
-- age drops versions superseded before a cut-off.
CREATE TABLE IF NOT EXISTS versions (
  node_id       TEXT    NOT NULL,
  version       INTEGER NOT NULL,
  op            TEXT,
  idx           INTEGER,
  restored_from INTEGER,
  superseded_at TEXT,
  path          TEXT    NOT NULL,
  name          TEXT    NOT NULL,
  parent_id     TEXT,
  position      INTEGER NOT NULL,
  type          TEXT    NOT NULL,
  properties    TEXT    NOT NULL,
  binaries      TEXT    NOT NULL,
  created_at    TEXT    NOT NULL,
  created_by    TEXT    NOT NULL,
  modified_at   TEXT    NOT NULL,
  modified_by   TEXT    NOT NULL,
  PRIMARY KEY (node_id, version)
) STRICT;
CREATE INDEX IF NOT EXISTS versions_superseded ON versions(superseded_at, node_id, version) WHERE superseded_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS versions_deleted_children ON versions(parent_id, idx) WHERE op = 'deleted';
CREATE INDEX IF NOT EXISTS versions_deleted_paths ON versions(path, idx) WHERE op = 'deleted';

-- Access control (src/content/access.ts, src/storage/accessTables.ts): the entries a content node carries, as the
-- JSON parseAccessEntries returns; a node without entries has no row. Written by apply(); a node's row goes with it.
CREATE TABLE IF NOT EXISTS access (
  node_id TEXT PRIMARY KEY,
  entries TEXT NOT NULL
) STRICT;

-- Schemas (src/content/schema.ts, schemaState.ts, src/storage/schemaTables.ts): every version of every type's schema,
-- written by apply(). state: active (in force; at most one per type), pending (a migration's target), superseded,
-- deleted, abandoned. definition: the stored form parseSchemaDefinition returns, as JSON. meta schemas_required:
-- 1 when every type needs a schema.
CREATE TABLE IF NOT EXISTS schemas (
  type_name  TEXT    NOT NULL,
  version    INTEGER NOT NULL,
  state      TEXT    NOT NULL,
  definition TEXT    NOT NULL,
  idx        INTEGER NOT NULL,
  created_at TEXT    NOT NULL,
  created_by TEXT    NOT NULL,
  PRIMARY KEY (type_name, version)
) STRICT;

-- The latest migration of each type (src/content/schemaState.ts SchemaMigration): its progress lives here, in the
-- content state, so that apply() checks each batch against it. failure: JSON, or null.
CREATE TABLE IF NOT EXISTS schema_migrations (
  type_name       TEXT PRIMARY KEY,
  from_version    INTEGER,
  to_version      INTEGER NOT NULL,
  state           TEXT    NOT NULL,
  after_id        TEXT    NOT NULL,
  nodes_done      INTEGER NOT NULL,
  nodes_converted INTEGER NOT NULL,
  nodes_total     INTEGER NOT NULL,
  batches         INTEGER NOT NULL,
  started_at      TEXT    NOT NULL,
  started_by      TEXT    NOT NULL,
  started_idx     INTEGER NOT NULL,
  updated_at      TEXT    NOT NULL,
  finished_at     TEXT,
  failure         TEXT
) STRICT;
`;

/** The declared type of each column columnsSinceFormat names, as databaseSchema declares it. */
const addedColumnTypes: Readonly<Record<string, string>> = { op: 'TEXT', idx: 'INTEGER', restored_from: 'INTEGER' };

/**
 * Creates the data directory (mode 0700) or checks the one there: it holds password hashes, the content and the
 * journal, so a directory every user of the machine may read, write or enter is refused. Group access is allowed:
 * Kubernetes gives a pod its volume through a group (fsGroup).
 */
export function prepareDataDirectory(dataDir: string): void {
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new ConclaveError('STORAGE_ERROR', `Cannot create the data directory ${dataDir}: ${(err as Error).message}`);
  }
  const stat = statSync(dataDir);
  const owner = foreignOwner(stat.uid, process.getuid?.());
  if (owner !== null) {
    throw new ConclaveError(
      'DATA_DIR_UNSAFE',
      `The data directory ${dataDir} belongs to another user (uid ${owner}), who can read and change everything in it: ` +
        `use a directory of this user's own, or \`chown\` it to this user, and start again.`,
      { dataDir, ownerUid: owner },
    );
  }
  const mode = stat.mode & 0o777;
  if ((mode & 0o007) !== 0) {
    throw new ConclaveError(
      'DATA_DIR_UNSAFE',
      `The data directory ${dataDir} is open to every user of this machine (mode ${mode.toString(8).padStart(3, '0')}), and it holds ` +
        `password hashes and all the content: run \`chmod o-rwx ${dataDir}\` (or chmod 700; group access may stay) and start again.`,
      { dataDir, mode: mode.toString(8) },
    );
  }
}

/**
 * The owner's uid when it is neither this process's user nor root, else null. A directory someone else made in a
 * shared place (/tmp) with a group this user belongs to passes the mode check, yet its owner reads it all. Root may
 * own it: a Kubernetes volume's root is root's, shared with the pod through its group (fsGroup). A node running as
 * root (uid 0, or no uids on this platform) has nobody to fear.
 */
export function foreignOwner(ownerUid: number, selfUid: number | undefined): number | null {
  if (selfUid === undefined || selfUid === 0) return null;
  return ownerUid === selfUid || ownerUid === 0 ? null : ownerUid;
}

/**
 * The database file is created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the database file's
 * mode. Files an older release left readable by others lose that (best effort: the directory check is the guard).
 */
function privateFile(file: string): void {
  if (!existsSync(file)) {
    closeSync(openSync(file, 'a', 0o600));
    return;
  }
  for (const path of [file, `${file}-wal`, `${file}-shm`]) {
    try {
      const mode = statSync(path).mode & 0o777;
      if ((mode & 0o007) !== 0) chmodSync(path, mode & 0o770);
    } catch {
      // Absent (no -wal yet) or not ours to change: the directory's mode already keeps others out.
    }
  }
}

/** The write-ahead log's size kept on disk after it starts over (it grows past this only while a worker reads). */
const walBytesKeptMax = 64 * 1024 * 1024;

/** The file whose lock says a process has the data directory open. */
export const lockFileName = 'conclave.lock';

/**
 * One process per data directory: an exclusive SQLite lock on conclave.lock, taken now and held until the returned
 * connection closes. A second node started on the same directory by mistake stops here with a clear message instead
 * of interleaving journal indexes. The lock is not on conclave.db itself so that worker threads of this process can
 * read the database in transactions of their own (snapshots and backups read it without a copy).
 */
function lockDataDirectory(dataDir: string): Database.Database {
  const file = join(dataDir, lockFileName);
  privateFile(file);
  const lock = new Database(file);
  try {
    lock.pragma('locking_mode = EXCLUSIVE');
    lock.pragma('busy_timeout = 0');
    // In exclusive locking mode the first write transaction's lock is kept until the connection closes.
    lock.exec('BEGIN EXCLUSIVE; COMMIT');
  } catch (err) {
    lock.close();
    if ((err as { code?: string }).code?.startsWith('SQLITE_BUSY') === true) {
      throw new ConclaveError('STORAGE_ERROR', `The data directory ${dataDir} is in use by another Conclave process; stop it or choose another --data.`);
    }
    throw err;
  }
  return lock;
}

/** Whether a running process holds the data directory's lock (lockDataDirectory), without taking it. */
export function dataDirectoryInUse(dataDir: string): boolean {
  const file = join(dataDir, lockFileName);
  if (!existsSync(file)) return false;
  let lock: Database.Database | null = null;
  try {
    lock = new Database(file, { readonly: true, fileMustExist: true });
    lock.pragma('busy_timeout = 0');
    lock.prepare('SELECT count(*) FROM sqlite_master').get();
    return false;
  } catch (err) {
    if ((err as { code?: string }).code?.startsWith('SQLITE_BUSY') === true) return true;
    throw err;
  } finally {
    lock?.close();
  }
}

/**
 * Opens (creating if needed) the node's SQLite database in WAL mode with synchronous=FULL: a committed transaction
 * is on disk before commit returns, which is what lets the write path acknowledge after commit. (The runtime lowers
 * it to NORMAL for the one transaction of a Ready that only applies entries: see readyNeedsSync.)
 */
export function openDatabase(dataDir: string): Db {
  prepareDataDirectory(dataDir);
  const file = join(dataDir, 'conclave.db');
  privateFile(file);
  const lock = lockDataDirectory(dataDir);
  let db: Db;
  try {
    db = new Database(file);
    db.pragma('busy_timeout = 0');
    db.pragma('journal_mode = WAL');
  } catch (err) {
    lock.close();
    throw new ConclaveError('STORAGE_ERROR', `Cannot open the database in ${dataDir}: ${(err as Error).message}`);
  }
  // The lock is the database connection's: released when the node closes it, not before.
  const closeDatabase = db.close.bind(db);
  db.close = () => {
    try {
      return closeDatabase();
    } finally {
      if (lock.open) lock.close();
    }
  };
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = OFF');
  // Checkpoints run from the write path; keep the WAL from growing without bound under steady writes.
  db.pragma('wal_autocheckpoint = 4000');
  // A worker's long read (a snapshot or a backup of a large database) keeps the WAL from starting over, so it grows
  // by what is written meanwhile; once it starts over it is cut back to this instead of staying that size on disk.
  db.pragma(`journal_size_limit = ${walBytesKeptMax}`);
  db.exec(databaseSchema);
  const format = db.prepare(`SELECT value FROM meta WHERE key = 'format_version'`).pluck().get() as number | undefined;
  if (format === undefined) {
    db.prepare(`INSERT INTO meta(key, value) VALUES ('format_version', ?)`).run(dataFormatVersion);
  } else if (format >= 2 && format < dataFormatVersion) {
    // The schema above just created the tables the directory lacked, empty; the columns it lacked are added (at the
    // end, as databaseSchema has them). Nothing of the feed before now exists: it answers from the applied index on,
    // and says CHANGES_COMPACTED for anything earlier. History starts when every member runs a release that keeps it
    // (src/history/historyKeeper.ts), as it would have for this directory.
    db.transaction(() => {
      // Keys of a later format than the directory's (a backup's state copied in could carry them) are not its own.
      for (const [key, since] of Object.entries(metaKeysSinceFormat)) if (since > format) db.prepare('DELETE FROM meta WHERE key = ?').run(key);
      for (const [table, columns] of Object.entries(columnsSinceFormat)) {
        const present = new Set((db.pragma(`table_info(${table})`) as Array<{ name: string }>).map((c) => c.name));
        for (const [column, since] of Object.entries(columns)) {
          if (since > format && !present.has(column)) db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${addedColumnTypes[column]}`);
        }
      }
      if (format === 2) {
        const applied = (db.prepare(`SELECT value FROM meta WHERE key = 'applied_index'`).pluck().get() as number | undefined) ?? 0;
        db.prepare(`INSERT INTO meta(key, value) VALUES ('changes_pruned_through', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`).run(applied);
      }
      db.prepare(`UPDATE meta SET value = ? WHERE key = 'format_version'`).run(dataFormatVersion);
    })();
  } else if (format < dataFormatVersion) {
    db.close();
    throw new ConclaveError(
      'STORAGE_ERROR',
      `The data directory ${dataDir} was written by data format ${format}, a development release before clustering; ` +
        'this build cannot read it. Start with an empty data directory.',
    );
  } else if (format > dataFormatVersion) {
    db.close();
    throw new ConclaveError(
      'STORAGE_ERROR',
      `The data directory ${dataDir} was written by data format ${format}; this build reads up to ${dataFormatVersion}. ` +
        'Run a newer Conclave on it.',
    );
  }
  return db;
}

export function getMeta<T>(db: Db, key: string): T | undefined {
  return db.prepare('SELECT value FROM meta WHERE key = ?').pluck().get(key) as T | undefined;
}

export function setMeta(db: Db, key: string, value: string | number | bigint | Buffer): void {
  db.prepare('INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(
    key,
    value,
  );
}

/** Maps an error thrown by SQLite to an operating error, so a full disk reads as DISK_FULL, not INTERNAL. */
export function storageError(err: unknown): ConclaveError {
  if (err instanceof ConclaveError) return err;
  const code = (err as { code?: string }).code ?? '';
  if (code === 'SQLITE_FULL' || code === 'ENOSPC') {
    return new ConclaveError('DISK_FULL', 'The data disk is full; nothing was stored. Free space and retry.');
  }
  return new ConclaveError('STORAGE_ERROR', `Storage failed: ${(err as Error).message ?? String(err)}`, {
    cause: code || undefined,
  });
}
