import type { Entry } from '../core/types.js';
import { invariant } from '../errors/catalogue.js';

/**
 * Timers as the write path sees them: the event loop's in production, the simulator's scheduler under simulation
 * (test/sim/simNode.ts), so that the same code decides when a write gives up waiting in both.
 */
export interface WriteTimers {
  set(callback: () => void, delayMs: number): unknown;
  clear(handle: unknown): void;
}

/** How a proposed write ended, as the tracker knows it; the runtime and the simulator say it to their clients. */
export type WriteOutcome<R, E> =
  /** Applied here and by every in-sync member (and every lease holder): a read anywhere sees it. */
  | { readonly kind: 'acknowledged'; readonly index: number; readonly result: R }
  /** Applied as a refusal (a precondition failed): nothing changed anywhere. */
  | { readonly kind: 'refusedByApply'; readonly index: number; readonly error: E }
  /** The Ready that held its entry could not be stored (a full disk): nothing of it exists anywhere. */
  | { readonly kind: 'notStored'; readonly index: number; readonly error: E }
  /** Another master's entry took its index: it was never committed, and never will be. */
  | { readonly kind: 'replaced'; readonly index: number }
  /** Applied here (so committed and durable), but not known to be applied by every in-sync member. */
  | { readonly kind: 'unconfirmed'; readonly index: number; readonly why: 'masterChanged' | 'timeout' | 'shutdown' }
  /** Proposed and not applied here yet: it may or may not take effect. */
  | { readonly kind: 'unknown'; readonly index: number; readonly why: 'timeout' | 'shutdown' | 'snapshotInstalled' | 'indexReused' };

/**
 * Test-only: bugs only the runtime's parts can have, so that the simulator proves it notices them
 * (test/sim/simulator.test.ts, mutation checks): answering a write before the in-sync members applied it
 * (acknowledgeOnApply, this file), sending a Ready's messages — votes, acknowledgements of appended entries —
 * before the state they vouch for is durable (sendBeforeDurable, readyLoop.ts), letting a read join a confirmation
 * asked before it arrived (readJoinsAskedConfirmation, readIndexBatcher.ts), and recording the applied index apart
 * from the content it covers, so that a crash before an apply-only Ready is synced keeps the index and loses the
 * content (appliedIndexApart: the storage's, modelled by test/sim/simStorage.ts; clusterRuntime.ts writes both in
 * one transaction).
 */
export const runtimeBugs = ['acknowledgeOnApply', 'sendBeforeDurable', 'readJoinsAskedConfirmation', 'appliedIndexApart'] as const;
export type RuntimeBug = (typeof runtimeBugs)[number];

/** What applying a committed entry gave: a result, or a refusal that is the entry's outcome everywhere. */
export type ApplyOutcome<R, E> = { readonly ok: true; readonly result: R } | { readonly ok: false; readonly error: E };

interface Tracked<R, E> {
  readonly index: number;
  readonly term: number;
  readonly answer: (outcome: WriteOutcome<R, E>) => void;
  timer: unknown;
  /** Set once applied here: the write then waits for the acknowledgement. */
  result?: R;
}

/**
 * The writes this node proposed, from the proposal to the answer: waiting for their entry to be applied here,
 * then — on the master — for every in-sync member (and every member whose read lease may still run) to apply it
 * too (ClusterCoordinator.acknowledgedIndex), so that a sequential read anywhere sees an acknowledged write
 * (src/core/lease.ts, point 4). Each write gives up after writeTimeoutMs. Every write is answered exactly once.
 */
export class WriteTracker<R, E> {
  /** Proposed, not applied here yet, by index. */
  private readonly pending = new Map<number, Tracked<R, E>>();
  /** Applied here, waiting for the acknowledgement, in index order (entries are applied in order). */
  private appliedUnacknowledged: Array<Tracked<R, E>> = [];

  constructor(
    private readonly timers: WriteTimers,
    private readonly writeTimeoutMs: number,
    private readonly injectedBug?: RuntimeBug,
  ) {}

  /** Writes waiting for their entry or their acknowledgement. */
  get waiting(): number {
    return this.pending.size + this.appliedUnacknowledged.length;
  }

  /** Whether writes wait for their acknowledgement (applied here, unconfirmed). */
  get unacknowledged(): number {
    return this.appliedUnacknowledged.length;
  }

  /** The coordinator accepted a proposal at `index` in `term`; `answer` hears how it ended, once. */
  proposed(index: number, term: number, answer: (outcome: WriteOutcome<R, E>) => void): void {
    const tracked: Tracked<R, E> = { index, term, answer, timer: null };
    tracked.timer = this.timers.set(() => this.timedOut(tracked), this.writeTimeoutMs);
    // An older proposal at this index: its entry left this node's journal (another master's replaced it, then went
    // too), and this node, master again, reuses the slot. That proves nothing about the old entry: another node may
    // still hold it and, elected later, commit it. Only an entry of another term applied at the index proves it
    // never will be (see applied).
    const previous = this.pending.get(index);
    if (previous !== undefined) this.finish(previous, { kind: 'unknown', index, why: 'indexReused' });
    this.pending.set(index, tracked);
  }

  /**
   * The Ready holding `entries` was not stored (`error` says why): the writes proposed with them were refused
   * before anything of them existed — their appends were in that Ready's messages, never sent.
   */
  notStored(entries: readonly Entry[], error: E): void {
    for (const entry of entries) {
      const tracked = this.pending.get(entry.index);
      if (tracked === undefined || tracked.term !== entry.term) continue;
      this.pending.delete(entry.index);
      this.finish(tracked, { kind: 'notStored', index: entry.index, error });
    }
  }

  /** A snapshot replaced the state up to `index`: whether the writes proposed up to it made it is not known here. */
  snapshotInstalled(index: number): void {
    for (const [at, tracked] of this.pending) {
      if (at > index) continue;
      this.pending.delete(at);
      this.finish(tracked, { kind: 'unknown', index: at, why: 'snapshotInstalled' });
    }
  }

  /** A committed entry was applied here (its transaction committed) with `outcome`. */
  applied(entry: Entry, outcome: ApplyOutcome<R, E>): void {
    const tracked = this.pending.get(entry.index);
    if (tracked === undefined) return;
    this.pending.delete(entry.index);
    if (tracked.term !== entry.term) return this.finish(tracked, { kind: 'replaced', index: entry.index });
    if (!outcome.ok) return this.finish(tracked, { kind: 'refusedByApply', index: entry.index, error: outcome.error });
    const last = this.appliedUnacknowledged[this.appliedUnacknowledged.length - 1];
    invariant(last === undefined || last.index < entry.index, `entry ${entry.index} applied after ${last?.index}`);
    tracked.result = outcome.result;
    this.appliedUnacknowledged.push(tracked);
  }

  /**
   * Answers the applied writes this node may acknowledge: as master, those at or below `acknowledgedIndex`; a node
   * that is no longer master cannot tell whether the others applied them, so it says so.
   */
  acknowledge(isMaster: boolean, acknowledgedIndex: number): void {
    if (this.appliedUnacknowledged.length === 0) return;
    if (!isMaster) {
      for (const tracked of this.appliedUnacknowledged.splice(0)) this.finish(tracked, { kind: 'unconfirmed', index: tracked.index, why: 'masterChanged' });
      return;
    }
    const through = this.injectedBug === 'acknowledgeOnApply' ? Number.POSITIVE_INFINITY : acknowledgedIndex;
    let count = 0;
    while (count < this.appliedUnacknowledged.length && this.appliedUnacknowledged[count]!.index <= through) count++;
    for (const tracked of this.appliedUnacknowledged.splice(0, count)) {
      this.finish(tracked, { kind: 'acknowledged', index: tracked.index, result: tracked.result as R });
    }
  }

  /** The node stops: every write still waiting hears so. */
  close(): void {
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const tracked of pending) this.finish(tracked, { kind: 'unknown', index: tracked.index, why: 'shutdown' });
    for (const tracked of this.appliedUnacknowledged.splice(0)) this.finish(tracked, { kind: 'unconfirmed', index: tracked.index, why: 'shutdown' });
  }

  private timedOut(tracked: Tracked<R, E>): void {
    if (this.pending.get(tracked.index) === tracked) {
      this.pending.delete(tracked.index);
      return this.finish(tracked, { kind: 'unknown', index: tracked.index, why: 'timeout' });
    }
    const at = this.appliedUnacknowledged.indexOf(tracked);
    if (at >= 0) {
      this.appliedUnacknowledged.splice(at, 1);
      this.finish(tracked, { kind: 'unconfirmed', index: tracked.index, why: 'timeout' });
    }
  }

  /** Answers once; clearing a timer that already fired (a timeout) is harmless. */
  private finish(tracked: Tracked<R, E>, outcome: WriteOutcome<R, E>): void {
    this.timers.clear(tracked.timer);
    tracked.answer(outcome);
  }
}
