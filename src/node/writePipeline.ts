import type { Logger } from 'pino';

import { applyCommand, type ApplyResult } from '../content/apply.js';
import type { Command } from '../content/commands.js';
import { ConclaveError, invariant, isConclaveError } from '../errors/catalogue.js';
import type { ContentTables } from '../storage/contentTables.js';
import { getMeta, storageError, type Db } from '../storage/database.js';
import { encodeCommand, type Journal } from '../storage/journal.js';

export interface WritePipelineLimits {
  /** Most entries one group commit takes. */
  readonly batchEntriesMax: number;
  /** Most encoded bytes one group commit takes (an entry larger than this still commits, alone). */
  readonly batchBytesMax: number;
  /** Most proposals waiting for a commit; past this, writes are refused with OVERLOADED. */
  readonly queueEntriesMax: number;
  /** Most encoded bytes waiting for a commit (one proposal is always let in, however large). */
  readonly queueBytesMax: number;
}

export interface Committed {
  readonly index: number;
  readonly result: ApplyResult;
}

interface Proposal {
  readonly command: Command;
  readonly payload: Buffer;
  readonly resolve: (committed: Committed) => void;
  readonly reject: (err: Error) => void;
}

/** Single-node journal term until the coordination core (issue 3) owns terms. */
const singleNodeTerm = 1;

/**
 * The single-node write path: group commit. Proposals that arrive while the event loop is busy are taken together
 * into one SQLite transaction that appends their journal entries, applies them and records the applied index, and
 * commits with one fsync. A proposal resolves only after that commit returns, so an acknowledged write is on
 * disk; a crash before it loses the whole batch, never part of an entry.
 *
 * Each entry is applied inside its own savepoint: a refusal (a ConclaveError from apply) rolls back just that
 * entry's changes and becomes its result, deterministically; any other error aborts the whole batch.
 */
export class WritePipeline {
  private readonly queue: Proposal[] = [];
  private queuedBytes = 0;
  private flushScheduled = false;
  private closed = false;
  private lastIndex: number;
  private appliedIndexValue: number;
  private readonly commitBatch;
  private readonly applyInSavepoint;
  private readonly saveApplied;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly db: Db,
    private readonly journal: Journal,
    private readonly content: ContentTables,
    private readonly limits: WritePipelineLimits,
    private readonly log: Logger,
  ) {
    invariant(limits.batchEntriesMax >= 1 && limits.batchBytesMax >= 1 && limits.queueEntriesMax >= 1, 'write pipeline limits must be positive');
    this.lastIndex = journal.lastIndex();
    this.appliedIndexValue = getMeta<number>(db, 'applied_index') ?? 0;
    this.saveApplied = db.prepare(`INSERT INTO meta(key, value) VALUES ('applied_index', ?)
      ON CONFLICT(key) DO UPDATE SET value = excluded.value`);
    this.applyInSavepoint = db.transaction((command: Command) => applyCommand(this.content, command));
    this.commitBatch = db.transaction((batch: Proposal[], firstIndex: number) => {
      const outcomes: Array<Committed | ConclaveError> = [];
      batch.forEach((proposal, i) => {
        const index = firstIndex + i;
        this.journal.append(index, singleNodeTerm, proposal.payload);
        outcomes.push(this.applyEntry(index, proposal.command));
      });
      this.saveApplied.run(firstIndex + batch.length - 1);
      return outcomes;
    });
  }

  /** The index of the last entry applied to the content tables. */
  get appliedIndex(): number {
    return this.appliedIndexValue;
  }

  private applyEntry(index: number, command: Command): Committed | ConclaveError {
    try {
      return { index, result: this.applyInSavepoint(command) };
    } catch (err) {
      if (isConclaveError(err)) return err;
      throw err;
    }
  }

  /**
   * Applies journal entries that were appended but not applied. With group commit both happen in one transaction,
   * so this finds nothing after a crash; it stays as the path replicated entries will take.
   */
  recover(): number {
    let recovered = 0;
    while (this.appliedIndexValue < this.lastIndex) {
      const entries = this.journal.read(this.appliedIndexValue + 1, this.limits.batchEntriesMax);
      invariant(entries.length > 0, `journal ends at ${this.lastIndex} but entry ${this.appliedIndexValue + 1} is missing`);
      this.db.transaction(() => {
        for (const entry of entries) this.applyEntry(entry.index, entry.command);
        this.saveApplied.run(entries[entries.length - 1]!.index);
      })();
      this.appliedIndexValue = entries[entries.length - 1]!.index;
      recovered += entries.length;
    }
    if (recovered > 0) this.log.info({ recovered, appliedIndex: this.appliedIndexValue }, 'applied journal entries on start');
    invariant(this.appliedIndexValue === this.lastIndex, 'applied index passed the journal');
    return recovered;
  }

  propose(command: Command): Promise<Committed> {
    if (this.closed) {
      return Promise.reject(new ConclaveError('SHUTTING_DOWN', 'The node is shutting down; retry on another node or later.'));
    }
    if (this.queue.length >= this.limits.queueEntriesMax) {
      return Promise.reject(
        new ConclaveError('OVERLOADED', `The write queue holds ${this.queue.length} entries; retry after a short pause.`, {
          queueEntriesMax: this.limits.queueEntriesMax,
        }),
      );
    }
    const payload = encodeCommand(command);
    if (this.queue.length > 0 && this.queuedBytes + payload.length > this.limits.queueBytesMax) {
      return Promise.reject(
        new ConclaveError('OVERLOADED', `The write queue holds ${this.queuedBytes} bytes; retry after a short pause.`, {
          queueBytesMax: this.limits.queueBytesMax,
        }),
      );
    }
    this.queuedBytes += payload.length;
    return new Promise<Committed>((resolve, reject) => {
      this.queue.push({ command, payload, resolve, reject });
      this.scheduleFlush();
    });
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // setImmediate runs after pending I/O callbacks: every request that arrived in this turn joins the batch.
    setImmediate(() => this.flush());
  }

  private takeBatch(): Proposal[] {
    let bytes = 0;
    let count = 0;
    while (count < this.queue.length && count < this.limits.batchEntriesMax) {
      const next = this.queue[count]!.payload.length;
      if (count > 0 && bytes + next > this.limits.batchBytesMax) break;
      bytes += next;
      count++;
    }
    const batch = this.queue.splice(0, count);
    this.queuedBytes -= bytes;
    return batch;
  }

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.takeBatch();
    if (batch.length > 0) {
      const firstIndex = this.lastIndex + 1;
      let outcomes: Array<Committed | ConclaveError>;
      try {
        outcomes = this.commitBatch(batch, firstIndex);
      } catch (err) {
        // The transaction rolled back: no entry of this batch exists, so none is acknowledged.
        const error = storageError(err);
        this.log.error({ err, code: error.code, entries: batch.length }, 'group commit failed; batch refused');
        for (const proposal of batch) proposal.reject(error);
        outcomes = [];
      }
      if (outcomes.length > 0) {
        this.lastIndex = firstIndex + batch.length - 1;
        this.appliedIndexValue = this.lastIndex;
        batch.forEach((proposal, i) => {
          const outcome = outcomes[i]!;
          if (outcome instanceof ConclaveError) proposal.reject(outcome);
          else proposal.resolve(outcome);
        });
      }
    }
    if (this.queue.length > 0) this.scheduleFlush();
    else this.notifyIdle();
  }

  private notifyIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  /** Refuses new proposals and resolves once every queued proposal has been committed or refused. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.queue.length === 0 && !this.flushScheduled) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }
}
