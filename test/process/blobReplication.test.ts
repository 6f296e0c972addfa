import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';

import { internalKeyOf, signInternalRequest } from '../../src/auth/internalAuth.js';
import { runConclave } from '../helpers/cli.js';
import { clusterSecret, ProcessCluster } from '../helpers/cluster.js';
import { processAuth, startNodeProcess } from '../helpers/process.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

/**
 * Binaries across a cluster of real processes: an upload reaches every node, a node that was down (or lost a blob
 * file) gets it back from its peers by itself, every node's content digest agrees, the internal endpoints want the
 * cluster secret from a member, and the collector removes old unreferenced blobs only.
 */

const names = ['n1', 'n2', 'n3'];
const byNames = (_name: string, seeds: string[]) => [...seeds.flatMap((s) => ['--seed', s]), '--initial-master-nodes', names.join(',')];
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const blobPath = (dataDir: string, sha: string) => join(dataDir, 'blobs', sha.slice(0, 2), sha.slice(2, 4), sha);

interface Digest {
  node: string;
  appliedIndex: number;
  digest: string;
  counts: { nodes: number; users: number; binaryReferences: number; blobs: number; versions: number };
  blobsMissing: number;
}

async function upload(base: string, path: string, data: Buffer): Promise<Response> {
  return fetch(`${base}/api/v1/binaries${path}?property=file`, {
    method: 'PUT',
    headers: { authorization: processAuth, 'content-type': 'application/octet-stream' },
    body: data,
    signal: AbortSignal.timeout(15_000),
  });
}

async function readBinary(base: string, path: string): Promise<{ status: number; bytes: Buffer }> {
  const res = await fetch(`${base}/api/v1/binaries${path}?property=file`, { headers: { authorization: processAuth }, signal: AbortSignal.timeout(15_000) });
  return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()) };
}

async function digestOf(base: string): Promise<Digest> {
  const res = await fetch(`${base}/api/v1/cluster/digest`, { headers: { authorization: processAuth } });
  assert.equal(res.status, 200);
  return (await res.json()) as Digest;
}

/** Waits until every running node answers its digest at one applied index, and returns the answers. */
async function settledDigests(cluster: ProcessCluster, running: string[]): Promise<Digest[]> {
  return waitFor('every node at one applied index', async () => {
    const answers = await Promise.all(running.map((name) => digestOf(cluster.url(name))));
    return new Set(answers.map((a) => a.appliedIndex)).size === 1 && answers.every((a) => a.blobsMissing === 0) ? answers : undefined;
  });
}

test('binaries reach every node; a node that was down or lost a blob fetches it; digests agree; internal endpoints want a member with the secret', async () => {
  const cluster = await ProcessCluster.create(names, byNames);
  try {
    await cluster.start(...names);
    const master = await cluster.write('/files', {});
    await waitFor('every node a member, in sync', async () => {
      const s = await cluster.status(master);
      return s.nodes.length === 3 && s.nodes.every((n) => n.inSync) ? true : undefined;
    });
    await cluster.write('/files/a', {});
    await cluster.write('/files/b', {});

    // Written on the master: stored on a quorum before the write is acknowledged, then on every node.
    const first = randomBytes(300_000);
    const res = await upload(cluster.url(master), '/files/a', first);
    assert.equal(res.status, 200, await res.text());
    for (const name of names) {
      const read = await waitFor(`the binary on ${name}`, async () => {
        const r = await readBinary(cluster.url(name), '/files/a');
        return r.status === 404 ? undefined : r;
      });
      assert.equal(read.status, 200, `${name} serves it`);
      assert.equal(sha256(read.bytes), sha256(first), `${name} serves the same bytes`);
    }
    const holders = names.filter((name) => existsSync(blobPath(cluster.node(name).dir, sha256(first))));
    assert.equal(holders.length, 3, 'every node holds the blob');

    // A replica that is down while a binary is written gets it after it restarts, without being asked to serve it.
    const replicas = names.filter((n) => n !== master);
    const [down, up] = replicas as [string, string];
    await cluster.kill(down);
    const second = randomBytes(200_000);
    const res2 = await upload(cluster.url(master), '/files/b', second);
    assert.equal(res2.status, 200, await res2.text());
    assert.ok(existsSync(blobPath(cluster.node(up).dir, sha256(second))), 'the live replica made the quorum');
    await cluster.start(down);
    await waitFor(`${down} to fetch the blob it missed`, () => (existsSync(blobPath(cluster.node(down).dir, sha256(second))) ? true : undefined), 20_000);

    // A node that lost a blob file while stopped finds it missing at start-up and fetches it again.
    await cluster.kill(down);
    rmSync(blobPath(cluster.node(down).dir, sha256(first)));
    await cluster.start(down);
    await waitFor(`${down} to fetch the blob it lost`, () => (existsSync(blobPath(cluster.node(down).dir, sha256(first))) ? true : undefined), 20_000);
    const reread = await readBinary(cluster.url(down), '/files/a');
    assert.equal(sha256(reread.bytes), sha256(first));

    // Every node's digest agrees at one applied index, and the CLI says so.
    const digests = await settledDigests(cluster, names);
    assert.equal(new Set(digests.map((d) => d.digest)).size, 1, JSON.stringify(digests));
    // Versions: the four nodes' creations and the two uploads.
    assert.deepEqual(digests[0]!.counts, { nodes: 4, users: 1, binaryReferences: 2, blobs: 2, versions: 6, schemaLines: 0 });
    const cli = await runConclave(['digest', '--all', '--url', cluster.url(down)], { CONCLAVE_PASSWORD: 'process-test-password' });
    assert.equal(cli.code, 0, `${cli.stdout}\n${cli.stderr}`);
    assert.match(cli.stdout, /All 3 members agree at applied index \d+\./);
    for (const name of names) assert.match(cli.stdout, new RegExp(`^${name}\\s+\\d+\\s+${digests[0]!.digest.slice(0, 16)}`, 'm'));

    // The internal endpoints: a member with the secret gets the bytes; a wrong secret, no proof, or a stranger
    // with the right secret get INTERNAL_AUTH_FAILED.
    const status = await cluster.status(master);
    const memberId = status.nodes.find((n) => n.name === up)!.id;
    const masterId = status.nodes.find((n) => n.name === master)!.id;
    const path = `/internal/v1/blobs/${sha256(first)}`;
    const sign = (secret: string, caller: string, method: string, target: string, body: 'empty' | 'streamed' = 'empty', to = masterId) =>
      signInternalRequest(internalKeyOf(secret), caller, { target: to, method, path: target, body }, Date.now());
    const internal = async (header: string | undefined, method = 'GET') => {
      const r = await fetch(`${cluster.url(master)}${path}`, { method, headers: header === undefined ? {} : { 'x-conclave-internal': header } });
      return { status: r.status, body: Buffer.from(await r.arrayBuffer()) };
    };
    const goodHeader = sign(clusterSecret, memberId, 'GET', path);
    const good = await internal(goodHeader);
    assert.equal(good.status, 200);
    assert.equal(sha256(good.body), sha256(first));
    for (const header of [
      sign('not-the-cluster-secret', memberId, 'GET', path),
      undefined,
      sign(clusterSecret, 'a-node-that-is-not-a-member', 'GET', path),
      sign(clusterSecret, memberId, 'HEAD', path),
      // The captured header of the request above, replayed; one signed for another node.
      goodHeader,
      sign(clusterSecret, memberId, 'GET', path, 'empty', memberId),
    ]) {
      const refused = await internal(header);
      assert.equal(refused.status, 401);
      assert.equal((JSON.parse(refused.body.toString()) as { error: { code: string } }).error.code, 'INTERNAL_AUTH_FAILED');
    }
    const put = await fetch(`${cluster.url(master)}${path}`, {
      method: 'PUT',
      headers: { 'x-conclave-internal': sign('not-the-cluster-secret', memberId, 'PUT', path, 'streamed'), 'content-type': 'application/octet-stream' },
      body: 'not the bytes',
    });
    assert.equal(put.status, 401);
    // Right secret, wrong bytes for the hash: nothing is stored under it.
    const missing = '0'.repeat(64);
    const wrongPath = `/internal/v1/blobs/${missing}`;
    const wrong = await fetch(`${cluster.url(master)}${wrongPath}`, {
      method: 'PUT',
      headers: { 'x-conclave-internal': sign(clusterSecret, memberId, 'PUT', wrongPath, 'streamed'), 'content-type': 'application/octet-stream' },
      body: 'not the bytes',
    });
    assert.equal(wrong.status, 400);
    assert.equal(((await wrong.json()) as { error: { code: string } }).error.code, 'CHECKSUM_MISMATCH');
    assert.equal(existsSync(blobPath(cluster.node(master).dir, missing)), false);
  } finally {
    await cluster.stopAll();
  }
});

test('the collector deletes old unreferenced blobs and keeps referenced and young ones', async () => {
  const tmp = tempDir('conclave-gc-');
  // History keeps 2 versions per node: the blob an upload replaced goes free once two more changes came after it.
  const node = await startNodeProcess(tmp.dir, { env: { CONCLAVE_STORAGE_BLOB_GC_INTERVAL_MS: '200', CONCLAVE_HISTORY_VERSIONS_PER_NODE_MAX: '2' } });
  try {
    const put = await fetch(`${node.url}/api/v1/content/x`, { method: 'PUT', headers: { authorization: processAuth, 'content-type': 'application/json' }, body: '{}' });
    assert.equal(put.status, 201);
    const kept = Buffer.from('referenced, and old');
    const dropped = Buffer.from('replaced, so unreferenced, and old');
    assert.equal((await upload(node.url, '/x', dropped)).status, 200);
    assert.equal((await upload(node.url, '/x', kept)).status, 200);
    const patch = await fetch(`${node.url}/api/v1/content/x`, { method: 'PATCH', headers: { authorization: processAuth, 'content-type': 'application/json' }, body: '{"after":true}' });
    assert.equal(patch.status, 200);
    // A blob no entry names yet, written just now (as an upload whose entry is on its way would be).
    const young = Buffer.from('unreferenced, but young');
    const youngPath = blobPath(tmp.dir, sha256(young));
    mkdirSync(dirname(youngPath), { recursive: true });
    writeFileSync(youngPath, young);
    const twoDaysAgo = new Date(Date.now() - 2 * 24 * 3600_000);
    for (const data of [kept, dropped]) utimesSync(blobPath(tmp.dir, sha256(data)), twoDaysAgo, twoDaysAgo);

    await waitFor('the unreferenced old blob to be collected', () => (existsSync(blobPath(tmp.dir, sha256(dropped))) ? undefined : true));
    assert.ok(existsSync(blobPath(tmp.dir, sha256(kept))), 'the referenced blob stays');
    assert.ok(existsSync(youngPath), 'the young blob stays');
    const read = await readBinary(node.url, '/x');
    assert.equal(read.status, 200);
    assert.deepEqual(read.bytes, kept);
    assert.match(node.output(), /collected unreferenced blobs/);

    // `conclave digest` of one node: its digest at its applied index.
    const cli = await runConclave(['digest', '--url', node.url], { CONCLAVE_PASSWORD: 'process-test-password' });
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /^Digest:\s+[0-9a-f]{64}$/m);
    assert.match(cli.stdout, /^Content:\s+2 nodes, 1 user, 1 binary reference \(1 blob\)$/m);
  } finally {
    node.child.kill('SIGKILL');
    await node.exited;
    tmp.cleanup();
  }
});
