import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { test } from 'node:test';
import { pino } from 'pino';

import type { Command } from '../../src/content/commands.js';
import { ClusterRuntime } from '../../src/node/clusterRuntime.js';
import { detachCluster, inspectNode, unsafeBootstrap } from '../../src/node/recovery.js';
import { SnapshotFetcher } from '../../src/replication/snapshotFetcher.js';
import { ContentTables } from '../../src/storage/contentTables.js';
import { getMeta, openDatabase, setMeta } from '../../src/storage/database.js';
import { JournalStore } from '../../src/storage/journal.js';
import { fileRefOf, hashFile } from '../../src/storage/snapshotFile.js';
import { SnapshotStore } from '../../src/storage/snapshotStore.js';
import { soloRuntimeOptions } from '../helpers/runtime.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

// A one-node runtime on real SQLite that compacts its journal: the snapshot file, the journal after it, and a
// restart from both.

const time = '2026-01-01T00:00:00.000Z';
const put = (i: number): Command => ({ type: 'put', path: `/n${i}`, newId: `id${i}`, nodeType: 'node', properties: { i }, time, user: 'u' });

const options = soloRuntimeOptions({ groupCommitEntriesMax: 8 });

function open(dir: string) {
  const db = openDatabase(dir);
  setMeta(db, 'node_id', 'self');
  const journal = new JournalStore(db);
  const tables = new ContentTables(db);
  const restored = journal.snapshot();
  const store = new SnapshotStore(dir, restored === undefined ? undefined : fileRefOf(restored));
  const fetcher = new SnapshotFetcher(
    { incomingDir: store.incomingDir, selfId: 'self', http: { send: () => Promise.reject(new Error('no peer in this test')) }, peerOf: () => null, transferTimeoutMs: 1000, onVerified: () => undefined, log: pino({ level: 'silent' }) },
    getMeta<number>(db, 'applied_index') ?? 0,
  );
  const runtime = new ClusterRuntime(db, journal, tables, options, pino({ level: 'silent' }), { store, fetcher, compactionEntriesMin: 20, journalRetainEntries: 5 });
  const journalIndexes = () => db.prepare('SELECT min(idx) AS low, max(idx) AS high, count(*) AS rows FROM journal').get() as { low: number; high: number; rows: number };
  return { db, journal, tables, store, runtime, journalIndexes };
}

test('a node compacts its journal at a snapshot file, keeps the latest entries, and restarts from both', async () => {
  const tmp = tempDir();
  try {
    const first = open(tmp.dir);
    first.runtime.start(null);
    await waitFor('the node to elect itself', () => (first.runtime.softState().role === 'master' ? true : undefined), 5000);
    await first.runtime.propose({ type: 'bootstrap', rootId: 'root', time, tokenKey: 'k', adminPasswordHash: 'h' });
    for (let i = 0; i < 70; i++) await first.runtime.propose(put(i));
    // Compaction runs after the writes that make it due; a few more writes let it get past journalRetainEntries.
    let extra = 70;
    const snapshot = await waitFor('a compaction', async () => {
      const latest = first.runtime.snapshotStatus().index;
      if (latest > 0) return first.runtime.coordinator.core.latestSnapshot();
      await first.runtime.propose(put(extra++));
      return undefined;
    }, 10_000);
    const ref = fileRefOf(snapshot);
    assert.equal(ref.holder, 'self');
    assert.equal(ref.index, snapshot.index);
    assert.deepEqual(await hashFile(first.store.pathOf(snapshot.index)), { bytes: ref.bytes, sha256: ref.sha256 }, 'the file is what the snapshot names');
    assert.ok(first.runtime.appliedIndex - snapshot.index >= 5, 'journalRetainEntries applied entries stay after the snapshot');
    const rows = first.journalIndexes();
    assert.equal(rows.low, snapshot.index + 1, 'the journal starts after the snapshot');
    assert.equal(rows.rows, rows.high - snapshot.index);
    assert.equal(first.journal.snapshot()?.index, snapshot.index, 'the snapshot is durable');
    const snapshotFiles = readdirSync(first.store.dir).filter((n) => n.endsWith('.db'));
    assert.ok(snapshotFiles.includes(`${snapshot.index}.db`), snapshotFiles.join(', '));

    const applied = first.runtime.appliedIndex;
    const digest = first.tables.digest();
    first.runtime.close();
    first.db.close();

    const second = open(tmp.dir);
    try {
      assert.equal(second.runtime.appliedIndex, applied);
      assert.equal(second.tables.digest(), digest);
      assert.equal(second.runtime.snapshotStatus().index >= snapshot.index, true);
      assert.ok(second.store.hasFile(second.runtime.snapshotStatus().index));
      second.runtime.start(null);
      await waitFor('the node to elect itself again', () => (second.runtime.softState().role === 'master' ? true : undefined), 5000);
      const after = await second.runtime.propose(put(1000));
      assert.ok(after.index > applied);
      assert.equal(second.tables.nodeByPath('/n1000')?.properties['i'], 1000);
      assert.equal(second.tables.nodeByPath('/n0')?.properties['i'], 0, 'what the snapshot holds is there');
      // And it keeps compacting as it goes on.
      const before = second.runtime.snapshotStatus().index;
      let next = 1001;
      await waitFor('a further compaction', async () => {
        if (second.runtime.snapshotStatus().index > before) return true;
        await second.runtime.propose(put(next++));
        return undefined;
      }, 10_000);
      await waitFor('only the latest snapshot file to remain', () => {
        const files = readdirSync(second.store.dir).filter((n) => n.endsWith('.db'));
        return files.length === 1 && files[0] === `${second.runtime.snapshotStatus().index}.db` ? true : undefined;
      });
    } finally {
      second.runtime.close();
      second.db.close();
    }
  } finally {
    tmp.cleanup();
  }
});

test('the recovery tools work on a compacted node: unsafe-bootstrap appends after the snapshot, detach-cluster forgets it', async () => {
  const tmp = tempDir();
  try {
    const node = open(tmp.dir);
    node.runtime.start(null);
    await waitFor('the node to elect itself', () => (node.runtime.softState().role === 'master' ? true : undefined), 5000);
    await node.runtime.propose({ type: 'bootstrap', rootId: 'root', time, tokenKey: 'k', adminPasswordHash: 'h' });
    let i = 0;
    await waitFor('a compaction', async () => {
      if (node.runtime.snapshotStatus().index > 0) return true;
      await node.runtime.propose(put(i++));
      return undefined;
    }, 10_000);
    const snapshotIndex = node.runtime.snapshotStatus().index;
    node.runtime.close();
    node.db.close();

    const before = inspectNode(tmp.dir);
    assert.ok(before.lastIndex >= snapshotIndex && before.appliedIndex >= snapshotIndex);
    assert.notEqual(before.clusterState.clusterUuid, null, 'the cluster state comes back from the snapshot and the journal');
    const reformed = unsafeBootstrap(tmp.dir);
    const after = open(tmp.dir);
    try {
      after.runtime.start(null);
      await waitFor('the reformed node to elect itself', () => (after.runtime.softState().role === 'master' ? true : undefined), 5000);
      await waitFor('the new UUID', () => (after.runtime.clusterState().clusterUuid === reformed.clusterUuid ? true : undefined), 5000);
      const write = await after.runtime.propose(put(5000));
      assert.ok(write.index > before.lastIndex + 2);
      assert.equal(after.tables.nodeByPath('/n0')?.properties['i'], 0);
    } finally {
      after.runtime.close();
      after.db.close();
    }

    detachCluster(tmp.dir);
    const detached = open(tmp.dir);
    try {
      assert.equal(detached.journal.snapshot(), undefined);
      assert.equal(detached.runtime.appliedIndex, 0);
      assert.equal(detached.runtime.snapshotStatus().index, 0);
      assert.equal(detached.tables.nodeByPath('/n0'), undefined);
    } finally {
      detached.runtime.close();
      detached.db.close();
    }
  } finally {
    tmp.cleanup();
  }
});
