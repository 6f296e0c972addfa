import assert from 'node:assert/strict';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';

import { captureBackupState } from '../../src/backup/backupState.js';
import { applyCommand } from '../../src/content/apply.js';
import type { BootstrapCommand, Command } from '../../src/content/commands.js';
import { contentDigest } from '../../src/replication/contentDigest.js';
import { ContentTables } from '../../src/storage/contentTables.js';
import { getMeta, openDatabase, setMeta, type Db } from '../../src/storage/database.js';
import { JournalStore } from '../../src/storage/journal.js';
import { attachSnapshot, hashFile, replaceStateMachine, writeSnapshotFile } from '../../src/storage/snapshotFile.js';
import { SnapshotStore } from '../../src/storage/snapshotStore.js';
import { tempDir } from '../helpers/tmp.js';

// The snapshot writer and installer on real SQLite files: a node's database written to while the copy runs, a
// second node's database replaced by the file.

const time = '2026-01-01T00:00:00.000Z';

/** A node database whose applied index counts the nodes under the root: each "entry" puts one. */
class Node {
  readonly db: Db;
  readonly tables: ContentTables;
  applied = 0;
  private readonly apply;

  constructor(readonly dir: string) {
    this.db = openDatabase(dir);
    this.tables = new ContentTables(this.db);
    const journal = new JournalStore(this.db);
    // Each applied "entry" is in the journal too, as on a node (a backup's state is described from it).
    this.apply = this.db.transaction((command: Command) => {
      applyCommand(this.tables, command);
      this.applied++;
      journal.write([{ index: this.applied, term: 1, payload: { kind: 'noop' } }]);
      setMeta(this.db, 'applied_index', this.applied);
    });
    setMeta(this.db, 'node_id', `id-of-${dir}`);
    setMeta(this.db, 'cluster_secret', 'a secret that must not travel');
    this.apply({ type: 'bootstrap', rootId: 'root', time, tokenKeyId: 'the-token-key-id', adminPasswordHash: 'hash' });
  }

  put(i: number): void {
    this.apply({ type: 'put', path: `/n${i}`, newId: `id${i}`, nodeType: 'node', properties: { text: 'x'.repeat(2000), i }, time, user: 'admin' });
  }

  /** Nodes other than the root. */
  count(db = this.db): number {
    return db.prepare(`SELECT count(*) FROM nodes WHERE path != '/'`).pluck().get() as number;
  }
}

test('a snapshot file is one consistent commit point of a database written to while it is copied, with the state machine only', async () => {
  const tmp = tempDir();
  try {
    const node = new Node(join(tmp.dir, 'a'));
    for (let i = 0; i < 3000; i++) node.put(i);
    const store = new SnapshotStore(node.dir, undefined);
    let next = 3000;
    // Writes keep coming between the copy's steps, as they do on a live node.
    const writer = setInterval(() => {
      for (let k = 0; k < 20; k++) node.put(next++);
    }, 1);
    let written;
    try {
      written = await writeSnapshotFile(node.db, store.tmpDir);
    } finally {
      clearInterval(writer);
    }
    assert.ok(next > 3000, 'writes went on while the snapshot was written');
    const { path, info } = written;
    assert.deepEqual(await hashFile(path), { bytes: info.bytes, sha256: info.sha256 });
    const file = new Database(path, { readonly: true });
    try {
      const index = file.prepare(`SELECT value FROM meta WHERE key = 'applied_index'`).pluck().get() as number;
      assert.equal(index, info.index);
      // One "entry" puts one node, after the bootstrap: the file holds exactly the state at its index.
      assert.equal(node.count(file), index - 1);
      assert.ok(index > 3000 && index <= node.applied, `${index} within what was applied`);
      const keys = (file.prepare('SELECT key FROM meta ORDER BY key').pluck().all() as string[]);
      // The token key id travels; the key does not exist anywhere but in each node's memory (secret + id).
      assert.deepEqual(keys, ['applied_index', 'format_version', 'token_key_id'], 'nothing node-specific travels');
      assert.equal(file.prepare('SELECT count(*) FROM journal').pluck().get(), 0);
    } finally {
      file.close();
    }
    assert.deepEqual(readdirSync(store.tmpDir), [`${path.split('/').pop()}`], 'nothing but the snapshot file was written');
    node.db.close();
  } finally {
    tmp.cleanup();
  }
});

test("a backup's two workers read the live database at one commit point while the node writes to it", async () => {
  const tmp = tempDir();
  try {
    const node = new Node(join(tmp.dir, 'a'));
    for (let i = 0; i < 3000; i++) node.put(i);
    const store = new SnapshotStore(node.dir, undefined);
    let next = 3000;
    // The event loop commits between the workers' steps, as a live node does; each worker begins its read on its
    // own, so without the commit point they would read different indexes (and captureBackupState asserts they do not).
    const writer = setInterval(() => {
      for (let k = 0; k < 20; k++) node.put(next++);
    }, 1);
    const indexes: number[] = [];
    try {
      for (let round = 0; round < 4; round++) {
        const { path, captured } = await captureBackupState(node.db, store.tmpDir, 0);
        indexes.push(captured.state.index);
        const file = new Database(path, { readonly: true });
        try {
          const index = file.prepare(`SELECT value FROM meta WHERE key = 'applied_index'`).pluck().get() as number;
          assert.equal(index, captured.state.index);
          assert.equal(node.count(file), index - 1, 'the file holds exactly the state at its index');
          const content = new ContentTables(file);
          assert.equal(contentDigest(content.nodesById(), content.users()).digest, captured.contentDigest.digest, 'the digest is of the same commit as the file');
          assert.equal(captured.term, 1);
        } finally {
          file.close();
        }
        assert.deepEqual(await hashFile(path), { bytes: captured.state.bytes, sha256: captured.state.sha256 });
      }
    } finally {
      clearInterval(writer);
    }
    assert.ok(indexes.every((index, i) => i === 0 || index > indexes[i - 1]!), `writes went on between the backups: ${indexes.join(', ')}`);
    node.db.close();
  } finally {
    tmp.cleanup();
  }
});

test('installing a snapshot file replaces content, users and token key in the transaction, and refuses a file of another index', async () => {
  const tmp = tempDir();
  try {
    const source = new Node(join(tmp.dir, 'a'));
    for (let i = 0; i < 200; i++) source.put(i);
    const store = new SnapshotStore(source.dir, undefined);
    const { path, info } = await writeSnapshotFile(source.db, store.tmpDir);
    const sourceDigest = source.tables.digest();
    const sourceFeed = source.db.prepare('SELECT * FROM changes ORDER BY idx, ordinal').all();
    assert.ok(sourceFeed.length >= 200);
    source.db.close();

    const target = openDatabase(join(tmp.dir, 'b'));
    const tables = new ContentTables(target);
    applyCommand(tables, { type: 'bootstrap', rootId: 'other-root', time, tokenKeyId: 'other-key-id', adminPasswordHash: 'other' });
    applyCommand(tables, { type: 'put', path: '/stale', newId: 'stale', nodeType: 'node', properties: {}, time, user: 'admin' });
    setMeta(target, 'node_id', 'target-id');
    setMeta(target, 'applied_index', 7);
    const before = tables.digest();

    // Another index than the file holds: a broken invariant, and nothing changes.
    let detach = attachSnapshot(target, path);
    try {
      assert.throws(() => target.transaction(() => replaceStateMachine(target, info.index + 1))(), /holds index/);
    } finally {
      detach();
    }
    assert.equal(tables.digest(), before);
    assert.equal(getMeta(target, 'applied_index'), 7);

    detach = attachSnapshot(target, path);
    try {
      target.transaction(() => replaceStateMachine(target, info.index))();
    } finally {
      detach();
    }
    assert.equal(tables.digest(), sourceDigest, 'the same content and users as the source');
    assert.equal(tables.nodeByPath('/stale'), undefined);
    assert.equal(tables.tokenKeyId(), 'the-token-key-id');
    assert.equal(getMeta(target, 'applied_index'), info.index);
    assert.equal(getMeta(target, 'node_id'), 'target-id', 'the node keeps its own id');
    assert.deepEqual(target.prepare('SELECT * FROM changes ORDER BY idx, ordinal').all(), sourceFeed, 'the change feed travels with the state');
    target.close();
  } finally {
    tmp.cleanup();
  }
});

/** What a release of data format `format` wrote: this build's state file without what later formats added. */
const withoutAccess = "DROP TABLE access; DELETE FROM meta WHERE key = 'search_index_untyped'";
const withoutSchemas = `${withoutAccess}; DROP TABLE schemas; DROP TABLE schema_migrations; DROP INDEX nodes_type_id`;
const olderFormat: Record<number, string> = {
  5: withoutAccess,
  4: withoutSchemas,
  3: `${withoutSchemas}; DROP TABLE versions; ALTER TABLE nodes DROP COLUMN op; ALTER TABLE nodes DROP COLUMN idx; ALTER TABLE nodes DROP COLUMN restored_from`,
  2: `${withoutSchemas}; DROP TABLE changes; DROP TABLE versions; ALTER TABLE nodes DROP COLUMN op; ALTER TABLE nodes DROP COLUMN idx; ALTER TABLE nodes DROP COLUMN restored_from`,
};

/**
 * Installs a snapshot file of data format `format`, made from a node of 20 puts, over a node bootstrapped with
 * `bootstrap` extras; hands the installed node to `check` with what the source held.
 */
async function installOlderFormat(
  format: 2 | 3 | 4 | 5,
  bootstrap: Partial<BootstrapCommand>,
  check: (target: Db, tables: ContentTables, source: { digest: string; events: unknown; index: number }) => void,
): Promise<void> {
  const tmp = tempDir();
  try {
    const source = new Node(join(tmp.dir, 'a'));
    for (let i = 0; i < 20; i++) source.put(i);
    const store = new SnapshotStore(source.dir, undefined);
    const { path, info } = await writeSnapshotFile(source.db, store.tmpDir);
    const sourceDigest = source.tables.digest();
    const sourceEvents = source.db.prepare('SELECT count(*) FROM changes').pluck().get();
    source.db.close();
    const old = new Database(path);
    old.exec(`${olderFormat[format]}; UPDATE meta SET value = ${format} WHERE key = 'format_version'`);
    old.close();

    const target = openDatabase(join(tmp.dir, 'b'));
    const tables = new ContentTables(target);
    applyCommand(tables, { type: 'bootstrap', rootId: 'other-root', time, tokenKeyId: 'other-key-id', adminPasswordHash: 'other', ...bootstrap });
    // The target's own schemas and policy must not survive an install of a state that has none.
    applyCommand(tables, { type: 'putSchema', typeName: 'article', definition: { properties: {}, additionalProperties: false }, time, user: 'admin' });
    applyCommand(tables, { type: 'setSchemaPolicy', schemasRequired: true, time, user: 'admin' });
    // And its access entries and search policy (format 6) must not survive an install of a state of format 5.
    applyCommand(tables, { type: 'setAccess', path: '/', entries: [{ principal: 'everyone', effect: 'deny', permissions: ['write'] }], time, user: 'admin' });
    applyCommand(tables, { type: 'setSearchPolicy', indexUntypedNodes: false, time, user: 'admin' });
    const detach = attachSnapshot(target, path);
    try {
      target.transaction(() => replaceStateMachine(target, info.index))();
    } finally {
      detach();
    }
    tables.usersReplaced();
    check(target, tables, { digest: sourceDigest, events: sourceEvents, index: info.index });
    target.close();
  } finally {
    tmp.cleanup();
  }
}

test('a snapshot file of data format 2 (before the change feed) installs: the content, and a feed that starts at its index', async () => {
  await installOlderFormat(2, {}, (target, tables, source) => {
    assert.equal(tables.digest(), source.digest);
    assert.equal(target.prepare('SELECT count(*) FROM changes').pluck().get(), 0, 'nothing of the target\'s own feed is left');
    assert.equal(getMeta(target, 'changes_pruned_through'), source.index);
  });
});

test('a snapshot file of data format 3 (before history) installs: the content and the feed, and no history', async () => {
  await installOlderFormat(3, { history: { versionsPerNodeMax: 5 } }, (target, tables, source) => {
    assert.equal(tables.digest(), source.digest);
    assert.equal(target.prepare('SELECT count(*) FROM changes').pluck().get(), source.events);
    assert.equal(target.prepare('SELECT count(*) FROM versions').pluck().get(), 0, 'nothing of the target\'s own history is left');
    assert.equal(tables.historyRetention(), undefined, 'history has not started in that state');
  });
});

test('a snapshot file of data format 4 (before schemas) installs: the content, the feed and the history, and no schemas', async () => {
  await installOlderFormat(4, { history: { versionsPerNodeMax: 5 } }, (target, tables, source) => {
    assert.equal(tables.digest(), source.digest);
    assert.equal(target.prepare('SELECT count(*) FROM changes').pluck().get(), source.events);
    assert.equal(target.prepare('SELECT count(*) FROM schemas').pluck().get(), 0, 'nothing of the target\'s own schemas is left');
    assert.equal(tables.writeSchema('article'), undefined);
    assert.equal(tables.schemasRequired(), false, 'the policy of the target is gone');
  });
});

test('a snapshot file of data format 5 (before access control) installs: everything, and no access entries or search policy', async () => {
  await installOlderFormat(5, { history: { versionsPerNodeMax: 5 } }, (target, tables, source) => {
    assert.equal(tables.digest(), source.digest);
    assert.equal(target.prepare('SELECT count(*) FROM access').pluck().get(), 0, 'nothing of the target\'s own entries is left');
    assert.equal(tables.accessInUse(), false);
    assert.equal(getMeta(target, 'search_index_untyped'), undefined, 'the search policy is the default again');
  });
});

test('a file of another data format is refused with STORAGE_ERROR', () => {
  const tmp = tempDir();
  try {
    const target = openDatabase(join(tmp.dir, 'b'));
    const path = join(tmp.dir, 'odd.db');
    const odd = new Database(path);
    odd.exec(`CREATE TABLE meta (key TEXT PRIMARY KEY, value ANY) STRICT; INSERT INTO meta VALUES ('format_version', 99), ('applied_index', 5)`);
    odd.close();
    const detach = attachSnapshot(target, path);
    try {
      assert.throws(() => target.transaction(() => replaceStateMachine(target, 5))(), (err: { code?: string }) => err.code === 'STORAGE_ERROR');
    } finally {
      detach();
    }
    target.close();
  } finally {
    tmp.cleanup();
  }
});

test('the snapshot store keeps the latest file, deletes the others once no transfer reads them, and cleans up at start', () => {
  const tmp = tempDir();
  try {
    const file = (name: string) => {
      const path = join(tmp.dir, name);
      writeFileSync(path, name);
      return path;
    };
    const store = new SnapshotStore(tmp.dir, undefined);
    store.adopt(file('x'), { index: 10, bytes: 1, sha256: 'a'.repeat(64) });
    const reader = store.acquire(10)!;
    assert.equal(reader.info.index, 10);
    store.adopt(file('y'), { index: 20, bytes: 1, sha256: 'b'.repeat(64) });
    store.keepOnly([20]);
    assert.ok(existsSync(store.pathOf(10)), 'kept while a transfer reads it');
    assert.equal(store.acquire(10), undefined, 'but no longer served');
    reader.release();
    reader.release();
    assert.ok(!existsSync(store.pathOf(10)), 'deleted with its last reader');
    assert.equal(store.acquire(20)?.info.sha256, 'b'.repeat(64));

    // A restart keeps the file the durable snapshot names and removes every other, and the temporary files.
    writeFileSync(store.pathOf(30), 'orphan');
    writeFileSync(join(store.tmpDir, 'half.db'), 'half');
    const reopened = new SnapshotStore(tmp.dir, { index: 20, bytes: 1, sha256: 'b'.repeat(64) });
    assert.ok(reopened.hasFile(20));
    assert.ok(!existsSync(reopened.pathOf(30)));
    assert.deepEqual(readdirSync(reopened.tmpDir), []);
  } finally {
    tmp.cleanup();
  }
});

test('the journal stores a compaction and an install durably: a restart restores the snapshot and only the entries after it', () => {
  const tmp = tempDir();
  try {
    const db = openDatabase(tmp.dir);
    const journal = new JournalStore(db);
    journal.write(Array.from({ length: 10 }, (_, i) => ({ index: i + 1, term: 1, payload: { kind: 'noop' as const } })));
    const snapshot = { index: 6, term: 1, configuration: { kind: 'configuration' as const, current: ['a'] }, data: { clusterState: null, stateMachine: { index: 6 } } };
    db.transaction(() => journal.compact(snapshot))();
    assert.deepEqual(journal.snapshot(), snapshot);
    const restored = journal.restoredState(8);
    assert.deepEqual(restored.snapshot, snapshot);
    assert.deepEqual(restored.entries.map((e) => e.index), [7, 8, 9, 10]);
    assert.equal(journal.lastIndex(), 10);
    // An install drops the whole journal: the last index is the snapshot's until entries come after it.
    const installed = { ...snapshot, index: 20, term: 2 };
    db.transaction(() => journal.install(installed))();
    assert.equal(journal.lastIndex(), 20);
    assert.deepEqual(journal.restoredState(20).entries, []);
    journal.write([{ index: 21, term: 2, payload: { kind: 'noop' } }]);
    assert.deepEqual(journal.restoredState(20).entries.map((e) => e.index), [21]);
    db.close();
  } finally {
    tmp.cleanup();
  }
});
