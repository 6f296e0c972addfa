import type { CoordinatorOptions } from '../../src/core/clusterCoordinator.js';
import type { NodeDescriptor } from '../../src/core/clusterState.js';

/** A node descriptor for coordinator unit tests: master-eligible, version 1.0.0, address "<id>:1". */
export const descriptor = (id: string): NodeDescriptor => ({ id, name: id, address: `${id}:1`, roles: { masterEligible: true, votingOnly: false }, version: '1.0.0' });

/** Options of coordinator "a" for unit tests: small bounds, election timeout 10 ticks, randomness fixed at 0. */
export const coordinatorOptions: CoordinatorOptions = {
  self: descriptor('a'),
  clusterName: 'c',
  bootstrap: { kind: 'none' },
  core: { electionTimeoutTicks: 10, heartbeatIntervalTicks: 2, appendEntriesMax: 4, inflightAppendsMax: 2, uncommittedEntriesMax: 64, clockDriftPercent: 10, readIndexPendingMax: 64 },
  probeIntervalTicks: 6,
  discoveryInfoTicksMax: 40,
  discoveredPeersMax: 16,
  joinRetryTicks: 10,
  nodeFailureTimeoutTicks: 20,
  inSyncTimeoutTicks: 20,
  publishTimeoutTicks: 100,
  pendingChangesMax: 8,
  random: { nextInt: () => 0 },
};
