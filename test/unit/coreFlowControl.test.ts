import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { Message } from '../../src/core/types.js';
import { commands, Driver, voters } from '../helpers/coreDriver.js';

// How much a master sends a follower that does not answer, and what it does with a backlog of answers: a link whose
// route is blackholed (a partition, a stopped process) keeps what was sent and delivers it all when it returns.

type Append = Extract<Message, { type: 'appendRequest' }>;
const isAppend = (m: Message): m is Append => m.type === 'appendRequest';

test('a follower that stops answering gets no more than the in-flight bound of appends with entries, and no commit notices', () => {
  const inflightAppendsMax = 2;
  const driver = new Driver(voters, { inflightAppendsMax, appendEntriesMax: 4 });
  const master = driver.elect();
  const [silent] = voters.filter((id) => id !== master.id);
  driver.held.add(silent!);
  driver.tick(5); // longer than two heartbeats without an answer
  const heartbeats = driver.heldBack.filter((m) => m.to === silent).length;
  for (const data of commands(0, 100)) driver.propose(master, data);
  assert.equal(master.appliedIndex, master.core.lastIndex(), 'the other follower makes the quorum');
  const toSilent = driver.heldBack.filter((m): m is Append => isAppend(m) && m.to === silent);
  const withEntries = toSilent.filter((m) => m.entries.length > 0);
  assert.ok(withEntries.length <= inflightAppendsMax, `${withEntries.length} appends with entries queued for a follower that answers none, more than ${inflightAppendsMax}`);
  assert.equal(toSilent.length - heartbeats, withEntries.length, 'nothing but the bounded appends after the heartbeats: no commit notices');
  driver.release(silent!);
  driver.tickUntil(() => driver.node(silent!).appliedIndex === master.appliedIndex, 200, 'the follower to catch up');
  assert.deepEqual(driver.node(silent!).applied, master.applied);
});

test('refusals answering appends sent before the master backed up are stale: the missing entries are sent once', () => {
  const driver = new Driver(voters, { inflightAppendsMax: 2, appendEntriesMax: 4 });
  const master = driver.elect();
  const [follower] = voters.filter((id) => id !== master.id);
  // One append lost: every later append to this follower has a gap before it and is refused.
  driver.down.add(follower!);
  driver.propose(master, 'lost');
  driver.down.delete(follower!);
  // It keeps answering in time (no ticks pass), so commit notices go too; its link holds them all back.
  driver.held.add(follower!);
  for (const data of commands(0, 60)) driver.propose(master, data);
  const heldSeqMax = Math.max(...driver.heldBack.filter((m): m is Append => isAppend(m) && m.to === follower).map((m) => m.seq));
  const refusalsBefore = driver.delivered.length;
  driver.release(follower!);
  const refusals = driver.delivered.slice(refusalsBefore).filter((m) => m.type === 'appendResponse' && m.from === follower && !m.success);
  assert.ok(refusals.length >= 10, `the backlog should be refused append by append, saw ${refusals.length} refusals`);
  const resent = driver.delivered.filter((m): m is Append => isAppend(m) && m.to === follower && m.seq > heldSeqMax).flatMap((m) => m.entries.map((e) => e.index));
  const twice = resent.filter((index, i) => resent.indexOf(index) !== i);
  assert.deepEqual([...new Set(twice)], [], `entries sent again after ${refusals.length} refusals of one gap`);
  driver.tickUntil(() => driver.node(follower!).appliedIndex === master.appliedIndex, 200, 'the follower to catch up');
  assert.deepEqual(driver.node(follower!).applied, master.applied);
});
