import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';

import { runConclave } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { ChaosCluster, chaosSecret } from './chaosCluster.js';
import {
  assertDigestsEqual,
  assertNoAcknowledgedWriteLost,
  assertNoCrash,
  crxParent,
  describeAnswer,
  ensureNode,
  getContent,
  isOk,
  LedgerWriter,
  ledgerOn,
  ledgerParent,
  LoadGenerator,
  putContent,
  restoreHealth,
  roleOf,
  runningNodes,
  send,
  smokeParent,
  smokeTest,
  waitForMaster,
  waitForWritesToContinue,
  waitHealthy,
  waitSeeing,
  type Acknowledged,
  type Answer,
} from './scenarioHelpers.js';

/**
 * The QA scenarios of the CRX clustering chapter (issue 6), on real `conclave start` processes, each in a network
 * namespace of its own with its data on a tmpfs of its own (chaosCluster.ts). One 3-node cluster serves scenarios
 * 1–9, brought back to full health before each; scenario 10 builds a second cluster from an online backup of one node.
 * Every scenario asserts what the product promises (docs/operations.md, "What happens when…"), not how fast.
 */
const isRoot = process.getuid?.() === 0;
const names = ['n1', 'n2', 'n3'];
/** Every write any scenario's background writer had acknowledged: all must survive to the restored cluster. */
const everyAcknowledged: Acknowledged[] = [];

describe('CRX cluster QA scenarios', { skip: isRoot ? false : 'the chaos harness needs root (network namespaces, tmpfs)', concurrency: false }, () => {
  let cluster: ChaosCluster;
  const root = join(tmpdir(), `conclave-crx-${process.pid}`);

  /** Runs a scenario on a healthy cluster; on failure keeps every node's log and says where. */
  const scenario = (name: string, timeoutMs: number, body: (t: TestContext) => Promise<void>) => {
    return test(name, { timeout: timeoutMs }, async (t) => {
      try {
        await restoreHealth(cluster);
        await body(t);
        assertNoCrash(cluster, name);
      } catch (err) {
        const logs = join(tmpdir(), `conclave-crx-logs-${process.pid}`);
        mkdirSync(logs, { recursive: true });
        for (const node of cluster.nodes.values()) writeFileSync(join(logs, `${node.name}.log`), node.output);
        (err as Error).message += `\n(node logs: ${logs})`;
        throw err;
      }
    });
  };

  before(async () => {
    // 128 MiB: scenario 10's online backup needs room for a copy of the database and the state extracted from it.
    cluster = ChaosCluster.create(names, root, { diskMib: 128, env: {} });
    await Promise.all(names.map((n) => cluster.start(n)));
    await waitHealthy(cluster, 60_000, names);
    for (const path of [crxParent, smokeParent, ledgerParent]) await ensureNode(cluster, path);
  });

  after(async () => {
    await cluster?.destroy();
  });

  scenario('1. replica shutdown (SIGTERM) and restart: it rejoins in sync and the smoke test passes', 60_000, async () => {
    const { master } = await waitHealthy(cluster, 30_000);
    const replica = names.find((n) => n !== master)!;
    const code = await cluster.stop(replica);
    assert.equal(code, 0, `expected ${replica} to exit 0 after SIGTERM, saw ${code}`);
    // The remaining two are a quorum: the cluster goes on without it.
    await smokeTest(cluster, 's1-replica-down');
    await cluster.start(replica);
    const { master: after } = await waitHealthy(cluster, 30_000, names);
    assert.equal(after, master, `expected ${master} to stay master while a replica restarted, saw ${after}`);
    await smokeTest(cluster, 's1-rejoined');
  });

  scenario('2. master shutdown (SIGTERM) and restart: a new master, writes go on, the old master rejoins as a replica', 60_000, async () => {
    const { master: old } = await waitHealthy(cluster, 30_000);
    const code = await cluster.stop(old);
    assert.equal(code, 0, `expected ${old} to exit 0 after SIGTERM, saw ${code}`);
    const elected = await waitForMaster(cluster, 20_000, old);
    await smokeTest(cluster, 's2-master-down');
    await cluster.start(old);
    const { master, status } = await waitHealthy(cluster, 30_000, names);
    assert.equal(master, elected, `expected ${elected} (elected while ${old} was down) to stay master, saw ${master}`);
    assert.equal(roleOf(status, old), 'REPLICA', `expected ${old} to rejoin as a REPLICA, saw ${roleOf(status, old)}`);
    await smokeTest(cluster, 's2-rejoined');
  });

  scenario('3. replica kill -9: writes go on; it restarts and catches up; digests equal', 60_000, async () => {
    const { master } = await waitHealthy(cluster, 30_000);
    const victim = names.find((n) => n !== master)!;
    const writer = new LedgerWriter(cluster, 's3', () => runningNodes(cluster));
    writer.start();
    try {
      await waitForWritesToContinue(writer, 0, 5, 20_000);
      await cluster.kill(victim);
      const killedAt = Date.now();
      await waitForWritesToContinue(writer, killedAt, 10, 30_000);
      await cluster.start(victim);
      await waitHealthy(cluster, 30_000, names);
    } finally {
      await writer.stop();
      everyAcknowledged.push(...writer.acknowledged);
    }
    await assertDigestsEqual(cluster, 's3 after the replica caught up');
    await assertNoAcknowledgedWriteLost(cluster, writer, 's3');
    await smokeTest(cluster, 's3-rejoined');
  });

  scenario('4. master kill -9: a new master, no acknowledged write lost, the old master rejoins as a replica', 60_000, async () => {
    const { master: old } = await waitHealthy(cluster, 30_000);
    const writer = new LedgerWriter(cluster, 's4', () => runningNodes(cluster));
    writer.start();
    let elected: string;
    try {
      await waitForWritesToContinue(writer, 0, 5, 20_000);
      await cluster.kill(old);
      const killedAt = Date.now();
      elected = await waitForMaster(cluster, 20_000, old);
      await waitForWritesToContinue(writer, killedAt, 10, 30_000);
      await cluster.start(old);
      await waitHealthy(cluster, 30_000, names);
    } finally {
      await writer.stop();
      everyAcknowledged.push(...writer.acknowledged);
    }
    const { master, status } = await waitHealthy(cluster, 30_000, names);
    assert.equal(master, elected, `expected ${elected} to stay master after ${old} came back, saw ${master}`);
    assert.equal(roleOf(status, old), 'REPLICA', `expected ${old} to rejoin as a REPLICA, saw ${roleOf(status, old)}`);
    await assertDigestsEqual(cluster, 's4 after the old master rejoined');
    await assertNoAcknowledgedWriteLost(cluster, writer, 's4');
    await smokeTest(cluster, 's4-rejoined');
  });

  scenario('5. heavy load on one node (the master, then a replica): writes and reads still succeed through every node', 90_000, async (t) => {
    const { master } = await waitHealthy(cluster, 30_000);
    const replica = names.find((n) => n !== master)!;
    for (const [role, target] of [['master', master], ['replica', replica]] as const) {
      const load = new LoadGenerator(cluster, target, 48);
      load.start();
      try {
        // The load is real before the smoke test starts: the node has answered a good number of its requests.
        await waitSeeing(`${target} to answer 200 requests of the load`, (saw) => {
          saw(JSON.stringify([...load.outcomes]));
          return [...load.outcomes.values()].reduce((a, b) => a + b, 0) >= 200 ? true : undefined;
        }, 30_000);
        await smokeTest(cluster, `s5-load-on-${role}`, { timeoutMs: 30_000 });
      } finally {
        await load.stop();
      }
      t.diagnostic(`load on ${target} (${role}): ${[...load.outcomes].map(([outcome, n]) => `${outcome} ×${n}`).join(', ')}`);
      assert.ok(load.count('read 200') > 0, `expected the load on ${target} to be served too, saw ${JSON.stringify([...load.outcomes])}`);
    }
  });

  scenario('6a. master out of disk: writes refused with 507 DISK_FULL, nothing corrupted, recovers without a restart once space returns', 90_000, async (t) => {
    const { master } = await waitHealthy(cluster, 30_000);
    const pid = cluster.node(master).child!.pid;
    cluster.fillDisk(master);
    // SQLite reuses the pages its WAL already has, so some writes still fit: write (four at a time, so that the
    // transaction that finds the disk full holds new entries) until some are refused.
    const text = 'x'.repeat(16 * 1024);
    let answers: Answer[] = [];
    for (let batch = 0; batch < 150 && answers.every(isOk); batch++) {
      answers = await Promise.all([0, 1, 2, 3].map((i) => putContent(cluster, master, `${crxParent}/s6-fill-${batch}-${i}`, { text })));
    }
    const refusals = answers.filter((a) => !isOk(a));
    t.diagnostic(`writes through ${master} once its disk filled: ${answers.map(describeAnswer).join('; ')}`);
    assert.ok(refusals.length > 0, `expected writes through ${master} (its disk full) to be refused within 600 writes of 16 KiB, saw all acknowledged`);
    // A write whose entry the full disk could not take is refused with DISK_FULL, and the master steps down at once
    // (its coordination layer restarts from disk as a follower): writes arriving right after find no master
    // (CLUSTER_NO_MASTER) until the others elect one. A write whose entry was already in the journal (and
    // replicated) but could not be applied here cannot be confirmed by this node: WRITE_OUTCOME_UNKNOWN. Which of
    // the two a batch meets depends on where the disk ran out: when every entry of the batch still fitted into the
    // journal and only applying them failed, no write is refused with DISK_FULL (seen in CI) — the master still
    // steps down, which waitForMaster below asserts.
    const diskFull = refusals.filter((a) => typeof a !== 'string' && a.status === 507 && a.code === 'DISK_FULL');
    t.diagnostic(`${diskFull.length} of ${refusals.length} refusals were 507 DISK_FULL`);
    for (const a of diskFull) assert.match(typeof a === 'string' ? '' : (a.message ?? ''), /disk is full/i, `expected the refusal to say the disk is full, saw ${describeAnswer(a)}`);
    const unexpected = refusals.filter((a) => typeof a === 'string' || !['DISK_FULL', 'CLUSTER_NO_MASTER', 'WRITE_OUTCOME_UNKNOWN'].includes(a.code ?? ''));
    assert.deepEqual(unexpected.map(describeAnswer), [], 'expected every refusal to be DISK_FULL, CLUSTER_NO_MASTER or WRITE_OUTCOME_UNKNOWN');
    // The others, whose disks are fine, elect one of them and take writes. The full node need not know it: every
    // append it cannot store — committed entries it must apply too, whose rows (and their versions) no longer fit —
    // restarts its coordination layer, so it keeps losing sight of the master until space returns.
    const elected = await waitForMaster(cluster, 20_000, master, [master]);
    const others = names.filter((n) => n !== master);
    // A client that retries a retryable refusal: the node it writes through may learn of the new master a heartbeat
    // after the status the wait above saw (CI once saw CLUSTER_NO_MASTER from it right then).
    const smoke = await smokeTest(cluster, 's6-master-disk-full', { timeoutMs: 30_000, nodes: others, retryMs: 10_000 }).catch((err: Error) => {
      throw new Error(`expected writes through ${others.join(' and ')} to succeed once ${elected} took over from ${master} (disk full): ${err.message}`);
    });
    // The full node restarts its coordination layer at every append it cannot store, so it keeps losing sight of the
    // master: a write through it is forwarded (acknowledged) or refused before anything is stored — with DISK_FULL,
    // or (in the moment after a restart of its coordination layer) CLUSTER_NO_MASTER. A default read there must not
    // pass off an old state as current: it has the write, refuses, or marks its answer stale.
    const viaFull = await putContent(cluster, master, `${crxParent}/s6-via-full`, { viaFull: true }, { timeoutMs: 30_000 });
    t.diagnostic(`a write through ${master} (disk full, no longer master): ${describeAnswer(viaFull)}`);
    const refusedBeforeStoring = typeof viaFull !== 'string' && ((viaFull.status === 507 && viaFull.code === 'DISK_FULL') || (viaFull.status === 503 && viaFull.code === 'CLUSTER_NO_MASTER'));
    assert.ok(isOk(viaFull) || refusedBeforeStoring, `expected a write through ${master} (disk full) to be forwarded and acknowledged, or refused with 507 DISK_FULL or 503 CLUSTER_NO_MASTER, saw ${describeAnswer(viaFull)}`);
    const read = await getContent(cluster, master, smoke.written[0]!.path, undefined, 30_000);
    t.diagnostic(`a default read on ${master} (disk full) of a write acknowledged meanwhile: ${describeAnswer(read)}`);
    const readOk = typeof read !== 'string' && (read.stale || read.status === 503 || (read.status === 200 && (read.body as { properties?: { via?: string } }).properties?.via === smoke.written[0]!.via));
    assert.ok(readOk, `expected ${master} (disk full) to serve ${smoke.written[0]!.path}, refuse with 503, or mark its answer stale, saw ${describeAnswer(read)}`);
    cluster.freeDisk(master);
    await waitHealthy(cluster, 60_000, names);
    assert.equal(cluster.node(master).child?.pid, pid, `expected ${master} to recover without a restart`);
    await assertDigestsEqual(cluster, 's6a after space returned');
    await smokeTest(cluster, 's6-master-disk-freed');
  });

  scenario('6b. replica out of disk: writes go on, it does not corrupt, and it catches up once space returns', 60_000, async () => {
    const { master } = await waitHealthy(cluster, 30_000);
    const replica = names.find((n) => n !== master)!;
    const pid = cluster.node(replica).child!.pid;
    const writer = new LedgerWriter(cluster, 's6b', () => runningNodes(cluster));
    writer.start();
    try {
      await waitForWritesToContinue(writer, 0, 5, 20_000);
      cluster.fillDisk(replica);
      const filledAt = Date.now();
      await waitForWritesToContinue(writer, filledAt, 30, 30_000);
      cluster.freeDisk(replica);
      await waitHealthy(cluster, 60_000, names);
    } finally {
      await writer.stop();
      everyAcknowledged.push(...writer.acknowledged);
    }
    assert.equal(cluster.node(replica).child?.pid, pid, `expected ${replica} to recover without a restart`);
    await assertDigestsEqual(cluster, 's6b after space returned');
    await assertNoAcknowledgedWriteLost(cluster, writer, 's6b');
  });

  scenario('7. network failure between the master and a replica, restored after a while: the replica rejoins in sync', 60_000, async () => {
    const { master } = await waitHealthy(cluster, 30_000);
    const [cut, other] = names.filter((n) => n !== master) as [string, string];
    const writer = new LedgerWriter(cluster, 's7', () => [master, other]);
    writer.start();
    try {
      cluster.network.partition([master], [cut]);
      const cutAt = Date.now();
      // The master keeps a quorum (itself and the other replica): it goes on taking writes, drops the cut replica
      // from the in-sync set rather than wait for it, and after cluster.nodeFailureTimeoutMs counts it as down —
      // the link stays cut until then, so that the replica really has to rejoin.
      await waitSeeing(`${master} to report ${cut} down and out of sync`, async (saw) => {
        const node = (await cluster.status(master)).nodes.find((n) => n.name === cut);
        saw(JSON.stringify(node));
        return node?.inSync === false && node.status === 'down' ? true : undefined;
      }, 20_000);
      await waitForWritesToContinue(writer, cutAt, 10, 30_000);
      cluster.network.heal();
      await waitHealthy(cluster, 30_000, names);
    } finally {
      await writer.stop();
      everyAcknowledged.push(...writer.acknowledged);
    }
    const { master: after } = await waitHealthy(cluster, 30_000, names);
    assert.equal(after, master, `expected ${master} to stay master (it never lost its quorum), saw ${after}`);
    await assertDigestsEqual(cluster, 's7 after the link was restored');
    await assertNoAcknowledgedWriteLost(cluster, writer, 's7');
    await smokeTest(cluster, 's7-rejoined');
  });

  scenario('8. the master isolated: the majority elects a new master; the old one refuses writes and linearizable reads, then rejoins without its unacknowledged write', 90_000, async (t) => {
    const { master: old } = await waitHealthy(cluster, 30_000);
    const majority = names.filter((n) => n !== old);
    cluster.network.partition([old], majority);
    // Sent at once, before the old master can know it is cut off: it may take it into its journal, but it cannot
    // reach a quorum, so it must never acknowledge it, and healing must erase it.
    const orphanPath = `${crxParent}/s8-orphan`;
    const orphan = putContent(cluster, old, orphanPath, { orphan: true }, { timeoutMs: 30_000 });
    const writer = new LedgerWriter(cluster, 's8', () => majority);
    writer.start();
    try {
      const elected = await waitSeeing(`one of ${majority.join(', ')} to be master`, async (saw) => {
        const answers = await Promise.all(majority.map((n) => send(cluster, n, 'GET', '/health/master', { timeoutMs: 1_000 })));
        saw(answers.map((a, i) => `${majority[i]}: ${describeAnswer(a)}`).join(', '));
        return majority.find((_, i) => isOk(answers[i]!));
      }, 20_000);
      const electedAt = Date.now();
      await waitForWritesToContinue(writer, electedAt, 10, 30_000);
      await waitSeeing(`${old} (isolated) to stop calling itself master (/health/master 503)`, async (saw) => {
        const answer = await send(cluster, old, 'GET', '/health/master', { timeoutMs: 1_000 });
        saw(describeAnswer(answer));
        return typeof answer !== 'string' && answer.status === 503 ? true : undefined;
      }, 20_000);
      const write = await putContent(cluster, old, `${crxParent}/s8-refused`, { refused: true }, { timeoutMs: 30_000 });
      assert.ok(typeof write !== 'string' && write.status === 503 && write.code === 'CLUSTER_NO_MASTER', `expected the isolated ${old} to refuse a write with 503 CLUSTER_NO_MASTER, saw ${describeAnswer(write)}`);
      const read = await getContent(cluster, old, crxParent, 'linearizable', 30_000);
      assert.ok(typeof read !== 'string' && read.status === 503 && read.code === 'CLUSTER_NO_MASTER', `expected the isolated ${old} to refuse a linearizable read with 503 CLUSTER_NO_MASTER, saw ${describeAnswer(read)}`);
      const orphanAnswer = await orphan;
      t.diagnostic(`the write sent to ${old} as it was cut off: ${describeAnswer(orphanAnswer)}`);
      const logFrom = cluster.node(old).output.length;
      assert.ok(!isOk(orphanAnswer), `expected the write sent to the isolated ${old} never to be acknowledged, saw ${describeAnswer(orphanAnswer)}`);
      cluster.network.heal();
      const { master, status } = await waitHealthy(cluster, 30_000, names);
      assert.equal(master, elected, `expected ${elected} to stay master after healing, saw ${master}`);
      assert.equal(roleOf(status, old), 'REPLICA', `expected ${old} to rejoin as a REPLICA, saw ${roleOf(status, old)}`);
      const discarded = cluster.node(old).output.slice(logFrom).split('\n').find((line) => line.includes('never committed'));
      t.diagnostic(`${old} on healing: ${discarded ?? 'discarded nothing (the write never reached its journal)'}`);
    } finally {
      await writer.stop();
      everyAcknowledged.push(...writer.acknowledged);
    }
    await assertDigestsEqual(cluster, 's8 after healing');
    for (const n of names) {
      for (const path of [orphanPath, `${crxParent}/s8-refused`]) {
        const answer = await getContent(cluster, n, path, 'stale');
        assert.ok(typeof answer !== 'string' && answer.status === 404, `expected ${path} (never acknowledged) to be gone from ${n} after healing, saw ${describeAnswer(answer)}`);
      }
    }
    await assertNoAcknowledgedWriteLost(cluster, writer, 's8');
    await smokeTest(cluster, 's8-healed');
  });

  scenario('9a. slow links (256 kbit/s on the master, then on a replica), small writes: still works', 60_000, async (t) => {
    const { master } = await waitHealthy(cluster, 30_000);
    const replica = names.find((n) => n !== master)!;
    for (const [role, target] of [['master', master], ['replica', replica]] as const) {
      cluster.network.slow(target, 256);
      try {
        const startedAt = Date.now();
        // A client that retries a refusal (bounded): CI once saw every node's event loop held up 0.5 s at once, on
        // a machine shared with the chaos suite, and the master lost its leadership; the slow link was not the
        // cause, and the writes went through a second later. Retried answers are printed below.
        const { retried } = await smokeTest(cluster, `s9a-slow-${role}`, { timeoutMs: 30_000, retryMs: 10_000 });
        t.diagnostic(`smoke test with ${target} (${role}) at 256 kbit/s: ${Date.now() - startedAt} ms; answers retried: ${retried.join('; ') || 'none'}`);
      } finally {
        cluster.network.unslow(target);
      }
    }
  });

  scenario('9b. slow links (512 kbit/s on the master, then on a replica), 32 KiB writes: still works for a client that retries', 90_000, async (t) => {
    const { master } = await waitHealthy(cluster, 30_000);
    const replica = names.find((n) => n !== master)!;
    for (const [role, target] of [['master', master], ['replica', replica]] as const) {
      cluster.network.slow(target, 512);
      try {
        const startedAt = Date.now();
        const { retried } = await smokeTest(cluster, `s9b-slow-${role}`, { timeoutMs: 30_000, payloadBytes: 32 * 1024, retryMs: 30_000 });
        t.diagnostic(`smoke test with ${target} (${role}) at 512 kbit/s: ${Date.now() - startedAt} ms; answers retried: ${retried.join('; ') || 'none'}`);
      } finally {
        cluster.network.unslow(target);
      }
    }
  });

  test('10. the whole cluster restored from an online backup of one node: all content there, two new nodes join and sync', { timeout: 120_000 }, async () => {
    await restoreHealth(cluster);
    const { master, status: oldStatus } = await waitHealthy(cluster, 30_000, names);
    const source = names.find((n) => n !== master)!;
    const before = await assertDigestsEqual(cluster, 's10 before the backup');
    const backup = tempDir('conclave-crx-backup-');
    try {
      // Taken from a replica while the cluster serves, with the CLI an operator would use.
      const file = join(backup.dir, 'crx.backup.tar');
      const taken = await runConclave(['backup', '--url', cluster.node(source).url, '--out', file], { CONCLAVE_USER: 'admin', CONCLAVE_PASSWORD: 'process-test-password' }, 60_000);
      assert.equal(taken.code, 0, `expected conclave backup to succeed, saw exit ${taken.code}: ${taken.stdout}${taken.stderr}`);
      assertNoCrash(cluster, 's10 before the disaster');
      await cluster.destroy();

      // A new cluster on a new network: the restored node keeps its name; the other two are new, empty nodes.
      const restoredNames = [source, 'r2', 'r3'];
      cluster = ChaosCluster.create(restoredNames, `${root}-restored`, { diskMib: 64, env: {} });
      // Into the node's (empty, mounted) data directory, as a cluster of one under a new UUID (docs/operations.md).
      const restored = await runConclave(['restore', file, '--data', cluster.node(source).dataDir, '--as', 'new-cluster'], { CONCLAVE_CLUSTER_SECRET: chaosSecret }, 60_000);
      assert.equal(restored.code, 0, `expected conclave restore to succeed, saw exit ${restored.code}: ${restored.stdout}${restored.stderr}`);
      await cluster.start(source);
      await waitForMaster(cluster, 30_000);
      const alone = await cluster.digest(source);
      assert.equal(alone.digest, before.digest, `expected the restored ${source} to hold exactly the content backed up (digest ${before.digest}), saw ${alone.digest}`);

      await cluster.start('r2');
      await cluster.start('r3');
      const { master: restoredMaster, status } = await waitHealthy(cluster, 60_000, restoredNames);
      assert.equal(restoredMaster, source, `expected ${source} to stay master of the restored cluster, saw ${restoredMaster}`);
      assert.notEqual(status.clusterUuid, oldStatus.clusterUuid, 'expected the restored cluster to have a new cluster UUID');
      assert.deepEqual(status.nodes.map((n) => n.name).sort(), [...restoredNames].sort(), `expected the members to be ${restoredNames.join(', ')}, saw ${status.nodes.map((n) => n.name).join(', ')}`);
      const synced = await assertDigestsEqual(cluster, 's10 after the new nodes joined');
      assert.equal(synced.digest, before.digest, `expected every node of the restored cluster to hold the backed-up content (digest ${before.digest}), saw ${synced.digest}`);
      for (const n of restoredNames) {
        const held = await ledgerOn(cluster, n);
        const missing = everyAcknowledged.filter((a) => !held.has(a.name));
        assert.deepEqual(missing.map((a) => a.name), [], `expected ${n} of the restored cluster to hold all ${everyAcknowledged.length} writes acknowledged in the scenarios before`);
      }
      await smokeTest(cluster, 's10-restored');
      assertNoCrash(cluster, 's10');
    } catch (err) {
      const logs = join(tmpdir(), `conclave-crx-logs-${process.pid}`);
      mkdirSync(logs, { recursive: true });
      for (const node of cluster.nodes.values()) writeFileSync(join(logs, `restored-${node.name}.log`), node.output);
      (err as Error).message += `\n(node logs: ${logs})`;
      throw err;
    } finally {
      backup.cleanup();
    }
  });
});
