import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  applyClusterChange,
  applyClusterEntry,
  emptyClusterState,
  parseVersion,
  validateJoin,
  votingExclusionsMax,
  type ClusterChange,
  type ClusterState,
  type NodeDescriptor,
} from '../../src/core/clusterState.js';
import type { Entry, EntryPayload } from '../../src/core/types.js';

const node = (id: string, name = `node-${id}`, version = '1.2.3', extra: Partial<NodeDescriptor> = {}): NodeDescriptor => ({
  id, name, address: `${id}.local:9300`, roles: { masterEligible: true, votingOnly: false }, version, ...extra,
});
const apply = (state: ClusterState, ...changes: ClusterChange[]) => changes.reduce(applyClusterChange, state);
const ids = (state: ClusterState) => state.nodes.map((n) => n.id);
const formed = (master = node('a'), clusterName = 'c1', clusterUuid = 'u1'): ClusterChange => ({ type: 'formed', clusterName, clusterUuid, master });
const joined = (n: NodeDescriptor): ClusterChange => ({ type: 'nodeJoined', node: n });

let index = 0;
const entry = (payload: EntryPayload): Entry => ({ index: ++index, term: 1, payload });
const cluster = (change: ClusterChange): Entry => entry({ kind: 'cluster', change });

test('formed names the cluster once; a second formed is ignored', () => {
  const first = apply(emptyClusterState, formed(node('a'), 'c1', 'u1'));
  assert.equal(first.clusterName, 'c1');
  assert.equal(first.clusterUuid, 'u1');
  assert.deepEqual(first.nodes, [node('a')]);
  const second = apply(first, formed(node('b'), 'c2', 'u2'));
  assert.deepEqual(second, first);
  assert.deepEqual(emptyClusterState.nodes, [], 'the empty state is not mutated');
});

test('nodeJoined keeps nodes sorted by id and replaces a member descriptor', () => {
  const state = apply(emptyClusterState, formed(node('m')), joined(node('z')), joined(node('b')), joined(node('k')));
  assert.deepEqual(ids(state), ['b', 'k', 'm', 'z']);
  const restarted = node('k', 'node-k', '1.3.0', { address: 'elsewhere:9300' });
  const updated = apply(state, joined(restarted));
  assert.deepEqual(ids(updated), ['b', 'k', 'm', 'z']);
  assert.deepEqual(updated.nodes[1], restarted);
  assert.equal(state.nodes[1]!.address, 'k.local:9300', 'the previous state is not mutated');
  // A member may also change its name, as long as no other member holds it.
  const renamed = apply(updated, joined(node('k', 'kappa')));
  assert.equal(renamed.nodes[1]!.name, 'kappa');
});

test('a join with a name another member holds changes nothing', () => {
  const state = apply(emptyClusterState, formed(node('a', 'alpha')), joined(node('b', 'beta')));
  assert.deepEqual(apply(state, joined(node('c', 'beta'))), state);
  assert.deepEqual(apply(state, joined(node('b', 'alpha'))), state, 'nor may a member take another member name');
});

test('nodeLeft removes the node from the members and the in-sync set', () => {
  let state = apply(emptyClusterState, formed(node('a')), joined(node('b')), joined(node('c')));
  state = apply(state, { type: 'inSyncChanged', added: ['a', 'b', 'c'], removed: [] });
  const left = apply(state, { type: 'nodeLeft', id: 'b' });
  assert.deepEqual(ids(left), ['a', 'c']);
  assert.deepEqual(left.inSync, ['a', 'c']);
  assert.deepEqual(apply(left, { type: 'nodeLeft', id: 'b' }), left, 'leaving twice changes nothing');
  assert.deepEqual(apply(left, { type: 'nodeLeft', id: 'nobody' }), left);
});

test('voting exclusions are sorted, deduplicated and refused beyond the maximum', () => {
  let state = apply(emptyClusterState, { type: 'votingExclusionsAdded', ids: ['c', 'a', 'c'] });
  assert.deepEqual(state.votingExclusions, ['a', 'c']);
  state = apply(state, { type: 'votingExclusionsAdded', ids: ['b', 'a'] });
  assert.deepEqual(state.votingExclusions, ['a', 'b', 'c']);
  const more = Array.from({ length: votingExclusionsMax - 3 }, (_, i) => `x${i}`);
  const full = apply(state, { type: 'votingExclusionsAdded', ids: more });
  assert.equal(full.votingExclusions.length, votingExclusionsMax, 'exactly the maximum is allowed');
  assert.deepEqual(full.votingExclusions, [...full.votingExclusions].sort());
  assert.deepEqual(apply(full, { type: 'votingExclusionsAdded', ids: ['one-too-many'] }), full);
  assert.deepEqual(apply(state, { type: 'votingExclusionsAdded', ids: [...more, 'y'] }), state, 'a batch that would pass the maximum is refused whole');
  assert.deepEqual(apply(full, { type: 'votingExclusionsAdded', ids: ['a', 'x0'] }), full, 'ids already excluded do not count twice');
  assert.deepEqual(apply(full, { type: 'votingExclusionsCleared' }).votingExclusions, []);
});

test('settings are set, replaced, and removed with null', () => {
  const state = apply(emptyClusterState, { type: 'settingsUpdated', settings: { a: 1, b: 'x', c: true } });
  assert.deepEqual(state.settings, { a: 1, b: 'x', c: true });
  const next = apply(state, { type: 'settingsUpdated', settings: { a: null, b: 'y', missing: null, d: false } });
  assert.deepEqual(next.settings, { b: 'y', c: true, d: false });
  assert.ok(!Object.hasOwn(next.settings, 'missing'));
  assert.deepEqual(state.settings, { a: 1, b: 'x', c: true }, 'the previous state is not mutated');
});

test('inSyncChanged only adds members, and keeps the set sorted', () => {
  let state = apply(emptyClusterState, formed(node('a')), joined(node('b')), joined(node('c')));
  state = apply(state, { type: 'inSyncChanged', added: ['c', 'zz', 'a', 'c'], removed: [] });
  assert.deepEqual(state.inSync, ['a', 'c']);
  state = apply(state, { type: 'inSyncChanged', added: ['b'], removed: ['a', 'nobody'] });
  assert.deepEqual(state.inSync, ['b', 'c']);
  state = apply(state, { type: 'inSyncChanged', added: ['a'], removed: ['a'] });
  assert.deepEqual(state.inSync, ['a', 'b', 'c'], 'an id both added and removed ends up added');
});

test('the version counts configuration and cluster entries, not commands or noops', () => {
  let state = emptyClusterState;
  const command = entry({ kind: 'command', data: { put: 'x' } });
  const noop = entry({ kind: 'noop' });
  assert.equal(applyClusterEntry(state, command), state);
  assert.equal(applyClusterEntry(state, noop), state);
  state = applyClusterEntry(state, entry({ kind: 'configuration', current: ['a'] }));
  assert.equal(state.version, 1);
  assert.deepEqual(state.votingConfiguration, { current: ['a'] });
  state = applyClusterEntry(state, cluster(formed()));
  assert.equal(state.version, 2);
  assert.equal(state.clusterUuid, 'u1');
  state = applyClusterEntry(applyClusterEntry(state, command), noop);
  assert.equal(state.version, 2);
  state = applyClusterEntry(state, cluster(joined(node('b'))));
  state = applyClusterEntry(state, entry({ kind: 'configuration', current: ['a'], next: ['a', 'b'] }));
  assert.equal(state.version, 4);
  assert.deepEqual(state.votingConfiguration, { current: ['a'], next: ['a', 'b'] });
  state = applyClusterEntry(state, entry({ kind: 'configuration', current: ['a', 'b'] }));
  assert.deepEqual(state.votingConfiguration, { current: ['a', 'b'] }, 'a final configuration has no next');
  assert.ok(!Object.hasOwn(state.votingConfiguration, 'next'));
  // An entry that changes nothing when it commits is still a cluster-state entry: every replica counts it.
  const ignored = applyClusterEntry(state, cluster(formed(node('z'), 'other', 'u9')));
  assert.equal(ignored.version, 6);
  assert.equal(ignored.clusterUuid, 'u1');
});

test('applying the same entries to two copies gives equal states', () => {
  const entries: Entry[] = [
    entry({ kind: 'configuration', current: ['b'] }),
    cluster(formed(node('b', 'beta'))),
    cluster(joined(node('a', 'alpha'))),
    entry({ kind: 'command', data: 1 }),
    cluster(joined(node('c', 'alpha'))),
    cluster({ type: 'settingsUpdated', settings: { z: 1, y: 'two' } }),
    cluster({ type: 'votingExclusionsAdded', ids: ['c', 'a'] }),
    entry({ kind: 'noop' }),
    cluster({ type: 'inSyncChanged', added: ['b', 'a', 'q'], removed: [] }),
    entry({ kind: 'configuration', current: ['b'], next: ['a', 'b', 'd'] }),
    cluster({ type: 'nodeLeft', id: 'a' }),
    cluster({ type: 'settingsUpdated', settings: { z: null } }),
  ];
  const one = entries.reduce(applyClusterEntry, structuredClone(emptyClusterState) as ClusterState);
  const two = entries.reduce(applyClusterEntry, structuredClone(emptyClusterState) as ClusterState);
  assert.deepEqual(one, two);
  assert.equal(JSON.stringify(one), JSON.stringify(two));
  assert.equal(one.version, 10);
  assert.deepEqual(ids(one), ['b']);
  assert.deepEqual(one.inSync, ['b']);
  assert.deepEqual(one.settings, { y: 'two' });
  assert.deepEqual(one.votingExclusions, ['a', 'c']);
});

test('parseVersion reads major.minor.patch and nothing else', () => {
  assert.deepEqual(parseVersion('1.2.3'), [1, 2, 3]);
  assert.deepEqual(parseVersion('0.10.200'), [0, 10, 200]);
  for (const bad of ['', '1.2', '1.2.3.4', 'v1.2.3', '1.2.3-beta', '1.2.x', ' 1.2.3', '1.2.3 ', '1..3', '1234567.0.0']) {
    assert.equal(parseVersion(bad), null, bad);
  }
});

const members = apply(emptyClusterState, formed(node('a', 'alpha', '1.2.0')), joined(node('b', 'beta', '1.3.0')));
const join = (joiner: NodeDescriptor, joinerClusterName = 'c1', joinerClusterUuid: string | null = 'u1') =>
  validateJoin({ state: members, joiner, joinerClusterName, joinerClusterUuid });

test('validateJoin refuses another cluster, by name or by uuid', () => {
  assert.equal(join(node('c', 'gamma', '1.3.0'), 'c2'), 'clusterNameMismatch');
  assert.equal(join(node('c', 'gamma', '1.3.0'), 'c1', 'u2'), 'clusterUuidMismatch');
  assert.equal(join(node('c', 'gamma', '1.3.0'), 'c1', null), null, 'a node that never belonged to a cluster may join');
  assert.equal(join(node('c', 'gamma', '1.3.0'), 'c1', 'u1'), null);
  assert.equal(validateJoin({ state: emptyClusterState, joiner: node('c'), joinerClusterName: 'c1', joinerClusterUuid: null }), 'clusterNameMismatch', 'not formed yet');
});

test('validateJoin refuses a name in use, but not a member re-joining under its own name', () => {
  assert.equal(join(node('c', 'beta', '1.3.0')), 'nameInUse');
  assert.equal(join(node('b', 'beta', '1.3.0')), null);
  assert.equal(join(node('b', 'beta2', '1.3.0')), null, 'a member may rename itself to a free name');
  assert.equal(join(node('b', 'alpha', '1.3.0')), 'nameInUse');
});

test('validateJoin refuses another major, an older version than the oldest member, a malformed version', () => {
  assert.equal(join(node('c', 'gamma', '2.0.0')), 'incompatibleVersion');
  assert.equal(join(node('c', 'gamma', '0.9.9')), 'incompatibleVersion');
  assert.equal(join(node('c', 'gamma', '1.1.9')), 'incompatibleVersion', 'older than the oldest member (1.2.0)');
  assert.equal(join(node('c', 'gamma', 'latest')), 'incompatibleVersion');
  assert.equal(join(node('c', 'gamma', '1.2')), 'incompatibleVersion');
  assert.equal(join(node('c', 'gamma', '1.2.0')), null, 'as old as the oldest member is fine');
  assert.equal(join(node('c', 'gamma', '1.2.1')), null);
  assert.equal(join(node('c', 'gamma', '1.9.0')), null, 'a newer minor is accepted');
  // The joiner's own previous descriptor does not count: a member upgrading past everyone else is fine.
  assert.equal(join(node('a', 'alpha', '1.4.0')), null);
});
