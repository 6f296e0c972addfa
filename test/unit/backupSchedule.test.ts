import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';

import { BackupPruner } from '../../src/backup/backupPruner.js';
import { backupJobName, errorMessageCharsMax, prunedMax, scheduleProgressOf, type BackupRecord, type ScheduleProgress } from '../../src/backup/backupSchedule.js';
import { scheduledBackupFileName } from '../../src/backup/scheduleSlots.js';
import { backupDirectoryCharsMax, backupKeepMax, checkSettingsUpdate } from '../../src/config/dynamicSettings.js';
import { jobProgressCharsMax, type JsonValue } from '../../src/core/clusterJobs.js';
import { emptyClusterState, type ClusterState } from '../../src/core/clusterState.js';

const uuid = '01234567-89ab-4def-8123-456789abcdef';

test('the longest progress the scheduled backup job can commit fits the job progress limit (else every commit, retention included, is refused)', () => {
  // The worst case of every bound: the longest directory the setting takes, of characters JSON doubles ("), the
  // longest cluster name, the largest numbers, an error message of characters JSON writes as \u00XX.
  const directory = `/${'"'.repeat(backupDirectoryCharsMax - 1)}`;
  assert.deepEqual(checkSettingsUpdate({ 'backup.schedule.directory': directory, 'backup.schedule.keep': backupKeepMax }), {
    'backup.schedule.directory': directory,
    'backup.schedule.keep': backupKeepMax,
  });
  assert.throws(() => checkSettingsUpdate({ 'backup.schedule.directory': `/${'x'.repeat(backupDirectoryCharsMax)}` }));
  assert.throws(() => checkSettingsUpdate({ 'backup.schedule.directory': '/a\u0001b' }));
  assert.throws(() => checkSettingsUpdate({ 'backup.schedule.keep': backupKeepMax + 1 }));
  const slot = new Date(8.64e15).toISOString(); // the latest date there is: the longest ISO text
  const file = scheduledBackupFileName('c'.repeat(64), uuid, 8.64e15);
  const big = Number.MAX_SAFE_INTEGER;
  const record: BackupRecord = {
    id: uuid,
    slot,
    file,
    path: `${directory}/${file}`,
    holder: uuid, // the master's own node id (a UUID) and its name (node.name: at most 64 plain characters)
    holderName: 'n'.repeat(64),
    index: big,
    term: big,
    createdAt: slot,
    bytes: big,
    contentDigest: 'f'.repeat(64),
  };
  const failure = { slot, ok: false as const, at: slot, error: { code: 'BACKUP_DIRECTORY_REFUSED_AND_SOME', message: '\u0001'.repeat(errorMessageCharsMax) } };
  const worst: ScheduleProgress = {
    lastSlot: slot,
    records: Array.from({ length: backupKeepMax }, () => record),
    lastOutcome: failure,
    lastFailure: failure,
    failuresInARow: big,
    skippedTotal: big,
    lastSkipped: big,
    pruned: Array.from({ length: prunedMax }, () => ({ holder: uuid, path: record.path })),
  };
  const chars = JSON.stringify(worst).length;
  assert.ok(chars <= jobProgressCharsMax, `the worst case takes ${chars} characters, over the ${jobProgressCharsMax} a job may commit`);
  assert.deepEqual(scheduleProgressOf(worst as unknown as JsonValue), worst, 'and a reader takes it whole');
});

test('a progress read back keeps only records, pruned entries and outcomes of the shape the job writes', () => {
  const slot = '2024-05-01T00:00:00.000Z';
  const good = { id: uuid, slot, file: 'conclave-a.backup.tar', path: '/b/conclave-a.backup.tar', holder: uuid, holderName: 'n1', index: 5, term: 1, createdAt: slot, bytes: 10, contentDigest: 'f'.repeat(64) };
  const progress = scheduleProgressOf({
    lastSlot: 'yesterday',
    records: [null, 5, 'x', [], good, { ...good, path: 7 }, { ...good, holder: 'h'.repeat(10_000) }, { ...good, bytes: -1 }, { ...good, slot: 'soon' }, { ...good, index: '5' }],
    pruned: [null, { holder: uuid }, { holder: uuid, path: ['x'] }, { holder: uuid, path: '/b/old.backup.tar' }],
    lastOutcome: { slot, ok: false, at: 'never', error: { code: 'X', message: 'y' } },
    lastFailure: { slot, ok: false, at: slot, error: null },
    failuresInARow: -3,
    skippedTotal: 'many',
    lastSkipped: 1.5,
  });
  assert.deepEqual(progress, {
    lastSlot: null,
    records: [good],
    pruned: [{ holder: uuid, path: '/b/old.backup.tar' }],
    lastOutcome: null,
    lastFailure: null,
    failuresInARow: 0,
    skippedTotal: 0,
    lastSkipped: 0,
  });
});

test('the pruner never rejects on a malformed progress (a manifest edited by hand must not stop a restored node)', async () => {
  const self = uuid;
  let state: ClusterState = emptyClusterState;
  const listeners: (() => void)[] = [];
  const runtime = { clusterState: () => state, self: () => ({ id: self }), onChange: (l: () => void) => (listeners.push(l), () => undefined) };
  const pruner = new BackupPruner(runtime, pino({ level: 'silent' }), { allowed: ['/b'], dataDir: '/data' });
  for (const progress of [{ records: [null], pruned: [] }, { records: [], pruned: [null, 5] }, { records: 'x', pruned: [{ holder: self, path: 5 }] }] as JsonValue[]) {
    state = { ...state, jobs: { [backupJobName]: { claim: null, claimTerm: 1, progress, version: 1 } } };
    assert.deepEqual(await pruner.prune(), []);
  }
});
