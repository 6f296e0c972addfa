import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';

import type { Command } from '../../src/content/commands.js';
import { ClusterRuntime, type RuntimeOptions } from '../../src/node/clusterRuntime.js';
import { ContentTables } from '../../src/storage/contentTables.js';
import { openDatabase, type Db } from '../../src/storage/database.js';
import { JournalStore } from '../../src/storage/journal.js';
import { soloRuntimeOptions } from '../helpers/runtime.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

const time = '2026-01-01T00:00:00.000Z';
const put = (path: string, text = ''): Command => ({ type: 'put', path, newId: `id${path}`, nodeType: 'node', properties: { text }, time, user: 'u' });

const baseOptions = soloRuntimeOptions();

/** A one-node runtime on real SQLite, elected and holding the repository, with no network. */
async function withRuntime(options: Partial<RuntimeOptions>, body: (runtime: ClusterRuntime, tables: ContentTables, db: Db, dir: string) => Promise<void>, dir?: string, log = pino({ level: 'silent' })) {
  const tmp = dir === undefined ? tempDir() : { dir, cleanup: () => undefined };
  const db = openDatabase(tmp.dir);
  const tables = new ContentTables(db);
  const runtime = new ClusterRuntime(db, new JournalStore(db), tables, { ...baseOptions, ...options }, log);
  try {
    runtime.start(null);
    await waitFor('the node to elect itself', () => (runtime.softState().role === 'master' ? true : undefined), 5000);
    if (tables.tokenKeyId() === undefined) await runtime.propose({ type: 'bootstrap', rootId: 'root', time, tokenKeyId: 'k', adminPasswordHash: 'h' });
    await body(runtime, tables, db, tmp.dir);
  } finally {
    runtime.close();
    db.close();
    if (dir === undefined) tmp.cleanup();
  }
}

test('concurrent writes commit together, in order; a refusal touches only its own entry', async () => {
  await withRuntime({}, async (runtime, tables) => {
    const outcomes = await Promise.allSettled([put('/a'), put('/missing/b'), put('/c'), put('/a')].map((c) => runtime.propose(c)));
    assert.deepEqual(outcomes.map((o) => o.status), ['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    const indexes = outcomes.filter((o) => o.status === 'fulfilled').map((o) => (o as PromiseFulfilledResult<{ index: number }>).value.index);
    assert.deepEqual(indexes, [...indexes].sort((a, b) => a - b), 'applied in the order proposed');
    assert.equal(((outcomes[1] as PromiseRejectedResult).reason as { code: string }).code, 'PARENT_NOT_FOUND');
    assert.equal(tables.nodeByPath('/a')!.version, 2);
    assert.equal(tables.nodeByPath('/missing/b'), undefined);
  });
});

test('a held-up event loop is said in the log, with how long', async () => {
  const lines: Array<{ msg: string; lateMs?: number }> = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => lines.push(JSON.parse(line) as { msg: string; lateMs?: number }) });
  await withRuntime({ tickMs: 20 }, async () => {
    const until = performance.now() + 600;
    while (performance.now() < until) {
      // A long synchronous step, as a master encoding a huge backlog was.
    }
    const held = await waitFor('the held-up loop to be logged', () => lines.find((l) => l.lateMs !== undefined), 5000);
    assert.ok(held.lateMs! >= 500 && held.lateMs! <= 5000, `lateMs ${held.lateMs}`);
    assert.match(held.msg, /event loop was held up for \d+ ms/);
  }, undefined, log);
});

test('the write queue is bounded by entries and by bytes', async () => {
  await withRuntime({ writeQueueEntriesMax: 2 }, async (runtime) => {
    const outcomes = await Promise.allSettled([put('/x'), put('/y'), put('/z')].map((c) => runtime.propose(c)));
    assert.deepEqual(outcomes.map((o) => o.status), ['fulfilled', 'fulfilled', 'rejected']);
    assert.equal(((outcomes[2] as PromiseRejectedResult).reason as { code: string }).code, 'OVERLOADED');
  });
  await withRuntime({ writeQueueBytesMax: 3000 }, async (runtime) => {
    const big = 'x'.repeat(2000);
    const outcomes = await Promise.allSettled([put('/p', big), put('/q', big)].map((c) => runtime.propose(c)));
    assert.deepEqual(outcomes.map((o) => o.status), ['fulfilled', 'rejected'], 'one write is always let in; the second would pass the byte bound');
    const later = await runtime.propose(put('/q', big));
    assert.ok(later.index > 0, 'the bound frees up once the queue drains');
  });
});

test('a node that is not master refuses writes with CLUSTER_NO_MASTER and changes nothing', async () => {
  const tmp = tempDir();
  const db = openDatabase(tmp.dir);
  const tables = new ContentTables(db);
  // Join-only (no bootstrap) and no network: it never has a master.
  const runtime = new ClusterRuntime(db, new JournalStore(db), tables, { ...baseOptions, bootstrap: { kind: 'none' } }, pino({ level: 'silent' }));
  try {
    runtime.start(null);
    await assert.rejects(runtime.propose(put('/a')), (err: { code?: string }) => err.code === 'CLUSTER_NO_MASTER');
    assert.equal(runtime.appliedIndex, 0);
    assert.equal(new JournalStore(db).lastIndex(), 0);
  } finally {
    runtime.close();
    db.close();
    tmp.cleanup();
  }
});

test('after a restart the journal, the applied content and the term are where they were; the node elects itself again', async () => {
  const tmp = tempDir();
  try {
    let term = 0;
    let applied = 0;
    await withRuntime({}, async (runtime) => {
      await runtime.propose(put('/kept', 'v'));
      term = runtime.softState().term;
      applied = runtime.appliedIndex;
    }, tmp.dir);
    await withRuntime({}, async (runtime, tables) => {
      assert.ok(runtime.appliedIndex >= applied);
      assert.ok(runtime.softState().term > term, 'a new term after the restart');
      assert.equal(tables.nodeByPath('/kept')!.properties['text'], 'v');
      await runtime.propose(put('/more'));
    }, tmp.dir);
  } finally {
    tmp.cleanup();
  }
});
