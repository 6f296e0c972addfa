import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createWriteStream, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { performance } from 'node:perf_hooks';
import { test } from 'node:test';

import { parseManifest, type BackupManifest } from '../../src/backup/manifest.js';
import { decodeTarHeader, tarBlockBytes } from '../../src/backup/tarFormat.js';
import { generateClusterSecret } from '../../src/config/clusterSecret.js';
import { runConclave } from '../helpers/cli.js';
import { clusterSecret, ProcessCluster } from '../helpers/cluster.js';
import { freePort } from '../helpers/ports.js';
import { processAuth, startNodeProcess, type NodeProcess } from '../helpers/process.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

/**
 * Backups of a serving cluster, end to end with real processes: an online backup from a replica under writes
 * restored as a new cluster; a clone that joins from the backup's index through the journal; an incremental backup
 * and its chain; the whole cluster lost and rebuilt from a backup.
 */

const names = ['n1', 'n2', 'n3'];
const cliEnv = { CONCLAVE_USER: 'admin', CONCLAVE_PASSWORD: 'process-test-password' };

/** GET (full) or POST (incremental) /api/v1/admin/backup into `file`, as curl would. */
async function downloadBackup(baseUrl: string, file: string, query = ''): Promise<void> {
  const res = await fetch(`${baseUrl}/api/v1/admin/backup${query}`, { headers: { authorization: processAuth }, signal: AbortSignal.timeout(60_000) });
  assert.equal(res.status, 200, await (res.status === 200 ? Promise.resolve('') : res.text()));
  assert.equal(res.headers.get('content-type'), 'application/x-tar');
  await pipeline(Readable.fromWeb(res.body as never), createWriteStream(file));
}

/** The manifest of a backup file (its first tar entry). */
function manifestOf(file: string): BackupManifest {
  const bytes = readFileSync(file);
  const header = decodeTarHeader(bytes.subarray(0, tarBlockBytes));
  assert.ok(header !== null && header.name === 'manifest.json');
  return parseManifest(bytes.subarray(tarBlockBytes, tarBlockBytes + header.size));
}

async function startRestored(dir: string, secret: string, extraArgs: string[] = []): Promise<NodeProcess & { baseUrl: string }> {
  const proc = await startNodeProcess(dir, {
    args: ['--http-port', String(await freePort()), '--transport-port', String(await freePort()), '--host', '127.0.0.1', ...extraArgs],
    env: { CONCLAVE_CLUSTER_SECRET: secret },
  });
  return { ...proc, baseUrl: proc.url };
}

async function getJson(url: string, auth = processAuth): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { headers: { authorization: auth } });
  return { status: res.status, body: (await res.json().catch(() => null)) as Record<string, unknown> };
}

async function putBinary(baseUrl: string, path: string, bytes: Buffer): Promise<string> {
  const created = await fetch(`${baseUrl}/api/v1/content${path}`, {
    method: 'PUT',
    headers: { authorization: processAuth, 'content-type': 'application/json' },
    body: '{"properties":{}}',
  });
  assert.ok(created.status === 200 || created.status === 201, `node ${path}: ${created.status}`);
  const res = await fetch(`${baseUrl}/api/v1/binaries${path}?property=file`, {
    method: 'PUT',
    headers: { authorization: processAuth, 'content-type': 'application/octet-stream' },
    body: bytes,
  });
  assert.ok(res.status === 200 || res.status === 201, `binary ${path}: ${res.status} ${await res.text()}`);
  return createHash('sha256').update(bytes).digest('hex');
}

test('a backup from a replica under writes restores as a new cluster; a clone joins from its index through the journal', { timeout: 240_000 }, async () => {
  const cluster = await ProcessCluster.create([...names, 'n4'], (name, seeds) =>
    name === 'n4' ? seeds.flatMap((s) => ['--seed', s]) : [...seeds.flatMap((s) => ['--seed', s]), '--initial-master-nodes', names.join(',')],
  );
  const scratch = tempDir('conclave-backup-test-');
  const restored: NodeProcess[] = [];
  try {
    await cluster.start(...names);
    const { master } = await cluster.caughtUp();
    const replica = names.find((n) => n !== master)!;
    const blob = await putBinary(cluster.url(master), '/with-binary', Buffer.alloc(200_000, 7));
    await cluster.put(master, '/with-binary', { kept: true });
    // The replica loses the blob's file (a disk replaced, a copy without it): the backup must fetch it, not skip it.
    await cluster.converged('/with-binary');
    await cluster.settledDigests();
    rmSync(join(cluster.node(replica).dir, 'blobs', blob.slice(0, 2), blob.slice(2, 4), blob));

    // Continuous writes through the master; each acknowledgement's time is noted.
    let stop = false;
    const acked: Array<{ k: number; atMs: number }> = [];
    const writer = (async () => {
      for (let k = 0; !stop; k++) {
        const res = await cluster.put(master, `/w${k}`, { k });
        if (res.status === 201 || res.status === 200) acked.push({ k, atMs: performance.now() });
      }
    })();
    await waitFor('some acknowledged writes', () => (acked.length >= 40 ? true : undefined), 30_000);
    const backupFile = join(scratch.dir, 'full.backup.tar');
    const backupBeganMs = performance.now();
    await downloadBackup(cluster.url(replica), backupFile);
    const ackedBefore = acked.filter((a) => a.atMs < backupBeganMs).map((a) => a.k);
    await waitFor('writes after the backup', () => (acked.length >= ackedBefore.length + 20 ? true : undefined), 30_000);
    stop = true;
    await writer;

    const manifest = manifestOf(backupFile);
    assert.equal(manifest.source.nodeName, replica);
    assert.deepEqual(manifest.blobsReferenced, [blob]);
    assert.deepEqual(manifest.parts.map((p) => p.name), ['state.db', `blobs/${blob}`]);

    const verified = await runConclave(['backup', 'verify', backupFile], {}, 60_000);
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);

    // Restored as a new cluster, under a secret of its own.
    const newSecret = generateClusterSecret();
    const restoreDir = join(scratch.dir, 'restored');
    const restore = await runConclave(['restore', backupFile, '--data', restoreDir, '--as', 'new-cluster'], { CONCLAVE_CLUSTER_SECRET: newSecret }, 60_000);
    assert.equal(restore.code, 0, restore.stdout + restore.stderr);
    const alone = await startRestored(restoreDir, newSecret);
    restored.push(alone);
    const digest = await waitFor('the restored node to answer its digest', async () => {
      const res = await getJson(`${alone.baseUrl}/api/v1/cluster/digest`);
      return res.status === 200 ? res.body : undefined;
    });
    assert.equal(digest['digest'], manifest.contentDigest.digest);
    assert.equal(digest['blobsMissing'], 0);
    // Every write acknowledged before the backup began is in it, and what it holds is a prefix of the writes.
    const present: number[] = [];
    for (let k = 0; k < acked.length + 1; k++) {
      if ((await getJson(`${alone.baseUrl}/api/v1/content/w${k}`)).status === 200) present.push(k);
    }
    for (const k of ackedBefore) assert.ok(present.includes(k), `write ${k}, acknowledged before the backup began, is restored`);
    assert.deepEqual(present, present.map((_, i) => i), 'the restored writes are a prefix of the writes');
    const binary = await fetch(`${alone.baseUrl}/api/v1/binaries/with-binary?property=file`, { headers: { authorization: processAuth } });
    assert.equal(createHash('sha256').update(Buffer.from(await binary.arrayBuffer())).digest('hex'), blob);
    // A new cluster: another UUID, and it takes writes.
    const aloneStatus = await getJson(`${alone.baseUrl}/api/v1/cluster/status`);
    assert.notEqual(aloneStatus.body['clusterUuid'], manifest.cluster.uuid);
    assert.equal((aloneStatus.body['restoredFrom'] as { as: string }).as, 'new-cluster');
    const write = await fetch(`${alone.baseUrl}/api/v1/content/after-restore`, {
      method: 'PUT',
      headers: { authorization: processAuth, 'content-type': 'application/json' },
      body: '{"properties":{}}',
    });
    assert.equal(write.status, 201);

    // The manifest's digest is the source's: a backup with writes stopped has the digest the replica reports.
    const [settled] = await cluster.settledDigests([replica]);
    const quietFile = join(scratch.dir, 'quiet.backup.tar');
    await downloadBackup(cluster.url(replica), quietFile);
    const quiet = manifestOf(quietFile);
    assert.equal(quiet.index, settled!.appliedIndex);
    assert.equal(quiet.contentDigest.digest, settled!.digest);

    // A clone of the first backup joins the running cluster and catches up from the backup's index by the journal.
    const clone = await runConclave(['restore', backupFile, '--data', cluster.node('n4').dir, '--as', 'clone', '--seed', `127.0.0.1:${cluster.node(master).transportPort}`], {}, 60_000);
    assert.equal(clone.code, 0, clone.stdout + clone.stderr);
    await cluster.start('n4');
    await cluster.caughtUp(60_000);
    const digests = await cluster.settledDigests([...names, 'n4'], 60_000);
    assert.equal(new Set(digests.map((d) => d.digest)).size, 1, JSON.stringify(digests));
    const n4 = await cluster.status('n4');
    const origin = (n4 as unknown as { restoredFrom: { as: string; index: number; catchUp?: string } }).restoredFrom;
    assert.deepEqual({ as: origin.as, index: origin.index, catchUp: origin.catchUp }, { as: 'clone', index: manifest.index, catchUp: 'journal' });
    assert.equal((n4 as unknown as { snapshot: { index: number } }).snapshot.index, manifest.index, 'no snapshot was installed after the backup');
  } finally {
    for (const proc of restored) proc.child.kill('SIGKILL');
    await cluster.stopAll();
    scratch.cleanup();
  }
});

test('an incremental backup holds only the new blobs and its chain restores; the whole cluster is rebuilt from the last scheduled backup', { timeout: 240_000 }, async () => {
  const scratch = tempDir('conclave-backup-test-');
  const scheduled = join(scratch.dir, 'scheduled');
  mkdirSync(scheduled, { mode: 0o700 });
  const cluster = await ProcessCluster.create(
    names,
    (_name, seeds) => [...seeds.flatMap((s) => ['--seed', s]), '--initial-master-nodes', names.join(',')],
    () => ({ CONCLAVE_BACKUP_DIRECTORIES_ALLOWED: scheduled }),
  );
  try {
    await cluster.start(...names);
    const { master } = await cluster.caughtUp();
    const url = cluster.url(master);
    for (let i = 0; i < 5; i++) await putBinary(url, `/old${i}`, Buffer.from(`old blob ${i}`.repeat(1000)));
    const baseFile = join(scratch.dir, 'base.backup.tar');
    const full = await runConclave(['backup', '--url', url, '--out', baseFile], cliEnv, 60_000);
    assert.equal(full.code, 0, full.stdout + full.stderr);

    const newBlobs = new Set<string>();
    for (let i = 0; i < 50; i++) newBlobs.add(await putBinary(url, `/new${i}`, Buffer.from(`new blob ${i} `.repeat(500 + i))));
    for (let i = 0; i < 1000; i++) assert.equal((await cluster.put(master, `/doc${i % 100}`, { i })).status < 300, true);
    const incrementFile = join(scratch.dir, 'increment.backup.tar');
    const increment = await runConclave(['backup', '--url', url, '--out', incrementFile, '--since', baseFile], cliEnv, 60_000);
    assert.equal(increment.code, 0, increment.stdout + increment.stderr);
    const manifest = manifestOf(incrementFile);
    assert.equal(manifest.base?.id, manifestOf(baseFile).id);
    assert.deepEqual(new Set(manifest.parts.slice(1).map((p) => p.sha256)), newBlobs, 'the increment holds exactly the 50 new blobs');
    assert.equal(manifest.blobsReferenced.length, 55);

    // The chain restores: the increment and its base, found beside it.
    const chainDir = join(scratch.dir, 'chain');
    const chain = await runConclave(['restore', incrementFile, '--data', chainDir, '--as', 'new-cluster'], { CONCLAVE_CLUSTER_SECRET: generateClusterSecret() }, 60_000);
    assert.equal(chain.code, 0, chain.stdout + chain.stderr);
    // Started with the source cluster's own secret while that cluster runs (a recovery drill next to production): the
    // new cluster must never present the old UUID, else the old members would follow it as their master.
    const chained = await startRestored(chainDir, clusterSecret, names.flatMap((n) => ['--seed', `127.0.0.1:${cluster.node(n).transportPort}`]));
    try {
      const digest = await waitFor('the chain-restored node to answer its digest', async () => {
        const res = await getJson(`${chained.baseUrl}/api/v1/cluster/digest`);
        return res.status === 200 ? res.body : undefined;
      });
      assert.equal(digest['digest'], manifest.contentDigest.digest);
      assert.equal(digest['blobsMissing'], 0);
      assert.equal((digest['counts'] as { blobs: number }).blobs, 55);
    } catch (err) {
      chained.child.kill('SIGKILL');
      throw err;
    }

    // Scheduled backups to a directory, every second, three kept; the last one after a final write is the one to use.
    const settings = await fetch(`${url}/api/v1/cluster/settings`, {
      method: 'PUT',
      headers: { authorization: processAuth, 'content-type': 'application/json' },
      body: JSON.stringify({ settings: { 'backup.schedule.directory': scheduled, 'backup.schedule.interval': '1s', 'backup.schedule.keep': 3 } }),
    });
    assert.equal(settings.status, 200, await settings.text());
    const marker = await cluster.put(master, '/before-disaster', { last: true });
    assert.equal(marker.status, 201);
    const markerIndex = (await cluster.status(master)).nodes.find((n) => n.name === master)!.appliedIndex!;
    const latest = await waitFor(
      'a scheduled backup holding the last write',
      async () => {
        const res = await cluster.get(master, '/api/v1/admin/backups');
        const backups = (res.body as { backups: Array<{ index: number; path: string }> }).backups;
        return backups.find((b) => b.index >= markerIndex);
      },
      30_000,
    );

    // The drill's cluster and the source stayed apart: the source's master is its own, its UUID unchanged.
    const sourceStatus = await cluster.status(master);
    assert.ok(names.includes(sourceStatus.master!.name), `the source's master is ${sourceStatus.master?.name}`);
    assert.equal(sourceStatus.clusterUuid, manifest.cluster.uuid);
    assert.match(chained.output(), /CLUSTER_UUID_MISMATCH|cluster UUID/i);
    chained.child.kill('SIGKILL');

    // Disaster: every data directory is lost. The cluster is rebuilt from the last scheduled backup plus empty nodes.
    await cluster.kill(...names);
    for (const name of names) rmSync(cluster.node(name).dir, { recursive: true, force: true });
    const restore = await runConclave(['restore', latest.path, '--data', cluster.node('n1').dir, '--as', 'new-cluster'], { CONCLAVE_CLUSTER_SECRET: clusterSecret }, 60_000);
    assert.equal(restore.code, 0, restore.stdout + restore.stderr);
    await cluster.start('n1');
    await cluster.start('n2', 'n3');
    await cluster.caughtUp(60_000);
    assert.equal(await cluster.write('/after-disaster', { ok: true }), 'n1');
    const digests = await cluster.settledDigests(names, 60_000);
    assert.equal(new Set(digests.map((d) => d.digest)).size, 1, JSON.stringify(digests));
    assert.equal(digests[0]!.counts.blobs, 55);
    const doc = await cluster.get('n3', '/api/v1/content/doc99');
    assert.equal((doc.body as { properties: { i: number } }).properties.i, 999);
    assert.equal((await cluster.get('n2', '/api/v1/content/before-disaster')).status, 200);
  } finally {
    await cluster.stopAll();
    scratch.cleanup();
  }
});
