import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { test } from 'node:test';

import { openDatabase, type Db } from '../../src/storage/database.js';
import { WalCheckpointer } from '../../src/storage/walCheckpointer.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

const rowBytes = 4000;

function writeRows(db: Db, from: number, count: number): void {
  const insert = db.prepare(`INSERT INTO meta(key, value) VALUES (?, ?)`);
  db.transaction(() => {
    for (let i = from; i < from + count; i++) insert.run(`row-${i}`, 'x'.repeat(rowBytes));
  })();
}

test('the worker copies committed pages into the database file while the node only commits; the node\'s connection closes last and removes the WAL', async () => {
  const tmp = tempDir();
  const db = openDatabase(tmp.dir);
  const failures: string[] = [];
  try {
    // A threshold the test never reaches: whatever reaches the database file before close, the worker put there.
    const checkpointer = new WalCheckpointer(db, { intervalMs: 10, walCheckpointPages: 1_000_000 }, (message) => failures.push(message));
    assert.equal(db.pragma('wal_autocheckpoint', { simple: true }), 1_000_000);
    const before = statSync(db.name).size;
    writeRows(db, 0, 500);
    checkpointer.noteCommit();
    await waitFor('the database file to hold the rows', () => (statSync(db.name).size >= before + 500 * rowBytes ? true : undefined));
    assert.ok(existsSync(`${db.name}-wal`), 'the WAL stays while the node runs');
    // Commits and checkpoints go on side by side; nothing of them is lost.
    for (let batch = 1; batch <= 10; batch++) {
      writeRows(db, batch * 500, 500);
      checkpointer.noteCommit();
    }
    await checkpointer.close();
    assert.deepEqual(failures, []);
  } finally {
    db.close();
  }
  assert.equal(existsSync(`${db.name}-wal`), false, 'the node\'s connection was the last one open: closing it checkpointed and removed the WAL');
  const reopened = openDatabase(tmp.dir);
  try {
    assert.equal(reopened.prepare(`SELECT count(*) FROM meta WHERE key LIKE 'row-%'`).pluck().get(), 5500);
  } finally {
    reopened.close();
    tmp.cleanup();
  }
});

test('without commits the worker does not checkpoint; its turn comes after the next commit', async () => {
  const tmp = tempDir();
  const db = openDatabase(tmp.dir);
  try {
    db.pragma('wal_autocheckpoint = 0');
    writeRows(db, 0, 200);
    const checkpointer = new WalCheckpointer(db, { intervalMs: 10, walCheckpointPages: 1_000_000 }, (message) => assert.fail(message));
    const size = statSync(db.name).size;
    // Several turns of the worker pass (its interval is 10 ms) without a commit noted: the file keeps its size.
    // The check waits for time to pass on a condition of its own, not on a sleep: a later commit's pages must land.
    const started = Date.now();
    await waitFor('ten intervals', () => (Date.now() - started >= 100 ? true : undefined));
    assert.equal(statSync(db.name).size, size, 'nothing was checkpointed without a commit noted since the worker started');
    checkpointer.noteCommit();
    await waitFor('the rows written before to reach the database file', () => (statSync(db.name).size >= size + 200 * rowBytes ? true : undefined));
    await checkpointer.close();
  } finally {
    db.close();
    tmp.cleanup();
  }
});
