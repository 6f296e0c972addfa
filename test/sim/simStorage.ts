import type { CoordinatorSnapshotData } from '../../src/core/clusterCoordinator.js';
import type { CoordinatorRestoredState } from '../../src/core/clusterCoordinator.js';
import type { Entry, HardState, Snapshot } from '../../src/core/types.js';
import { KvStateMachine, type KvResult, type KvSnapshot } from './kvStateMachine.js';

/**
 * A node's disk, in memory, with crash semantics: what is here is exactly what the runtime wrote from the Ready
 * records (snapshot; hard state; journal, truncated from entries[0].index then appended) plus the state machine,
 * which writes its applied index with its contents, and the latest snapshot with the journal compacted below it.
 *
 * A write is not durable until `sync()`: a crash (`loseUnsynced`) takes back, newest first, everything written since
 * the last sync — as SQLite's WAL loses the transactions committed after the last fsync (every crash is taken for a
 * power loss). The simulated node syncs as the runtime does: in the same step as it writes a Ready that
 * `readyNeedsSync` (src/node/readyLoop.ts), not for one that only applies entries, which becomes durable with the
 * next sync or is lost whole by a crash. A restart rebuilds a coordinator from `restoredState()` alone.
 */
export interface PersistOutcome {
  /** A snapshot was installed first (the journal was dropped, the state machine replaced). */
  readonly installed: Snapshot | null;
  /** The first index written, or 0 when no entries were written. */
  readonly firstIndex: number;
  /** The durable entries that were at firstIndex and after before the write (overwritten or cut off). */
  readonly replaced: readonly Entry[];
}

const initialHardState: HardState = { term: 0, votedFor: null, commitIndex: 0 };

export class SimStorage {
  private durableHardState: HardState = initialHardState;
  private durableSnapshot: Snapshot | null = null;
  private durableBootstrapView: readonly string[] = [];
  /** The journal after the snapshot: index i at position i - snapshotIndex - 1. */
  private durableJournal: Entry[] = [];
  /** Each apply() is one atomic step (contents and applied index together). */
  readonly stateMachine = new KvStateMachine();
  /** What was written since the last sync, oldest first, as how to take each change back. */
  private readonly unsynced: Array<() => void> = [];
  /**
   * How many of those are what a message may vouch for, or a restart could not rebuild (readyNeedsSync): a snapshot,
   * journal entries, a term or vote, the bootstrap view. The rest are applies and commit indexes.
   */
  private unsyncedVouched = 0;
  /** Journal writes among them (a master's appends may leave before these are synced: appendsMayLeaveEarly). */
  private unsyncedEntryWrites = 0;
  /**
   * What the last sync made durable, as far as the journal goes: the snapshot index then, and the journal array
   * then — an install or a compaction puts a new array in its place and leaves that one as it was; journal writes
   * change it in place from `unsyncedJournalFrom` on (Infinity: not changed since).
   */
  private syncedSnapshotIndex = 0;
  private syncedJournal: readonly Entry[] = this.durableJournal;
  private unsyncedJournalFrom = Infinity;
  /** The term of the hard state the last sync made durable. */
  private syncedTerm = 0;
  /**
   * The snapshot copies the node holds apart from its database (the runtime's snapshot files, durable once made):
   * what it sends when a full disk kept its journal uncompacted.
   */
  private readonly snapshotCopies = new Set<number>();

  /** Mutation check appliedIndexApart: the applied index is durable at once, apart from the content it covers. */
  private readonly appliedIndexApart: boolean;

  constructor(options: { readonly appliedIndexApart?: boolean } = {}) {
    this.appliedIndexApart = options.appliedIndexApart === true;
  }
  /** Told of every sync (the invariant checker: what this node wrote is now durable). */
  syncListener: (() => void) | null = null;
  /** How many fsyncs this disk has seen, for statistics. */
  syncs = 0;
  /** Out of space (a fault): see `refuses`. */
  full = false;
  /**
   * Nearly out of space (transcripts): journal writes fit, applying entries does not — a Ready that applies anything
   * is refused whole, so the node stores entries and acknowledges them but applies none.
   */
  nearlyFull = false;

  get hardState(): HardState {
    return this.durableHardState;
  }

  get snapshot(): Snapshot | null {
    return this.durableSnapshot;
  }

  /** The journal starts after this index (0 when never compacted). */
  get snapshotIndex(): number {
    return this.durableSnapshot?.index ?? 0;
  }

  /** The retained journal, oldest first. Read-only for everyone but this class. */
  get journal(): readonly Entry[] {
    return this.durableJournal;
  }

  entryAt(index: number): Entry | undefined {
    return index > this.snapshotIndex ? this.durableJournal[index - this.snapshotIndex - 1] : undefined;
  }

  /** The term at `index`: from the journal, or the snapshot's at its own index; undefined when unknown. */
  termAt(index: number): number | undefined {
    if (index === 0) return 0;
    if (index === this.snapshotIndex) return this.durableSnapshot!.term;
    return this.entryAt(index)?.term;
  }

  get lastIndex(): number {
    return this.snapshotIndex + this.durableJournal.length;
  }

  /**
   * Whether a full disk refuses a Ready. The runtime stores a Ready's journal entries and applies its committed
   * entries in one SQLite transaction, which a full disk rolls back whole; a Ready that writes only the hard state
   * gets through (SQLite reuses free pages: a full node still votes, follows a new term and answers heartbeats,
   * which is the case where a master waiting for it is easy to get wrong).
   */
  refuses(ready: { readonly snapshot?: Snapshot; readonly entries: readonly Entry[]; readonly committed: readonly Entry[] }): boolean {
    if (this.nearlyFull && (ready.snapshot !== undefined || ready.committed.length > 0)) return true;
    return this.full && (ready.snapshot !== undefined || ready.entries.length > 0 || ready.committed.length > 0);
  }

  /** Step 1 of the Ready contract: written, durable at the next sync(). */
  persist(snapshot: Snapshot | undefined, hardState: HardState | undefined, entries: readonly Entry[]): PersistOutcome {
    let installed: Snapshot | null = null;
    let outcome: PersistOutcome = { installed, firstIndex: 0, replaced: [] };
    if (snapshot !== undefined) {
      // Installed as one atomic step: state machine, snapshot, and an empty journal. What was after the
      // snapshot counts as replaced (by whatever `entries` writes there again).
      const after = this.durableJournal.filter((e) => e.index > snapshot.index);
      const [previousSnapshot, previousJournal, previousState] = [this.durableSnapshot, this.durableJournal, this.stateMachine.exportSnapshot()];
      this.unsyncedVouched++;
      this.unsynced.push(() => {
        this.durableSnapshot = previousSnapshot;
        this.durableJournal = previousJournal;
        this.stateMachine.restore(previousState);
      });
      this.stateMachine.restore((snapshot.data as CoordinatorSnapshotData).stateMachine as KvSnapshot);
      this.durableSnapshot = snapshot;
      this.durableJournal = [];
      installed = snapshot;
      outcome = { installed, firstIndex: snapshot.index + 1, replaced: after };
    }
    if (hardState !== undefined) {
      const previous = this.durableHardState;
      if (hardState.term !== previous.term || hardState.votedFor !== previous.votedFor) this.unsyncedVouched++;
      this.unsynced.push(() => (this.durableHardState = previous));
      this.durableHardState = hardState;
    }
    if (entries.length > 0) {
      const firstIndex = entries[0]!.index;
      if (firstIndex <= this.snapshotIndex || firstIndex > this.lastIndex + 1) {
        throw new Error(`persisting entries from ${firstIndex} onto a journal of ${this.snapshotIndex + 1}..${this.lastIndex}: a gap or a compacted index`);
      }
      entries.forEach((e, i) => {
        if (e.index !== firstIndex + i) throw new Error(`Ready entries are not consecutive at ${e.index}`);
      });
      const keep = firstIndex - this.snapshotIndex - 1;
      const journal = this.durableJournal;
      const replaced = journal.slice(keep);
      this.unsyncedEntryWrites++;
      if (journal === this.syncedJournal) this.unsyncedJournalFrom = Math.min(this.unsyncedJournalFrom, firstIndex);
      this.unsynced.push(() => {
        journal.length = keep;
        for (const e of replaced) journal.push(e);
      });
      journal.length = keep;
      for (const e of entries) journal.push(e);
      // After an install the entries start right after the snapshot, and what the install dropped is replaced.
      outcome = installed !== null ? { installed, firstIndex: installed.index + 1, replaced: outcome.replaced } : { installed, firstIndex, replaced };
    }
    return outcome;
  }

  /** Applies a committed entry to the state machine: written, durable at the next sync(). */
  apply(entry: Entry): KvResult | null {
    const { result, undo } = this.stateMachine.applyUndoable(entry, this.appliedIndexApart);
    this.unsynced.push(undo);
    return result;
  }

  /** Stores a snapshot the node took of its own state, and drops the journal up to it (one atomic step). */
  saveSnapshot(snapshot: Snapshot): void {
    if (snapshot.index > this.stateMachine.appliedIndex) throw new Error(`snapshot at ${snapshot.index} beyond the applied ${this.stateMachine.appliedIndex}`);
    const [previousSnapshot, previousJournal] = [this.durableSnapshot, this.durableJournal];
    this.unsyncedVouched++;
    this.unsynced.push(() => {
      this.durableSnapshot = previousSnapshot;
      this.durableJournal = previousJournal;
    });
    this.durableJournal = this.durableJournal.slice(snapshot.index - this.snapshotIndex);
    this.durableSnapshot = snapshot;
  }

  /** The coordinator's bootstrap view (expect N), written with the hard state. */
  saveBootstrapView(view: readonly string[]): void {
    const previous = this.durableBootstrapView;
    this.unsyncedVouched++;
    this.unsynced.push(() => (this.durableBootstrapView = previous));
    this.durableBootstrapView = [...view];
  }

  /** Makes everything written durable (an fsync). */
  sync(): void {
    this.syncListener?.();
    if (this.unsynced.length === 0) return;
    this.unsynced.length = 0;
    this.unsyncedVouched = 0;
    this.unsyncedEntryWrites = 0;
    this.markSynced();
    this.syncs++;
  }

  keepSnapshotCopy(index: number): void {
    this.snapshotCopies.add(index);
  }

  /** Whether the snapshot at `index` is durable here: stored, or a copy kept apart. */
  holdsSnapshot(index: number): boolean {
    return this.snapshotIndex >= index || this.snapshotCopies.has(index);
  }

  /** Whether everything written is durable. */
  get synced(): boolean {
    return this.unsynced.length === 0;
  }

  /** Whether everything a message may vouch for is durable (applies and commit indexes may not be yet). */
  get vouchedSynced(): boolean {
    return this.unsyncedVouched === 0 && this.unsyncedEntryWrites === 0;
  }

  /** Whether all of that is durable but journal entries: what a master's early append needs (appendsMayLeaveEarly). */
  get vouchedSyncedButEntries(): boolean {
    return this.unsyncedVouched === 0;
  }

  /**
   * Whether entry `index` of `term` is durable here — synced, so that no crash can take it back: in the snapshot
   * or the journal the last sync left, below whatever was written over since.
   */
  holdsDurably(index: number, term: number): boolean {
    if (index <= this.syncedSnapshotIndex) return true;
    return index < this.unsyncedJournalFrom && this.syncedJournal[index - this.syncedSnapshotIndex - 1]?.term === term;
  }

  /** The term the last sync made durable. */
  get durableTerm(): number {
    return this.syncedTerm;
  }

  /** Whether the journal through `index` is as the last sync left it: durable, nothing written over it since. */
  holdsDurablyThrough(index: number): boolean {
    if (index <= this.syncedSnapshotIndex) return true;
    return index < this.unsyncedJournalFrom && index <= this.syncedSnapshotIndex + this.syncedJournal.length;
  }

  private markSynced(): void {
    this.syncedTerm = this.durableHardState.term;
    this.syncedSnapshotIndex = this.snapshotIndex;
    this.syncedJournal = this.durableJournal;
    this.unsyncedJournalFrom = Infinity;
  }

  /** A crash: everything written since the last sync is lost, newest first. */
  loseUnsynced(): void {
    for (let undo = this.unsynced.pop(); undo !== undefined; undo = this.unsynced.pop()) undo();
    this.unsyncedVouched = 0;
    this.unsyncedEntryWrites = 0;
    this.markSynced();
  }

  restoredState(): CoordinatorRestoredState {
    return {
      bootstrapView: this.durableBootstrapView,
      hardState: this.durableHardState,
      ...(this.durableSnapshot !== null ? { snapshot: this.durableSnapshot } : {}),
      entries: [...this.durableJournal],
      appliedIndex: this.stateMachine.appliedIndex,
    };
  }
}
