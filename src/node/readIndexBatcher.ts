import { invariant } from '../errors/catalogue.js';
import type { RuntimeBug, WriteTimers } from './writeTracker.js';

/**
 * Linearizable reads (and sequential ones without a lease) wait for an index the master confirms with a quorum
 * round. Reads share confirmations: those that arrive while one is under way wait for its answer and then go
 * together, so that under load a node asks once per round trip (each confirmation costs the master a round of
 * messages to every member) instead of once per event-loop turn. A confirmation unanswered for `holdBackMs`, or asked
 * of a master that is no longer the master, no longer holds the next one back: a lost message costs a tick or two,
 * not the read timeout. A read never joins a confirmation asked before it arrived — that confirmation's index may
 * miss a write acknowledged after it was asked and before the read began.
 *
 * Production (ClusterRuntime) wires it to the event loop; the simulator (test/sim/simNode.ts) to its scheduler, so
 * that the seeds' linearizability checks cover this code.
 */

/** Time as the batcher needs it. */
export interface ReadBatchClock extends WriteTimers {
  nowMs(): number;
  /** Runs `run` after what arrived with this turn (setImmediate): every read of the turn joins the batch. */
  defer(run: () => void): void;
}

/** What the batcher asks of the node: who it thinks is master, and a confirmation (the coordinator's readIndex). */
export interface ReadIndexConfirmer<E> {
  master(): string | null;
  /** Asks the master, through the coordinator, to confirm an index for the reads of `id`; answered through answered(). */
  confirm(id: string): void;
  overloaded(waiting: number): E;
  timedOut(): E;
  /** The master could not confirm (it stepped down, or holds too many reads): retryable. */
  notConfirmed(): E;
}

export interface ReadIndexLimits {
  /** Reads waiting at most; more are refused at once. */
  readonly waitersMax: number;
  /** A confirmation unanswered for this long no longer holds the next batch back. */
  readonly holdBackMs: number;
  /** A confirmation unanswered for this long fails its reads. */
  readonly timeoutMs: number;
}

export type ReadIndexOutcome<E> = { readonly ok: true; readonly index: number } | { readonly ok: false; readonly error: E };

type Waiter<E> = (outcome: ReadIndexOutcome<E>) => void;

interface Batch<E> {
  readonly waiters: Array<Waiter<E>>;
  timer: unknown;
}

export class ReadIndexBatcher<E> {
  /** Asked of the coordinator, by id, waiting for its answer. */
  private readonly asked = new Map<string, Batch<E>>();
  /** Reads that arrived since the last batch was asked: they go together. */
  private open: Batch<E> | null = null;
  private scheduled = false;
  private heldBack = false;
  private inFlight: { readonly batch: Batch<E>; readonly master: string | null; readonly sentAtMs: number } | null = null;
  private waiting = 0;
  private seq = 0;
  private closed = false;

  constructor(
    private readonly clock: ReadBatchClock,
    private readonly confirmer: ReadIndexConfirmer<E>,
    private readonly limits: ReadIndexLimits,
    /** Names this process's confirmations apart from other nodes' and from this node's earlier processes'. */
    private readonly idPrefix: string,
    private readonly injectedBug?: RuntimeBug,
  ) {}

  /** Reads waiting for an index, asked or not yet. */
  get waiters(): number {
    return this.waiting;
  }

  /** A read that needs a confirmed index: `done` hears it (or why not) exactly once. */
  request(done: Waiter<E>): void {
    invariant(!this.closed, 'a read asked of a closed batcher');
    if (this.waiting >= this.limits.waitersMax) return done({ ok: false, error: this.confirmer.overloaded(this.waiting) });
    this.waiting++;
    if (this.injectedBug === 'readJoinsAskedConfirmation' && this.inFlight !== null) return void this.inFlight.batch.waiters.push(done);
    this.open ??= { waiters: [], timer: null };
    this.open.waiters.push(done);
    this.schedule();
  }

  /** The coordinator's answer for `id` (a Ready's read state): the index, or null when it could not confirm. */
  answered(id: string, index: number | null): void {
    const batch = this.asked.get(id);
    if (batch === undefined) return; // timed out, or abandoned, meanwhile
    this.asked.delete(id);
    this.settle(batch, index === null ? { ok: false, error: this.confirmer.notConfirmed() } : { ok: true, index });
  }

  /**
   * The coordinator that was asked is gone (a failed commit restarts it from the disk): its confirmations never come,
   * so their reads are refused at once (retryable) rather than at their timeout. Reads not asked yet go on.
   */
  abandonAsked(): void {
    const batches = [...this.asked.values()];
    this.asked.clear();
    this.inFlight = null;
    for (const batch of batches) this.settle(batch, { ok: false, error: this.confirmer.notConfirmed() });
    this.schedule();
  }

  /** Fails every read, asked or not, with `error`, and takes no more (the node stops). */
  close(error: E): void {
    this.closed = true;
    const batches = [...this.asked.values(), ...(this.open !== null ? [this.open] : [])];
    this.asked.clear();
    this.open = null;
    this.inFlight = null;
    for (const batch of batches) this.settle(batch, { ok: false, error });
  }

  /** Asks for the open batch after this turn, unless a confirmation in flight holds it back. */
  private schedule(): void {
    if (this.open === null || this.scheduled || this.closed) return;
    const inFlight = this.inFlight;
    if (inFlight !== null && this.clock.nowMs() - inFlight.sentAtMs < this.limits.holdBackMs && inFlight.master === this.confirmer.master()) {
      // Held back: the answer, or the hold-back running out (an answer lost on the way), schedules it.
      if (!this.heldBack) {
        this.heldBack = true;
        this.clock.set(() => {
          this.heldBack = false;
          this.schedule();
        }, this.limits.holdBackMs - (this.clock.nowMs() - inFlight.sentAtMs));
      }
      return;
    }
    this.scheduled = true;
    this.clock.defer(() => {
      this.scheduled = false;
      const batch = this.open;
      if (batch !== null && !this.closed) this.ask(batch);
    });
  }

  private ask(batch: Batch<E>): void {
    if (this.open === batch) this.open = null;
    const id = `${this.idPrefix}.${++this.seq}`;
    this.asked.set(id, batch);
    batch.timer = this.clock.set(() => {
      if (this.asked.delete(id)) this.settle(batch, { ok: false, error: this.confirmer.timedOut() });
    }, this.limits.timeoutMs);
    this.inFlight = { batch, master: this.confirmer.master(), sentAtMs: this.clock.nowMs() };
    this.confirmer.confirm(id);
  }

  private settle(batch: Batch<E>, outcome: ReadIndexOutcome<E>): void {
    if (batch.timer !== null) this.clock.clear(batch.timer);
    batch.timer = null;
    if (this.inFlight?.batch === batch) {
      this.inFlight = null;
      this.schedule();
    }
    this.waiting -= batch.waiters.length;
    invariant(this.waiting >= 0, `${this.waiting} reads waiting after a batch of ${batch.waiters.length} settled`);
    for (const done of batch.waiters) done(outcome);
  }
}
