import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, rmSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { parseManifest, type BackupManifest } from '../../src/backup/manifest.js';
import { decodeTarHeader, tarBlockBytes } from '../../src/backup/tarFormat.js';
import { json, openTestNode, type TestNode } from '../helpers/app.js';

/**
 * GET/POST /api/v1/admin/backup on one in-process node: the archive's parts are what its manifest says, blobs are
 * pinned against the collector while a backup runs, a blob that cannot be had fails the backup before a byte is
 * sent, and the limits answer with their codes.
 */

function entriesOf(tar: Buffer): Array<{ name: string; data: Buffer }> {
  const entries: Array<{ name: string; data: Buffer }> = [];
  for (let offset = 0; offset < tar.length; ) {
    const header = decodeTarHeader(tar.subarray(offset, offset + tarBlockBytes));
    if (header === null) break;
    entries.push({ name: header.name, data: tar.subarray(offset + tarBlockBytes, offset + tarBlockBytes + header.size) });
    offset += tarBlockBytes + Math.ceil(header.size / tarBlockBytes) * tarBlockBytes;
  }
  return entries;
}

function manifestIn(tar: Buffer): BackupManifest {
  return parseManifest(entriesOf(tar)[0]!.data);
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function putBinary(t: TestNode, path: string, data: Buffer): Promise<string> {
  assert.equal((await t.request({ method: 'PUT', url: `/api/v1/content${path}`, ...json({ properties: {} }) })).statusCode, 201);
  const res = await t.request({ method: 'PUT', url: `/api/v1/binaries${path}?property=file`, payload: data, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(res.statusCode, 200, res.body);
  return sha256(data);
}

function blobPath(t: TestNode, hash: string): string {
  return join(t.dir, 'blobs', hash.slice(0, 2), hash.slice(2, 4), hash);
}

test('a backup holds the manifest, the state and every referenced blob, each part as the manifest says', async () => {
  const t = await openTestNode();
  try {
    const a = await putBinary(t, '/a', Buffer.alloc(70_000, 1));
    const b = await putBinary(t, '/b', Buffer.from('second'));
    const res = await t.request({ method: 'GET', url: '/api/v1/admin/backup' });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], 'application/x-tar');
    assert.equal(Number(res.headers['content-length']), res.rawPayload.length);
    const entries = entriesOf(res.rawPayload);
    const manifest = manifestIn(res.rawPayload);
    assert.deepEqual(entries.map((e) => e.name), ['manifest.json', ...manifest.parts.map((p) => p.name)]);
    for (const [i, part] of manifest.parts.entries()) {
      assert.equal(entries[i + 1]!.data.length, part.bytes);
      assert.equal(sha256(entries[i + 1]!.data), part.sha256);
    }
    assert.deepEqual(manifest.blobsReferenced, [a, b].sort());
    assert.equal(manifest.index, Number(res.headers['x-conclave-index']));
    const digest = await t.request({ method: 'GET', url: '/api/v1/cluster/digest' });
    assert.equal(manifest.contentDigest.digest, (JSON.parse(digest.body) as { digest: string }).digest);

    // Incremental: only what the base does not reference.
    const c = await putBinary(t, '/c', Buffer.from('third'));
    const since = { id: manifest.id, index: manifest.index, createdAt: manifest.createdAt, file: 'base.tar', blobsReferenced: manifest.blobsReferenced };
    const increment = await t.request({ method: 'POST', url: '/api/v1/admin/backup', ...json({ since }) });
    assert.equal(increment.statusCode, 200, increment.body);
    const incremental = manifestIn(increment.rawPayload);
    assert.deepEqual(incremental.parts.map((p) => p.name), ['state.db', `blobs/${c}`]);
    assert.deepEqual(incremental.base, { id: manifest.id, index: manifest.index, createdAt: manifest.createdAt, file: 'base.tar' });

    const bad = await t.request({ method: 'POST', url: '/api/v1/admin/backup', ...json({ since: { ...since, file: '../etc/passwd' } }) });
    assert.equal(bad.statusCode, 400);
    assert.equal((JSON.parse(bad.body) as { error: { code: string } }).error.code, 'INVALID_REQUEST');
  } finally {
    await t.close();
  }
});

test('only an admin may take a backup', async () => {
  const t = await openTestNode();
  try {
    assert.equal((await t.request({ method: 'PUT', url: '/api/v1/users/ed', ...json({ password: 'ed-password-1', roles: ['editor'] }) })).statusCode, 201);
    const ed = `Basic ${Buffer.from('ed:ed-password-1').toString('base64')}`;
    assert.equal((await t.request({ method: 'GET', url: '/api/v1/admin/backup', auth: ed })).statusCode, 403);
    assert.equal((await t.request({ method: 'GET', url: '/api/v1/admin/backup', auth: null })).statusCode, 401);
  } finally {
    await t.close();
  }
});

/** Drops every superseded version, as the history's retention would once they are old enough: their blobs go free. */
async function dropHistory(t: TestNode): Promise<void> {
  const time = new Date().toISOString();
  await t.node.runtime.propose({ type: 'pruneVersions', versionsPerNodeMax: 100, supersededBefore: '9999-12-31T00:00:00.000Z', versionsMax: 1_000_000, time });
}

test('a blob the content no longer references stays until the backup that holds it is written', async () => {
  const t = await openTestNode();
  try {
    const data = Buffer.alloc(50_000, 9);
    const hash = await putBinary(t, '/doomed', data);
    const backup = await t.node.backups.open(null);
    assert.equal((await t.request({ method: 'DELETE', url: '/api/v1/content/doomed' })).statusCode, 200);
    await dropHistory(t);
    const old = new Date(Date.now() - 3 * 24 * 3600_000);
    utimesSync(blobPath(t, hash), old, old);
    await t.node.collectBlobs();
    assert.ok(existsSync(blobPath(t, hash)), 'the pinned blob survives a collection');
    const chunks: Buffer[] = [];
    for await (const chunk of backup.stream()) chunks.push(chunk as Buffer);
    const tar = Buffer.concat(chunks);
    assert.ok(entriesOf(tar).some((e) => e.name === `blobs/${hash}` && e.data.equals(data)));
    backup.close();
    await t.node.collectBlobs();
    assert.ok(!existsSync(blobPath(t, hash)), 'released, it is collected');
  } finally {
    await t.close();
  }
});

test('a blob that cannot be had fails the backup before a byte is sent; too many backups at once are refused', async () => {
  const t = await openTestNode({ 'backup.blobFetchTimeoutMs': 100, 'backup.concurrentMax': 1 });
  try {
    const hash = await putBinary(t, '/lost', Buffer.from('lost on this disk'));
    rmSync(blobPath(t, hash));
    const res = await t.request({ method: 'GET', url: '/api/v1/admin/backup' });
    assert.equal(res.statusCode, 503);
    const error = (JSON.parse(res.body) as { error: { code: string; blobs: string[] } }).error;
    assert.equal(error.code, 'BACKUP_BLOB_MISSING');
    assert.deepEqual(error.blobs, [hash]);
    assert.equal(t.node.backups.inProgress, 0);

    assert.equal((await t.request({ method: 'DELETE', url: '/api/v1/content/lost' })).statusCode, 200);
    await dropHistory(t);
    const first = await t.node.backups.open(null);
    const busy = await t.request({ method: 'GET', url: '/api/v1/admin/backup' });
    assert.equal(busy.statusCode, 503);
    assert.equal((JSON.parse(busy.body) as { error: { code: string } }).error.code, 'BACKUPS_BUSY');
    first.close();
    assert.equal((await t.request({ method: 'GET', url: '/api/v1/admin/backup' })).statusCode, 200);
  } finally {
    await t.close();
  }
});
