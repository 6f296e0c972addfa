import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';

import type { Command } from '../../src/content/commands.js';
import { WritePipeline } from '../../src/node/writePipeline.js';
import { ContentTables } from '../../src/storage/contentTables.js';
import { openDatabase } from '../../src/storage/database.js';
import { Journal } from '../../src/storage/journal.js';
import { tempDir } from '../helpers/tmp.js';

const time = '2026-01-01T00:00:00.000Z';
const put = (path: string, text = ''): Command => ({ type: 'put', path, newId: `id${path}`, nodeType: 'node', properties: { text }, time, user: 'u' });

async function withPipeline(limits: Partial<ConstructorParameters<typeof WritePipeline>[3]>, body: (p: WritePipeline, tables: ContentTables) => Promise<void>) {
  const tmp = tempDir();
  const db = openDatabase(tmp.dir);
  try {
    const tables = new ContentTables(db);
    const pipeline = new WritePipeline(db, new Journal(db), tables, { batchEntriesMax: 64, batchBytesMax: 1 << 20, queueEntriesMax: 100, queueBytesMax: 1 << 20, ...limits }, pino({ level: 'silent' }));
    await pipeline.propose({ type: 'bootstrap', rootId: 'root', time, tokenKey: 'k', adminPasswordHash: 'h' });
    await body(pipeline, tables);
    await pipeline.close();
  } finally {
    db.close();
    tmp.cleanup();
  }
}

test('concurrent proposals commit together, in order, and a refusal in a batch touches only its own entry', async () => {
  await withPipeline({}, async (pipeline, tables) => {
    const outcomes = await Promise.allSettled([put('/a'), put('/missing/b'), put('/c'), put('/a')].map((c) => pipeline.propose(c)));
    assert.deepEqual(outcomes.map((o) => o.status), ['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    const indexes = outcomes.filter((o) => o.status === 'fulfilled').map((o) => (o as PromiseFulfilledResult<{ index: number }>).value.index);
    assert.deepEqual(indexes, [2, 4, 5]);
    assert.equal(((outcomes[1] as PromiseRejectedResult).reason as { code: string }).code, 'PARENT_NOT_FOUND');
    assert.equal(pipeline.appliedIndex, 5, 'the refused entry is journaled and applied as a no-op');
    assert.equal(tables.nodeByPath('/a')!.version, 2);
    assert.equal(tables.nodeByPath('/missing/b'), undefined);
  });
});

test('the write queue is bounded by entries and by bytes', async () => {
  await withPipeline({ queueEntriesMax: 2 }, async (pipeline) => {
    const outcomes = await Promise.allSettled([put('/x'), put('/y'), put('/z')].map((c) => pipeline.propose(c)));
    assert.deepEqual(outcomes.map((o) => o.status), ['fulfilled', 'fulfilled', 'rejected']);
    assert.equal(((outcomes[2] as PromiseRejectedResult).reason as { code: string }).code, 'OVERLOADED');
  });
  await withPipeline({ queueBytesMax: 3000 }, async (pipeline) => {
    const big = 'x'.repeat(2000);
    const outcomes = await Promise.allSettled([put('/p', big), put('/q', big)].map((c) => pipeline.propose(c)));
    assert.deepEqual(outcomes.map((o) => o.status), ['fulfilled', 'rejected'], 'one proposal is always let in; the second would pass the byte bound');
    const later = await pipeline.propose(put('/q', big));
    assert.ok(later.index > 0, 'the bound frees up once the queue drains');
  });
});
