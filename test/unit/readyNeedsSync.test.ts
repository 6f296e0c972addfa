import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { ClusterReady } from '../../src/core/clusterCoordinator.js';
import type { Entry, HardState } from '../../src/core/types.js';
import { appendsMayLeaveEarly, readyNeedsSync } from '../../src/node/readyLoop.js';

const written: HardState = { term: 3, votedFor: 'a', commitIndex: 10 };
const entry = (index: number): Entry => ({ index, term: 3, payload: { kind: 'noop' } });
const ready = (parts: Partial<ClusterReady>): ClusterReady => ({ entries: [], messages: [], committed: [], readStates: [], ...parts });

test('a Ready is fsynced when a message may vouch for it or a restart could not rebuild it', () => {
  assert.equal(readyNeedsSync(ready({ entries: [entry(11)] }), written), true, 'journal entries');
  assert.equal(readyNeedsSync(ready({ hardState: { ...written, term: 4, votedFor: null } }), written), true, 'a new term');
  assert.equal(readyNeedsSync(ready({ hardState: { ...written, votedFor: 'b' } }), written), true, 'a vote');
  assert.equal(readyNeedsSync(ready({ bootstrapView: ['a', 'b'] }), written), true, 'the bootstrap view');
  assert.equal(
    readyNeedsSync(ready({ snapshot: { index: 9, term: 3, configuration: { kind: 'configuration', current: ['a'] }, data: null } }), written),
    true,
    'a snapshot install',
  );
});

test('a Ready that only applies entries and moves the commit index is not fsynced on its own', () => {
  assert.equal(readyNeedsSync(ready({ hardState: { ...written, commitIndex: 12 }, committed: [entry(11), entry(12)] }), written), false);
  assert.equal(readyNeedsSync(ready({ committed: [entry(11)] }), written), false);
  assert.equal(readyNeedsSync(ready({}), written), false, 'messages only');
});

test('a master\'s appends leave before the Ready is durable unless the Ready moves the term or the vote, installs a snapshot or grows the bootstrap view', () => {
  assert.equal(appendsMayLeaveEarly(ready({ entries: [entry(11)] }), written), true, 'entries only');
  assert.equal(appendsMayLeaveEarly(ready({ entries: [entry(11)], hardState: { ...written, commitIndex: 11 } }), written), true, 'and a commit index');
  assert.equal(appendsMayLeaveEarly(ready({ entries: [entry(11)], hardState: { ...written, term: 4, votedFor: 'a' } }), written), false, 'a new term');
  assert.equal(appendsMayLeaveEarly(ready({ entries: [entry(11)], hardState: { ...written, votedFor: 'b' } }), written), false, 'a vote');
  assert.equal(appendsMayLeaveEarly(ready({ entries: [entry(11)], bootstrapView: ['a', 'b'] }), written), false, 'the bootstrap view');
  assert.equal(
    appendsMayLeaveEarly(ready({ entries: [entry(11), { index: 12, term: 3, payload: { kind: 'configuration', current: ['a'] } }] }), written),
    false,
    'a configuration entry',
  );
  assert.equal(
    appendsMayLeaveEarly(ready({ snapshot: { index: 9, term: 3, configuration: { kind: 'configuration', current: ['a'] }, data: null } }), written),
    false,
    'a snapshot install',
  );
});
