import assert from 'node:assert/strict';
import { test } from 'node:test';

import { generateClusterSecret } from '../../src/config/clusterSecret.js';
import { ProcessCluster } from '../helpers/cluster.js';
import { processAuth } from '../helpers/process.js';
import { waitFor } from '../helpers/tmp.js';

/**
 * Clusters of real `conclave start` processes on loopback: formation by initial master nodes and by
 * bootstrap-expect, kill -9 of the master and of replicas, the maintenance example, a standalone node that others
 * join, and every join refusal. Conditions are waited for with bounds; no test asserts a timing.
 */

const byNames = (names: string[]) => (_name: string, seeds: string[]) => [...seeds.flatMap((s) => ['--seed', s]), '--initial-master-nodes', names.join(',')];

test('3 nodes form by initial master nodes; writes replicate; kill -9 of the master elects another; the old master rejoins and catches up', async () => {
  const names = ['n1', 'n2', 'n3'];
  const cluster = await ProcessCluster.create(names, byNames(names));
  try {
    await cluster.start(...names);
    const first = await cluster.write('/a', { v: 1 });
    await cluster.converged('/a');
    // Members join after the bootstrap (a voter is named by id until its join is applied): wait for all three.
    const status = await waitFor('every node to be a member, in sync', async () => {
      const s = await cluster.status(first);
      return s.nodes.length === 3 && s.nodes.every((n) => n.inSync) ? s : undefined;
    });
    assert.equal(status.authoritative, true);
    // A binary written through the master is served by a replica too (replication copies its blob).
    const upload = await fetch(`${cluster.url(first)}/api/v1/binaries/a?property=file`, {
      method: 'PUT',
      headers: { authorization: processAuth, 'content-type': 'application/octet-stream' },
      body: 'bytes of a file',
    });
    assert.equal(upload.status, 200, await upload.text());
    const replicaName = names.find((n) => n !== first)!;
    const fromReplica = await waitFor('the binary entry on a replica', async () => {
      const res = await fetch(`${cluster.url(replicaName)}/api/v1/binaries/a?property=file`, { headers: { authorization: processAuth } });
      return res.status === 404 ? undefined : res;
    });
    assert.equal(fromReplica.status, 200);
    assert.equal(await fromReplica.text(), 'bytes of a file');
    assert.deepEqual(status.votingConfiguration, names);
    assert.deepEqual(status.nodes.map((n) => n.name).sort(), names);
    assert.ok(status.nodes.every((n) => n.status === 'up' && n.inSync), JSON.stringify(status.nodes));

    await cluster.kill(first);
    const second = await cluster.write('/b', { v: 2 });
    assert.notEqual(second, first, 'a surviving node is master');
    const after = await cluster.status(second);
    assert.ok(after.term > status.term, 'a new term');

    await cluster.start(first);
    await cluster.converged('/b');
    const rejoined = await waitFor('the old master to follow', async () => {
      const s = await cluster.status(first);
      return s.master !== null && s.master.name !== first ? s : undefined;
    });
    assert.equal(rejoined.master!.name, second);
    // And a replica's crash costs nothing: the other two still commit.
    const replica = names.find((n) => n !== second && n !== first)!;
    await cluster.kill(replica);
    assert.equal(await cluster.write('/c', { v: 3 }), second);
    await cluster.start(replica);
    await cluster.converged('/c');
  } finally {
    await cluster.stopAll();
  }
});

test('5 nodes form by bootstrap-expect, and the maintenance example holds on real processes', async () => {
  const names = ['n1', 'n2', 'n3', 'n4', 'n5'];
  const cluster = await ProcessCluster.create(names, (_name, seeds) => [...seeds.flatMap((s) => ['--seed', s]), '--bootstrap-expect', '5']);
  try {
    await cluster.start(...names);
    const master = await cluster.write('/m', { step: 0 });
    await waitFor('all five to vote', async () => ((await cluster.status(master)).votingConfiguration.length === 5 ? true : undefined));
    // The seeds' example, with node 1 as master: here the master is whoever won. Node ids are random, so which
    // three vote after the first stop is the rules' choice; the others play their parts accordingly.
    const voters = async () => (await cluster.status(master)).votingConfiguration;
    const [firstOut] = names.filter((n) => n !== master).slice(-1) as [string];
    await cluster.kill(firstOut); // "stop 5"
    assert.equal(await cluster.write('/m', { step: 1 }), master);
    const three = await waitFor('the configuration to shrink to three', async () => {
      const v = await voters();
      return v.length === 3 ? v : undefined;
    });
    assert.ok(three.includes(master), 'the master is kept');
    const [a, b] = three.filter((n) => n !== master) as [string, string];
    const [idle] = names.filter((n) => n !== master && n !== firstOut && !three.includes(n)) as [string];
    await cluster.kill(idle); // "stop 4"
    assert.equal(await cluster.write('/m', { step: 2 }), master);
    await cluster.kill(b); // "stop 3": two of the three voters remain, still a quorum
    assert.equal(await cluster.write('/m', { step: 3 }), master);
    assert.deepEqual(await voters(), three, 'never below three: the stopped node is still a voter');

    await cluster.kill(a); // "stop 2": one of three, no quorum; the master steps down and nobody takes writes
    await waitFor('the master to step down', async () => ((await fetch(`${cluster.url(master)}/health/master`)).status === 503 ? true : undefined));
    const refused = await cluster.put(master, '/m', { step: 4 });
    assert.ok(['CLUSTER_NO_MASTER', 'NOT_MASTER'].includes(refused.body.error?.code ?? ''), JSON.stringify(refused.body));

    await cluster.start(idle, firstOut); // "start 4 and 5": not voters, so still no master
    await assert.rejects(cluster.master(3000), /timed out/);

    await cluster.start(a); // "start 2": a quorum of the three again
    const back = await cluster.write('/m', { step: 5 });
    assert.ok(three.includes(back), 'a master of the configuration in force');
    await cluster.start(b);
    await waitFor('the configuration to grow back to five', async () => ((await cluster.status(back)).votingConfiguration.length === 5 ? true : undefined), 20_000);
    await cluster.converged('/m');
  } finally {
    await cluster.stopAll();
  }
});

test('a standalone node that others join; every join refusal names its cause', async () => {
  const names = ['solo', 'joiner', 'wrongName', 'wrongSecret', 'dup', 'other'];
  const cluster = await ProcessCluster.create(names, () => []);
  const soloSeed = `127.0.0.1:${cluster.node('solo').transportPort}`;
  try {
    // A node without seeds is a cluster of one, writable at once.
    await cluster.start('solo');
    assert.equal(await cluster.write('/before', { v: 1 }), 'solo');

    // Another node names it as its seed: it joins, gets the repository, and the voting configuration stays odd.
    cluster.node('joiner').args.push('--seed', soloSeed);
    await cluster.start('joiner');
    await cluster.converged('/before');
    const status = await cluster.status('solo');
    assert.deepEqual(status.nodes.map((n) => n.name).sort(), ['joiner', 'solo']);

    cluster.node('wrongName').args.push('--seed', soloSeed, '--cluster-name', 'elsewhere');
    cluster.node('wrongSecret').args.push('--seed', soloSeed);
    cluster.node('wrongSecret').env['CONCLAVE_CLUSTER_SECRET'] = generateClusterSecret();
    cluster.node('dup').args.push('--seed', soloSeed, '--name', 'joiner');
    await cluster.start('wrongName', 'wrongSecret', 'dup');
    await waitFor('CLUSTER_NAME_MISMATCH', () => (cluster.output('wrongName').includes('CLUSTER_NAME_MISMATCH') ? true : undefined));
    await waitFor('CLUSTER_SECRET_MISMATCH', () => (cluster.output('wrongSecret').includes('CLUSTER_SECRET_MISMATCH') ? true : undefined));
    await waitFor('the duplicate name refused', () => (cluster.output('dup').includes('JOIN_nameInUse') ? true : undefined));
    const dupReady = await fetch(`${cluster.url('dup')}/health/ready`);
    assert.equal(dupReady.status, 503);
    assert.equal(((await dupReady.json()) as { joinRefusal?: string }).joinRefusal, 'nameInUse');

    // A node that formed a cluster of its own carries that cluster's UUID: it is refused, with the remedy.
    await cluster.start('other'); // a cluster of one: open() returns once it is formed and writable
    assert.notEqual((await cluster.status('other')).clusterUuid, (await cluster.status('solo')).clusterUuid);
    await cluster.kill('other');
    cluster.node('other').args.push('--seed', soloSeed);
    await cluster.start('other');
    await waitFor('CLUSTER_UUID_MISMATCH', () => {
      const out = cluster.output('other');
      return out.includes('CLUSTER_UUID_MISMATCH') && out.includes('detach-cluster') ? true : undefined;
    });
    const members = (await cluster.status('solo')).nodes.map((n) => n.name).sort();
    assert.deepEqual(members, ['joiner', 'solo'], 'none of the refused nodes became a member');
  } finally {
    await cluster.stopAll();
  }
});
