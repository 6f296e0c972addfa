import type { RestoredState } from '../../src/core/coordinationCore.js';
import type { Entry, HardState } from '../../src/core/types.js';
import { KvStateMachine } from './kvStateMachine.js';

/**
 * A node's disk, in memory, with crash semantics: what is here is exactly what the runtime persisted from the
 * cores' Ready records (hard state; journal, truncated from entries[0].index then appended) plus the state
 * machine, which persists its applied index atomically with its contents. A crash drops the core and everything
 * else the node had in memory; a restart rebuilds a core from `restoredState()` alone.
 *
 * Every write is taken as fsynced when `persist` returns (the runtime sends nothing before that).
 */
export interface PersistOutcome {
  /** The first index written, or 0 when no entries were written. */
  readonly firstIndex: number;
  /** The durable entries that were at firstIndex and after before the write (overwritten or cut off). */
  readonly replaced: readonly Entry[];
}

const initialHardState: HardState = { term: 0, votedFor: null, commitIndex: 0 };

export class SimStorage {
  private durableHardState: HardState = initialHardState;
  private readonly durableJournal: Entry[] = [];
  /** Durable: each apply() is one atomic step (contents and applied index together). */
  readonly stateMachine = new KvStateMachine();
  /** How many fsyncs this disk has seen, for statistics. */
  syncs = 0;

  get hardState(): HardState {
    return this.durableHardState;
  }

  /** The durable journal, index i at position i - 1. Read-only for everyone but `persist`. */
  get journal(): readonly Entry[] {
    return this.durableJournal;
  }

  entryAt(index: number): Entry | undefined {
    return this.durableJournal[index - 1];
  }

  get lastIndex(): number {
    return this.durableJournal.length;
  }

  /** Step 1 of the Ready contract. */
  persist(hardState: HardState | undefined, entries: readonly Entry[]): PersistOutcome {
    if (hardState !== undefined) this.durableHardState = hardState;
    let outcome: PersistOutcome = { firstIndex: 0, replaced: [] };
    if (entries.length > 0) {
      const firstIndex = entries[0]!.index;
      if (firstIndex < 1 || firstIndex > this.durableJournal.length + 1) {
        throw new Error(`persisting entries from ${firstIndex} onto a journal ending at ${this.durableJournal.length}: a gap`);
      }
      entries.forEach((e, i) => {
        if (e.index !== firstIndex + i) throw new Error(`Ready entries are not consecutive at ${e.index}`);
      });
      const replaced = this.durableJournal.slice(firstIndex - 1);
      this.durableJournal.length = firstIndex - 1;
      for (const e of entries) this.durableJournal.push(e);
      outcome = { firstIndex, replaced };
    }
    if (hardState !== undefined || entries.length > 0) this.syncs++;
    return outcome;
  }

  restoredState(): RestoredState {
    return {
      hardState: this.durableHardState,
      entries: [...this.durableJournal],
      appliedIndex: this.stateMachine.appliedIndex,
    };
  }
}
