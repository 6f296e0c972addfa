import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Driver, voters } from '../helpers/coreDriver.js';

// stalledTicks is what the cluster layer takes a member out of the in-sync set on (clusterCoordinator.ts): writes
// are acknowledged only once every in-sync member has applied them, so a member that stores entries but cannot
// apply them must count as stalled, or every write waits for it until it times out.

test('a follower that stores entries but applies none is stalled; once it applies again it is not', () => {
  const driver = new Driver(voters);
  const master = driver.elect();
  const [healthy, stuck] = voters.filter((id) => id !== master.id) as [string, string];
  driver.applyBlocked.add(stuck);
  driver.propose(master, 'first');
  driver.tick();
  const progress = master.core.followerStates().get(stuck)!;
  assert.equal(progress.matchIndex, master.core.lastIndex(), 'it stores every entry: its match index alone shows nothing wrong');
  assert.ok(progress.appliedIndex < master.core.softState().commitIndex, 'but it has not applied the last one');

  driver.tick(30);
  assert.ok(master.core.stalledTicks(stuck) >= 30, `stalled for ${master.core.stalledTicks(stuck)} ticks after 31`);
  assert.equal(master.core.stalledTicks(healthy), 0);

  driver.applyBlocked.delete(stuck);
  driver.tickUntil(() => master.core.stalledTicks(stuck) === 0, 20, 'the follower applies again');
  assert.equal(driver.node(stuck).appliedIndex, master.appliedIndex);
});

test('a follower with nothing left to apply is not stalled, however long it cannot apply', () => {
  const driver = new Driver(voters);
  const master = driver.elect();
  const follower = voters.find((id) => id !== master.id)!;
  driver.applyBlocked.add(follower);
  driver.tick(50);
  assert.equal(master.core.stalledTicks(follower), 0);
});

test('a follower that applies slowly but steadily is never stalled', () => {
  const driver = new Driver(voters);
  const master = driver.elect();
  const slow = voters.find((id) => id !== master.id)!;
  let most = 0;
  for (let i = 0; i < 40; i++) {
    driver.propose(master, `w${i}`);
    // It applies at every other tick only: behind, but moving.
    if (i % 2 === 0) driver.applyBlocked.add(slow);
    else driver.applyBlocked.delete(slow);
    driver.tick();
    most = Math.max(most, master.core.stalledTicks(slow));
  }
  assert.ok(most <= 2, `stalled for at most ${most} ticks`);
});
