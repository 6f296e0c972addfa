import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { test } from 'node:test';
import { coordinatorBugs } from '../../src/core/clusterCoordinator.js';
import { runtimeBugs } from '../../src/node/writeTracker.js';
import type { Entry, Role } from '../../src/core/types.js';
import { runBatch } from './batch.js';
import { configurationStepProblem } from './invariants.js';
import type { KvCommand } from './kvStateMachine.js';
import { SimCluster, type ClusterSpec } from './simCluster.js';
import { bridgePartition, oneWayPartition, symmetricPartition } from './simNetwork.js';
import type { ClientReply, SimNode } from './simNode.js';
import { SimRandom } from './simRandom.js';
import { SimStorage } from './simStorage.js';
import { electionTimeoutTicks, livenessBoundUnits, runSimulation, tickPeriodMax, type InjectedBug } from './simulate.js';
import { transcriptDirectory } from '../helpers/transcripts.js';
import { runTranscript } from './transcript.js';

/**
 * The deterministic simulator against the real coordination core.
 *
 * - 2,000 random seeds (a fixed list, plus CONCLAVE_TEST_SEED first when set): each a short run (a safety phase
 *   of 3,000–6,000 simulated time units with faults, then a liveness phase bounded by 20 election timeouts) that
 *   must break no invariant, converge, and leave a linearizable client history. A failure prints every failing
 *   seed with the one-line command that replays it.
 * - Mutation checks: cores built with an injected bug must make the simulator report a violation.
 * - Scenarios without transcripts: a partitioned-away master, one-way partitions, a bridge node, a crashed
 *   minority, a voting-only tie-breaker.
 */

const workers = Math.max(1, Math.min(2, availableParallelism()));

/** Four blocks of 500 consecutive seeds. Fixed, so a red run is reproducible; CONCLAVE_TEST_SEED adds one. */
const baseSeeds = [1, 100_001, 200_001, 300_001];
const seedsPerBase = 500;

function testSeeds(): number[] {
  const seeds: number[] = [];
  const extra = process.env['CONCLAVE_TEST_SEED'];
  if (extra !== undefined && extra.trim() !== '') {
    const seed = Number(extra);
    if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`CONCLAVE_TEST_SEED must be a non-negative integer, got ${JSON.stringify(extra)}`);
    seeds.push(seed);
  }
  for (const base of baseSeeds) for (let i = 0; i < seedsPerBase; i++) seeds.push(base + i);
  return seeds;
}

test('2,000 random seeds: no invariant broken, every run converges after healing, every history linearizable', async (t) => {
  const seeds = testSeeds();
  assert.ok(seeds.length >= 2000);
  const summary = await runBatch({ seeds: { list: seeds }, workers, onFailure: (f) => console.log(f.report) });
  t.diagnostic(`${summary.done} seeds, ${summary.events} simulator events, ${summary.operations} client operations`);
  assert.equal(summary.done, seeds.length);
  assert.deepEqual(
    summary.failures.map((f) => f.seed),
    [],
    `failing seeds (replay each with the command printed above):\n${summary.failures.map((f) => f.report).join('\n')}`,
  );
});

/**
 * Bugs whose schedule random seeds draw too rarely for the CI budget, each checked instead by the transcript that
 * replays that schedule in the same simulator (test/transcripts): stickyOnlyAboveOwnTerm needs a delayed pre-vote
 * refusal to move a voter into a candidate's term after it heard from a master that resumed, and the candidate's
 * delayed vote request to arrive after that — seeds 1..6,000 drew it once (seed 2086). `npm run sim -- --bug
 * stickyOnlyAboveOwnTerm --seeds N` still searches for it at random.
 */
const caughtByTranscript: Partial<Record<InjectedBug, { readonly file: string; readonly violation: RegExp }>> = {
  stickyOnlyAboveOwnTerm: { file: 'stalevote.txt', violation: /error: .* holds a read lease, but .* was elected master/ },
};

for (const bug of [...coordinatorBugs, ...runtimeBugs]) {
  const transcript = caughtByTranscript[bug];
  if (transcript !== undefined) {
    test(`mutation check: a core with the injected bug ${bug} is caught by the transcript ${transcript.file}`, () => {
      const text = readFileSync(join(transcriptDirectory, transcript.file), 'utf8');
      assert.equal(runTranscript(text), text, `${transcript.file} must pass without the bug`);
      const output = runTranscript(text, bug);
      assert.match(output, transcript.violation, `${transcript.file} did not notice the injected bug ${bug}`);
    });
    continue;
  }
  test(`mutation check: a core with the injected bug ${bug} is caught within the seed budget`, async (t) => {
    const seeds = testSeeds();
    // One catch is the proof; the search stops there.
    const summary = await runBatch({ seeds: { list: seeds }, workers, simulation: { injectedBug: bug }, maxFailures: 1 });
    assert.ok(summary.failures.length > 0, `no seed out of ${seeds.length} noticed the injected bug ${bug}`);
    // Workers report in their own order: sort, so the lowest failing seed is the one shown.
    const failures = [...summary.failures].sort((a, b) => a.seed - b.seed);
    const seedsCaught = failures.map((f) => f.seed).join(', ');
    t.diagnostic(`${bug} caught by seeds ${seedsCaught} (the search stops at ${failures.length})`);
    console.log(`injected bug ${bug} caught by seeds ${seedsCaught}; the lowest:\n${failures[0]!.report}`);
  });
}

test('a seed replays identically', () => {
  const a = runSimulation(424_242);
  const b = runSimulation(424_242);
  assert.equal(a.ok, true, a.failure);
  assert.deepEqual(b, a);
});

test('the simulated disk loses what was written since the last sync in a crash, and nothing synced', () => {
  const storage = new SimStorage();
  const entry = (index: number, term: number, key: string): Entry => ({ index, term, payload: { kind: 'command', data: { op: 'write', key, value: index } } });
  storage.persist(undefined, { term: 1, votedFor: 'a', commitIndex: 2 }, [entry(1, 1, 'x'), entry(2, 1, 'y')]);
  storage.apply(entry(1, 1, 'x'));
  storage.apply(entry(2, 1, 'y'));
  storage.sync();
  const synced = JSON.stringify([storage.restoredState(), storage.stateMachine.exportSnapshot()]);
  // A later commit written and never synced: a new term, a truncated and rewritten journal, an apply.
  storage.persist(undefined, { term: 2, votedFor: null, commitIndex: 3 }, [entry(2, 2, 'z'), entry(3, 2, 'x')]);
  storage.apply(entry(3, 2, 'x'));
  assert.equal(storage.synced, false);
  assert.equal(storage.stateMachine.get('x'), 3);
  storage.loseUnsynced();
  assert.equal(JSON.stringify([storage.restoredState(), storage.stateMachine.exportSnapshot()]), synced);
  assert.equal(storage.stateMachine.get('x'), 1);
  storage.loseUnsynced();
  assert.equal(JSON.stringify([storage.restoredState(), storage.stateMachine.exportSnapshot()]), synced, 'a second crash loses nothing more');
});

test('the configuration checker accepts joint steps and rejects everything else', () => {
  const final = (current: string[]) => ({ kind: 'configuration' as const, current });
  const joint = (current: string[], next: string[]) => ({ kind: 'configuration' as const, current, next });
  assert.equal(configurationStepProblem(undefined, final(['a', 'b', 'c']), 1), null);
  assert.equal(configurationStepProblem(final(['a', 'b', 'c']), joint(['a', 'b', 'c'], ['a', 'b']), 7), null);
  assert.equal(configurationStepProblem(joint(['a', 'b', 'c'], ['a', 'b']), final(['a', 'b']), 9), null);
  assert.match(configurationStepProblem(undefined, joint(['a'], ['b']), 1)!, /first configuration is joint/);
  assert.match(configurationStepProblem(undefined, final(['a']), 3)!, /not 1/);
  assert.match(configurationStepProblem(final(['a', 'b', 'c']), final(['a', 'b']), 5)!, /without a joint phase/);
  assert.match(configurationStepProblem(final(['a', 'b', 'c']), joint(['a', 'b'], ['a']), 5)!, /does not start from/);
  assert.match(configurationStepProblem(joint(['a', 'b', 'c'], ['a', 'b']), joint(['a', 'b'], ['a']), 5)!, /follows another joint/);
  assert.match(configurationStepProblem(joint(['a', 'b', 'c'], ['a', 'b']), final(['a', 'c']), 5)!, /does not finish/);
});

// ---------------------------------------------------------------- scenarios

/** A quiet network (no loss), so that each scenario tests exactly the fault it sets up. */
export function scenarioSpec(size: number, votingOnly: readonly string[] = []): ClusterSpec {
  const ids = Array.from({ length: size }, (_, i) => `n${i + 1}`);
  return {
    nodes: ids.map((id) => ({ id, roles: { masterEligible: true, votingOnly: votingOnly.includes(id) }, startAt: 0 })),
    clusterName: 'sim',
    bootstrap: { kind: 'initialMasterNodes', names: ids },
    tuning: { electionTimeoutTicks, heartbeatIntervalTicks: 3, appendEntriesMax: 16, inflightAppendsMax: 4, uncommittedEntriesMax: 64, clockDriftPercent: 10, readIndexPendingMax: 64 },
    coordinatorTuning: {
      probeIntervalTicks: 3,
      discoveryInfoTicksMax: 12,
      discoveredPeersMax: 16,
      joinRetryTicks: 5,
      nodeFailureTimeoutTicks: 2 * electionTimeoutTicks,
      inSyncTimeoutTicks: 2 * electionTimeoutTicks,
      publishTimeoutTicks: 50,
      pendingChangesMax: 8,
    },
    compaction: null,
    syncDelayMax: 3,
    tickPeriodMin: 9,
    tickPeriodMax: tickPeriodMax,
    network: { latencyMin: 1, latencyMax: 10, slowProbability: 0, slowFactor: 1, dropRate: 0, duplicateRate: 0 },
  };
}

function formed(size: number, seed: number, votingOnly: readonly string[] = []): SimCluster {
  const cluster = new SimCluster(scenarioSpec(size, votingOnly), new SimRandom(seed));
  cluster.start();
  assert.ok(cluster.runFor(livenessBoundUnits, () => cluster.convergenceProblem() === null), `the cluster did not form: ${cluster.convergenceProblem()}`);
  return cluster;
}

const soft = (node: SimNode) => node.core!.softState();
const role = (node: SimNode): Role | 'down' => node.core?.softState().role ?? 'down';
const others = (cluster: SimCluster, ...ids: string[]) => cluster.nodes.map((n) => n.id).filter((id) => !ids.includes(id));

/** Sends a client request to a node; the reply lands in the box when the node answers. */
function request(cluster: SimCluster, nodeId: string, command: KvCommand): { reply: ClientReply | null } {
  const box: { reply: ClientReply | null } = { reply: null };
  cluster.node(nodeId).request(command, (r) => (box.reply = r));
  return box;
}

/** The master among `candidates`, if exactly one of them is master in the highest term among them. */
function masterAmong(cluster: SimCluster, candidates: readonly string[]): SimNode | null {
  const nodes = candidates.map((id) => cluster.node(id)).filter((n) => n.status === 'running');
  const masters = nodes.filter((n) => role(n) === 'master');
  if (masters.length !== 1) return null;
  const master = masters[0]!;
  return nodes.every((n) => soft(n).term <= soft(master).term) ? master : null;
}

/** Writes through whichever node of `candidates` is master, and runs until the write is applied there. */
function writeThrough(cluster: SimCluster, candidates: readonly string[], key: string, value: number): SimNode {
  let master: SimNode | null = null;
  assert.ok(cluster.runFor(livenessBoundUnits, () => (master = masterAmong(cluster, candidates)) !== null), `no master among ${candidates.join(',')}`);
  const box = request(cluster, master!.id, { op: 'write', key, value });
  assert.ok(cluster.runFor(livenessBoundUnits, () => box.reply !== null), `write ${key}=${value} through ${master!.id} never answered`);
  const reply = box.reply as ClientReply | null;
  assert.equal(reply?.kind, 'applied', `write ${key}=${value} through ${master!.id}: ${JSON.stringify(reply)}`);
  assert.deepEqual(reply.kind === 'applied' ? reply.result : null, { op: 'write' });
  return master!;
}

const electionTimeoutUnits = electionTimeoutTicks * tickPeriodMax;

test('5 nodes, the master partitioned away: the minority never commits, the majority elects a new master and commits', () => {
  const cluster = formed(5, 101);
  const old = cluster.master()!;
  const { term: oldTerm, commitIndex: oldCommit } = soft(old);
  const majority = others(cluster, old.id);
  cluster.partition(symmetricPartition([old.id], majority));
  // The old master still believes it is master: it appends this write, which can never commit.
  const stranded = request(cluster, old.id, { op: 'write', key: 'k', value: 1 });
  let oldCommitMax = oldCommit;
  const watch = () => {
    oldCommitMax = Math.max(oldCommitMax, soft(old).commitIndex);
    return false;
  };

  const newMaster = writeThrough(cluster, majority, 'k', 2);
  assert.ok(soft(newMaster).term > oldTerm, 'the new master has a higher term');
  cluster.runFor(5 * electionTimeoutUnits, watch);
  assert.equal(oldCommitMax, oldCommit, 'the minority side committed something');
  assert.notEqual(role(old), 'master', 'check-quorum: the cut-off master stepped down');
  assert.equal(soft(old).term, oldTerm, 'pre-vote: the cut-off node did not inflate its term');
  assert.equal(stranded.reply, null, 'nobody answered the stranded write while partitioned');

  cluster.heal();
  assert.ok(cluster.runFor(livenessBoundUnits, () => cluster.convergenceProblem() === null), `no convergence: ${cluster.convergenceProblem()}`);
  // Another entry was applied at its index: the runtime's write path says it was not applied (MASTER_CHANGED), a
  // refusal the linearizability checker holds it to in the random runs.
  assert.equal((stranded.reply as ClientReply | null)?.kind, 'rejected', 'the stranded write was discarded with its entry');
  for (const node of cluster.nodes) assert.equal(node.storage.stateMachine.get('k'), 2, `${node.id} holds the majority's write only`);
});

test('one-way partition, nobody reaches the master: it steps down, the others elect a master, and it does not disrupt them', () => {
  const cluster = formed(5, 202);
  const old = cluster.master()!;
  const rest = others(cluster, old.id);
  cluster.partition(oneWayPartition(rest, [old.id]));
  const newMaster = writeThrough(cluster, rest, 'k', 1);
  assert.notEqual(newMaster.id, old.id);
  assert.notEqual(role(old), 'master', 'check-quorum: a master that hears no acknowledgement steps down');
  const { term } = soft(newMaster);
  // The old master can still send: its pre-votes reach the others, who hear from a live master and refuse them.
  cluster.runFor(20 * electionTimeoutUnits);
  assert.equal(role(newMaster), 'master', 'the new master was not disrupted');
  assert.equal(soft(newMaster).term, term, 'no election happened since');
  writeThrough(cluster, rest, 'k', 2);
});

test('one-way partition, the master reaches nobody: the others elect a master, and the old one, still hearing, follows it', () => {
  const cluster = formed(5, 303);
  const old = cluster.master()!;
  const rest = others(cluster, old.id);
  cluster.partition(oneWayPartition([old.id], rest));
  const newMaster = writeThrough(cluster, rest, 'k', 1);
  assert.ok(cluster.runFor(2 * electionTimeoutUnits, () => soft(old).master === newMaster.id), 'the old master learns the new one');
  assert.equal(role(old), 'follower');
  assert.equal(soft(old).term, soft(newMaster).term);
  writeThrough(cluster, rest, 'k', 2);
});

test('a bridge node that sees both sides: the master keeps a quorum through it, and nobody else is elected', () => {
  const cluster = formed(5, 404);
  const master = cluster.master()!;
  const [partner, bridge, far1, far2] = others(cluster, master.id) as [string, string, string, string];
  cluster.partition(bridgePartition([master.id, partner], [far1, far2], bridge));
  const { term } = soft(master);
  writeThrough(cluster, [master.id], 'k', 1);
  cluster.runFor(20 * electionTimeoutUnits);
  assert.equal(role(master), 'master', 'the master keeps its quorum through the bridge');
  for (const node of cluster.nodes) assert.equal(soft(node).term, term, `${node.id} did not move to another term`);
  writeThrough(cluster, [master.id], 'k', 2);
  const bridged = cluster.node(bridge);
  assert.ok(cluster.runFor(electionTimeoutUnits, () => bridged.storage.stateMachine.get('k') === 2), 'the bridge replicates');
  assert.notEqual(cluster.node(far1).storage.stateMachine.get('k'), 2, 'the far side is cut off from the master');
  cluster.heal();
  assert.ok(cluster.runFor(livenessBoundUnits, () => cluster.convergenceProblem() === null), `no convergence: ${cluster.convergenceProblem()}`);
});

test('crashing a minority (the master and one more) keeps 5 nodes available; they catch up on restart', () => {
  const cluster = formed(5, 505);
  const old = cluster.master()!;
  const [victim] = others(cluster, old.id) as [string];
  writeThrough(cluster, [old.id], 'k', 1);
  cluster.crash(old.id);
  cluster.crash(victim);
  const survivors = others(cluster, old.id, victim);
  writeThrough(cluster, survivors, 'k', 2);
  writeThrough(cluster, survivors, 'j', 3);
  cluster.restart(old.id);
  cluster.restart(victim);
  assert.ok(cluster.runFor(livenessBoundUnits, () => cluster.convergenceProblem() === null), `no convergence: ${cluster.convergenceProblem()}`);
  for (const node of cluster.nodes) {
    assert.equal(node.storage.stateMachine.get('k'), 2);
    assert.equal(node.storage.stateMachine.get('j'), 3);
  }
});

test('3 nodes with a voting-only tie-breaker: when the master crashes, the other eligible node is elected', () => {
  const cluster = formed(3, 606, ['n3']);
  const old = cluster.master()!;
  assert.notEqual(old.id, 'n3', 'a voting-only node is never the converged master');
  cluster.crash(old.id);
  const next = writeThrough(cluster, others(cluster, old.id), 'k', 1);
  assert.notEqual(next.id, 'n3');
  const refused = request(cluster, 'n3', { op: 'write', key: 'k', value: 2 });
  assert.deepEqual(refused.reply, { kind: 'rejected', reason: 'notMaster', master: next.id });
});

test("the master's disk fills: its write is refused, the others elect a master that does not wait for the full node", () => {
  // A publish timeout far beyond the bound below: a new master whose first publication waited for the full node
  // (reachable: it still answers heartbeats, storing only its hard state) held its in-sync removal back that long,
  // and every write waited for the full node meanwhile (CRX scenario 6a, CI: WRITE_OUTCOME_UNKNOWN after 10 s).
  const spec = scenarioSpec(3);
  const { inSyncTimeoutTicks } = spec.coordinatorTuning;
  const cluster = new SimCluster({ ...spec, coordinatorTuning: { ...spec.coordinatorTuning, publishTimeoutTicks: 200 * electionTimeoutTicks } }, new SimRandom(707));
  cluster.start();
  assert.ok(cluster.runFor(livenessBoundUnits, () => cluster.convergenceProblem() === null), `the cluster did not form: ${cluster.convergenceProblem()}`);
  const full = cluster.master()!;
  writeThrough(cluster, [full.id], 'k', 1);
  full.storage.full = true;
  const refused = request(cluster, full.id, { op: 'write', key: 'k', value: 2 });
  // Queued, then proposed with the writes of its instant (group commit): its Ready is the one the disk refuses.
  assert.ok(cluster.runFor(tickPeriodMax, () => refused.reply !== null), 'the write was not answered within a tick');
  assert.deepEqual(refused.reply, { kind: 'rejected', reason: 'diskFull', master: null }, 'nothing of the write was stored');
  assert.notEqual(role(full), 'master', 'the full master steps down at once');

  const rest = others(cluster, full.id);
  let next: SimNode | null = null;
  assert.ok(cluster.runFor(livenessBoundUnits, () => (next = masterAmong(cluster, rest)) !== null), 'the others elect a master');
  const box = request(cluster, next!.id, { op: 'write', key: 'k', value: 3 });
  // Taken out of the in-sync set within its timeout (and a few election timeouts for the changes before it).
  const boundUnits = (inSyncTimeoutTicks + 4 * electionTimeoutTicks) * tickPeriodMax;
  assert.ok(cluster.runFor(boundUnits, () => box.reply !== null), `the write through the new master ${next!.id} was not answered within ${boundUnits} units`);
  assert.deepEqual(box.reply, { kind: 'applied', result: { op: 'write' }, index: (box.reply as ClientReply | null)?.kind === 'applied' ? (box.reply as { index: number }).index : -1 });
  assert.ok((next!.core!.followerStates().get(full.id)?.ackSeq ?? 0) > 0, 'the full node kept answering the new master (the case this covers)');
  assert.equal(full.storage.stateMachine.get('k'), 1, 'the full node applied nothing meanwhile');
  assert.ok(!next!.coordinator!.clusterState().inSync.includes(full.id), 'the full node is out of the in-sync set');

  full.storage.full = false;
  assert.ok(cluster.runFor(livenessBoundUnits, () => cluster.convergenceProblem() === null), `no convergence once space returned: ${cluster.convergenceProblem()}`);
  for (const node of cluster.nodes) assert.equal(node.storage.stateMachine.get('k'), 3, `${node.id} holds the write`);
  assert.ok(cluster.master()!.coordinator!.clusterState().inSync.includes(full.id), 'back in sync once it caught up');
});
