import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { test } from 'node:test';

import { scheduledBackupFileName } from '../../src/backup/scheduleSlots.js';
import type { JsonValue } from '../../src/core/clusterJobs.js';
import type { JobRun } from '../../src/jobs/clusterJobs.js';
import { json, openTestNode, type TestNode } from '../helpers/app.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

const fast = { 'jobs.checkIntervalMs': 100 };

async function putSettings(node: TestNode, settings: Record<string, unknown>) {
  return node.request({ method: 'PUT', url: '/api/v1/cluster/settings', ...json({ settings }) });
}

interface BackupsAnswer {
  schedule: { enabled: boolean; directory: string; interval: string; keep: number; nextSlot: string | null };
  claim: { owner: string; ownerName: string; term: number } | null;
  lastSlot: string | null;
  lastOutcome: { slot: string; ok: boolean; error?: { code: string; message: string } } | null;
  lastFailure: { slot: string; ok: false; error: { code: string; message: string } } | null;
  backups: { id: string; slot: string; file: string; path: string; holder: string; holderName: string; index: number; bytes: number; contentDigest: string }[];
}
const backups = async (node: TestNode) => (await node.request({ method: 'GET', url: '/api/v1/admin/backups' })).json() as BackupsAnswer;
const scheduledFiles = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((f) => /^conclave-.+\.backup\.tar$/.test(f)).sort() : []);

test('dynamic cluster settings: known names only, each value checked, null removes, the same answer from GET', async (t) => {
  const node = await openTestNode(fast);
  t.after(() => node.close());
  for (const [settings, named] of [
    [{ 'backup.schedule.nope': 1 }, 'backup.schedule.nope'],
    [{ 'backup.schedule.directory': 'relative/dir' }, 'backup.schedule.directory'],
    [{ 'backup.schedule.interval': '90 minutes' }, 'backup.schedule.interval'],
    [{ 'backup.schedule.interval': '61 * * * *' }, 'backup.schedule.interval'],
    [{ 'backup.schedule.keep': 0 }, 'backup.schedule.keep'],
    [{ 'backup.schedule.keep': '3' }, 'backup.schedule.keep'],
  ] as const) {
    const answer = await putSettings(node, settings);
    assert.equal(answer.statusCode, 400, JSON.stringify(settings));
    assert.equal(answer.json().error.code, 'INVALID_REQUEST');
    assert.ok(answer.json().error.message.includes(named), answer.json().error.message);
    assert.equal(answer.json().error.setting, named);
  }
  assert.equal((await node.request({ method: 'PUT', url: '/api/v1/cluster/settings', ...json({ 'backup.schedule.keep': 3 }) })).statusCode, 400, 'the settings go under "settings"');
  const set = await putSettings(node, { 'backup.schedule.interval': ' 0 3 * * * ', 'backup.schedule.keep': 3 });
  assert.equal(set.statusCode, 200, set.body);
  assert.deepEqual(set.json().settings, { 'backup.schedule.interval': '0 3 * * *', 'backup.schedule.keep': 3 });
  assert.deepEqual(set.json().effective, { 'backup.schedule.directory': '', 'backup.schedule.interval': '0 3 * * *', 'backup.schedule.keep': 3 });
  assert.deepEqual((await node.request({ method: 'GET', url: '/api/v1/cluster/settings' })).json(), set.json());
  const removed = await putSettings(node, { 'backup.schedule.keep': null });
  assert.deepEqual(removed.json().settings, { 'backup.schedule.interval': '0 3 * * *' });
  assert.equal(removed.json().effective['backup.schedule.keep'], 7, 'the default again');
  const reader = await node.request({ method: 'GET', url: '/api/v1/cluster/settings', auth: null });
  assert.equal(reader.statusCode, 401);
});

test('the job mechanism: a job kind claims, runs and commits step by step; a step after its claim was taken over is refused', async (t) => {
  const node = await openTestNode(fast);
  t.after(() => node.close());
  const runtime = node.node.runtime;
  const count = (progress: JsonValue) => (typeof progress === 'number' ? progress : 0);
  node.node.clusterJobs.register({
    name: 'test.counter',
    due: ({ progress }) => count(progress) < 5,
    run: async (run: JobRun) => {
      while (count(run.progress()) < 5) await run.commit(count(run.progress()) + 1);
    },
  });
  const done = await waitFor('the counter to reach 5', () => (runtime.clusterState().jobs['test.counter']?.progress === 5 ? runtime.clusterState().jobs['test.counter'] : undefined));
  const self = runtime.self().id;
  assert.deepEqual(done.claim, { owner: self, term: runtime.softState().term });
  assert.equal(done.version, 5, 'one version per step, none twice');

  // A run whose claim is taken over (as by the master of a later term) between two steps: its next step fails with
  // MASTER_CHANGED and is not committed.
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let failure: unknown = null;
  node.node.clusterJobs.register({
    name: 'test.fenced',
    due: ({ progress }) => progress === null,
    run: async (run) => {
      await held;
      try {
        await run.commit('late step');
      } catch (err) {
        failure = err;
      }
    },
  });
  await waitFor('the fenced job to be claimed', () => runtime.clusterState().jobs['test.fenced']?.claim ?? undefined);
  runtime.proposeClusterChange({ type: 'jobClaimed', job: 'test.fenced', owner: 'another-node', term: runtime.softState().term + 1 });
  await waitFor('the claim to move', () => (runtime.clusterState().jobs['test.fenced']?.claim?.owner === 'another-node' ? true : undefined));
  release();
  await waitFor('the late step to be refused', () => (failure !== null ? true : undefined));
  assert.equal((failure as { code?: string }).code, 'MASTER_CHANGED');
  assert.deepEqual(runtime.clusterState().jobs['test.fenced'], { claim: { owner: 'another-node', term: runtime.softState().term + 1 }, claimTerm: runtime.softState().term + 1, progress: null, version: 0 });
});

test('scheduled backups on one node: one per slot, the keep newest recorded and on disk, failures recorded with their cause', async (t) => {
  const tmp = tempDir('conclave-scheduled-');
  const node = await openTestNode({ ...fast, 'backup.directoriesAllowed': tmp.dir });
  t.after(async () => {
    await node.close();
    tmp.cleanup();
  });
  const directory = join(tmp.dir, 'backups');
  mkdirSync(directory, { mode: 0o700 });
  await node.request({ method: 'PUT', url: '/api/v1/content/a', ...json({ type: 'page', properties: { title: 'A' } }) });
  assert.equal((await putSettings(node, { 'backup.schedule.directory': directory, 'backup.schedule.interval': '1s', 'backup.schedule.keep': 2 })).statusCode, 200);
  const self = node.node.runtime.self();

  // Four slots at least: two kept, the older ones deleted by their holder (this node).
  const seen = new Set<string>();
  const answer = await waitFor(
    'four scheduled backups',
    async () => {
      const a = await backups(node);
      for (const b of a.backups) seen.add(b.slot);
      return seen.size >= 4 && a.backups.length === 2 && scheduledFiles(directory).length === 2 ? a : undefined;
    },
    20_000,
  );
  assert.equal(answer.schedule.enabled, true);
  assert.deepEqual(answer.claim, { owner: self.id, ownerName: self.name, term: node.node.runtime.softState().term });
  assert.equal(answer.lastOutcome?.ok, true);
  assert.deepEqual(scheduledFiles(directory), answer.backups.map((b) => b.file).sort(), 'the files on disk are the records, no more');
  for (const b of answer.backups) {
    assert.equal(b.holder, self.id);
    assert.equal(b.path, join(directory, b.file));
    assert.equal(statSync(b.path).size, b.bytes);
    assert.match(b.contentDigest, /^[0-9a-f]{64}$/);
    assert.ok(b.index > 0);
    const uuid = node.node.runtime.clusterState().clusterUuid!;
    assert.equal(b.file, `conclave-conclave-${uuid.slice(0, 8)}-${b.slot.replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}.backup.tar`);
  }
  const slots = answer.backups.map((b) => Date.parse(b.slot));
  assert.ok(slots[0]! > slots[1]!, 'newest first');
  assert.equal(slots[0]! % 1000, 0, 'slots are whole seconds');

  // A directory that cannot be made (a file is in the way): recorded as the slot's failure, with the cause.
  const blocked = join(tmp.dir, 'not-a-directory');
  writeFileSync(blocked, 'x');
  await putSettings(node, { 'backup.schedule.directory': join(blocked, 'backups') });
  const failed = await waitFor('a recorded failure', async () => {
    const a = await backups(node);
    return a.lastOutcome?.ok === false ? a : undefined;
  });
  assert.ok(failed.lastFailure !== null && failed.lastFailure.error.message.length > 0, JSON.stringify(failed.lastFailure));
  assert.equal(failed.backups.length, 2, 'a failure drops nothing');
  assert.equal(scheduledFiles(directory).length, 2, 'and deletes nothing');

  // Back to a good directory: the next slot succeeds, the failure stays visible.
  await putSettings(node, { 'backup.schedule.directory': directory });
  const recovered = await waitFor('a success after the failure', async () => {
    const a = await backups(node);
    return a.lastOutcome?.ok === true && a.lastFailure !== null ? a : undefined;
  });
  assert.equal(recovered.backups.length, 2);

  // Directories this node does not allow: refused, recorded with the code, nothing written there.
  const outside = tempDir('conclave-not-allowed-');
  t.after(() => outside.cleanup());
  const link = join(tmp.dir, 'link');
  symlinkSync(directory, link);
  for (const [refused, why] of [
    [outside.dir, 'not allowed'],
    [join(tmp.dir, '..', basename(outside.dir)), 'not allowed once normalised'],
    [link, 'a symlink'],
    [join(tmp.dir, 'missing'), 'missing'],
  ] as const) {
    await putSettings(node, { 'backup.schedule.directory': refused });
    const answer = await waitFor(`a refusal of ${why}`, async () => {
      const a = await backups(node);
      return a.lastOutcome?.ok === false && a.lastOutcome.error?.message.includes(refused) === true ? a : undefined;
    });
    assert.equal(answer.lastOutcome?.error?.code, 'BACKUP_DIRECTORY_REFUSED', why);
    assert.equal(answer.backups.length, 2, why);
  }
  assert.deepEqual(readdirSync(outside.dir), []);
  assert.equal(existsSync(join(tmp.dir, 'missing')), false, 'a refused directory is not created');
  await putSettings(node, { 'backup.schedule.directory': '' });
});

test('a node allows no backup directory by default, nor one inside its data directory', async (t) => {
  const node = await openTestNode(fast);
  const inside = await openTestNode({ ...fast, 'backup.directoriesAllowed': '/' });
  t.after(async () => {
    await node.close();
    await inside.close();
  });
  for (const [n, directory] of [
    [node, join(node.dir, 'backups')],
    [inside, join(inside.dir, 'backups')],
  ] as const) {
    mkdirSync(directory, { mode: 0o700 });
    await putSettings(n, { 'backup.schedule.directory': directory, 'backup.schedule.interval': '1s' });
    const answer = await waitFor('a refusal', async () => {
      const a = await backups(n);
      return a.lastOutcome?.ok === false ? a : undefined;
    });
    assert.equal(answer.lastOutcome?.error?.code, 'BACKUP_DIRECTORY_REFUSED', answer.lastOutcome?.error?.message);
    assert.deepEqual(scheduledFiles(directory), []);
  }
});

test('a verifying backup of another cluster planted under the next slot\'s name is not recorded as this cluster\'s', async (t) => {
  const tmp = tempDir('conclave-planted-');
  const other = await openTestNode({ ...fast, 'backup.directoriesAllowed': tmp.dir });
  const node = await openTestNode({ ...fast, 'backup.directoriesAllowed': tmp.dir });
  t.after(async () => {
    await other.close();
    await node.close();
    tmp.cleanup();
  });
  // 366d: the slot due now stays the same for the whole test.
  const interval = '366d';
  const otherDir = join(tmp.dir, 'other');
  mkdirSync(otherDir, { mode: 0o700 });
  await putSettings(other, { 'backup.schedule.directory': otherDir, 'backup.schedule.interval': interval });
  const planted = (await waitFor('the other cluster\'s backup', async () => (await backups(other)).backups[0]))!;

  const directory = join(tmp.dir, 'shared');
  mkdirSync(directory, { mode: 0o700 });
  const slotMs = 366 * 86_400_000;
  const name = scheduledBackupFileName('conclave', node.node.runtime.clusterState().clusterUuid!, Math.floor(Date.now() / slotMs) * slotMs);
  copyFileSync(planted.path, join(directory, name));
  chmodSync(join(directory, name), 0o600);
  await putSettings(node, { 'backup.schedule.directory': directory, 'backup.schedule.interval': interval });
  const own = (await waitFor('this cluster\'s backup', async () => (await backups(node)).backups[0]))!;
  assert.equal(own.file, name);
  assert.notEqual(own.id, planted.id, 'the planted file was written over, not recorded');
  assert.equal(own.holder, node.node.runtime.self().id);
});
