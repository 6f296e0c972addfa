import assert from 'node:assert/strict';
import { test } from 'node:test';

import { commands, Driver, voters } from '../helpers/coreDriver.js';

// Ticks a node skips (core skipTicks) passed while it could not act: its process stopped or its event loop held up,
// the messages peers sent meanwhile unread. The clock moves on — leases run out — but no timeout fires for them.
// CI saw all three nodes held up 0.5 s at once, and the master step down on check-quorum before reading the
// answers waiting in its sockets.

const electionTimeoutTicks = 10;

test('a master held up for longer than check-quorum keeps its role, but its lease runs out', () => {
  const driver = new Driver(voters, { electionTimeoutTicks });
  const master = driver.elect();
  for (const data of commands(0, 3)) driver.propose(master, data);
  driver.tick(2);
  assert.ok(master.core.hasReadLease(), 'the master holds its lease while its followers answer');
  master.core.skipTicks(3 * electionTimeoutTicks);
  assert.equal(master.core.softState().role, 'master');
  assert.equal(master.core.hasReadLease(), false, 'the lease is measured by the clock, which skipped ticks move');
  // Its next real tick heartbeats at once (the followers may be close to their timeouts) and nothing times out.
  const sentBefore = driver.queue.length;
  master.core.tick();
  assert.equal(master.core.softState().role, 'master');
  const ready = master.core.ready();
  const heartbeats = ready.messages.filter((m) => m.type === 'appendRequest');
  assert.equal(heartbeats.length, voters.length - 1, `a heartbeat to each follower at the first tick after (queue had ${sentBefore})`);
  master.core.advance(ready);
  driver.queue.push(...ready.messages);
  driver.settle();
  driver.tick(2);
  assert.ok(master.core.hasReadLease(), 'the lease is back once the followers answered');
});

test('the same ticks counted as ticks make a master with no answers step down', () => {
  const driver = new Driver(voters, { electionTimeoutTicks });
  const master = driver.elect();
  for (let i = 0; i < 3 * electionTimeoutTicks; i++) master.core.tick();
  assert.notEqual(master.core.softState().role, 'master', 'check-quorum: no answer was read in an election timeout');
});

test('a follower held up for longer than its election timeout does not campaign before reading what arrived', () => {
  const driver = new Driver(voters, { electionTimeoutTicks });
  const master = driver.elect();
  const follower = driver.node(voters.find((id) => id !== master.id)!);
  follower.core.skipTicks(5 * electionTimeoutTicks);
  follower.core.tick();
  const soft = follower.core.softState();
  assert.equal(soft.role, 'follower');
  assert.equal(soft.master, master.id);
  assert.ok(!follower.core.ready().messages.some((m) => m.type === 'preVoteRequest' || m.type === 'voteRequest'), 'no (pre-)vote asked');
  // Counted as ticks, the same time makes it campaign.
  for (let i = 0; i < 5 * electionTimeoutTicks; i++) follower.core.tick();
  assert.notEqual(follower.core.softState().role, 'follower');
});

test('a follower lease runs out across skipped ticks', () => {
  const driver = new Driver(voters, { electionTimeoutTicks });
  const master = driver.elect();
  // Which members may hold leases is the cluster layer's to say (ClusterCoordinator): here, every follower.
  master.core.setLeaseHolders(voters.filter((id) => id !== master.id));
  for (const data of commands(0, 3)) driver.propose(master, data);
  driver.tick(3);
  const follower = driver.nodes.get(voters.find((id) => id !== master.id && driver.node(id).core.hasReadLease())!);
  assert.ok(follower !== undefined, 'a follower holds a lease');
  follower.core.skipTicks(3 * electionTimeoutTicks);
  assert.equal(follower.core.hasReadLease(), false);
});
