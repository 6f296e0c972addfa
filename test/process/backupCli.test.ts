import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';

import type { BackupManifest } from '../../src/backup/manifest.js';
import { generateClusterSecret } from '../../src/config/clusterSecret.js';
import { backupFromDataDir } from '../helpers/backupArchive.js';
import { runConclave } from '../helpers/cli.js';
import { processAuth, startNodeProcess } from '../helpers/process.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * The real CLI: `conclave backup verify`, `conclave restore` on archives built from a real node's data directory,
 * and `conclave backup --url` against an HTTP server that answers as GET/POST /api/v1/admin/backup does (the node's
 * own endpoint is tested where it is built; here what matters is what the CLI does with a good, cut or refused
 * stream).
 */

const secret = generateClusterSecret();
const tmp = tempDir('conclave-backup-cli-');
let archive: { path: string; manifest: BackupManifest; bytes: Buffer };

before(async () => {
  const dataDir = join(tmp.dir, 'source');
  const node = await startNodeProcess(dataDir, { env: { CONCLAVE_CLUSTER_SECRET: secret } });
  try {
    const headers = { authorization: processAuth, 'content-type': 'application/json' };
    for (const name of ['a', 'b']) {
      const res = await fetch(`${node.url}/api/v1/content/${name}`, { method: 'PUT', headers, body: JSON.stringify({ properties: { name } }) });
      assert.ok(res.ok);
    }
    const res = await fetch(`${node.url}/api/v1/binaries/a?property=file`, {
      method: 'PUT',
      headers: { authorization: processAuth, 'content-type': 'application/octet-stream' },
      body: Buffer.alloc(200_000, 5),
    });
    assert.ok(res.ok);
  } finally {
    node.child.kill('SIGTERM');
    await node.exited;
  }
  mkdirSync(join(tmp.dir, 'backups'));
  const built = await backupFromDataDir(dataDir, join(tmp.dir, 'backups'));
  archive = { ...built, bytes: readFileSync(built.path) };
});

after(() => tmp.cleanup());

test('conclave backup verify: 0 with the report when everything holds, 1 with the code otherwise', async () => {
  const ok = await runConclave(['backup', 'verify', archive.path]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, new RegExp(`Digest:\\s+${archive.manifest.contentDigest.digest}`));
  assert.match(ok.stdout, new RegExp(`Index:\\s+${archive.manifest.index} \\(term ${archive.manifest.term}\\)`));
  assert.match(ok.stdout, /^OK: /m);

  const bad = Buffer.from(archive.bytes);
  const at = bad.indexOf(Buffer.alloc(64, 5)) + 1000;
  bad[at] = bad[at]! ^ 0x40;
  writeFileSync(join(tmp.dir, 'bad.backup.tar'), bad);
  const refused = await runConclave(['backup', 'verify', join(tmp.dir, 'bad.backup.tar')]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /^conclave: .*blobs\/[0-9a-f]{64}.* \(BACKUP_CORRUPT\)\n$/s);

  writeFileSync(join(tmp.dir, 'cut.backup.tar'), archive.bytes.subarray(0, archive.bytes.length - 5000));
  const cut = await runConclave(['backup', 'verify', join(tmp.dir, 'cut.backup.tar')]);
  assert.equal(cut.code, 1);
  assert.match(cut.stderr, /\(BACKUP_TRUNCATED\)\n$/);
});

test('conclave restore prints what it restored and the command to start; refuses a non-empty directory', async () => {
  const dataDir = join(tmp.dir, 'restored');
  const restored = await runConclave(['restore', archive.path, '--data', dataDir, '--as', 'new-cluster'], { CONCLAVE_CLUSTER_SECRET: secret });
  assert.equal(restored.code, 0, restored.stderr);
  assert.match(restored.stdout, new RegExp(`conclave start --data ${dataDir} --cluster-name ${archive.manifest.cluster.name}`));
  assert.match(restored.stdout, /no longer valid/);
  assert.ok(!restored.stdout.includes(secret) && !restored.stderr.includes(secret), 'the secret is never printed');
  assert.equal(readFileSync(join(dataDir, 'cluster-secret'), 'utf8'), `${secret}\n`);

  const again = await runConclave(['restore', archive.path, '--data', dataDir, '--as', 'new-cluster']);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /\(RESTORE_TARGET_NOT_EMPTY\)\n$/);

  const clone = await runConclave(['restore', archive.path, '--data', join(tmp.dir, 'clone'), '--as', 'clone', '--seed', '10.0.0.1:7500']);
  assert.equal(clone.code, 0, clone.stderr);
  assert.match(clone.stdout, /--seed 10\.0\.0\.1:7500/);
  assert.match(clone.stdout, /--cluster-secret-file/);
  assert.match(clone.stdout, new RegExp(`catches up from index ${archive.manifest.index}`));
});

/** A server answering the backup endpoint with `respond`; returns its URL. */
async function backupServer(respond: Parameters<typeof createServer>[1]): Promise<{ url: string; server: Server }> {
  const server = createServer(respond);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

test('conclave backup --url writes a verified file, or nothing when the stream is cut or refused', async () => {
  let sinceBody: unknown = null;
  let cut = false;
  /** How many requests to refuse with BACKUPS_BUSY before serving again. */
  let refusals = 0;
  let flip = false;
  const { url, server } = await backupServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      if (req.url?.startsWith('/api/v1/admin/backup') !== true) return void res.writeHead(404).end();
      if (req.method === 'POST') sinceBody = JSON.parse(body);
      if (refusals > 0) {
        refusals--;
        res.writeHead(503, { 'content-type': 'application/json' });
        return void res.end(JSON.stringify({ error: { code: 'BACKUPS_BUSY', message: 'This node is already writing 1 backups; retry when one ends.' } }));
      }
      res.writeHead(200, { 'content-type': 'application/x-tar' });
      if (flip) {
        const damaged = Buffer.from(archive.bytes);
        const at = damaged.indexOf(Buffer.alloc(64, 5)) + 10;
        damaged[at] = damaged[at]! ^ 1;
        return void res.end(damaged);
      }
      if (!cut) return void res.end(archive.bytes);
      res.write(archive.bytes.subarray(0, Math.floor(archive.bytes.length / 2)), () => res.destroy());
    });
  });
  try {
    const out = join(tmp.dir, 'taken.backup.tar');
    const taken = await runConclave(['backup', '--url', url, '--out', out], { CONCLAVE_PASSWORD: 'x' });
    assert.equal(taken.code, 0, taken.stderr);
    assert.ok(readFileSync(out).equals(archive.bytes));
    assert.deepEqual(readdirSync(dirname(out)).filter((f) => f.endsWith('.partial')), []);
    assert.match(taken.stdout, new RegExp(`backup ${archive.manifest.id}`));

    const incremental = join(tmp.dir, 'incremental.backup.tar');
    const since = await runConclave(['backup', '--url', url, '--out', incremental, '--since', out]);
    assert.equal(since.code, 0, since.stderr);
    assert.deepEqual(sinceBody, {
      since: { id: archive.manifest.id, index: archive.manifest.index, createdAt: archive.manifest.createdAt, file: 'taken.backup.tar', blobsReferenced: archive.manifest.blobsReferenced },
    });

    cut = true;
    const cutOut = join(tmp.dir, 'cut-stream.backup.tar');
    const cutRun = await runConclave(['backup', '--url', url, '--out', cutOut]);
    assert.equal(cutRun.code, 1);
    assert.match(cutRun.stderr, /\(BACKUP_TRUNCATED\)\n$/);
    assert.equal(existsSync(cutOut), false);
    assert.deepEqual(readdirSync(dirname(cutOut)).filter((f) => f.endsWith('.partial')), []);

    cut = false;
    flip = true;
    const flippedOut = join(tmp.dir, 'flipped-stream.backup.tar');
    const flipped = await runConclave(['backup', '--url', url, '--out', flippedOut]);
    assert.equal(flipped.code, 1);
    assert.match(flipped.stderr, /\(BACKUP_CORRUPT\)\n$/);
    assert.equal(existsSync(flippedOut), false);
    assert.deepEqual(readdirSync(dirname(flippedOut)).filter((f) => f.endsWith('.partial')), []);

    flip = false;
    // A refusal for the moment is asked again (a failover, another backup ending), with growing pauses.
    refusals = 2;
    const waitedOut = join(tmp.dir, 'waited.backup.tar');
    const waited = await runConclave(['backup', '--url', url, '--out', waitedOut]);
    assert.equal(waited.code, 0, waited.stderr);
    assert.equal(refusals, 0);
    assert.deepEqual(waited.stderr.match(/refused the backup for now \(BACKUPS_BUSY\); asking again in \d+ ms/g)?.length, 2, waited.stderr);
    assert.ok(readFileSync(waitedOut).equals(archive.bytes));

    // Until --retry-ms is spent, or not at all with 0.
    refusals = Number.MAX_SAFE_INTEGER;
    for (const retryMs of ['0', '600']) {
      const refusedOut = join(tmp.dir, `refused-${retryMs}.backup.tar`);
      const refused = await runConclave(['backup', '--url', url, '--out', refusedOut, '--retry-ms', retryMs]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /already writing 1 backups.*\(BACKUPS_BUSY\)\n$/);
      assert.equal(existsSync(refusedOut), false);
      assert.deepEqual(readdirSync(tmp.dir).filter((f) => f.endsWith('.partial')), []);
    }
  } finally {
    server.close();
  }
});
