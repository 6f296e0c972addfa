import { ConclaveError } from '../errors/catalogue.js';
import type { ChangeOp } from './changes.js';
import type { ContentNode } from './model.js';

/**
 * Content history: every version of a node, kept by apply() in the transaction of the entry that made it, so every
 * node of the cluster holds the same versions. A version is the node's whole state as that change left it; a
 * deleted node's last version is a `deleted` one holding the state it had, which a restore brings back.
 *
 * History starts once (a startHistory entry, or the bootstrap of a repository made by a release that keeps it):
 * a member of an older release would apply the same writes without keeping versions, so the master starts it only
 * when every member runs a release that does (src/history/historyKeeper.ts).
 */

/** What made a version: a feed op, a restore of an earlier version, or null for one made before history started. */
export type VersionOp = ChangeOp | 'restored';

/** What made a version, as a write tells the store. */
export interface VersionMade {
  readonly op: VersionOp;
  /** For `restored`: the version whose state was made current again. */
  readonly restoredFrom?: number;
}

/** One version as a listing shows it. */
export interface VersionSummary {
  readonly id: string;
  readonly version: number;
  readonly op: VersionOp | null;
  /** The journal index of the entry that made it (null before history started). */
  readonly index: number | null;
  /** For `restored`: the version whose state was made current again. */
  readonly restoredFrom: number | null;
  readonly path: string;
  readonly type: string;
  /** When and by whom the version was made (for `deleted`: the delete's time and author). */
  readonly at: string;
  readonly by: string;
  /** When a newer version (or the delete) replaced it; null while it is the current one. */
  readonly supersededAt: string | null;
}

/** A version with the node's state at it. */
export interface NodeVersion extends VersionSummary {
  readonly node: ContentNode;
}

/** The history a repository keeps, set by the entries that start it and prune it. */
export interface HistoryRetention {
  /** Versions kept per node, the current one included; older ones go when the node changes again. */
  readonly versionsPerNodeMax: number;
}

/** The fewest versions a node may keep: its current one and the one before, so a change can always be undone. */
export const versionsPerNodeMin = 2;

/** A version that was never made, or that the retention dropped. */
export function versionNotFound(id: string, version: number): ConclaveError {
  return new ConclaveError('VERSION_NOT_FOUND', `Node ${id} has no version ${version} (never made, or dropped by the history's retention).`, { id, version });
}

/**
 * Refuses a restore while history has not started: checked where the restore is proposed (the route, and the master
 * for a forwarded one) as well as at apply. A member of a release before history cannot apply a restore entry at
 * all and would stop at it; once history has started no such member exists, nor can one join.
 */
export function requireHistory(retention: HistoryRetention | undefined): void {
  if (retention === undefined) {
    throw new ConclaveError('HISTORY_NOT_STARTED', 'This repository keeps no history yet: every member must run a release that keeps it (0.4.0 or newer).');
  }
}
