import { invariant } from '../errors/catalogue.js';

/**
 * When a node snapshots its state machine and compacts its journal, in production (ClusterRuntime) and under
 * simulation (test/sim/simNode.ts) alike.
 *
 * Once `compactionEntriesMin` applied entries are above the latest snapshot, a copy of the state machine is made
 * (production writes a file off the event loop while the node goes on; the simulator copies at once); it holds some
 * applied index F. Once `journalRetainEntries` more entries are applied past F, the node compacts at F: the
 * coordinator and the journal drop everything up to F, and the older copy goes. So the journal keeps between
 * journalRetainEntries and about compactionEntriesMin + journalRetainEntries entries: a follower a little behind is
 * sent entries, not a whole snapshot.
 *
 * A copy that fails is tried again after `copyRetryDelayMs` (a full disk must not make the node loop on it); a
 * snapshot installed meanwhile makes a pending copy at or below it moot; a latest snapshot whose copy is missing (a
 * data directory copied without its file) cannot be served to a follower, so it is replaced as soon as anything is
 * applied past it.
 */

/** A copy of the state machine as of one applied index. */
export interface StateCopy {
  readonly index: number;
}

/** What compaction works on: the node's copies, its coordinator and its journal. */
export interface CompactionStorage<C extends StateCopy> {
  /** The snapshot the journal starts after (0: never compacted). */
  latestSnapshotIndex(): number;
  /** Whether the copy of the snapshot at `index` is at hand. */
  hasCopy(index: number): boolean;
  /**
   * Starts a copy of the state machine as of its applied index; calls `done` or `failed` exactly once, now or later,
   * unless the returned abort was called first.
   */
  startCopy(done: (copy: C) => void, failed: (err: unknown) => void): () => void;
  /** A finished copy newer than the latest snapshot: kept until compacted at. */
  adopt(copy: C): void;
  /** A finished copy that is not needed (an install overtook it, or the node closed). */
  discard(copy: C): void;
  /**
   * Compacts the coordinator and the journal at `copy`. May leave the disk behind the coordinator when the disk
   * refuses (it keeps both copies then: a restart restores the older snapshot and the entries after it).
   */
  compactAt(copy: C): void;
  /** Keeps the copy of the snapshot at `index` and drops every other. */
  keepOnly(index: number): void;
}

export interface CompactionLimits {
  readonly compactionEntriesMin: number;
  readonly journalRetainEntries: number;
  readonly copyRetryDelayMs: number;
}

export class Compaction<C extends StateCopy> {
  private pending: C | null = null;
  private abortCopy: (() => void) | null = null;
  private copying = false;
  private retryAtMs = Number.NEGATIVE_INFINITY;
  private checkedIndex = -1;
  private copyMissing = false;
  private closed = false;

  constructor(
    private readonly storage: CompactionStorage<C>,
    private readonly limits: CompactionLimits,
    private readonly nowMs: () => number,
    /** A copy was adopted: the owner should call maybeCompact again once more is applied (or now). */
    private readonly copied: () => void,
  ) {
    invariant(Number.isInteger(limits.compactionEntriesMin) && limits.compactionEntriesMin >= 1, `compactionEntriesMin ${limits.compactionEntriesMin} is not a positive integer`);
    invariant(Number.isInteger(limits.journalRetainEntries) && limits.journalRetainEntries >= 0, `journalRetainEntries ${limits.journalRetainEntries} is not a count`);
    invariant(limits.copyRetryDelayMs >= 0, `copyRetryDelayMs ${limits.copyRetryDelayMs} is negative`);
  }

  /** The copy waiting for journalRetainEntries more applied entries, if any. */
  get pendingCopy(): C | null {
    return this.pending;
  }

  /** After the node applied up to `appliedIndex` with a writable disk: makes a copy when due, compacts when due. */
  maybeCompact(appliedIndex: number): void {
    if (this.closed) return;
    const latest = this.storage.latestSnapshotIndex();
    const pending = this.pending;
    if (pending !== null) {
      invariant(pending.index <= appliedIndex, `a copy at ${pending.index} beyond the applied index ${appliedIndex}`);
      if (pending.index <= latest) {
        this.pending = null;
        this.storage.keepOnly(latest);
      } else if (appliedIndex - pending.index >= this.limits.journalRetainEntries) {
        this.pending = null;
        this.storage.compactAt(pending);
      }
      return;
    }
    if (this.copying || this.nowMs() < this.retryAtMs) return;
    if (this.checkedIndex !== latest) {
      this.checkedIndex = latest;
      this.copyMissing = latest > 0 && !this.storage.hasCopy(latest);
    }
    const due = appliedIndex - latest >= this.limits.compactionEntriesMin || (this.copyMissing && appliedIndex > latest);
    if (due) this.startCopy();
  }

  /** A snapshot was installed at `index`: a pending copy at or below it is moot. */
  installed(index: number): void {
    if (this.pending !== null && this.pending.index <= index) this.pending = null;
  }

  /** The node stops: a copy under way is abandoned, one that finishes anyway is discarded. */
  close(): void {
    this.closed = true;
    this.abortCopy?.();
  }

  private startCopy(): void {
    this.copying = true;
    let settled = false;
    const settle = (): boolean => {
      invariant(!settled, 'a copy settled twice');
      settled = true;
      this.copying = false;
      this.abortCopy = null;
      return !this.closed;
    };
    const abort = this.storage.startCopy(
      (copy) => {
        if (!settle() || copy.index <= this.storage.latestSnapshotIndex()) return this.storage.discard(copy);
        this.storage.adopt(copy);
        this.pending = copy;
        this.copied();
      },
      () => {
        if (settle()) this.retryAtMs = this.nowMs() + this.limits.copyRetryDelayMs;
      },
    );
    if (!settled) this.abortCopy = abort;
  }
}
