import assert from 'node:assert/strict';
import { test } from 'node:test';

import { bootstrapVoters, expectedVoters, type BootstrapMethod } from '../../src/core/bootstrap.js';
import type { DiscoveryInfo } from '../../src/core/clusterMessages.js';
import type { NodeDescriptor } from '../../src/core/clusterState.js';

const node = (id: string, name: string, masterEligible = true): NodeDescriptor => ({
  id, name, address: `${id}:9300`, roles: { masterEligible, votingOnly: false }, version: '1.0.0',
});
/** A probe answer from a fresh peer (no journal, no master); `unformedEligible` defaults to "sees nobody else". */
const info = (n: NodeDescriptor, extra: Partial<DiscoveryInfo> = {}): DiscoveryInfo => ({
  node: n, clusterName: 'c1', clusterUuid: null, hasJournal: false, master: null, term: 0,
  unformedEligible: n.roles.masterEligible ? [n.id] : [], ...extra,
});
const named = (...names: string[]): BootstrapMethod => ({ kind: 'initialMasterNodes', names });
const expect = (count: number): BootstrapMethod => ({ kind: 'expect', count });

// Ids deliberately in another order than names, so that "sorted ids" is checked.
const self = node('m', 'alpha');
const beta = node('z', 'beta');
const gamma = node('b', 'gamma');

test('initial master nodes: waits until every named node is found, then returns the sorted ids', () => {
  const method = named('alpha', 'beta', 'gamma');
  assert.equal(bootstrapVoters(self, method, []), null);
  assert.equal(bootstrapVoters(self, method, [info(beta)]), null);
  assert.equal(bootstrapVoters(self, method, [info(gamma)]), null);
  assert.deepEqual(bootstrapVoters(self, method, [info(beta), info(gamma)]), ['b', 'm', 'z']);
  assert.deepEqual(bootstrapVoters(self, method, [info(gamma), info(beta), info(node('q', 'other'))]), ['b', 'm', 'z'], 'unnamed peers are left out');
  assert.deepEqual(bootstrapVoters(self, named('gamma', 'alpha', 'beta', 'alpha'), [info(beta), info(gamma)]), ['b', 'm', 'z'], 'a name listed twice counts once');
  assert.deepEqual(bootstrapVoters(self, named('alpha'), []), ['m'], 'a single-node cluster');
});

test('initial master nodes: refuses when self is not named', () => {
  assert.equal(bootstrapVoters(self, named('beta', 'gamma'), [info(beta), info(gamma)]), null);
});

test('initial master nodes: refuses when a name is ambiguous', () => {
  const otherBeta = node('y', 'beta');
  assert.equal(bootstrapVoters(self, named('alpha', 'beta', 'gamma'), [info(beta), info(otherBeta), info(gamma)]), null);
});

test('initial master nodes: a named peer that is not master-eligible is not found', () => {
  const ineligibleBeta = node('z', 'beta', false);
  assert.equal(bootstrapVoters(self, named('alpha', 'beta'), [info(ineligibleBeta)]), null);
});

test('never bootstraps when any peer has a journal', () => {
  const journalled = [info(beta), info(gamma, { hasJournal: true, clusterUuid: 'u1', master: 'b', term: 3 })];
  assert.equal(bootstrapVoters(self, named('alpha', 'beta', 'gamma'), journalled), null);
  const all = ['b', 'm', 'z'];
  assert.equal(expectedVoters(self, 2, all, new Map([['b', all], ['z', all]]), true), null);
  // Even a peer that would not be a voter: it belongs to a cluster, so join that one.
  const ineligible = info(node('q', 'other', false), { hasJournal: true });
  assert.equal(bootstrapVoters(self, named('alpha', 'beta', 'gamma'), [info(beta), info(gamma), ineligible]), null);
  assert.equal(bootstrapVoters(self, named('alpha'), [ineligible]), null);
});

test('never bootstraps when self is not master-eligible', () => {
  const ineligibleSelf = node('m', 'alpha', false);
  assert.equal(bootstrapVoters(ineligibleSelf, named('alpha', 'beta', 'gamma'), [info(beta), info(gamma)]), null);
  const all = ['b', 'z'];
  assert.equal(expectedVoters(ineligibleSelf, 2, all, new Map([['b', all], ['z', all]]), false), null);
});

test('expect N: waits below N, waits until every member of the view reports the same set, then returns it', () => {
  const all = ['b', 'm', 'z'];
  assert.equal(expectedVoters(self, 3, ['m'], new Map(), false), null);
  assert.equal(expectedVoters(self, 3, ['m', 'z'], new Map([['z', ['m', 'z']]]), false), null, 'two of three');
  assert.equal(expectedVoters(self, 3, all, new Map([['z', all]]), false), null, 'gamma has not reported');
  assert.equal(expectedVoters(self, 3, all, new Map([['z', all], ['b', ['b', 'm']]]), false), null, 'gamma does not see beta yet');
  assert.equal(expectedVoters(self, 3, all, new Map([['z', all], ['b', ['b', 'm', 'x', 'z']]]), false), null, 'gamma sees more than we do');
  assert.deepEqual(expectedVoters(self, 3, all, new Map([['z', all], ['b', all]]), false), all);
  assert.deepEqual(expectedVoters(self, 2, all, new Map([['z', all], ['b', all]]), false), all, 'more than N that agree is fine');
  assert.equal(expectedVoters(self, 2, ['b', 'z'], new Map([['z', ['b', 'z']], ['b', ['b', 'z']]]), false), null, 'a view without self');
});

test('method none never bootstraps; bootstrapVoters is for initial master nodes only', () => {
  assert.equal(bootstrapVoters(self, { kind: 'none' }, [info(beta), info(gamma)]), null);
  assert.equal(bootstrapVoters(self, expect(1), []), null);
});

test('initial master nodes: a peer with self\'s own name is ambiguous too', () => {
  const otherAlpha = node('y', 'alpha');
  assert.equal(bootstrapVoters(self, named('alpha', 'gamma'), [info(otherAlpha), info(gamma)]), null);
});
