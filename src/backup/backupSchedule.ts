import { join } from 'node:path';
import type { Logger } from 'pino';

import { backupKeepMax, dynamicSetting } from '../config/dynamicSettings.js';
import type { JsonValue } from '../core/clusterJobs.js';
import type { ClusterState } from '../core/clusterState.js';
import { ConclaveError, invariant } from '../errors/catalogue.js';
import type { JobKind, JobRun } from '../jobs/clusterJobs.js';
import type { BackupTaker, BackupWritten } from './backupTaker.js';
import { checkScheduleDirectory, type ScheduleDirectoryPolicy } from './scheduleDirectory.js';
import { dueSlot, parseScheduleInterval, scheduledBackupFileName, type ScheduleInterval } from './scheduleSlots.js';

/**
 * Scheduled backups, a cluster-exclusive job (src/jobs/clusterJobs.ts): the master of the time writes a backup of
 * itself for each due slot (scheduleSlots.ts) into `backup.schedule.directory`, under the slot's one file name, and
 * commits a record of it. The records in the job's progress are the list of backups cluster-wide (the directory may
 * be node-local: each record names its holder); the `keep` newest are kept, and the ones dropped go to `pruned`,
 * whose holders delete the files (backupPruner.ts) — only ever in the commit of a newer backup that verified.
 *
 * A failed backup is logged with its cause and recorded (`lastOutcome`, `lastFailure`); the same slot is tried again
 * after a back-off (retryDelayMs) until the next slot comes, which then takes its place.
 */
export const backupJobName = 'backup.schedule';

export interface BackupRecord {
  /** The backup's own id (its manifest's). */
  readonly id: string;
  /** The slot it was taken for (ISO 8601, UTC). */
  readonly slot: string;
  readonly file: string;
  /** Where the holder wrote it (the directory setting of the time, joined with the file name). */
  readonly path: string;
  /** The node whose disk (or mount) holds it: the master of the time. */
  readonly holder: string;
  readonly holderName: string;
  readonly index: number;
  readonly term: number;
  readonly createdAt: string;
  readonly bytes: number;
  readonly contentDigest: string;
}

export type BackupOutcome =
  | { readonly slot: string; readonly ok: true; readonly at: string; readonly file: string }
  | { readonly slot: string; readonly ok: false; readonly at: string; readonly error: { readonly code: string; readonly message: string } };

export interface ScheduleProgress {
  /** The last slot a backup was committed for (ISO 8601); null before the first. */
  readonly lastSlot: string | null;
  /** Oldest first, at most backup.schedule.keep. */
  readonly records: readonly BackupRecord[];
  readonly lastOutcome: BackupOutcome | null;
  /** The last failure, kept after later successes so that an operator sees it. */
  readonly lastFailure: Extract<BackupOutcome, { ok: false }> | null;
  /** Failures in a row of the current slot (the back-off grows with it); 0 after a success. */
  readonly failuresInARow: number;
  /** Slots that came and were never run (an outage longer than an interval), in all and at the last backup. */
  readonly skippedTotal: number;
  readonly lastSkipped: number;
  /** Files of records dropped by retention, for their holders to delete; the newest prunedMax kept. */
  readonly pruned: readonly { readonly holder: string; readonly path: string }[];
}

export const emptyScheduleProgress: ScheduleProgress = {
  lastSlot: null,
  records: [],
  lastOutcome: null,
  lastFailure: null,
  failuresInARow: 0,
  skippedTotal: 0,
  lastSkipped: 0,
  pruned: [],
};

/** Pruned files remembered for holders that were away when their file was dropped. */
export const prunedMax = 16;
export const errorMessageCharsMax = 500;
/** Back-off of a failed slot: 30 s, doubled per failure in a row, at most 15 min (the next slot comes first if sooner). */
const retryDelayMsMin = 30_000;
const retryDelayMsMax = 15 * 60_000;

export function retryDelayMs(failuresInARow: number): number {
  return Math.min(retryDelayMsMax, retryDelayMsMin * 2 ** Math.max(0, Math.min(failuresInARow - 1, 10)));
}

export interface ScheduleSettings {
  readonly directory: string;
  readonly interval: ScheduleInterval;
  readonly keep: number;
}

/** The schedule in force, or null when off (no directory). */
export function scheduleSettings(state: ClusterState): ScheduleSettings | null {
  const directory = dynamicSetting(state.settings, 'backup.schedule.directory') as string;
  if (directory === '') return null;
  const interval = parseScheduleInterval(dynamicSetting(state.settings, 'backup.schedule.interval') as string);
  if (typeof interval === 'string') return null;
  return { directory, interval, keep: dynamicSetting(state.settings, 'backup.schedule.keep') as number };
}

/**
 * Bounds of what a record read back from the progress may hold: more than a record this code writes ever does (see
 * progressCharsWorstCase), less than would let a progress from elsewhere (a backup's manifest edited by hand, a
 * release with other rules) make a reader build paths, log lines or answers of any size.
 */
export const recordTextCharsMax = 128;
export const recordPathCharsMax = 1024;

const boundedText = (value: unknown, max: number): value is string => typeof value === 'string' && value.length > 0 && value.length <= max;
/** A time as this code writes it (toISOString): what readers parse and do arithmetic with. */
const time = (value: unknown): value is string => boundedText(value, recordTextCharsMax) && Number.isFinite(Date.parse(value));
const count = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

function recordOf(raw: unknown): BackupRecord | null {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return null;
  const r = raw as Record<string, unknown>;
  if (!boundedText(r['id'], recordTextCharsMax) || !time(r['slot']) || !boundedText(r['file'], recordPathCharsMax) || !boundedText(r['path'], recordPathCharsMax)) return null;
  if (!boundedText(r['holder'], recordTextCharsMax) || !boundedText(r['holderName'], recordTextCharsMax) || !boundedText(r['createdAt'], recordTextCharsMax) || !boundedText(r['contentDigest'], recordTextCharsMax)) return null;
  if (!count(r['index']) || !count(r['term']) || !count(r['bytes'])) return null;
  return {
    id: r['id'],
    slot: r['slot'],
    file: r['file'],
    path: r['path'],
    holder: r['holder'],
    holderName: r['holderName'],
    index: r['index'],
    term: r['term'],
    createdAt: r['createdAt'],
    bytes: r['bytes'],
    contentDigest: r['contentDigest'],
  };
}

function prunedOf(raw: unknown): ScheduleProgress['pruned'][number] | null {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return null;
  const p = raw as Record<string, unknown>;
  return boundedText(p['holder'], recordTextCharsMax) && boundedText(p['path'], recordPathCharsMax) ? { holder: p['holder'], path: p['path'] } : null;
}

function outcomeOf(raw: unknown): BackupOutcome | null {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return null;
  const o = raw as Record<string, unknown>;
  if (!time(o['slot']) || !time(o['at'])) return null;
  if (o['ok'] === true) return boundedText(o['file'], recordPathCharsMax) ? { slot: o['slot'], ok: true, at: o['at'], file: o['file'] } : null;
  if (o['ok'] !== false || typeof o['error'] !== 'object' || o['error'] === null) return null;
  const error = o['error'] as Record<string, unknown>;
  if (!boundedText(error['code'], recordTextCharsMax) || typeof error['message'] !== 'string' || error['message'].length > errorMessageCharsMax) return null;
  return { slot: o['slot'], ok: false, at: o['at'], error: { code: error['code'], message: error['message'] } };
}

const listOf = <T>(raw: unknown, max: number, of: (item: unknown) => T | null): T[] =>
  Array.isArray(raw) ? raw.slice(-max).map(of).filter((item): item is T => item !== null) : [];

/**
 * The job's progress as committed, read leniently: anything unreadable counts as no progress yet, and each record,
 * pruned entry or outcome that is not of the shape this code writes is left out — the progress may come from a
 * backup's manifest (which its content digest does not cover), and the pruner, the job and the API read it.
 */
export function scheduleProgressOf(progress: JsonValue): ScheduleProgress {
  if (typeof progress !== 'object' || progress === null || Array.isArray(progress)) return emptyScheduleProgress;
  const p = progress as Record<string, unknown>;
  const lastFailure = outcomeOf(p['lastFailure']);
  return {
    lastSlot: time(p['lastSlot']) ? p['lastSlot'] : null,
    records: listOf(p['records'], backupKeepMax, recordOf),
    lastOutcome: outcomeOf(p['lastOutcome']),
    lastFailure: lastFailure !== null && !lastFailure.ok ? lastFailure : null,
    failuresInARow: count(p['failuresInARow']) ? p['failuresInARow'] : 0,
    skippedTotal: count(p['skippedTotal']) ? p['skippedTotal'] : 0,
    lastSkipped: count(p['lastSkipped']) ? p['lastSkipped'] : 0,
    pruned: listOf(p['pruned'], prunedMax, prunedOf),
  };
}

const iso = (ms: number) => new Date(ms).toISOString();
const ms = (text: string | null) => (text === null ? null : Date.parse(text));

/** The slot to run at `now`, or null: none due, or a failed slot still backing off. */
export function slotToRun(settings: ScheduleSettings, progress: ScheduleProgress, now: number): { slot: number; skipped: number } | null {
  const due = dueSlot(settings.interval, ms(progress.lastSlot), now);
  if (due === null) return null;
  const last = progress.lastOutcome;
  if (last !== null && !last.ok && last.slot === iso(due.slot) && now < Date.parse(last.at) + retryDelayMs(progress.failuresInARow)) return null;
  return due;
}

export interface BackupScheduleOptions {
  readonly taker: BackupTaker;
  readonly clusterName: string;
  /**
   * A file already there for the slot (a master that wrote it and was replaced before committing its record, the
   * directory being shared) is recorded instead of written again when this says it verifies; null when there is no
   * such file or it does not verify (it is then written again: the rename replaces it whole).
   */
  readonly verifyExisting?: (path: string, signal: AbortSignal) => Promise<BackupWritten | null>;
  /** Where this node may write scheduled backups (scheduleDirectory.ts): any other directory is a recorded failure. */
  readonly directories: ScheduleDirectoryPolicy;
  readonly log: Logger;
}

export class BackupSchedule implements JobKind {
  readonly name = backupJobName;

  constructor(private readonly options: BackupScheduleOptions) {}

  due(input: { readonly progress: JsonValue; readonly state: ClusterState; readonly now: number }): boolean {
    const settings = scheduleSettings(input.state);
    return settings !== null && slotToRun(settings, scheduleProgressOf(input.progress), input.now) !== null;
  }

  async run(run: JobRun): Promise<void> {
    const state = run.clusterState();
    const settings = scheduleSettings(state);
    const progress = scheduleProgressOf(run.progress());
    if (settings === null) return;
    const due = slotToRun(settings, progress, run.now());
    if (due === null) return;
    const slot = iso(due.slot);
    invariant(state.clusterUuid !== null, 'a scheduled backup before the cluster is formed');
    const file = scheduledBackupFileName(this.options.clusterName, state.clusterUuid, due.slot);
    const log = this.options.log.child({ job: backupJobName, slot, file });
    if (due.skipped > 0) log.warn({ skipped: due.skipped, lastSlot: progress.lastSlot }, 'scheduled backup slots were missed (the cluster was down or backups failed); only the latest runs');
    let written: BackupWritten;
    try {
      checkScheduleDirectory(settings.directory, this.options.directories);
      const existing = await this.options.verifyExisting?.(join(settings.directory, file), run.signal);
      written = existing ?? (await this.options.taker.writeToDirectory(settings.directory, file, run.signal));
      if (existing !== null && existing !== undefined) log.info('the backup of this slot was already written and verifies: recorded, not written again');
    } catch (err) {
      if (run.signal.aborted) throw err;
      const error = err instanceof ConclaveError ? { code: err.code, message: err.message } : { code: 'INTERNAL', message: String((err as Error).message ?? err) };
      const outcome: BackupOutcome = { slot, ok: false, at: iso(run.now()), error: { code: error.code, message: error.message.slice(0, errorMessageCharsMax) } };
      const failures = progress.lastOutcome !== null && !progress.lastOutcome.ok && progress.lastOutcome.slot === slot ? progress.failuresInARow + 1 : 1;
      log.error({ err, failuresInARow: failures, retryInMs: retryDelayMs(failures) }, 'the scheduled backup failed');
      await run.commit(toJson({ ...progress, lastOutcome: outcome, lastFailure: outcome, failuresInARow: failures }));
      return;
    }
    const self = state.nodes.find((n) => n.id === run.owner);
    const record: BackupRecord = {
      id: written.manifest.id,
      slot,
      file,
      path: written.path,
      holder: run.owner,
      holderName: self?.name ?? run.owner,
      index: written.manifest.index,
      term: written.manifest.term,
      createdAt: written.manifest.createdAt,
      bytes: written.bytes,
      contentDigest: written.manifest.contentDigest.digest,
    };
    const all = [...progress.records.filter((r) => r.slot !== slot), record].sort((a, b) => (a.slot < b.slot ? -1 : a.slot > b.slot ? 1 : 0));
    const kept = all.slice(-settings.keep);
    const keptFiles = new Set(kept.map((r) => `${r.holder} ${r.path}`));
    const dropped = all.slice(0, all.length - kept.length).filter((r) => !keptFiles.has(`${r.holder} ${r.path}`));
    const pruned = [...progress.pruned.filter((p) => !keptFiles.has(`${p.holder} ${p.path}`)), ...dropped.map((r) => ({ holder: r.holder, path: r.path }))].slice(-prunedMax);
    await run.commit(
      toJson({
        ...progress,
        lastSlot: slot,
        records: kept,
        lastOutcome: { slot, ok: true, at: iso(run.now()), file },
        failuresInARow: 0,
        skippedTotal: progress.skippedTotal + due.skipped,
        lastSkipped: due.skipped,
        pruned,
      }),
    );
    log.info({ index: record.index, bytes: record.bytes, kept: kept.length, dropped: dropped.length }, 'scheduled backup written and recorded');
  }
}

function toJson(progress: ScheduleProgress): JsonValue {
  return progress as unknown as JsonValue;
}
