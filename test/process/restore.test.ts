import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import type Database from 'better-sqlite3';

import type { BackupManifest } from '../../src/backup/manifest.js';
import { restoreBackup } from '../../src/backup/restore.js';
import { verifyBackup } from '../../src/backup/verify.js';
import { generateClusterSecret } from '../../src/config/clusterSecret.js';
import { isConclaveError } from '../../src/errors/catalogue.js';
import { dataFormatVersion, getMeta, openDatabase } from '../../src/storage/database.js';
import { JournalStore } from '../../src/storage/journal.js';
import { backupFromDataDir } from '../helpers/backupArchive.js';
import { processAuth, startNodeProcess, type NodeProcess } from '../helpers/process.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

/**
 * Restores from archives built from a real node's data directory (test/helpers/backupArchive.ts), checked by
 * starting real nodes on what restoreBackup built: a new cluster elects itself and serves the same content digest,
 * old bearer tokens are refused; a clone joins the running source; every refusal leaves the target as it was.
 */

const secret = generateClusterSecret();
const tmp = tempDir('conclave-restore-');
const sourceDir = join(tmp.dir, 'source');
const backups = join(tmp.dir, 'backups');
let full: { path: string; digest: string; index: number };
let incremental: { path: string; digest: string; index: number };
let oldToken: string;
let oldUuid: string;
const blobs = [Buffer.from('first binary'), Buffer.alloc(70_000, 7), Buffer.from('')];
const laterBlob = Buffer.from('a binary written after the full backup');

interface Digest {
  appliedIndex: number;
  digest: string;
  counts: { nodes: number; users: number; binaryReferences: number; blobs: number };
  blobsMissing: number;
}

async function api(url: string, path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${url}${path}`, { ...init, headers: { authorization: processAuth, ...(init.headers as Record<string, string>) }, signal: AbortSignal.timeout(15_000) });
}

async function put(url: string, path: string, properties: Record<string, unknown>): Promise<void> {
  const res = await api(url, `/api/v1/content${path}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ properties }) });
  assert.ok(res.status === 200 || res.status === 201, `${path}: ${res.status} ${await res.text()}`);
}

async function upload(url: string, path: string, data: Buffer): Promise<void> {
  const res = await api(url, `/api/v1/binaries${path}?property=file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: data });
  assert.ok(res.status === 200 || res.status === 201, `${path}: ${res.status} ${await res.text()}`);
}

async function digestOf(url: string): Promise<Digest> {
  const res = await api(url, '/api/v1/cluster/digest');
  assert.equal(res.status, 200);
  return (await res.json()) as Digest;
}

async function stop(node: NodeProcess): Promise<void> {
  node.child.kill('SIGTERM');
  await node.exited;
}

/** Every file under `dir` with its mode and SHA-256: a directory left "as it was" has the same. */
function treeOf(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const path = join(d, name);
      const stat = statSync(path);
      if (stat.isDirectory()) walk(path);
      else out[path.slice(dir.length)] = `${(stat.mode & 0o777).toString(8)} ${createHash('sha256').update(readFileSync(path)).digest('hex')}`;
    }
  };
  walk(dir);
  return out;
}

before(async () => {
  mkdirSync(backups);
  let node = await startNodeProcess(sourceDir, { env: { CONCLAVE_CLUSTER_SECRET: secret } });
  try {
    for (const [i, data] of blobs.entries()) {
      await put(node.url, `/doc${i}`, { i, title: `document ${i}` });
      await upload(node.url, `/doc${i}`, data);
    }
    const login = await fetch(`${node.url}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: 'process-test-password' }) });
    oldToken = `Bearer ${((await login.json()) as { token: string }).token}`;
    oldUuid = ((await (await api(node.url, '/api/v1/cluster/status')).json()) as { clusterUuid: string }).clusterUuid;
    const digest = await digestOf(node.url);
    await stop(node);
    const built = await backupFromDataDir(sourceDir, backups);
    assert.equal(built.manifest.index, digest.appliedIndex);
    full = { path: built.path, digest: digest.digest, index: built.manifest.index };

    node = await startNodeProcess(sourceDir, { env: { CONCLAVE_CLUSTER_SECRET: secret } });
    await put(node.url, '/later', { later: true });
    await upload(node.url, '/later', laterBlob);
    const digest2 = await digestOf(node.url);
    await stop(node);
    const built2 = await backupFromDataDir(sourceDir, backups, { base: { manifest: built.manifest, file: built.path } });
    assert.deepEqual(
      built2.manifest.parts.slice(1).map((p) => p.sha256),
      [createHash('sha256').update(laterBlob).digest('hex')],
      'the incremental backup holds only the new blob',
    );
    incremental = { path: built2.path, digest: digest2.digest, index: built2.manifest.index };
  } finally {
    if (node.child.exitCode === null && node.child.signalCode === null) await stop(node);
  }
});

after(() => tmp.cleanup());

test('a backup taken before the change feed (data format 2) verifies and restores; the feed starts at its index', async () => {
  const built = await backupFromDataDir(sourceDir, backups, { stateFormat2: true });
  assert.equal(built.manifest.dataFormatVersion, 2);
  const report = await verifyBackup(built.path);
  assert.equal(report.index, built.manifest.index);
  const dataDir = join(tmp.dir, 'restored-format2');
  await restoreBackup({ file: built.path, dataDir, as: 'new-cluster', clusterSecret: secret });
  const db = openDatabase(dataDir);
  try {
    assert.equal(getMeta<number>(db, 'format_version'), dataFormatVersion, 'upgraded in place');
    assert.equal(getMeta<number>(db, 'changes_pruned_through'), built.manifest.index);
  } finally {
    db.close();
  }
  const node = await startNodeProcess(dataDir, { env: { CONCLAVE_CLUSTER_SECRET: secret, CONCLAVE_HISTORY_PRUNE_INTERVAL_MS: '200' } });
  try {
    // A state without history: its digest is the manifest's, which has no versions.
    assert.equal((await digestOf(node.url)).digest, built.manifest.contentDigest.digest);
    await put(node.url, '/after-restore', {});
    const feed = (await (await api(node.url, '/api/v1/changes')).json()) as { events: Array<{ path: string }>; oldest: number };
    assert.equal(feed.oldest, built.manifest.index);
    assert.deepEqual(feed.events.map((e) => e.path), ['/after-restore']);
    const before = await api(node.url, '/api/v1/changes?since=1');
    assert.equal(before.status, 410);
    // The master starts history at its next round (every member runs this release): a restore then goes through.
    await waitFor('history to start', async () => {
      const res = await api(node.url, '/api/v1/restore', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ path: '/after-restore', version: 1 }) });
      if (res.status === 409) return undefined;
      assert.equal(res.status, 200, await res.text());
      return true;
    });
  } finally {
    await stop(node);
  }
});

test('verifyBackup reports what the manifest holds, and checks the chain', async () => {
  const report = await verifyBackup(full.path);
  assert.equal(report.index, full.index);
  assert.equal(report.digest, full.digest);
  assert.equal(report.counts.blobs, blobs.length);
  assert.deepEqual(report.chain, []);
  const chained = await verifyBackup(incremental.path);
  assert.equal(chained.digest, incremental.digest);
  assert.deepEqual(
    chained.chain.map((c) => c.file),
    [full.path],
  );
});

test('restore --as new-cluster: the node elects itself, serves the same digest under a new UUID, and old tokens are refused', async () => {
  const dataDir = join(tmp.dir, 'restored-new');
  const result = await restoreBackup({ file: full.path, dataDir, as: 'new-cluster', clusterSecret: secret });
  assert.equal(result.index, full.index);
  assert.notEqual(result.clusterUuid, oldUuid);
  assert.equal(statSync(dataDir).mode & 0o777, 0o700);
  assert.equal(statSync(join(dataDir, 'cluster-secret')).mode & 0o777, 0o600);
  for (const data of blobs) {
    const sha = createHash('sha256').update(data).digest('hex');
    assert.equal(statSync(join(dataDir, 'blobs', sha.slice(0, 2), sha.slice(2, 4), sha)).mode & 0o777, 0o600);
  }
  const db = openDatabase(dataDir);
  try {
    assert.equal(getMeta<number>(db, 'applied_index'), full.index);
    assert.equal(JSON.parse(getMeta<string>(db, 'restored_from')!).as, 'new-cluster');
    const journal = new JournalStore(db);
    // A cluster of one under the new UUID from the snapshot on: it never presents the old UUID, nor knows the old members.
    const snapshot = journal.snapshot()!;
    assert.equal(snapshot.index, full.index);
    const state = (snapshot.data as { clusterState: { clusterUuid: string; nodes: unknown[]; votingConfiguration: { current: string[] } } }).clusterState;
    assert.equal(state.clusterUuid, result.clusterUuid);
    assert.deepEqual(state.nodes, []);
    assert.deepEqual(state.votingConfiguration.current, [result.nodeId]);
    assert.deepEqual([...snapshot.configuration.current], [result.nodeId]);
    // The token key rotation is the new cluster's first entry, in its first term.
    const entries = journal.read(full.index + 1, 10);
    assert.deepEqual(entries.map((e) => e.payload.kind), ['command']);
    assert.equal((entries[0]!.payload as { data: { type: string } }).data.type, 'rotateTokenKey');
    assert.equal(entries[0]!.term, result.term);
    assert.ok(result.term > snapshot.term);
  } finally {
    db.close();
  }
  // The secret is the file restore wrote: no CONCLAVE_CLUSTER_SECRET here.
  const node = await startNodeProcess(dataDir, { args: ['--cluster-name', result.clusterName] });
  try {
    const digest = await digestOf(node.url);
    assert.equal(digest.digest, full.digest);
    assert.equal(digest.blobsMissing, 0);
    assert.ok(digest.appliedIndex > full.index);
    // The full-text index is not in the backup: the restored node built it from the state before serving.
    assert.equal((digest as Digest & { searchIndex: { mismatchCount: number; indexed: number } }).searchIndex.mismatchCount, 0);
    const found = (await (await api(node.url, '/api/v1/search?q=document&limit=100')).json()) as { items: Array<{ path: string }> };
    assert.deepEqual(found.items.map((h) => h.path).sort(), blobs.map((_, i) => `/doc${i}`).sort());
    const status = (await (await api(node.url, '/api/v1/cluster/status')).json()) as { clusterUuid: string; master: { id: string } | null };
    assert.equal(status.clusterUuid, result.clusterUuid);
    assert.equal(status.master?.id, result.nodeId);
    const binary = await api(node.url, '/api/v1/binaries/doc1?property=file');
    assert.ok(Buffer.from(await binary.arrayBuffer()).equals(blobs[1]!));
    // The same secret, yet the token of before the backup opens nothing: the key id was rotated.
    const who = await fetch(`${node.url}/api/v1/auth/whoami`, { headers: { authorization: oldToken } });
    assert.equal(who.status, 401);
    await put(node.url, '/after-restore', { ok: true });
    // An empty node joins the restored one: the journal before the backup's index is nowhere, so it installs the
    // snapshot file restore placed (served by the restored node as its own), then the entries after it.
    const transport = await waitFor('the transport address', async () => {
      const s = (await (await api(node.url, '/api/v1/cluster/status')).json()) as { nodes: Array<{ id: string; transportAddress?: string }> };
      return s.nodes.find((n) => n.id === result.nodeId)?.transportAddress;
    });
    const joiner = await startNodeProcess(join(tmp.dir, 'joiner'), { args: ['--name', 'joiner', '--seed', transport, '--cluster-name', result.clusterName], env: { CONCLAVE_CLUSTER_SECRET: secret } });
    try {
      await waitFor(
        'the joiner to reach the restored digest',
        async () => {
          const [a, b] = await Promise.all([digestOf(node.url), digestOf(joiner.url)]);
          return a.appliedIndex === b.appliedIndex && a.digest === b.digest && b.blobsMissing === 0 ? true : undefined;
        },
        30_000,
      );
      assert.match(joiner.output(), /installed a snapshot/);
    } finally {
      await stop(joiner);
    }
  } finally {
    await stop(node);
  }
});

test('an incremental backup restores with its base; without it, the file needed is named', async () => {
  const dataDir = join(tmp.dir, 'restored-chain');
  const result = await restoreBackup({ file: incremental.path, dataDir, as: 'new-cluster' });
  assert.equal(result.secret?.generated, true);
  const node = await startNodeProcess(dataDir, { args: ['--cluster-name', result.clusterName] });
  try {
    const digest = await digestOf(node.url);
    assert.equal(digest.digest, incremental.digest);
    assert.equal(digest.blobsMissing, 0);
  } finally {
    await stop(node);
  }
  const alone = join(tmp.dir, 'alone');
  mkdirSync(alone);
  copyFileSync(incremental.path, join(alone, 'inc.backup.tar'));
  const target = join(tmp.dir, 'never');
  await assert.rejects(
    restoreBackup({ file: join(alone, 'inc.backup.tar'), dataDir: target, as: 'new-cluster' }),
    (err: unknown) => isConclaveError(err) && err.code === 'BACKUP_CHAIN_INCOMPLETE' && err.message.includes(full.path.split('/').pop()!),
  );
  assert.equal(existsSync(target), false);
  assert.deepEqual(readdirSync(tmp.dir).filter((n) => n.includes('restoring')), []);
  // --base-dir finds it elsewhere.
  const report = await verifyBackup(join(alone, 'inc.backup.tar'), { baseDirs: [backups] });
  assert.equal(report.chain.length, 1);
});

test('refusals leave the target exactly as it was, even with --force', async () => {
  const target = join(tmp.dir, 'occupied');
  mkdirSync(join(target, 'sub'), { recursive: true, mode: 0o700 });
  writeFileSync(join(target, 'sub', 'precious'), 'keep me', { mode: 0o600 });
  const before = treeOf(target);
  const bad = join(tmp.dir, 'bad');
  mkdirSync(bad);
  const size = statSync(full.path).size;

  const truncated = join(bad, 'truncated.backup.tar');
  copyFileSync(full.path, truncated);
  truncateSync(truncated, size - 3000);
  const flipped = join(bad, 'flipped.backup.tar');
  const bytes = readFileSync(full.path);
  // A byte of the large blob (it is the last part but one: its bytes sit well inside the file).
  const at = bytes.indexOf(Buffer.alloc(64, 7)) + 100;
  bytes[at] = bytes[at]! ^ 0x10;
  writeFileSync(flipped, bytes);
  const newer = await backupFromDataDir(sourceDir, bad, { mutateManifest: (m) => ({ ...m, dataFormatVersion: m.dataFormatVersion + 1 }) });

  const cases: Array<[string, string, boolean]> = [
    [truncated, 'BACKUP_TRUNCATED', true],
    [flipped, 'BACKUP_CORRUPT', true],
    [newer.path, 'BACKUP_FORMAT_NEWER', true],
    [full.path, 'RESTORE_TARGET_NOT_EMPTY', false],
  ];
  for (const [file, code, force] of cases) {
    await assert.rejects(restoreBackup({ file, dataDir: target, as: 'new-cluster', force }), (err: unknown) => {
      assert.ok(isConclaveError(err), String(err));
      assert.equal(err.code, code, `${file}: ${err.message}`);
      return true;
    });
    assert.deepEqual(treeOf(target), before, `${code} changed the target`);
  }
  await assert.rejects(
    restoreBackup({ file: full.path, dataDir: join(tmp.dir, 'foreign'), as: 'clone', clusterUuid: 'another-cluster' }),
    (err: unknown) => isConclaveError(err) && err.code === 'BACKUP_FOREIGN',
  );
  assert.deepEqual(readdirSync(tmp.dir).filter((n) => n.includes('restoring')), []);
  // With --force and a good backup, the contents are replaced.
  await restoreBackup({ file: full.path, dataDir: target, as: 'new-cluster', force: true });
  assert.equal(existsSync(join(target, 'sub')), false);
  assert.ok(existsSync(join(target, 'conclave.db')));
});

test('restore --as clone: the node joins the running source with the same UUID and catches up', async () => {
  const source = await startNodeProcess(sourceDir, { env: { CONCLAVE_CLUSTER_SECRET: secret }, args: ['--name', 'source'] });
  const dataDir = join(tmp.dir, 'clone');
  try {
    await put(source.url, '/while-cloning', { v: 1 });
    const result = await restoreBackup({ file: full.path, dataDir, as: 'clone', clusterSecret: secret, clusterUuid: oldUuid });
    assert.equal(result.clusterUuid, oldUuid);
    const transport = await waitFor('the source transport address', async () => {
      const status = (await (await api(source.url, '/api/v1/cluster/status')).json()) as { nodes: Array<{ name: string; transportAddress?: string }> };
      return status.nodes.find((n) => n.name === 'source')?.transportAddress;
    });
    const clone = await startNodeProcess(dataDir, { args: ['--name', 'clone', '--seed', transport, '--cluster-name', result.clusterName] });
    try {
      await waitFor(
        'the clone to catch up with the source',
        async () => {
          const [a, b] = await Promise.all([digestOf(source.url), digestOf(clone.url)]);
          return a.appliedIndex === b.appliedIndex && a.digest === b.digest && b.blobsMissing === 0 ? true : undefined;
        },
        30_000,
      );
      assert.equal((await api(clone.url, '/api/v1/content/while-cloning')).status, 200);
      // From the journal: the source still holds every entry after the backup's index.
      assert.doesNotMatch(clone.output(), /installed a snapshot|snapshot download/);
    } finally {
      await stop(clone);
    }
  } finally {
    await stop(source);
  }
});


test('verify refuses a manifest that does not match its state, and a chain that is not one', async () => {
  const dir = join(tmp.dir, 'lies');
  mkdirSync(dir);
  const lies: Array<[string, (m: BackupManifest) => BackupManifest, string]> = [
    ['digest', (m) => ({ ...m, contentDigest: { ...m.contentDigest, digest: '0'.repeat(64) } }), 'BACKUP_CORRUPT'],
    ['index', (m) => ({ ...m, index: m.index + 1 }), 'BACKUP_CORRUPT'],
    ['base file', (m) => ({ ...m, base: { id: randomUUID(), index: 1, createdAt: m.createdAt, file: '../../etc/passwd' } }), 'BACKUP_CORRUPT'],
  ];
  for (const [what, lie, code] of lies) {
    const built = await backupFromDataDir(sourceDir, dir, { mutateManifest: lie });
    await assert.rejects(verifyBackup(built.path), (err: unknown) => isConclaveError(err) && err.code === code, what);
  }
  // A state whose history apply() could not have made: a version as new as its node's, a retention no entry sets.
  const states: Array<[string, (state: Database.Database) => void]> = [
    [
      'a version not older than its node',
      (state) =>
        state.exec(`INSERT INTO versions (node_id, version, path, name, position, type, properties, binaries, created_at, created_by, modified_at, modified_by)
                    SELECT id, version, path, name, position, type, properties, binaries, created_at, created_by, modified_at, modified_by FROM nodes WHERE path = '/'`),
    ],
    ['a retention of 0 versions', (state) => state.exec(`INSERT OR REPLACE INTO meta (key, value) VALUES ('history_versions_per_node', 0)`)],
  ];
  for (const [what, mutateState] of states) {
    const built = await backupFromDataDir(sourceDir, dir, { mutateState });
    await assert.rejects(verifyBackup(built.path), (err: unknown) => isConclaveError(err) && err.code === 'BACKUP_CORRUPT' && /history/.test(err.message), what);
  }
  // A base of another cluster.
  const foreignBase = await backupFromDataDir(sourceDir, dir, { mutateManifest: (m) => ({ ...m, cluster: { ...m.cluster, uuid: randomUUID() } }) });
  const onForeign = await backupFromDataDir(sourceDir, dir, { base: { manifest: foreignBase.manifest, file: foreignBase.path } });
  await assert.rejects(verifyBackup(onForeign.path), (err: unknown) => isConclaveError(err) && err.code === 'BACKUP_FOREIGN');
  // A file under the base's name that is another backup.
  const realBase = await backupFromDataDir(sourceDir, dir);
  const onBase = await backupFromDataDir(sourceDir, dir, { base: { manifest: realBase.manifest, file: realBase.path } });
  copyFileSync(full.path, realBase.path);
  await assert.rejects(verifyBackup(onBase.path), (err: unknown) => isConclaveError(err) && err.code === 'BACKUP_CHAIN_INCOMPLETE' && /not that one/.test(err.message));
});

test('the manifest\'s cluster state is never installed as it stands: a new cluster drops its jobs and backup.schedule settings and starts; a clone refuses one the core would not take', async () => {
  const dir = join(tmp.dir, 'edited');
  mkdirSync(dir);
  // An edited manifest (nothing digests it): a malformed record and pruned entry that made the pruner throw at every
  // start, and a schedule writing to a place of the editor's choosing every second.
  const jobs = { 'backup.schedule': { claim: null, claimTerm: 1, version: 3, progress: { records: [null], pruned: [{ holder: 'x', path: 5 }, null] } } };
  const settings = { 'backup.schedule.directory': join(tmp.dir, 'attacker'), 'backup.schedule.interval': '1s', 'backup.schedule.keep': 1, 'not.a.setting': 5 };
  const edited = (clusterState: Partial<BackupManifest['clusterState']>) => (m: BackupManifest) => ({ ...m, clusterState: { ...m.clusterState, ...clusterState } }) as BackupManifest;
  const built = await backupFromDataDir(sourceDir, dir, { mutateManifest: edited({ settings, jobs }) });

  const dataDir = join(tmp.dir, 'restored-edited');
  const result = await restoreBackup({ file: built.path, dataDir, as: 'new-cluster', clusterSecret: secret });
  assert.deepEqual(result.droppedSettings, ['backup.schedule.directory', 'backup.schedule.interval', 'backup.schedule.keep', 'not.a.setting']);
  const db = openDatabase(dataDir);
  try {
    const state = (new JournalStore(db).snapshot()!.data as { clusterState: { settings: unknown; jobs: unknown } }).clusterState;
    assert.deepEqual(state.settings, {});
    assert.deepEqual(state.jobs, {});
  } finally {
    db.close();
  }
  const node = await startNodeProcess(dataDir, { args: ['--cluster-name', result.clusterName] });
  try {
    const answer = await api(node.url, '/api/v1/admin/backups');
    assert.equal(answer.status, 200);
    const body = (await answer.json()) as { schedule: { enabled: boolean }; backups: unknown[] };
    assert.equal(body.schedule.enabled, false);
    assert.deepEqual(body.backups, []);
    assert.equal(node.child.exitCode, null, 'the restored node runs');
  } finally {
    await stop(node);
  }
  assert.equal(existsSync(join(tmp.dir, 'attacker')), false);

  const overLimit = { 'backup.schedule': { ...jobs['backup.schedule'], progress: 'x'.repeat(70_000) } };
  const tooMany = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`job${i}`, { claim: null, claimTerm: 1, version: 0, progress: null }]));
  for (const [what, state] of [
    ['settings', { settings }],
    ['a progress over the limit', { jobs: overLimit }],
    ['more jobs than the limit', { jobs: tooMany }],
    ['a malformed claim', { jobs: { 'backup.schedule': { ...jobs['backup.schedule'], claim: { owner: 5, term: 1 } } } }],
  ] as const) {
    const bad = await backupFromDataDir(sourceDir, dir, { mutateManifest: edited(state as Partial<BackupManifest['clusterState']>) });
    const target = join(tmp.dir, `clone-edited-${randomUUID()}`);
    await assert.rejects(restoreBackup({ file: bad.path, dataDir: target, as: 'clone', clusterSecret: secret }), (err: unknown) => {
      assert.ok(isConclaveError(err), String(err));
      assert.equal(err.code, 'BACKUP_CORRUPT', `${what}: ${err.message}`);
      return true;
    });
    assert.equal(existsSync(target), false, what);
  }
});
