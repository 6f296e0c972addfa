import assert from 'node:assert/strict';
import { test } from 'node:test';

import { formatStatus } from '../../src/cli/statusCommand.js';
import type { ClusterStatus } from '../../src/node/clusterStatus.js';

const base: ClusterStatus = {
  clusterName: 'c',
  clusterUuid: 'u',
  term: 2,
  version: 5,
  commitIndex: 40,
  master: { id: 'aaaaaaaa-1', name: 'n1' },
  votingConfiguration: ['n1'],
  votingExclusions: [],
  answeredBy: { id: 'aaaaaaaa-1', name: 'n1' },
  authoritative: true,
  nodes: [],
  writeProblem: null,
  snapshot: { index: 0, download: null },
  restoredFrom: null,
};

test('conclave status shows each schema migration running or failed, with its progress or the node it stopped at', () => {
  const text = formatStatus({
    ...base,
    schemaMigrations: [
      { type: 'article', state: 'running', toVersion: 3, nodesDone: 1200, nodesTotal: 5000, nodesPerSecond: 2894.5, secondsLeftEstimate: 2, failure: null },
      { type: 'tally', state: 'failed', toVersion: 2, nodesDone: 2, nodesTotal: 3, nodesPerSecond: null, secondsLeftEstimate: null, failure: { path: '/tally3', message: '/n must be at most 2' } },
    ],
  });
  assert.match(text, /Schema migration: +article to version 3: 1200 of 5000 nodes, 2894\.5 nodes\/s, about 2 s left/);
  assert.match(text, /Schema migration: +tally to version 2: FAILED at \/tally3 \(\/n must be at most 2\) after 2 of 3 nodes; retry or abandon it/);
  assert.doesNotMatch(formatStatus(base), /Schema migration/);
});
