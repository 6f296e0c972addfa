import assert from 'node:assert/strict';
import { test } from 'node:test';

import { hasJointQuorum, hasQuorum, quorumMatchIndex, quorumSize } from '../../src/core/quorum.js';
import { reconfigure } from '../../src/core/votingConfiguration.js';

const set = (...ids: string[]) => new Set(ids);
const sorted = (s: ReadonlySet<string>) => [...s].sort();

test('quorum is floor(n/2)+1 of the configuration, never of whoever happens to vote', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map((n) => quorumSize(new Set(Array.from({ length: n }, (_, i) => `n${i}`)))), [1, 2, 2, 3, 3, 4, 4]);
  assert.ok(hasQuorum(set('a', 'b', 'c'), set('a', 'b')));
  assert.ok(!hasQuorum(set('a', 'b', 'c'), set('a', 'x', 'y', 'z')));
  assert.ok(!hasQuorum(set('a', 'b', 'c', 'd'), set('a', 'b')));
  assert.ok(!hasQuorum(set(), set('a')));
});

test('a joint configuration needs a quorum of both', () => {
  const joint = { current: set('a', 'b', 'c'), next: set('c', 'd', 'e') };
  assert.ok(!hasJointQuorum(joint, set('a', 'b')));
  assert.ok(!hasJointQuorum(joint, set('d', 'e')));
  assert.ok(hasJointQuorum(joint, set('a', 'c', 'd')));
  const match: Record<string, number> = { a: 9, b: 8, c: 3, d: 2, e: 1 };
  assert.equal(quorumMatchIndex({ current: joint.current }, (id) => match[id]!), 8);
  assert.equal(quorumMatchIndex(joint, (id) => match[id]!), 2);
});

test('odd counts vote whole; even counts leave one out; the master stays', () => {
  assert.deepEqual(sorted(reconfigure({ liveEligible: set('1', '2', '3'), excluded: set(), master: '1', current: set('1') })), ['1', '2', '3']);
  const four = reconfigure({ liveEligible: set('1', '2', '3', '4'), excluded: set(), master: '4', current: set('1', '2', '3') });
  assert.equal(four.size, 3);
  assert.ok(four.has('4'), 'the master is kept');
  assert.deepEqual(sorted(reconfigure({ liveEligible: set('1', '2'), excluded: set(), master: '2', current: set('2') })), ['2']);
  assert.deepEqual(sorted(reconfigure({ liveEligible: set('1', '2', '3', '4', '5', '6', '7'), excluded: set(), master: '1', current: set('1', '2', '3') })), ['1', '2', '3', '4', '5', '6', '7']);
});

test('the maintenance example: 5 nodes, stop 5, 4, 3, 2; start 4, 5; start 2', () => {
  let config: ReadonlySet<string> = set('1', '2', '3', '4', '5');
  const step = (live: string[]) => (config = reconfigure({ liveEligible: set(...live), excluded: set(), master: live.includes('1') ? '1' : live[0]!, current: config }));
  step(['1', '2', '3', '4']);
  assert.deepEqual(sorted(config), ['1', '2', '3']);
  step(['1', '2', '3']);
  assert.deepEqual(sorted(config), ['1', '2', '3']);
  step(['1', '2']);
  assert.deepEqual(sorted(config), ['1', '2', '3'], 'never below three');
  assert.ok(hasQuorum(config, set('1', '2')), 'nodes 1 and 2 are a quorum: still available');
  assert.ok(!hasQuorum(config, set('1')), 'with node 2 stopped: unavailable');
  assert.ok(!hasQuorum(config, set('1', '4', '5')), 'starting 4 and 5 does not help: they do not vote');
  assert.ok(hasQuorum(config, set('1', '2', '4', '5')), 'starting 2 again makes it available');
  step(['1', '2', '4', '5']);
  assert.equal(config.size, 3);
  step(['1', '2', '3', '4', '5']);
  assert.deepEqual(sorted(config), ['1', '2', '3', '4', '5'], 'grows back as the others rejoin');
});

test('voting exclusions remove nodes, even below three', () => {
  const config = reconfigure({ liveEligible: set('1', '2', '3'), excluded: set('3'), master: '1', current: set('1', '2', '3') });
  assert.deepEqual(sorted(config), ['1']);
  const five = reconfigure({ liveEligible: set('1', '2', '3', '4', '5'), excluded: set('5', '4'), master: '1', current: set('1', '2', '3', '4', '5') });
  assert.deepEqual(sorted(five), ['1', '2', '3']);
});

test('new live nodes fill the places of members that are gone, the master first', () => {
  const result = reconfigure({ liveEligible: set('1', '4', '5'), excluded: set(), master: '1', current: set('1', '2', '3') });
  assert.deepEqual(sorted(result), ['1', '4', '5']);
});

test('a configuration must keep a node that can lead: excluding every one of them keeps the current one', () => {
  const current = set('1', '2', '3');
  // 1 is the only node that can lead (2 and 3 are voting-only): excluding it would leave no possible master.
  const kept = reconfigure({ liveEligible: set('1', '2', '3'), excluded: set('1'), master: '1', current, canLead: set('1') });
  assert.deepEqual(sorted(kept), ['1', '2', '3']);
  // With another node able to lead, the exclusion is honoured.
  const moved = reconfigure({ liveEligible: set('1', '2', '3', '4'), excluded: set('1'), master: '1', current, canLead: set('1', '4') });
  assert.ok(!moved.has('1') && moved.has('4'));
});
