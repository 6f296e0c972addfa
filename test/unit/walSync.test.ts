import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { test } from 'node:test';

import { openDatabase } from '../../src/storage/database.js';
import { WalSync } from '../../src/storage/walSync.js';
import { tempDir } from '../helpers/tmp.js';

/** Waits for the thread pool's fdatasync to call back. */
function synced(walSync: WalSync): Promise<void> {
  return new Promise((resolve, reject) => walSync.sync(resolve, reject));
}

test('the WAL fsync runs off the event loop and calls back once, for what was written before it was asked', async () => {
  const tmp = tempDir();
  const db = openDatabase(tmp.dir);
  try {
    const walSync = new WalSync(db);
    db.pragma('synchronous = NORMAL');
    db.prepare(`INSERT INTO meta(key, value) VALUES ('probe', ?)`).run('x'.repeat(10_000));
    db.pragma('synchronous = FULL');
    let calls = 0;
    const done = new Promise<void>((resolve, reject) =>
      walSync.sync(() => {
        calls++;
        resolve();
      }, reject),
    );
    // Asked, not done: the callback comes from the thread pool, never inside sync().
    assert.equal(calls, 0);
    await done;
    assert.equal(calls, 1);
    assert.ok(statSync(`${db.name}-wal`).size > 10_000, 'the transaction is in the WAL file the sync covered');
    await synced(walSync);
    walSync.close();
    assert.throws(() => walSync.sync(() => {}, () => {}), /after close/);
  } finally {
    db.close();
    tmp.cleanup();
  }
});

test('closing while a sync is under way keeps the descriptor until the sync returns', async () => {
  const tmp = tempDir();
  const db = openDatabase(tmp.dir);
  try {
    const walSync = new WalSync(db);
    const pending = synced(walSync);
    walSync.close();
    await pending;
  } finally {
    db.close();
    tmp.cleanup();
  }
});
