import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Agent, request, type Dispatcher } from 'undici';

import { identityHeader, internalAuthHeader, internalKeyOf, signInternalRequest, type SignedTarget } from '../../src/auth/internalAuth.js';
import { clusterSecret, ProcessCluster, type ClusterStatusBody } from '../helpers/cluster.js';
import { freePort } from '../helpers/ports.js';
import { processAuth } from '../helpers/process.js';
import { tempDir, waitFor } from '../helpers/tmp.js';
import { generatePki, type TestPki } from '../transport/helpers.js';

/**
 * A cluster of three real processes with TLS between nodes: no node-to-node HTTP travels in clear. Every kind of
 * node-to-node request is made for real — a binary upload through a replica (forwarded as a whole request), its
 * blob pushed to the other voters and fetched by a node that was down, and a snapshot downloaded by a node behind
 * the compacted journal — and all of it works although
 *
 *   - every node's API listener (plain HTTP here) refuses node-to-node requests, even correctly signed ones;
 *   - every node's internal listener refuses plain HTTP, TLS without a client certificate, and a certificate of
 *     another CA, and verifies the server side with the cluster CA;
 *
 * so each of those requests went over TLS, verified by the cluster CA both ways. Then what a passive listener could
 * capture is worth nothing: a signed request replayed to the same node or shown to another is refused, and a
 * forward that carries credentials is refused by the master.
 */

const names = ['t1', 't2', 't3'];

let pki: TestPki;
let cluster: ProcessCluster;
let cleanup: () => void;
const internalPorts = new Map<string, number>();
let clusterCa: Agent;
let noClientCert: Agent;
let rogueCert: Agent;

interface Answer {
  status: number;
  body: { error?: { code: string; message: string } } & Record<string, unknown>;
}

async function answer(response: Dispatcher.ResponseData): Promise<Answer> {
  const text = await response.body.text();
  return { status: response.statusCode, body: text === '' ? {} : (JSON.parse(text) as Answer['body']) };
}

function internalUrl(name: string): string {
  return `https://127.0.0.1:${internalPorts.get(name)}`;
}

async function idsByName(): Promise<Map<string, string>> {
  const status: ClusterStatusBody = await cluster.status(names[0]!);
  return new Map(status.nodes.map((n) => [n.name, n.id]));
}

function sign(caller: string, request: SignedTarget): string {
  return signInternalRequest(internalKeyOf(clusterSecret), caller, request, Date.now());
}

function logLines(name: string, msg: string): Array<Record<string, unknown>> {
  return cluster
    .output(name)
    .split('\n')
    .filter((line) => line.includes(`"msg":"${msg}"`))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('a TLS cluster of 3 processes', () => {
  before(async () => {
    const tmp = tempDir('conclave-tls-cluster-');
    cleanup = tmp.cleanup;
    pki = generatePki(tmp.dir);
    const config = join(tmp.dir, 'small.yaml');
    writeFileSync(config, 'storage:\n  compactionEntriesMin: 20\n  journalRetainEntries: 5\n');
    for (const name of names) internalPorts.set(name, await freePort());
    cluster = await ProcessCluster.create(
      names,
      (_name, seeds) => ['--config', config, ...seeds.flatMap((s) => ['--seed', s]), '--initial-master-nodes', names.join(',')],
      (name) => ({
        CONCLAVE_TRANSPORT_TLS_CERT_FILE: pki.certFile,
        CONCLAVE_TRANSPORT_TLS_KEY_FILE: pki.keyFile,
        CONCLAVE_TRANSPORT_TLS_CA_FILE: pki.caFile,
        CONCLAVE_HTTP_INTERNAL_PORT: String(internalPorts.get(name)),
      }),
    );
    const ca = readFileSync(pki.caFile);
    const connect = { ca, checkServerIdentity: () => undefined };
    clusterCa = new Agent({ connect: { ...connect, cert: readFileSync(pki.certFile), key: readFileSync(pki.keyFile) } });
    noClientCert = new Agent({ connect });
    rogueCert = new Agent({ connect: { ...connect, cert: readFileSync(pki.rogueCertFile), key: readFileSync(pki.rogueKeyFile) } });
    await cluster.start(...names);
  });

  after(async () => {
    await cluster?.stopAll();
    await Promise.all([clusterCa?.close(), noClientCert?.close(), rogueCert?.close()]);
    cleanup?.();
  });

  test('forwards, blob copies and a snapshot download all go over TLS between nodes, and nothing node-to-node is served in clear', async () => {
    const master = await cluster.write('/ready', { v: 0 });
    await cluster.write('/file', { v: 0 });
    await waitFor('every node a member, in sync', async () => {
      const s = await cluster.status(master);
      return s.nodes.length === 3 && s.nodes.every((n) => n.inSync) ? true : undefined;
    });
    const [replica, late] = names.filter((n) => n !== master) as [string, string];
    for (const name of names) {
      const listening = logLines(name, 'internal listener listening');
      assert.equal(listening.length, 1, name);
      assert.equal(listening[0]!['tls'], true, `${name}'s internal listener uses TLS`);
    }

    // The late node stops; a binary uploaded through the replica is forwarded to the master as a whole request,
    // and its blob pushed to the replica before the write is acknowledged.
    const lateIndex = (await cluster.status(master)).nodes.find((n) => n.name === late)!.appliedIndex!;
    await cluster.kill(late);
    const bytes = randomBytes(200_000);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const upload = await request(`${cluster.url(replica)}/api/v1/binaries/file?property=file`, {
      method: 'PUT',
      headers: { authorization: processAuth, 'content-type': 'application/octet-stream' },
      body: bytes,
    });
    const uploaded = await answer(upload);
    assert.ok(upload.statusCode < 300, JSON.stringify(uploaded.body));
    assert.equal(upload.headers['x-conclave-forwarded-from'], replica);

    // Enough writes for the master to compact past the late node.
    for (let i = 1; i <= 40; i++) await cluster.write(`/p${i}`, { i, text: 'x'.repeat(200) });
    await waitFor('the master to compact past the late node', async () => {
      const s = (await cluster.status(master)) as ClusterStatusBody & { snapshot: { index: number } };
      return s.snapshot.index > lateIndex ? true : undefined;
    });
    await cluster.start(late);
    await waitFor(`${late} to install a snapshot and read the binary`, async () => {
      if (logLines(late, 'installed a snapshot').length === 0) return undefined;
      const res = await fetch(`${cluster.url(late)}/api/v1/binaries/file?property=file`, { headers: { authorization: processAuth } });
      if (res.status !== 200) return undefined;
      return createHash('sha256').update(Buffer.from(await res.arrayBuffer())).digest('hex') === sha256 ? true : undefined;
    }, 30_000);
    assert.ok(logLines(master, 'serving a snapshot').length >= 1);

    const ids = await idsByName();
    const blobPath = `/internal/v1/blobs/${sha256}`;
    for (const name of names) {
      const self = ids.get(name)!;
      const caller = ids.get(names.find((n) => n !== name)!)!;
      // The API's listener refuses node-to-node requests, even correctly signed ones.
      const onApi = await answer(
        await request(`${cluster.url(name)}${blobPath}`, { headers: { [internalAuthHeader]: sign(caller, { target: self, method: 'GET', path: blobPath, body: 'empty' }) } }),
      );
      assert.equal(onApi.status, 401);
      assert.equal(onApi.body.error?.code, 'INTERNAL_AUTH_FAILED');
      assert.match(onApi.body.error!.message, /internal listener/);
      // The internal listener speaks TLS only, and only to holders of a certificate the cluster CA signed.
      await assert.rejects(request(`http://127.0.0.1:${internalPorts.get(name)}${blobPath}`), `${name}: plain HTTP`);
      await assert.rejects(request(`${internalUrl(name)}${blobPath}`, { dispatcher: noClientCert }).then(answer), `${name}: no client certificate`);
      await assert.rejects(request(`${internalUrl(name)}${blobPath}`, { dispatcher: rogueCert }).then(answer), `${name}: a certificate of another CA`);
      // With the cluster's certificate but no signature: refused too.
      const unsigned = await answer(await request(`${internalUrl(name)}${blobPath}`, { dispatcher: clusterCa }));
      assert.equal(unsigned.body.error?.code, 'INTERNAL_AUTH_FAILED');
      // The positive control: the internal listener is where the blob is served.
      const good = await request(`${internalUrl(name)}${blobPath}`, {
        dispatcher: clusterCa,
        headers: { [internalAuthHeader]: sign(caller, { target: self, method: 'GET', path: blobPath, body: 'empty' }) },
      });
      assert.equal(good.statusCode, 200);
      assert.equal(createHash('sha256').update(Buffer.from(await good.body.arrayBuffer())).digest('hex'), sha256);
    }
  });

  test('a captured signature is refused when replayed to its node and when shown to another', async () => {
    const master = await cluster.master();
    const ids = await idsByName();
    const [a, b] = names as [string, string];
    const path = '/api/v1/content/ready';
    const header = sign(ids.get(b)!, { target: ids.get(a)!, method: 'GET', path, body: 'empty' });
    const headers = { [internalAuthHeader]: header, 'x-conclave-forwarded-from': b };
    const first = await answer(await request(`${internalUrl(a)}${path}`, { dispatcher: clusterCa, headers }));
    // A signed forward without an identity is anonymous: the node answers as it would a client without credentials.
    assert.equal(first.body.error?.code, 'AUTH_REQUIRED');
    const replayed = await answer(await request(`${internalUrl(a)}${path}`, { dispatcher: clusterCa, headers }));
    assert.equal(replayed.status, 401);
    assert.equal(replayed.body.error?.code, 'INTERNAL_AUTH_FAILED');
    assert.match(replayed.body.error!.message, /replay/);
    const elsewhere = await answer(await request(`${internalUrl(names[2]!)}${path}`, { dispatcher: clusterCa, headers }));
    assert.equal(elsewhere.body.error?.code, 'INTERNAL_AUTH_FAILED');
    assert.match(elsewhere.body.error!.message, /another node/);

    // The master takes a signed identity instead of credentials, and refuses a forward that carries credentials.
    const replica = names.find((n) => n !== master)!;
    const writePath = '/api/v1/content/by-identity';
    const body = JSON.stringify({ properties: { via: 'identity' } });
    const identity = Buffer.from(JSON.stringify({ user: 'admin', roles: ['admin'] })).toString('base64url');
    const forward = (extra: Record<string, string>) =>
      request(`${internalUrl(master)}${writePath}`, {
        method: 'PUT',
        dispatcher: clusterCa,
        body,
        headers: {
          'content-type': 'application/json',
          'x-conclave-forwarded-from': replica,
          [identityHeader]: identity,
          [internalAuthHeader]: sign(ids.get(replica)!, { target: ids.get(master)!, method: 'PUT', path: writePath, body: 'streamed', identity }),
          ...extra,
        },
      }).then(answer);
    const withCredentials = await forward({ authorization: processAuth });
    assert.equal(withCredentials.status, 401);
    assert.equal(withCredentials.body.error?.code, 'INTERNAL_AUTH_FAILED');
    assert.match(withCredentials.body.error!.message, /no credentials/);
    const accepted = await forward({});
    assert.ok(accepted.status < 300, JSON.stringify(accepted.body));
    // An identity header from a client, unsigned, on the API's listener: refused.
    const smuggled = await answer(
      await request(`${cluster.url(master)}${writePath}`, { method: 'PUT', body, headers: { 'content-type': 'application/json', [identityHeader]: identity } }),
    );
    assert.equal(smuggled.body.error?.code, 'INTERNAL_AUTH_FAILED');
  });
});
