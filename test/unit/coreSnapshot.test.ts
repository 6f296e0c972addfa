import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CoordinationCore } from '../../src/core/coordinationCore.js';
import type { Entry, HardState, Message, Snapshot } from '../../src/core/types.js';
import { commands, coreOptions as options, Driver, fresh, voters } from '../helpers/coreDriver.js';

// Snapshots and compaction of the coordination core, driven by the in-test runtime of test/helpers/coreDriver.ts.


/** A cluster of a, b and c with a master; `cutOff`: one follower is down during the 30 proposals. */
function thirtyProposals(cutOff: boolean) {
  const driver = new Driver(voters);
  const master = driver.elect();
  const followers = voters.filter((id) => id !== master.id);
  const absent = cutOff ? driver.node(followers[0]!) : undefined;
  if (absent !== undefined) driver.down.add(absent.id);
  for (const data of commands(0, 30)) {
    driver.propose(master, data);
    driver.tick();
  }
  assert.equal(master.core.softState().role, 'master');
  assert.deepEqual(master.applied, commands(0, 30));
  assert.equal(master.appliedIndex, master.core.lastIndex());
  return { driver, master, absent };
}

test('a master compacts at its applied index: the snapshot replaces the journal below it', () => {
  const { driver, master } = thirtyProposals(false);
  const lastIndex = master.core.lastIndex();
  const term = master.core.softState().term;
  assert.equal(master.core.latestSnapshot().index, 0, 'never compacted yet');
  assert.ok(master.core.entryAt(1) !== undefined);

  const snapshot = driver.compact(master);
  assert.equal(snapshot.index, lastIndex);
  assert.equal(snapshot.term, term);
  assert.deepEqual(snapshot.configuration, { kind: 'configuration', current: voters });
  assert.deepEqual(snapshot.data, commands(0, 30));
  assert.deepEqual(master.core.latestSnapshot(), snapshot);
  for (let i = 1; i <= snapshot.index; i++) assert.equal(master.core.entryAt(i), undefined, `entry ${i} is compacted away`);
  assert.equal(master.core.lastIndex(), lastIndex, 'compaction does not move the end of the journal');
  assert.equal(master.core.softState().lastIndex, lastIndex);
  assert.deepEqual([...master.core.softState().configuration.current].sort(), voters);

  // Replication goes on past the snapshot, to followers that never needed it.
  for (const data of commands(30, 33)) driver.propose(master, data);
  driver.tick(4);
  assert.deepEqual(master.core.entryAt(lastIndex + 1)?.payload, { kind: 'command', data: 'cmd-30' });
  for (const n of driver.nodes.values()) assert.deepEqual(n.applied, commands(0, 33), n.id);
  assert.ok(!driver.delivered.some((m) => m.type === 'snapshotRequest'), 'no follower was behind the snapshot');
  assert.equal(master.core.softState().role, 'master');
});

test('a follower behind the snapshot receives it, installs it, and continues after it', () => {
  const { driver, master, absent } = thirtyProposals(true);
  assert.ok(absent !== undefined);
  const term = master.core.softState().term;
  const before = absent.appliedIndex;
  assert.deepEqual(absent.applied, []);
  assert.ok(before < master.appliedIndex);
  const snapshot = driver.compact(master);
  assert.ok(snapshot.index > before, 'what the follower lacks is compacted away');
  // Three more while it is still down: they stay in the master's journal, after the snapshot.
  for (const data of commands(30, 33)) {
    driver.propose(master, data);
    driver.tick();
  }

  driver.down.delete(absent.id);
  const deliveredBefore = driver.delivered.length;
  const eventsBefore = absent.events.length;
  driver.tickUntil(() => absent.appliedIndex === master.appliedIndex, 100, 'the follower does not catch up');
  for (const data of commands(33, 36)) driver.propose(master, data);
  driver.tick(4);

  const toAbsent = driver.delivered.slice(deliveredBefore).filter((m) => m.to === absent.id);
  const snapshotRequests = toAbsent.filter((m) => m.type === 'snapshotRequest');
  assert.ok(snapshotRequests.length >= 1, `no snapshotRequest among ${toAbsent.map((m) => m.type).join(', ')}`);
  assert.deepEqual(snapshotRequests[0]!.type === 'snapshotRequest' ? snapshotRequests[0]!.snapshot : undefined, snapshot);

  const events = absent.events.slice(eventsBefore);
  const installed = events.findIndex((e) => e.snapshotIndex !== undefined);
  assert.ok(installed >= 0, 'Ready.snapshot was reported');
  assert.equal(events[installed]!.snapshotIndex, snapshot.index);
  assert.equal(events.filter((e) => e.snapshotIndex !== undefined).length, 1, 'installed once');
  const appliedAfter = events.slice(installed).flatMap((e) => e.committed);
  assert.equal(appliedAfter[0], snapshot.index + 1, 'applying resumes just after the snapshot');
  assert.deepEqual(appliedAfter, Array.from({ length: appliedAfter.length }, (_, i) => snapshot.index + 1 + i));
  assert.ok(events.slice(0, installed).every((e) => e.committed.length === 0), 'nothing applied from before the snapshot');

  assert.deepEqual(absent.applied, commands(0, 36), 'snapshot data + the entries after it');
  assert.deepEqual(absent.applied, master.applied);
  assert.equal(absent.appliedIndex, master.appliedIndex);
  assert.deepEqual(absent.core.latestSnapshot(), snapshot);
  assert.equal(absent.core.entryAt(snapshot.index), undefined);
  assert.deepEqual(absent.core.entryAt(snapshot.index + 1)?.payload, { kind: 'command', data: 'cmd-30' });
  assert.deepEqual(absent.disk.snapshot, snapshot);
  assert.equal(absent.disk.entries[0]?.index, snapshot.index + 1);
  assert.equal(absent.disk.entries.length, master.core.lastIndex() - snapshot.index);
  assert.equal(master.core.softState().role, 'master', 'the returning follower did not disrupt the master');
  assert.equal(master.core.softState().term, term);
});

test('a core restored from a snapshot and the entries after it takes its configuration from the snapshot', () => {
  const { driver, master } = thirtyProposals(false);
  const snapshot = driver.compact(master);
  for (const data of commands(30, 33)) driver.propose(master, data);
  driver.tick(2);
  const disk = master.disk;
  assert.deepEqual(disk.snapshot, snapshot);
  assert.deepEqual(disk.entries.map((e) => e.index), [snapshot.index + 1, snapshot.index + 2, snapshot.index + 3]);
  assert.ok(disk.entries.every((e) => e.payload.kind !== 'configuration'), 'no configuration after the snapshot');

  const restored = new CoordinationCore(options(master.id, 1), { hardState: disk.hardState, snapshot, entries: disk.entries, appliedIndex: snapshot.index });
  const soft = restored.softState();
  assert.equal(soft.role, 'follower');
  assert.equal(soft.term, master.core.softState().term);
  assert.equal(soft.lastIndex, snapshot.index + 3);
  assert.deepEqual(soft.configuration, { current: new Set(voters) });
  assert.deepEqual(restored.latestSnapshot(), snapshot);
  assert.equal(restored.entryAt(snapshot.index), undefined);
  assert.deepEqual(restored.entryAt(snapshot.index + 1), disk.entries[0]);
  // The durable commit index is past the snapshot: what follows it is applied again, and only that.
  assert.ok(restored.hasReady());
  const ready = restored.ready();
  assert.equal(ready.snapshot, undefined, 'a restored snapshot is not installed again');
  assert.deepEqual(ready.entries, [], 'what was restored is already durable');
  assert.deepEqual(ready.committed.map((e) => e.index), disk.entries.filter((e) => e.index <= disk.hardState.commitIndex).map((e) => e.index));
  assert.equal(ready.committed[0]?.index, snapshot.index + 1);

  // The master restarts from that disk: the cluster goes on, and the node ends with the same state machine.
  driver.restart(master.id);
  const next = driver.elect();
  for (const data of commands(33, 36)) driver.propose(next, data);
  driver.tick(4);
  for (const n of driver.nodes.values()) assert.deepEqual(n.applied, commands(0, 36), n.id);
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

test('compact refuses at or below the current snapshot', () => {
  const never = new CoordinationCore(options('a', 5), fresh());
  assert.throws(() => never.compact([]), /at or below the snapshot/, 'nothing applied yet');

  const { driver, master } = thirtyProposals(false);
  const snapshot = driver.compact(master);
  assert.throws(() => master.core.compact(['again']), /at or below the snapshot/);
  assert.deepEqual(master.core.latestSnapshot(), snapshot, 'a refused compaction changes nothing');
  // Once more is applied, compaction moves on.
  driver.propose(master, 'cmd-30');
  const later = driver.compact(master);
  assert.equal(later.index, snapshot.index + 1);
  assert.deepEqual(later.data, commands(0, 31));
  assert.deepEqual(later.configuration, snapshot.configuration, 'the configuration is carried over from the previous snapshot');

  const restored = new CoordinationCore(options('z', 6), { hardState: master.disk.hardState, snapshot: later, entries: [], appliedIndex: later.index });
  assert.throws(() => restored.compact([]), /at or below the snapshot/, 'a restored core has applied nothing past its snapshot');
});

test('compact at an index below the applied one keeps the entries after it; past the applied index is refused', () => {
  const driver = new Driver(voters);
  const master = driver.elect();
  const follower = driver.node(voters.find((id) => id !== master.id)!);
  for (const data of commands(0, 25)) driver.propose(master, data);
  driver.tick(2);
  assert.equal(follower.appliedIndex, master.appliedIndex);
  const followerIndex = follower.appliedIndex;
  // The follower misses the last five; the master compacts just below what it lacks.
  driver.down.add(follower.id);
  for (const data of commands(25, 30)) driver.propose(master, data);
  driver.tick(2);
  const applied = master.appliedIndex;
  assert.throws(() => master.core.compact([], applied + 1), /past the applied index/);
  const term = master.core.entryAt(followerIndex)!.term;
  const snapshot = master.core.compact(commands(0, 25), followerIndex);
  assert.equal(snapshot.index, followerIndex);
  assert.equal(snapshot.term, term);
  assert.deepEqual(snapshot.configuration, { kind: 'configuration', current: voters });
  assert.equal(master.core.entryAt(followerIndex), undefined);
  for (let i = followerIndex + 1; i <= applied; i++) assert.ok(master.core.entryAt(i) !== undefined, `entry ${i} is kept`);
  master.disk.snapshot = snapshot;
  master.disk.entries = master.disk.entries.filter((e) => e.index > followerIndex);
  // The follower lags by no more than the kept entries: it catches up from the journal, not by a snapshot.
  driver.down.delete(follower.id);
  const deliveredBefore = driver.delivered.length;
  driver.tickUntil(() => follower.appliedIndex === master.appliedIndex, 100, 'the follower does not catch up');
  assert.ok(!driver.delivered.slice(deliveredBefore).some((m) => m.type === 'snapshotRequest'));
  assert.deepEqual(follower.applied, commands(0, 30));
});

test('appends are bounded by bytes as well as by count, and always carry at least one entry', () => {
  // Entries "small-N" measure 40 bytes, "large-N" 1,000: with a 100-byte bound an append carries two small ones
  // or one large one (which alone exceeds the bound), never more, and every follower still gets everything.
  const entryBytes = (entry: Entry) => (entry.payload.kind === 'command' && String(entry.payload.data).startsWith('large') ? 1000 : 40);
  const driver = new Driver(voters, { appendEntriesMax: 16, appendBytesMax: 100, entryBytes });
  const master = driver.elect();
  const follower = driver.node(voters.find((id) => id !== master.id)!);
  driver.down.add(follower.id);
  const proposed = [...commands(0, 6).map((c) => `small-${String(c)}`), 'large-1', 'large-2', 'small-x'];
  for (const data of proposed) driver.propose(master, data);
  driver.tick(2);
  driver.down.delete(follower.id);
  driver.delivered.length = 0;
  driver.tickUntil(() => follower.applied.length === proposed.length, 200, 'the follower to catch up');
  assert.deepEqual(follower.applied, proposed);
  const batches = driver.delivered.filter((m): m is Extract<Message, { type: 'appendRequest' }> => m.type === 'appendRequest' && m.to === follower.id && m.entries.length > 0);
  assert.ok(batches.length > 0);
  for (const m of batches) {
    const bytes = m.entries.reduce((sum, e) => sum + entryBytes(e), 0);
    assert.ok(m.entries.length === 1 || bytes <= 100, `an append of ${m.entries.length} entries and ${bytes} bytes exceeds the bound`);
  }
  assert.ok(batches.some((m) => m.entries.length === 2), 'small entries travel two at a time');
  assert.ok(batches.some((m) => m.entries.length === 1 && entryBytes(m.entries[0]!) === 1000), 'a large entry travels alone');
});
