import { lastFireAtOrBefore, nextFireAfter, parseCron, type CronExpression } from '../jobs/cronExpression.js';

/**
 * The slots of scheduled backups: the instants a backup is due at. For an interval (`15m`, `1h`, `1d`) the slots are
 * its multiples since the Unix epoch (so `1d` is every midnight UTC, `1h` every hour on the hour); for a cron
 * expression, its fire times (UTC). Either way every node computes the same slots from the same setting, so a new
 * master continues the series of the old one.
 *
 * A slot is due once it has come and is later than the last slot committed; when several have come since (the
 * cluster was down, or the job failed for a while), only the latest is due and the others are counted as skipped —
 * a backup of an hour ago is worth nothing once one of now can be taken.
 *
 * Pure: `now` is given by the caller, in epoch milliseconds.
 */
export type ScheduleInterval =
  | { readonly kind: 'every'; readonly ms: number; readonly source: string }
  | { readonly kind: 'cron'; readonly expression: CronExpression; readonly source: string };

const unitMs = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
export const intervalMsMin = 1000;
export const intervalMsMax = 366 * unitMs.d;
/** Skipped slots are counted up to this many (a cron of every minute over a month-long outage need not be walked). */
export const skippedCountMax = 10_000;

/** A duration (`30s`, `15m`, `1h`, `1d`: one unit, 1 s to 366 d) or a five-field cron expression; else what is wrong. */
export function parseScheduleInterval(text: string): ScheduleInterval | string {
  const duration = /^(\d{1,9})([smhd])$/.exec(text.trim());
  if (duration !== null) {
    const ms = Number(duration[1]) * unitMs[duration[2] as keyof typeof unitMs];
    if (ms < intervalMsMin || ms > intervalMsMax) return `the interval ${text} is not between 1s and 366d`;
    return { kind: 'every', ms, source: text.trim() };
  }
  if (/^\d+\s*[a-zA-Z]*$/.test(text.trim())) return `the interval ${JSON.stringify(text)} is not a number followed by one of s, m, h, d (for example 15m, 1h, 1d)`;
  const cron = parseCron(text);
  if (typeof cron === 'string') return `${JSON.stringify(text)} is neither a duration (15m, 1h, 1d) nor a valid cron expression: ${cron}`;
  return { kind: 'cron', expression: cron, source: cron.source };
}

/** The latest slot at or before `time` (null: none within the cron search bound). */
export function latestSlotAtOrBefore(interval: ScheduleInterval, time: number): number | null {
  if (interval.kind === 'every') return Math.floor(time / interval.ms) * interval.ms;
  return lastFireAtOrBefore(interval.expression, time);
}

/** The first slot strictly after `time`. */
export function nextSlotAfter(interval: ScheduleInterval, time: number): number | null {
  if (interval.kind === 'every') return (Math.floor(time / interval.ms) + 1) * interval.ms;
  return nextFireAfter(interval.expression, time);
}

export interface DueSlot {
  readonly slot: number;
  /** Slots after the last committed one and before this one, none of which will run (at most skippedCountMax). */
  readonly skipped: number;
}

/** The slot due at `now` given the last slot committed (null: none yet), or null when none is. */
export function dueSlot(interval: ScheduleInterval, lastSlot: number | null, now: number): DueSlot | null {
  const slot = latestSlotAtOrBefore(interval, now);
  if (slot === null || (lastSlot !== null && slot <= lastSlot)) return null;
  return { slot, skipped: lastSlot === null ? 0 : slotsBetween(interval, lastSlot, slot) };
}

/** How many slots lie strictly between `after` and `before` (at most skippedCountMax). */
export function slotsBetween(interval: ScheduleInterval, after: number, before: number): number {
  if (before <= after) return 0;
  if (interval.kind === 'every') {
    const first = Math.floor(after / interval.ms) + 1;
    const last = Math.ceil(before / interval.ms) - 1;
    return Math.min(skippedCountMax, Math.max(0, last - first + 1));
  }
  let count = 0;
  let t: number | null = after;
  while (count < skippedCountMax) {
    t = nextFireAfter(interval.expression, t);
    if (t === null || t >= before) break;
    count++;
  }
  return count;
}

/** `2024-05-01T12:00:00.000Z` → `20240501T120000Z`: sorts by time and is safe in a file name. */
export function slotStamp(slot: number): string {
  return new Date(slot).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

/**
 * The one file name of a slot's backup: a slot is never written under two names. The cluster UUID's first eight
 * digits keep two clusters of one name apart in one directory (a cluster restored from a backup for a drill, beside
 * its source): neither overwrites nor prunes the other's files.
 */
export function scheduledBackupFileName(clusterName: string, clusterUuid: string, slot: number): string {
  return `conclave-${clusterName}-${clusterUuid.slice(0, 8)}-${slotStamp(slot)}.backup.tar`;
}
