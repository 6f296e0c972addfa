import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ClusterCoordinator, type CoordinatorSnapshotData } from '../../src/core/clusterCoordinator.js';
import { applyClusterEntry, emptyClusterState } from '../../src/core/clusterState.js';
import type { Entry } from '../../src/core/types.js';
import { coordinatorOptions, descriptor } from '../helpers/coordinatorOptions.js';

const options = coordinatorOptions;

const entries: Entry[] = [
  { index: 1, term: 1, payload: { kind: 'configuration', current: ['a'] } },
  { index: 2, term: 1, payload: { kind: 'cluster', change: { type: 'formed', clusterName: 'c', clusterUuid: 'u', master: descriptor('a') } } },
  { index: 3, term: 1, payload: { kind: 'command', data: 'x' } },
  { index: 4, term: 1, payload: { kind: 'cluster', change: { type: 'nodeJoined', node: descriptor('b') } } },
  { index: 5, term: 1, payload: { kind: 'noop' } },
];

const stateAt = (index: number) => entries.slice(0, index).reduce(applyClusterEntry, emptyClusterState);

test('a coordinator compacting below its applied index carries the cluster state at that index, then at the next one from the snapshot', () => {
  const coordinator = new ClusterCoordinator(options, { hardState: { term: 1, votedFor: null, commitIndex: 5 }, entries, appliedIndex: 5 });
  assert.equal(coordinator.clusterState().nodes.length, 2);
  const first = coordinator.compact('file at 3', 3);
  assert.equal(first.index, 3);
  assert.deepEqual((first.data as CoordinatorSnapshotData).clusterState, stateAt(3));
  assert.equal((first.data as CoordinatorSnapshotData).stateMachine, 'file at 3');
  assert.equal((first.data as CoordinatorSnapshotData).clusterState.nodes.length, 1, 'b joined after index 3');
  // The next compaction below the applied index starts from that snapshot's cluster state.
  const second = coordinator.compact('file at 4', 4);
  assert.deepEqual((second.data as CoordinatorSnapshotData).clusterState, stateAt(4));
  const third = coordinator.compact('file at 5');
  assert.deepEqual((third.data as CoordinatorSnapshotData).clusterState, coordinator.clusterState());
  assert.throws(() => coordinator.compact('again', 5), /at or below the snapshot/);
});
