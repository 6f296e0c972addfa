import assert from 'node:assert/strict';
import { test } from 'node:test';

import { messageProblem } from '../../src/node/messageShape.js';

const node = (id: string) => ({ id, name: id, address: '127.0.0.1:7500', roles: { masterEligible: true, votingOnly: false }, version: '1.0.0' });
const sha = 'ab'.repeat(32);
const snapshot = (file: Record<string, unknown> = {}) => ({
  index: 9,
  term: 2,
  configuration: { kind: 'configuration', current: ['a', 'b'] },
  data: {
    clusterState: { version: 3, clusterName: 'c', clusterUuid: 'u', nodes: [node('a'), node('b')], votingConfiguration: { current: ['a', 'b'] }, votingExclusions: [], settings: {}, inSync: ['a'] },
    stateMachine: { index: 9, term: 2, bytes: 4096, sha256: sha, holder: 'a', ...file },
  },
});
const info = (id: string) => ({ node: node(id), clusterName: 'c', clusterUuid: null, hasJournal: false, master: null, term: 0, unformedEligible: [id] });

test('well-formed messages of every kind pass', () => {
  const ok: unknown[] = [
    { type: 'preVoteRequest', from: 'a', to: 'b', term: 2, lastIndex: 5, lastTerm: 1 },
    { type: 'voteResponse', from: 'a', to: 'b', term: 2, granted: true },
    { type: 'appendRequest', from: 'a', to: 'b', term: 2, prevIndex: 4, prevTerm: 1, commitIndex: 4, entries: [
      { index: 5, term: 2, payload: { kind: 'noop' } },
      { index: 6, term: 2, payload: { kind: 'configuration', current: ['a', 'b'], next: ['a'] } },
      { index: 7, term: 2, payload: { kind: 'command', data: { type: 'put' } } },
    ] },
    { type: 'appendResponse', from: 'a', to: 'b', term: 2, success: false, matchIndex: 0, lastIndex: 3, appliedIndex: 3 },
    { type: 'probeRequest', from: 'a', to: 'b', info: info('a') },
    { type: 'joinRequest', from: 'a', to: 'b', node: node('a'), clusterName: 'c', clusterUuid: 'u' },
    { type: 'joinResponse', from: 'a', to: 'b', outcome: 'accepted', master: null },
    { type: 'snapshotRequest', from: 'a', to: 'b', term: 2, snapshot: snapshot() },
  ];
  for (const message of ok) assert.equal(messageProblem(message, 'a', 'b'), null, JSON.stringify(message));
});

test('a message must speak for its sender, to us, in the expected shape', () => {
  const cases: Array<[unknown, RegExp]> = [
    [null, /not an object/],
    [{ type: 'voteRequest', from: 'x', to: 'b', term: 1, lastIndex: 0, lastTerm: 0 }, /another sender/],
    [{ type: 'voteRequest', from: 'a', to: 'c', term: 1, lastIndex: 0, lastTerm: 0 }, /another node/],
    [{ type: 'voteRequest', from: 'a', to: 'b', term: Infinity, lastIndex: 0, lastTerm: 0 }, /malformed/],
    [{ type: 'voteRequest', from: 'a', to: 'b', term: -1, lastIndex: 0, lastTerm: 0 }, /malformed/],
    [{ type: 'appendRequest', from: 'a', to: 'b', term: 1, prevIndex: 0, prevTerm: 0, commitIndex: 0, entries: [{ index: 2, term: 1, payload: { kind: 'noop' } }] }, /sequence/],
    [{ type: 'appendRequest', from: 'a', to: 'b', term: 1, prevIndex: 0, prevTerm: 0, commitIndex: 0, entries: [{ index: 1, term: 1, payload: { kind: 'weird' } }] }, /unknown kind/],
    [{ type: 'appendRequest', from: 'a', to: 'b', term: 1, prevIndex: 0, prevTerm: 0, commitIndex: 0, entries: [{ index: 1, term: 1, payload: { kind: 'configuration', current: [] } }] }, /configuration/],
    [{ type: 'joinRequest', from: 'a', to: 'b', node: node('z'), clusterName: 'c', clusterUuid: null }, /another node/],
    [{ type: 'probeResponse', from: 'a', to: 'b', info: info('z') }, /another node/],
    [{ type: 'joinRequest', from: 'a', to: 'b', node: { ...node('a'), roles: { masterEligible: 'yes' } }, clusterName: 'c', clusterUuid: null }, /roles/],
    [{ type: 'snapshotRequest', from: 'a', to: 'b', term: 1 }, /malformed snapshot/],
    [{ type: 'snapshotRequest', from: 'a', to: 'b', term: 2, snapshot: snapshot({ sha256: 'not hex' }) }, /no valid file/],
    [{ type: 'snapshotRequest', from: 'a', to: 'b', term: 2, snapshot: snapshot({ index: 8 }) }, /no valid file/],
    [{ type: 'snapshotRequest', from: 'a', to: 'b', term: 2, snapshot: { ...snapshot(), configuration: { kind: 'configuration', current: [] } } }, /configuration/],
    [{ type: 'snapshotRequest', from: 'a', to: 'b', term: 2, snapshot: { ...snapshot(), data: { ...snapshot().data, clusterState: { version: 1 } } } }, /cluster state/],
    [{ type: 'gossip', from: 'a', to: 'b' }, /unknown message type/],
  ];
  for (const [message, why] of cases) assert.match(messageProblem(message, 'a', 'b') ?? 'passed', why, JSON.stringify(message));
});
