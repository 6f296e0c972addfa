import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { Pool } from 'undici';

import { ProcessCluster } from '../helpers/cluster.js';
import { processAuth } from '../helpers/process.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

/**
 * A new, empty node joins a cluster that holds a lot — content and blobs — and copies everything without anyone
 * touching the master: the content through a snapshot (the journal is compacted), the blobs from its peers after
 * the install. Its digest must equal the master's, with no blob missing.
 *
 * `npm test` runs it with 64 MB; `npm run test:large` with CONCLAVE_LARGE_JOIN_MB=1100 (the "at least 1
 * GB"), which takes minutes and is run by hand, not in CI.
 */
const totalMiB = Number(process.env['CONCLAVE_LARGE_JOIN_MB'] ?? '64');
const blobMiB = totalMiB >= 256 ? 32 : 8;
const contentNodes = totalMiB >= 256 ? 4000 : 400;
const propertyBytes = 2048;
const MiB = 1024 * 1024;

test(`a new empty node joins a cluster holding ${totalMiB} MB of content and blobs, through a snapshot`, { timeout: 60 * 60_000 }, async () => {
  const tmp = tempDir('conclave-large-join-');
  const config = join(tmp.dir, 'compact.yaml');
  writeFileSync(config, 'storage:\n  compactionEntriesMin: 100\n  journalRetainEntries: 0\n');
  const names = ['n1', 'n2', 'n3', 'n4'];
  const cluster = await ProcessCluster.create(names, (name, seeds) => [
    '--config', config,
    ...seeds.flatMap((s) => ['--seed', s]),
    ...(name === 'n4' ? [] : ['--initial-master-nodes', 'n1,n2,n3']),
  ]);
  try {
    await cluster.start('n1', 'n2', 'n3');
    await cluster.write('/big', {});
    const master = await cluster.master();
    const pool = new Pool(cluster.url(master), { connections: 8 });
    const put = async (path: string, body: Buffer | Readable | string, contentType: string, length?: number) => {
      const response = await pool.request({
        path,
        method: 'PUT',
        headers: { authorization: processAuth, 'content-type': contentType, ...(length !== undefined ? { 'content-length': String(length) } : {}) },
        body,
      });
      const text = await response.body.text();
      assert.ok(response.statusCode < 300, `PUT ${path}: ${response.statusCode} ${text}`);
    };

    const started = performance.now();
    // Content: JSON nodes, 4 writers at a time.
    let next = 0;
    const writer = async () => {
      while (next < contentNodes) {
        const i = next++;
        await put(`/api/v1/content/big/c${i}`, JSON.stringify({ properties: { i, text: 'x'.repeat(propertyBytes) } }), 'application/json');
      }
    };
    await Promise.all(Array.from({ length: 4 }, writer));
    // Blobs: each its own node, random bytes (no de-duplication), streamed, 2 uploads at a time.
    const blobs = Math.max(1, Math.ceil((totalMiB - (contentNodes * propertyBytes) / MiB) / blobMiB));
    let nextBlob = 0;
    const uploader = async () => {
      while (nextBlob < blobs) {
        const i = nextBlob++;
        await put(`/api/v1/content/big/b${i}`, JSON.stringify({ properties: { i } }), 'application/json');
        const chunks = Array.from({ length: blobMiB }, () => randomBytes(MiB));
        await put(`/api/v1/binaries/big/b${i}?property=file`, Readable.from(chunks), 'application/octet-stream', blobMiB * MiB);
      }
    };
    await Promise.all(Array.from({ length: 2 }, uploader));
    const loadedMs = performance.now() - started;
    const masterDigest = (await cluster.settledDigests(['n1', 'n2', 'n3'], 120_000))[0]!;
    assert.equal(masterDigest.blobsMissing, 0);
    assert.ok(masterDigest.counts.blobs >= blobs, `the master holds the ${blobs} blobs`);
    const loadedMiB = blobs * blobMiB + (contentNodes * propertyBytes) / MiB;
    assert.ok(loadedMiB >= totalMiB, `loaded ${loadedMiB.toFixed(0)} MiB`);
    await pool.close();

    // The empty node joins: nothing is done on the master; it finds the cluster through its seeds.
    const joinStarted = performance.now();
    await cluster.start('n4');
    const joined = await waitFor(
      'n4 to hold the same content and every blob',
      async () => {
        const [m, n4] = await Promise.all([cluster.digest(master), cluster.digest('n4')]);
        return n4.appliedIndex === m.appliedIndex && n4.blobsMissing === 0 && n4.counts.blobs >= blobs ? { m, n4 } : undefined;
      },
      Math.max(120_000, totalMiB * 1000),
    );
    const joinMs = performance.now() - joinStarted;
    assert.equal(joined.n4.digest, joined.m.digest, 'byte-identical content');
    assert.ok(
      cluster.output('n4').split('\n').some((line) => line.includes('"msg":"installed a snapshot"')),
      'n4 got the content through a snapshot (the journal was compacted)',
    );
    console.log(
      `loaded ${loadedMiB.toFixed(0)} MiB (${contentNodes} JSON nodes, ${blobs} blobs of ${blobMiB} MiB) in ${(loadedMs / 1000).toFixed(1)} s; ` +
        `an empty node joined and copied it in ${(joinMs / 1000).toFixed(1)} s (${(loadedMiB / (joinMs / 1000)).toFixed(0)} MiB/s)`,
    );
  } finally {
    await cluster.stopAll();
    tmp.cleanup();
  }
});
