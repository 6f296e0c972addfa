import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CoordinationCore } from '../../src/core/coordinationCore.js';
import type { Entry, HardState, Snapshot } from '../../src/core/types.js';
import { commands, coreOptions as options, fresh, journalOf } from '../helpers/coreOptions.js';

// Compaction and restore of one coordination core, by its API. Snapshots travelling between nodes — sent to a
// follower behind the snapshot, installed, a retained tail that spares one — run in the simulator, through the
// runtime's Ready loop and compaction (test/transcripts/snapshot.txt, and every seed that compacts).

const voters = ['a', 'b', 'c'];

/** A core that has stored and applied thirty commands after the first configuration (indexes 2..31). */
function thirtyApplied(id = 'a'): { core: CoordinationCore; journal: Entry[]; hardState: HardState } {
  const journal = journalOf(voters, commands(0, 30));
  const hardState: HardState = { term: 1, votedFor: null, commitIndex: 31 };
  return { core: new CoordinationCore(options(id, 1), { hardState, entries: journal, appliedIndex: 31 }), journal, hardState };
}

test('compaction at the applied index: the snapshot replaces the journal below it, and the journal ends where it did', () => {
  const { core } = thirtyApplied();
  assert.equal(core.latestSnapshot().index, 0, 'never compacted yet');
  const snapshot = core.compact(commands(0, 30));
  assert.equal(snapshot.index, 31);
  assert.equal(snapshot.term, 1);
  assert.deepEqual(snapshot.configuration, { kind: 'configuration', current: voters });
  assert.deepEqual(snapshot.data, commands(0, 30));
  assert.deepEqual(core.latestSnapshot(), snapshot);
  for (let i = 1; i <= 31; i++) assert.equal(core.entryAt(i), undefined, `entry ${i} is compacted away`);
  assert.equal(core.lastIndex(), 31, 'compaction does not move the end of the journal');
  assert.deepEqual([...core.softState().configuration.current].sort(), voters);
});

test('compaction below the applied index keeps the entries after it; past the applied index is refused', () => {
  const { core } = thirtyApplied();
  assert.throws(() => core.compact([], 32), /past the applied index/);
  const snapshot = core.compact(commands(0, 25), 26);
  assert.deepEqual([snapshot.index, snapshot.term], [26, 1]);
  assert.deepEqual(snapshot.configuration, { kind: 'configuration', current: voters });
  assert.equal(core.entryAt(26), undefined);
  for (let i = 27; i <= 31; i++) assert.deepEqual(core.entryAt(i)?.payload, { kind: 'command', data: `cmd-${i - 2}` }, `entry ${i} is kept`);
});

test('compaction refuses at or below the current snapshot, and a refused one changes nothing', () => {
  assert.throws(() => new CoordinationCore(options('a', 5), fresh()).compact([]), /at or below the snapshot/, 'nothing applied yet');
  const { core, hardState } = thirtyApplied();
  const snapshot = core.compact(commands(0, 25), 26);
  assert.throws(() => core.compact(['again'], 26), /at or below the snapshot/);
  assert.throws(() => core.compact(['again'], 20), /at or below the snapshot/);
  assert.deepEqual(core.latestSnapshot(), snapshot);
  const later = core.compact(commands(0, 30));
  assert.equal(later.index, 31);
  assert.deepEqual(later.configuration, snapshot.configuration, 'the configuration is carried over from the previous snapshot');
  const restored = new CoordinationCore(options('z', 6), { hardState, snapshot: later, entries: [], appliedIndex: later.index });
  assert.throws(() => restored.compact([]), /at or below the snapshot/, 'a restored core has applied nothing past its snapshot');
});

test('a core restored from a snapshot and the entries after it takes its configuration from the snapshot', () => {
  const { core, journal } = thirtyApplied();
  const snapshot = core.compact(commands(0, 27), 28);
  const after = journal.filter((e) => e.index > 28);
  assert.ok(after.every((e) => e.payload.kind !== 'configuration'), 'no configuration after the snapshot');
  // Durable commit index 30: 29 and 30 were applied before the restart; 31 is not known committed yet.
  const restored = new CoordinationCore(options('a', 1), { hardState: { term: 1, votedFor: null, commitIndex: 30 }, snapshot, entries: after, appliedIndex: 28 });
  const soft = restored.softState();
  assert.equal(soft.role, 'follower');
  assert.equal(soft.term, 1);
  assert.equal(soft.lastIndex, 31);
  assert.deepEqual(soft.configuration, { current: new Set(voters) });
  assert.deepEqual(restored.latestSnapshot(), snapshot);
  assert.equal(restored.entryAt(28), undefined);
  assert.deepEqual(restored.entryAt(29), after[0]);
  // What is committed past the snapshot is applied again, and only that; nothing restored is stored again.
  assert.ok(restored.hasReady());
  const ready = restored.ready();
  assert.equal(ready.snapshot, undefined, 'a restored snapshot is not installed again');
  assert.deepEqual(ready.entries, [], 'what was restored is already durable');
  assert.deepEqual(
    ready.committed.map((e) => e.index),
    [29, 30],
  );
});

test('a restored snapshot configuration may be joint; a later configuration entry overrides it', () => {
  const snapshot: Snapshot = { index: 10, term: 2, configuration: { kind: 'configuration', current: ['a', 'b', 'c'], next: ['a', 'b', 'd'] }, data: [] };
  const entries: Entry[] = [{ index: 11, term: 2, payload: { kind: 'command', data: 'x' } }];
  const hardState: HardState = { term: 2, votedFor: null, commitIndex: 11 };
  const joint = new CoordinationCore(options('a', 3), { hardState, snapshot, entries, appliedIndex: 10 });
  assert.deepEqual(joint.softState().configuration, { current: new Set(['a', 'b', 'c']), next: new Set(['a', 'b', 'd']) });
  assert.equal(joint.softState().commitIndex, 11);

  const final: Entry = { index: 12, term: 2, payload: { kind: 'configuration', current: ['a', 'b', 'd'] } };
  const moved = new CoordinationCore(options('a', 3), { hardState, snapshot, entries: [...entries, final], appliedIndex: 11 });
  assert.deepEqual(moved.softState().configuration, { current: new Set(['a', 'b', 'd']) });

  assert.throws(() => new CoordinationCore(options('a', 3), { hardState, snapshot, entries, appliedIndex: 9 }), /older than the snapshot/);
  assert.throws(() => new CoordinationCore(options('a', 3), { hardState, snapshot, entries: [{ ...entries[0]!, index: 12 }], appliedIndex: 10 }), /restored journal/);
  assert.throws(() => new CoordinationCore(options('a', 3), { hardState, snapshot, entries, appliedIndex: 10 }).bootstrap(['a']), /already has a journal/);
});
