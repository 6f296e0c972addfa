import { ClusterCoordinator, type ClusterReady, type CoordinatorOptions, type CoordinatorRestoredState } from '../core/clusterCoordinator.js';
import type { ClusterMessage } from '../core/clusterMessages.js';
import type { HardState } from '../core/types.js';
import { invariant } from '../errors/catalogue.js';
import type { ApplyOutcome, RuntimeBug, WriteTracker } from './writeTracker.js';

/** A Ready loop that does not settle is a coordinator bug: it would spin the node forever. */
const readyRoundsMax = 10_000;

/**
 * Whether a Ready must be durable (fsynced) when its commit returns: whatever one of its messages may vouch for, and
 * whatever a restart could not rebuild — a snapshot, journal entries, the bootstrap view, a new term or vote. A
 * Ready that only applies committed entries and moves the commit index need not be: its writes become durable with
 * the next Ready that is (the journal is one sequential log), and a crash before that takes them back as one — the
 * applied index with the content it covers — so the restarted node applies those entries again from its durable
 * journal. What it tells others meanwhile (its applied index, in an acknowledgement) is then a lag, which the lease
 * rules already allow for: a node that restarts holds no lease until its reports show it applied what the master
 * acknowledged (src/core/lease.ts, point 4). `written`: the hard state written so far, durable or not.
 */
export function readyNeedsSync(ready: ClusterReady, written: HardState): boolean {
  return ready.snapshot !== undefined || ready.entries.length > 0 || ready.bootstrapView !== undefined || movesTermOrVote(ready, written);
}

/** Whether `ready` writes a term or a vote other than the `written` one. */
function movesTermOrVote(ready: ClusterReady, written: HardState): boolean {
  const hardState = ready.hardState;
  return hardState !== undefined && (hardState.term !== written.term || hardState.votedFor !== written.votedFor);
}

/**
 * Whether a master's appends in `ready` may leave before the Ready is durable — while the master persists the same
 * entries (the Raft thesis, 10.2.1; etcd's raft does it): an append vouches only for the master's term, which it
 * made durable before it asked for votes, and for its commit index, which counts its own entries only once they
 * are durable (CoordinationCore.ownMatchIndex). Not when the Ready also moves the term or the vote, installs a
 * snapshot or grows the bootstrap view: those must be durable before anything of the Ready leaves. Nor when it
 * carries a configuration entry: a node acts on the latest configuration in its journal, committed or not, and one
 * that received a configuration its master then lost in a crash could be left outside it — a voting-only node
 * removed by it stops campaigning as the caretaker that would hand the master back what it lost, and refuses the
 * master its vote, which the master's own configuration still needs (simulator seed 50037580: no master ever
 * again). `written`: the hard state written before this Ready.
 */
export function appendsMayLeaveEarly(ready: ClusterReady, written: HardState): boolean {
  if (ready.snapshot !== undefined || ready.bootstrapView !== undefined || movesTermOrVote(ready, written)) return false;
  return !ready.entries.some((entry) => entry.payload.kind === 'configuration');
}

/**
 * Where a Ready becomes durable: the node's SQLite database in production, SimStorage under simulation. The contract
 * the loop relies on: `commit` writes a Ready in one atomic step, `sync` makes every commit so far durable; nothing
 * a message vouches for leaves before its sync has returned (a master's appends and a follower's applied report
 * vouch for nothing the Ready wrote: appendsMayLeaveEarly, CoordinationCore.applied), and
 * a crash may take back, newest first, whatever was committed and not synced — never part of one commit.
 */
export interface ReadyStorage<R, E> {
  /**
   * Writes everything of `ready` in one atomic step — a snapshot install, the bootstrap view, the hard state, the
   * journal entries — and applies its committed entries in the same step, returning each one's outcome. Durable
   * after the next sync. Throws when the step failed: then nothing of it was stored or applied.
   */
  commit(ready: ClusterReady): Array<ApplyOutcome<R, E>>;
  /**
   * Makes everything committed so far durable, then calls `done` once — at once, or later (the runtime's fsync runs
   * off the event loop). A sync that fails does not return: the owner ends the process, since what a failed fsync
   * left on the disk is unknown and retrying it proves nothing.
   */
  sync(done: () => void): void;
  /** What a coordinator starts from after a failed commit: the disk's state. */
  restoredState(): CoordinatorRestoredState;
}

/** What the loop's owner does around each Ready (the runtime: files, metrics, logs, listeners; the simulator: checks). */
export interface ReadyLoopHooks<E> {
  /**
   * Before the commit (the runtime attaches a snapshot's file); returns what to undo after it, whatever happened
   * (the undo must not throw). A throw here counts as a failed commit.
   */
  beforeCommit?(ready: ClusterReady): (() => void) | null;
  /**
   * Right before the commit (after beforeCommit): false stops the loop there — the simulator's crash before a Ready
   * is durable, which must cost nothing but the Ready, since nothing of it has left the node.
   */
  committing?(ready: ClusterReady): boolean;
  /**
   * Right after the commit returned, before its sync: what the owner keeps of the disk follows it (the runtime's
   * applied index, which reads pair with what they read from the database, where the Ready's applies are visible
   * from now on).
   */
  written?(ready: ClusterReady): void;
  /**
   * Once the commit is durable, before anything else. False stops the loop there (the simulator's crash between
   * the sync and the sending of the Ready's messages).
   */
  committed(ready: ClusterReady): boolean;
  /**
   * A Ready whose sync returned later than its commit has been carried out: the owner drains again (the writes it
   * may now acknowledge, the Readys that waited for it).
   */
  resume(): void;
  send(message: ClusterMessage): void;
  /** Sent and settled: the reads it confirmed, the listeners, snapshot bookkeeping. False stops the loop there. */
  done(ready: ClusterReady): boolean;
  /**
   * The commit failed with `error` (thrown by the storage): the error the Ready's writes are refused with. An error
   * that is not a storage failure (a broken invariant) is rethrown here: it must not pass for a full disk.
   */
  commitFailed(ready: ClusterReady, error: unknown): E;
  /** Entries were stored again after failures (or a probe found the disk writable). */
  storageWritable(): void;
}

/**
 * The Ready loop: the one place where the coordinator's Ready records are carried out, in production
 * (ClusterRuntime) and under simulation (test/sim/simNode.ts) alike —
 *
 *   commit (written, applied) → the applied state, the writes it settles and a follower's applied report
 *     → a master's appends → sync (durable) → advance → send the other messages → the owner's bookkeeping
 *
 * Nothing else leaves the node before its Ready is durable: a vote or an acknowledgement never outruns the state it
 * vouches for. While a sync is under way the owner goes on stepping inputs into the coordinator (messages, ticks,
 * proposals); the next Ready, taken once this one is carried out, holds what they brought — so a busy node batches
 * everything that arrived during one fsync into the next. A commit that fails (a full disk) stored nothing, but the coordinator's memory is ahead of the disk:
 * it is treated as a crash of the coordination layer alone — the writes of that Ready are refused (nothing of them
 * exists anywhere: their appends were in that Ready's messages), and a new coordinator starts from the disk, marked
 * as failing storage so that it does not campaign (CoordinationCore.setStorageFailing) until entries are stored
 * again or the owner's probe finds the disk writable.
 */
export class ReadyLoop<R, E> {
  private coordinatorInstance: ClusterCoordinator;
  private failure: E | null = null;
  /** The hard state written so far, durable or not: what readyNeedsSync and appendsMayLeaveEarly compare with. */
  private written: HardState;
  /** A Ready is committed and its sync has not returned: no other Ready is taken until it is carried out. */
  private syncingReady = false;

  constructor(
    private coordinatorOptions: CoordinatorOptions,
    restored: CoordinatorRestoredState,
    private readonly discoveryPeers: () => readonly string[],
    private readonly storage: ReadyStorage<R, E>,
    private readonly writes: WriteTracker<R, E>,
    private readonly hooks: ReadyLoopHooks<E>,
    private readonly injectedBug?: RuntimeBug,
  ) {
    this.coordinatorInstance = new ClusterCoordinator(coordinatorOptions, restored);
    this.written = restored.hardState;
  }

  /** Whether a Ready waits for its sync: the owner then takes no copy of its state machine (see Compaction). */
  get syncing(): boolean {
    return this.syncingReady;
  }

  get coordinator(): ClusterCoordinator {
    return this.coordinatorInstance;
  }

  /** The error of the latest failed commit, while the disk has not taken entries since; null otherwise. */
  get storageFailure(): E | null {
    return this.failure;
  }

  /** Options for coordinators started after a failed commit (the node's published addresses may change). */
  updateOptions(options: CoordinatorOptions): void {
    this.coordinatorOptions = options;
  }

  /** Carries out every Ready there is. False when a commit failed (the coordinator restarted from the disk) or a hook stopped it. */
  drain(): boolean {
    for (let rounds = 0; !this.syncingReady && this.coordinatorInstance.hasReady(); rounds++) {
      invariant(rounds < readyRoundsMax, `the Ready loop has not settled after ${readyRoundsMax} rounds`);
      if (!this.carryOut(this.coordinatorInstance.ready())) return false;
    }
    return true;
  }

  /**
   * Carries out the next Ready only, and returns it with whether it went through (as drain's result); null when
   * there is none. Message-level transcripts step the loop this way, one Ready at a time.
   */
  step(): { readonly ready: ClusterReady; readonly completed: boolean } | null {
    if (this.syncingReady || !this.coordinatorInstance.hasReady()) return null;
    const ready = this.coordinatorInstance.ready();
    return { ready, completed: this.carryOut(ready) };
  }

  /** True when the Ready was carried out or waits for its sync; false as drain's. */
  private carryOut(ready: ClusterReady): boolean {
    let outcomes: Array<ApplyOutcome<R, E>>;
    let undo: (() => void) | null = null;
    const sendEarly = this.injectedBug === 'sendBeforeDurable';
    if (sendEarly) for (const message of ready.messages) this.hooks.send(message);
    const needsSync = readyNeedsSync(ready, this.written);
    // Without a sync to wait for, everything leaves at once anyway.
    const appendsEarly = !sendEarly && needsSync && appendsMayLeaveEarly(ready, this.written);
    try {
      // Inside: a snapshot's file that cannot be attached is a failed commit too (nothing was stored).
      undo = this.hooks.beforeCommit?.(ready) ?? null;
      if (this.hooks.committing?.(ready) === false) {
        undo?.();
        return false;
      }
      outcomes = this.storage.commit(ready);
    } catch (err) {
      undo?.();
      this.commitFailed(ready, err);
      return false;
    }
    undo?.();
    if (ready.hardState !== undefined) this.written = ready.hardState;
    this.hooks.written?.(ready);
    // Applied now, answered now: the writes it settles need no sync of this Ready (their entries are committed),
    // and a follower's applied report repeats an acknowledgement already durable.
    for (const message of this.coordinatorInstance.applied(ready)) this.hooks.send(message);
    ready.committed.forEach((entry, i) => this.writes.applied(entry, outcomes[i]!));
    // Writes proposed up to an installed snapshot: whether they made it is not known here.
    if (ready.snapshot !== undefined) this.writes.snapshotInstalled(ready.snapshot.index);
    if (appendsEarly) for (const message of ready.messages) if (message.type === 'appendRequest') this.hooks.send(message);
    if (!needsSync) return this.carryOutDurable(ready, false);
    let completedAtOnce: boolean | null = null;
    let returned = false;
    this.syncingReady = true;
    this.storage.sync(() => {
      invariant(this.syncingReady, 'a sync returned twice');
      this.syncingReady = false;
      const completed = this.carryOutDurable(ready, appendsEarly);
      if (returned) {
        if (completed) this.hooks.resume();
      } else completedAtOnce = completed;
    });
    returned = true;
    return completedAtOnce ?? true;
  }

  /** The rest of a Ready, once it is durable; `appendsSent`: its appends left before its sync. */
  private carryOutDurable(ready: ClusterReady, appendsSent: boolean): boolean {
    if (!this.hooks.committed(ready)) return false;
    this.coordinatorInstance.advance(ready);
    // Only stored entries prove the disk takes writes again: a small hard-state write can fit into a full disk
    // (SQLite reuses free pages), and clearing on it made a full node flap between refusing and taking writes.
    if (this.failure !== null && (ready.entries.length > 0 || ready.snapshot !== undefined)) this.storageWritable();
    if (this.injectedBug !== 'sendBeforeDurable') {
      for (const message of ready.messages) if (!appendsSent || message.type !== 'appendRequest') this.hooks.send(message);
    }
    return this.hooks.done(ready);
  }

  /** Answers the writes the master may acknowledge (WriteTracker.acknowledge). */
  acknowledge(): void {
    if (this.writes.unacknowledged === 0) return;
    const isMaster = this.coordinatorInstance.softState().role === 'master';
    this.writes.acknowledge(isMaster, isMaster ? this.coordinatorInstance.acknowledgedIndex() : 0);
  }

  /** The disk takes writes again (entries were stored, or the owner's probe succeeded). */
  storageWritable(): void {
    if (this.failure === null) return;
    this.failure = null;
    this.coordinatorInstance.setStorageFailing(false);
    this.hooks.storageWritable();
  }

  private commitFailed(ready: ClusterReady, err: unknown): void {
    const error = this.hooks.commitFailed(ready, err);
    this.failure = error;
    this.writes.notStored(ready.entries, error);
    const restored = this.storage.restoredState();
    this.written = restored.hardState;
    this.coordinatorInstance = new ClusterCoordinator(this.coordinatorOptions, restored);
    this.coordinatorInstance.setDiscoveryPeers(this.discoveryPeers());
    this.coordinatorInstance.setStorageFailing(true);
  }
}
