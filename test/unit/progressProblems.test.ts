/**
 * Issue 13: a node that cannot make progress says so — never silently, never a flood — and never skips a committed
 * entry. Real runtime on real SQLite (one node, no network).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';

import { ClusterRuntime } from '../../src/node/clusterRuntime.js';
import { ContentTables } from '../../src/storage/contentTables.js';
import type { HardState } from '../../src/core/types.js';
import { getMeta, openDatabase } from '../../src/storage/database.js';
import { JournalStore } from '../../src/storage/journal.js';
import { soloRuntimeOptions } from '../helpers/runtime.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

const time = '2026-01-01T00:00:00.000Z';

interface Line {
  level: number;
  msg: string;
  code?: string;
  index?: number;
}

async function withRuntime(body: (runtime: ClusterRuntime, lines: Line[]) => Promise<void>, dir?: string, ready = true): Promise<void> {
  const tmp = dir === undefined ? tempDir() : { dir, cleanup: () => undefined };
  const db = openDatabase(tmp.dir);
  const lines: Line[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as Line) });
  const tables = new ContentTables(db);
  const runtime = new ClusterRuntime(db, new JournalStore(db), tables, soloRuntimeOptions({ writeTimeoutMs: 300, progressProblemLogIntervalMs: 250 }), log);
  try {
    runtime.start(null);
    if (ready) {
      await waitFor('the node to elect itself', () => (runtime.softState().role === 'master' ? true : undefined), 5000);
      if (tables.tokenKeyId() === undefined) await runtime.propose({ type: 'bootstrap', rootId: 'root', time, tokenKeyId: 'k', adminPasswordHash: 'h' });
    }
    await body(runtime, lines);
  } finally {
    runtime.close();
    db.close();
    tmp.cleanup();
  }
}

test('a committed entry that cannot be applied is never skipped: the node stays at it, says so repeatedly at a bounded rate, and health sees it', async () => {
  const tmp = tempDir();
  try {
    // A node that holds a committed entry written by a version that knows a command this one does not.
    await withRuntime(async () => {}, tmp.dir);
    const db = openDatabase(tmp.dir);
    const journal = new JournalStore(db);
    // After the journal on disk: the runtime may close with an entry it had not written yet (nothing acknowledged).
    const index = journal.lastIndex() + 1;
    const appliedOnDisk = getMeta<number>(db, 'applied_index') ?? 0;
    const hardState = JSON.parse(getMeta<string>(db, 'hard_state')!) as HardState;
    db.transaction(() => {
      journal.write([{ index, term: hardState.term, payload: { kind: 'command', data: { type: 'fromALaterVersion', time } } }]);
      journal.saveHardState({ ...hardState, commitIndex: index });
    })();
    db.close();

    await withRuntime(async (runtime, lines) => {
      const problem = await waitFor('the apply failure to be reported', () => runtime.writeProblem() ?? undefined, 5000);
      assert.equal(problem.kind, 'apply-failed');
      assert.equal(problem.index, index);
      assert.match(problem.detail, new RegExp(`index ${index}\\b`));
      // It keeps trying (every tick) and keeps saying so, every progressProblemLogIntervalMs, not every tick.
      const startedAt = performance.now();
      await waitFor('the failure to be logged again', () => (lines.filter((l) => l.code === 'APPLY_FAILED').length >= 3 ? true : undefined), 5000);
      const elapsedMs = performance.now() - startedAt;
      const logged = lines.filter((l) => l.code === 'APPLY_FAILED');
      assert.ok(logged.length <= Math.ceil(elapsedMs / 250) + 2, `${logged.length} lines in ${Math.round(elapsedMs)} ms`);
      for (const line of logged) {
        assert.equal(line.level, 50);
        assert.equal(line.index, index);
        assert.match(line.msg, /will not skip it/);
        assert.match(line.msg, /Remedy:/);
      }
      // Never skipped: the node stays before the entry (where exactly depends on whether the entries committed with
      // it were applied before the close, or are applied in the same rolled-back Ready), and a later write is
      // refused rather than applied past it.
      const stuckAt = runtime.appliedIndex;
      assert.ok(stuckAt >= appliedOnDisk && stuckAt < index, `applied ${stuckAt}, the entry at ${index}, ${appliedOnDisk} applied on disk`);
      await assert.rejects(runtime.propose({ type: 'put', path: '/after', newId: 'n1', nodeType: 'node', properties: {}, time, user: 'u' }));
      assert.equal(runtime.appliedIndex, stuckAt);
      assert.equal(runtime.writeProblem()?.kind, 'apply-failed');
    }, tmp.dir, false);
  } finally {
    tmp.cleanup();
  }
});

test('refused appends are reported while they last, and logged at a bounded rate with the index and the remedy', async () => {
  await withRuntime(async (runtime, lines) => {
    assert.equal(runtime.writeProblem(), null);
    for (let i = 0; i < 200; i++) runtime.refusedAppend('master-id', 42, 'the entry at index 42 has a payload that is not one MessagePack value (boom)');
    const problem = runtime.writeProblem();
    assert.equal(problem?.kind, 'refusing-appends');
    assert.equal(problem?.index, 42);
    const logged = lines.filter((l) => l.code === 'APPEND_REFUSED');
    assert.equal(logged.length, 1, 'one line for 200 refusals within the interval');
    assert.equal(logged[0]!.level, 50);
    assert.match(logged[0]!.msg, /Remedy:/);
    // Once the master stops sending what this node cannot take (a write timeout without a refusal), it is over.
    await waitFor('the refusal to lapse', () => (runtime.writeProblem() === null ? true : undefined), 5000);
  });
});
