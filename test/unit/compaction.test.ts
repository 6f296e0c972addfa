import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Compaction, type CompactionStorage } from '../../src/node/compaction.js';

/** A node's copies and journal as compaction sees them; copies finish when the test says (a worker thread's file). */
class Copies implements CompactionStorage<{ readonly index: number }> {
  latest = 0;
  applied = 0;
  readonly files = new Set<number>();
  readonly log: string[] = [];
  inFlight: { readonly index: number; done: (copy: { readonly index: number }) => void; failed: (err: unknown) => void } | null = null;
  aborted = 0;

  latestSnapshotIndex(): number {
    return this.latest;
  }
  hasCopy(index: number): boolean {
    return this.files.has(index);
  }
  startCopy(done: (copy: { readonly index: number }) => void, failed: (err: unknown) => void): () => void {
    assert.equal(this.inFlight, null, 'two copies at once');
    this.inFlight = { index: this.applied, done, failed };
    this.log.push(`copy at ${this.applied}`);
    return () => this.aborted++;
  }
  adopt(copy: { readonly index: number }): void {
    this.files.add(copy.index);
    this.log.push(`adopt ${copy.index}`);
  }
  discard(copy: { readonly index: number }): void {
    this.log.push(`discard ${copy.index}`);
  }
  compactAt(copy: { readonly index: number }): void {
    this.latest = copy.index;
    this.log.push(`compact at ${copy.index}`);
  }
  keepOnly(index: number): void {
    for (const f of [...this.files]) if (f !== index) this.files.delete(f);
    this.log.push(`keep only ${index}`);
  }
  finish(): void {
    const copy = this.inFlight!;
    this.inFlight = null;
    copy.done({ index: copy.index });
  }
  fail(): void {
    const copy = this.inFlight!;
    this.inFlight = null;
    copy.failed(new Error('disk full'));
  }
}

function setUp(limits = { compactionEntriesMin: 10, journalRetainEntries: 3, copyRetryDelayMs: 1000 }) {
  const copies = new Copies();
  let nowMs = 0;
  let copied = 0;
  const compaction = new Compaction(copies, limits, () => nowMs, () => copied++);
  const applyTo = (index: number) => {
    copies.applied = index;
    compaction.maybeCompact(index);
  };
  return { copies, compaction, applyTo, advance: (ms: number) => (nowMs += ms), copiedCalls: () => copied };
}

test('a copy is made once compactionEntriesMin entries are applied past the snapshot, compacted at journalRetainEntries later', () => {
  const { copies, compaction, applyTo, copiedCalls } = setUp();
  applyTo(9);
  assert.deepEqual(copies.log, []);
  applyTo(10);
  assert.deepEqual(copies.log, ['copy at 10']);
  applyTo(14);
  assert.deepEqual(copies.log, ['copy at 10'], 'one copy at a time');
  copies.finish();
  assert.deepEqual(copies.log, ['copy at 10', 'adopt 10']);
  assert.equal(copiedCalls(), 1, 'the owner hears of the copy');
  assert.equal(compaction.pendingCopy?.index, 10);
  applyTo(12);
  assert.equal(copies.latest, 0, 'two entries past the copy: kept for followers a little behind');
  applyTo(13);
  assert.deepEqual(copies.log, ['copy at 10', 'adopt 10', 'compact at 10']);
  assert.equal(compaction.pendingCopy, null);
  applyTo(19);
  assert.equal(copies.log.at(-1), 'compact at 10', 'the next copy is due 10 entries past the new snapshot');
  applyTo(20);
  assert.equal(copies.log.at(-1), 'copy at 20');
});

test('a failed copy is tried again only after the retry delay', () => {
  const { copies, applyTo, advance } = setUp();
  applyTo(10);
  copies.fail();
  applyTo(11);
  advance(999);
  applyTo(12);
  assert.deepEqual(copies.log, ['copy at 10']);
  advance(1);
  applyTo(13);
  assert.deepEqual(copies.log, ['copy at 10', 'copy at 13']);
});

test('a snapshot installed past a pending copy makes it moot, and one installed during a copy makes the copy discarded', () => {
  const { copies, compaction, applyTo } = setUp();
  applyTo(10);
  copies.finish();
  copies.latest = 40;
  copies.files.add(40);
  compaction.installed(40);
  assert.equal(compaction.pendingCopy, null);
  applyTo(45);
  assert.equal(copies.log.at(-1), 'adopt 10', 'nothing due: 5 past the installed snapshot');
  applyTo(50);
  assert.equal(copies.log.at(-1), 'copy at 50');
  copies.latest = 60;
  copies.applied = 60;
  copies.finish();
  assert.equal(copies.log.at(-1), 'discard 50');
  assert.equal(compaction.pendingCopy, null);
});

test('a pending copy the coordinator compacted past otherwise is dropped, keeping only the latest copy', () => {
  const { copies, applyTo } = setUp({ compactionEntriesMin: 10, journalRetainEntries: 100, copyRetryDelayMs: 0 });
  applyTo(10);
  copies.finish();
  copies.latest = 20;
  applyTo(20);
  assert.deepEqual(copies.log.slice(-1), ['keep only 20']);
});

test('a latest snapshot whose copy is missing is replaced as soon as anything is applied past it', () => {
  const { copies, applyTo } = setUp();
  copies.latest = 100;
  copies.applied = 100;
  applyTo(100);
  assert.deepEqual(copies.log, []);
  applyTo(101);
  assert.deepEqual(copies.log, ['copy at 101']);
});

test('closing abandons the copy under way; if it finishes anyway it is discarded', () => {
  const { copies, compaction, applyTo } = setUp();
  applyTo(10);
  compaction.close();
  assert.equal(copies.aborted, 1);
  copies.finish();
  assert.deepEqual(copies.log, ['copy at 10', 'discard 10']);
  applyTo(30);
  assert.deepEqual(copies.log, ['copy at 10', 'discard 10']);
});

test('limits out of range are refused when compaction is built', () => {
  const copies = new Copies();
  assert.throws(() => new Compaction(copies, { compactionEntriesMin: 0, journalRetainEntries: 0, copyRetryDelayMs: 0 }, () => 0, () => {}), /compactionEntriesMin/);
  assert.throws(() => new Compaction(copies, { compactionEntriesMin: 1, journalRetainEntries: -1, copyRetryDelayMs: 0 }, () => 0, () => {}), /journalRetainEntries/);
});
