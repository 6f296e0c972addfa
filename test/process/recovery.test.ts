import assert from 'node:assert/strict';
import { test } from 'node:test';

import { runConclave } from '../helpers/cli.js';
import { ProcessCluster } from '../helpers/cluster.js';
import { waitFor } from '../helpers/tmp.js';

/**
 * Recovery when a quorum is lost for good: `conclave node unsafe-bootstrap` makes a survivor a cluster of one
 * under a new UUID; a member of the old cluster is refused by it until `conclave node detach-cluster` makes it
 * forget its cluster, after which it joins and gets the content again.
 */
test('unsafe-bootstrap a survivor of a lost quorum; detach-cluster lets an old member join it', async () => {
  const names = ['n1', 'n2', 'n3'];
  const cluster = await ProcessCluster.create(names, (_name, seeds) => [...seeds.flatMap((s) => ['--seed', s]), '--initial-master-nodes', names.join(',')]);
  try {
    await cluster.start(...names);
    await cluster.write('/kept', { v: 1 });
    await cluster.converged('/kept');
    const oldUuid = (await cluster.status('n1')).clusterUuid;
    await cluster.kill('n1', 'n2', 'n3');

    // A former member started alone never acts on its own: it waits for a master, then exits and says why.
    const lone = cluster.node('n2');
    lone.env = { ...lone.env, CONCLAVE_CLUSTER_JOIN_TIMEOUT_MS: '1500' };
    await cluster.start('n2');
    // Bounded: a node that never exits is this test's failure, with what it said, not a CI run that hangs.
    const exitCode = await Promise.race([
      lone.process!.exited,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`n2 did not exit within 30 s of a 1.5 s join timeout:\n${cluster.output('n2').slice(-4000)}`)), 30_000).unref()),
    ]);
    const output = cluster.output('n2');
    lone.process = null;
    lone.env = {};
    assert.equal(exitCode, 3, output);
    assert.match(output, /CLUSTER_JOIN_TIMEOUT/);
    assert.match(output, /found no master within 1500 ms/);
    assert.match(output, /unsafe-bootstrap/);

    // Refused without confirmation when nobody can be asked.
    const unconfirmed = await runConclave(['node', 'unsafe-bootstrap', '--data', cluster.node('n1').dir]);
    assert.equal(unconfirmed.code, 1);
    assert.match(unconfirmed.stdout, /term:\s+\d+/);
    assert.match(unconfirmed.stdout, /cluster-state version:\s+\d+/);
    assert.match(unconfirmed.stdout, /WARNING: data loss/);

    const bootstrapped = await runConclave(['node', 'unsafe-bootstrap', '--data', cluster.node('n1').dir, '--yes']);
    assert.equal(bootstrapped.code, 0, bootstrapped.stderr);
    // n2 and n3 are gone for good; n1 alone is the cluster now, under a new UUID, with the old content.
    cluster.node('n1').args.splice(0, cluster.node('n1').args.length);
    await cluster.start('n1');
    assert.equal(await cluster.write('/after', { v: 2 }), 'n1');
    const status = await cluster.status('n1');
    assert.notEqual(status.clusterUuid, oldUuid);
    assert.deepEqual(status.votingConfiguration, ['n1']);
    assert.equal((await cluster.get('n1', '/api/v1/content/kept')).status, 200);

    // An old member still carries the old UUID: refused at the handshake, with the remedy in the log.
    const seedOfN1 = `127.0.0.1:${cluster.node('n1').transportPort}`;
    cluster.node('n2').args.splice(0, cluster.node('n2').args.length, '--seed', seedOfN1);
    await cluster.start('n2');
    await waitFor('the UUID refusal', () => (cluster.output('n2').includes('CLUSTER_UUID_MISMATCH') ? true : undefined));
    await cluster.kill('n2');

    const detached = await runConclave(['node', 'detach-cluster', '--data', cluster.node('n2').dir, '--yes']);
    assert.equal(detached.code, 0, detached.stderr);
    await cluster.start('n2');
    await cluster.converged('/after');
    const members = (await cluster.status('n1')).nodes.map((n) => n.name).sort();
    assert.deepEqual(members, ['n1', 'n2']);
    // The detached node forgot the old cluster's change feed with its content: it serves the new cluster's, as n1 does.
    const feedOf = async (name: string) => (await cluster.get(name, '/api/v1/changes?limit=1000&consistency=stale')).body as { events: unknown[]; oldest: number };
    const n1Feed = await feedOf('n1');
    assert.ok(n1Feed.events.length > 0);
    assert.deepEqual(await feedOf('n2'), n1Feed);
  } finally {
    await cluster.stopAll();
  }
});

/**
 * unsafe-bootstrap on a node whose old cluster in fact still runs (an operator who misjudged a partition): the new
 * cluster of one must never, even for its first moments, present the old cluster UUID — it would be a master in a
 * term above the old members', with them as its replicas, and they would follow it.
 */
test('a node bootstrapped alone never leads the members of its old cluster that still run', async () => {
  const names = ['n1', 'n2', 'n3'];
  const cluster = await ProcessCluster.create(names, (_name, seeds) => [...seeds.flatMap((s) => ['--seed', s]), '--initial-master-nodes', names.join(',')]);
  try {
    await cluster.start(...names);
    const { master } = await cluster.caughtUp();
    const lone = names.find((n) => n !== master)!;
    const others = names.filter((n) => n !== lone);
    await cluster.write('/kept', { v: 1 });
    await cluster.converged('/kept');
    const old = await cluster.status(master);
    await cluster.kill(lone);
    const bootstrapped = await runConclave(['node', 'unsafe-bootstrap', '--data', cluster.node(lone).dir, '--yes']);
    assert.equal(bootstrapped.code, 0, bootstrapped.stderr);
    // Started with its old seeds: it reaches the old members at once.
    await cluster.start(lone);
    await waitFor(`${lone} to be master of its own cluster`, async () => ((await fetch(`${cluster.url(lone)}/health/master`)).status === 200 ? true : undefined), 20_000);
    await waitFor('the old members to refuse it by its cluster UUID', () => (/CLUSTER_UUID_MISMATCH/.test(cluster.output(lone) + others.map((n) => cluster.output(n)).join('')) ? true : undefined), 20_000);
    for (const name of others) {
      const status = await cluster.status(name);
      assert.equal(status.clusterUuid, old.clusterUuid, `${name} kept its cluster`);
      assert.ok(status.master !== null && others.includes(status.master.name), `${name} follows ${status.master?.name}`);
    }
    assert.notEqual((await cluster.status(lone)).clusterUuid, old.clusterUuid);
    assert.equal((await cluster.put(master, '/still', { ok: true })).status, 201);
  } finally {
    await cluster.stopAll();
  }
});
