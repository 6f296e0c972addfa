import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { ClusterMessage } from '../../src/core/clusterMessages.js';
import { fromWire, toWire } from '../../src/node/appendWire.js';
import { messageProblem } from '../../src/node/messageShape.js';
import { encodeFrame, FrameDecoder } from '../../src/transport/frames.js';
import type { KvCommand } from '../sim/kvStateMachine.js';
import { SimCluster } from '../sim/simCluster.js';
import { SimRandom } from '../sim/simRandom.js';

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
    { type: 'appendRequest', from: 'a', to: 'b', term: 2, prevIndex: 4, prevTerm: 1, commitIndex: 4, seq: 9, sentTick: 40, lease: { epoch: 7, anchorTick: 3, ticks: 5 }, entries: [
      { index: 5, term: 2, payload: { kind: 'noop' } },
      { index: 6, term: 2, payload: { kind: 'configuration', current: ['a', 'b'], next: ['a'] } },
      { index: 7, term: 2, payload: { kind: 'command', data: { type: 'put' } } },
    ] },
    { type: 'appendResponse', from: 'a', to: 'b', term: 2, success: false, matchIndex: 0, lastIndex: 3, appliedIndex: 3, echoSeq: 9, echoSentTick: 40, recvTick: 12, epoch: 7 },
    { type: 'readIndexRequest', from: 'a', to: 'b', term: 2, id: 'n1.4' },
    { type: 'readIndexResponse', from: 'a', to: 'b', term: 2, id: 'n1.4', index: 17 },
    { type: 'readIndexResponse', from: 'a', to: 'b', term: 2, id: 'n1.5', index: null },
    { type: 'probeRequest', from: 'a', to: 'b', info: info('a') },
    { type: 'joinRequest', from: 'a', to: 'b', node: node('a'), clusterName: 'c', clusterUuid: 'u' },
    { type: 'joinResponse', from: 'a', to: 'b', outcome: 'accepted', master: null },
    { type: 'snapshotRequest', from: 'a', to: 'b', term: 2, snapshot: snapshot() },
    { type: 'snapshotRequest', from: 'a', to: 'b', term: 2, snapshot: snapshot(), sender: { ...node('a'), httpAddress: '10.0.0.7:7400' } },
  ];
  for (const message of ok) assert.equal(messageProblem(message, 'a', 'b'), null, JSON.stringify(message));
});

test('every message the real coordinators send each other passes (elections, appends, leases, read indexes, joins)', () => {
  const ids = ['n1', 'n2', 'n3'];
  const cluster = new SimCluster(
    {
      nodes: ids.map((id) => ({ id, roles: { masterEligible: true, votingOnly: false }, startAt: 0 })),
      clusterName: 'shape',
      bootstrap: { kind: 'initialMasterNodes', names: ids },
      tuning: { electionTimeoutTicks: 10, heartbeatIntervalTicks: 2, appendEntriesMax: 16, inflightAppendsMax: 4, uncommittedEntriesMax: 64, clockDriftPercent: 10, readIndexPendingMax: 64 },
      coordinatorTuning: { probeIntervalTicks: 3, discoveryInfoTicksMax: 12, discoveredPeersMax: 16, joinRetryTicks: 5, nodeFailureTimeoutTicks: 20, inSyncTimeoutTicks: 20, publishTimeoutTicks: 50, pendingChangesMax: 8 },
      compaction: null,
      syncDelayMax: 0,
      tickPeriodMin: 10,
      tickPeriodMax: 10,
      network: { latencyMin: 1, latencyMax: 3, slowProbability: 0, slowFactor: 1, dropRate: 0, duplicateRate: 0 },
    },
    new SimRandom(7),
  );
  const seen = new Set<string>();
  const send = cluster.network.send.bind(cluster.network);
  cluster.network.send = (message: ClusterMessage) => {
    seen.add(message.type);
    // Through the wire: encoded as the transport sends it (appends' payloads as bytes), decoded as a peer takes it.
    const frameBytesMax = 4 * 1024 * 1024;
    const received = fromWire(new FrameDecoder(frameBytesMax).push(encodeFrame(toWire(message, 0), frameBytesMax))[0]);
    assert.ok('message' in received, JSON.stringify(received));
    assert.equal(messageProblem(received.message, message.from, message.to), null, JSON.stringify(message));
    send(message);
  };
  cluster.start();
  const commands: KvCommand[] = [
    { op: 'write', key: 'k', value: 1 },
    { op: 'read', key: 'k', mode: 'linearizable' },
    { op: 'read', key: 'k', mode: 'sequential' },
  ];
  for (let round = 0; round < 20; round++) {
    cluster.runFor(100);
    for (const id of ids) for (const command of commands) cluster.gateway.request(id, command, () => undefined);
  }
  cluster.runFor(500);
  for (const type of ['preVoteRequest', 'voteRequest', 'appendRequest', 'appendResponse', 'readIndexRequest', 'readIndexResponse', 'probeRequest', 'joinRequest']) {
    assert.ok(seen.has(type), `no ${type} was exchanged: ${[...seen].join(', ')}`);
  }
});

test('a message must speak for its sender, to us, in the expected shape', () => {
  const cases: Array<[unknown, RegExp]> = [
    [null, /not an object/],
    [{ type: 'voteRequest', from: 'x', to: 'b', term: 1, lastIndex: 0, lastTerm: 0 }, /another sender/],
    [{ type: 'voteRequest', from: 'a', to: 'c', term: 1, lastIndex: 0, lastTerm: 0 }, /another node/],
    [{ type: 'voteRequest', from: 'a', to: 'b', term: Infinity, lastIndex: 0, lastTerm: 0 }, /malformed/],
    [{ type: 'voteRequest', from: 'a', to: 'b', term: -1, lastIndex: 0, lastTerm: 0 }, /malformed/],
    [{ type: 'appendRequest', from: 'a', to: 'b', term: 1, prevIndex: 0, prevTerm: 0, commitIndex: 0, seq: 1, sentTick: 1, entries: [{ index: 2, term: 1, payload: { kind: 'noop' } }] }, /sequence/],
    [{ type: 'appendRequest', from: 'a', to: 'b', term: 1, prevIndex: 0, prevTerm: 0, commitIndex: 0, entries: [] }, /sequence or tick/],
    [{ type: 'appendRequest', from: 'a', to: 'b', term: 1, prevIndex: 0, prevTerm: 0, commitIndex: 0, seq: 1, sentTick: 1, lease: { ticks: 5 }, entries: [] }, /lease/],
    [{ type: 'readIndexResponse', from: 'a', to: 'b', term: 1, id: 'x', index: -1 }, /malformed/],
    [{ type: 'readIndexRequest', from: 'a', to: 'b', term: 1, id: '' }, /malformed/],
    [{ type: 'appendRequest', from: 'a', to: 'b', term: 1, prevIndex: 0, prevTerm: 0, commitIndex: 0, seq: 1, sentTick: 1, entries: [{ index: 1, term: 1, payload: { kind: 'weird' } }] }, /unknown kind/],
    [{ type: 'appendRequest', from: 'a', to: 'b', term: 1, prevIndex: 0, prevTerm: 0, commitIndex: 0, seq: 1, sentTick: 1, entries: [{ index: 1, term: 1, payload: { kind: 'configuration', current: [] } }] }, /configuration/],
    [{ type: 'joinRequest', from: 'a', to: 'b', node: node('z'), clusterName: 'c', clusterUuid: null }, /another node/],
    [{ type: 'probeResponse', from: 'a', to: 'b', info: info('z') }, /another node/],
    [{ type: 'joinRequest', from: 'a', to: 'b', node: { ...node('a'), roles: { masterEligible: 'yes' } }, clusterName: 'c', clusterUuid: null }, /roles/],
    [{ type: 'snapshotRequest', from: 'a', to: 'b', term: 1 }, /malformed snapshot/],
    [{ type: 'snapshotRequest', from: 'a', to: 'b', term: 2, snapshot: snapshot({ sha256: 'not hex' }) }, /no valid file/],
    [{ type: 'snapshotRequest', from: 'a', to: 'b', term: 2, snapshot: snapshot({ index: 8 }) }, /no valid file/],
    [{ type: 'snapshotRequest', from: 'a', to: 'b', term: 2, snapshot: { ...snapshot(), configuration: { kind: 'configuration', current: [] } } }, /configuration/],
    [{ type: 'snapshotRequest', from: 'a', to: 'b', term: 2, snapshot: { ...snapshot(), data: { ...snapshot().data, clusterState: { version: 1 } } } }, /cluster state/],
    [{ type: 'snapshotRequest', from: 'a', to: 'b', term: 2, snapshot: snapshot(), sender: { ...node('a'), httpAddress: 7400 } }, /malformed HTTP address/],
    [{ type: 'snapshotRequest', from: 'a', to: 'b', term: 2, snapshot: snapshot(), sender: node('z') }, /another node/],
    [{ type: 'gossip', from: 'a', to: 'b' }, /unknown message type/],
  ];
  for (const [message, why] of cases) assert.match(messageProblem(message, 'a', 'b') ?? 'passed', why, JSON.stringify(message));
});

test('a descriptor may publish an internal HTTP address (TLS between nodes); a malformed one is refused', () => {
  const join = (extra: Record<string, unknown>) => ({ type: 'joinRequest', from: 'a', to: 'b', node: { ...node('a'), httpAddress: '127.0.0.1:7400', ...extra }, clusterName: 'c', clusterUuid: 'u' });
  assert.equal(messageProblem(join({ internalHttpAddress: '127.0.0.1:7401' }), 'a', 'b'), null);
  for (const bad of ['', 7401, 'x'.repeat(301), null]) {
    assert.equal(messageProblem(join({ internalHttpAddress: bad }), 'a', 'b'), 'a malformed internal HTTP address', JSON.stringify(bad));
  }
});
