import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ClusterCoordinator } from '../../src/core/clusterCoordinator.js';
import type { Entry } from '../../src/core/types.js';
import { coordinatorOptions } from '../helpers/coordinatorOptions.js';

// ClusterCoordinator.catchUp: the ticks that fell due at once when the runtime's clock catches up. A gap of half an
// election timeout or more (5 ticks here) means the node was held up: all but the last tick are skipped and no
// timeout counts them. Shorter gaps — a late timer, a busy event loop — count in full, or a loaded node's timeouts
// would stretch (a bench failover took 2.6 s when they did).

/** Follower "a" of a three-voter cluster that has not heard from any master: it campaigns after 10 counted ticks. */
function follower(): ClusterCoordinator {
  const entries: Entry[] = [{ index: 1, term: 1, payload: { kind: 'configuration', current: ['a', 'b', 'c'] } }];
  return new ClusterCoordinator(coordinatorOptions, { hardState: { term: 1, votedFor: null, commitIndex: 1 }, entries, appliedIndex: 1 });
}

test('a long gap is skipped: a held-up follower does not campaign before reading what arrived', () => {
  const coordinator = follower();
  coordinator.catchUp(30);
  assert.equal(coordinator.softState().role, 'follower');
});

test('short gaps count in full: the same follower campaigns once they add up to its election timeout', () => {
  const coordinator = follower();
  for (let i = 0; i < 3; i++) coordinator.catchUp(4);
  assert.notEqual(coordinator.softState().role, 'follower', 'twelve counted ticks are past a 10-tick election timeout');
});
