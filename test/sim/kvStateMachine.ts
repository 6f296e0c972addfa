import type { Entry } from '../../src/core/types.js';

/**
 * The state machine the simulated nodes replicate: a key-value register map, fed by committed journal entries.
 * Reads in `log` mode go through the journal; the other read modes read a node's state directly (see SimNode).
 */
export type KvValue = string | number | null;

export type KvCommand =
  | { readonly op: 'write'; readonly key: string; readonly value: KvValue }
  | { readonly op: 'cas'; readonly key: string; readonly expected: KvValue; readonly value: KvValue }
  /**
   * A read: `log` goes through the journal like a write; the others never touch it — `linearizable` by a read
   * index, `sequential` under a read lease (or a read index without one), `stale` from whatever the node has.
   */
  | { readonly op: 'read'; readonly key: string; readonly mode: ReadMode };

export type ReadMode = 'log' | 'linearizable' | 'sequential' | 'stale';

export type KvResult =
  | { readonly op: 'write' }
  | { readonly op: 'cas'; readonly swapped: boolean }
  | { readonly op: 'read'; readonly value: KvValue };

export interface KvSnapshot {
  readonly applied: number;
  readonly values: readonly (readonly [string, KvValue])[];
}

export class KvStateMachine {
  private readonly values = new Map<string, KvValue>();
  /** Persisted atomically with `values`: each application is one atomic durable step. */
  private applied = 0;
  private cachedHash: string | null = '';

  get appliedIndex(): number {
    return this.applied;
  }

  /**
   * Applies the next committed entry, and returns how to take it back (a crash before the write was synced: see
   * SimStorage). `keepIndex` (mutation check appliedIndexApart): the undo leaves the applied index where it is, as a
   * runtime that recorded it apart from the content it covers would find it after the crash.
   */
  applyUndoable(entry: Entry, keepIndex = false): { readonly result: KvResult | null; readonly undo: () => void } {
    const applied = this.applied;
    const key = entry.payload.kind === 'command' ? (entry.payload.data as KvCommand).key : null;
    const had = key !== null && this.values.has(key);
    const previous = key !== null ? this.values.get(key) : undefined;
    const result = this.apply(entry);
    return {
      result,
      undo: () => {
        if (!keepIndex) {
          invariantAppliedAt(this.applied, entry.index);
          this.applied = applied;
        }
        if (key === null) return;
        if (had) this.values.set(key, previous!);
        else this.values.delete(key);
        this.cachedHash = null;
      },
    };
  }

  /** Applies the next committed entry. Configuration and noop entries change nothing but still count. */
  apply(entry: Entry): KvResult | null {
    if (entry.index !== this.applied + 1) {
      throw new Error(`state machine at ${this.applied} asked to apply entry ${entry.index}`);
    }
    this.applied = entry.index;
    if (entry.payload.kind !== 'command') return null; // cluster-state entries are the coordinator's
    const command = entry.payload.data as KvCommand;
    const current = this.values.get(command.key) ?? null;
    switch (command.op) {
      case 'write':
        this.set(command.key, command.value);
        return { op: 'write' };
      case 'cas':
        if (current !== command.expected) return { op: 'cas', swapped: false };
        this.set(command.key, command.value);
        return { op: 'cas', swapped: true };
      case 'read':
        return { op: 'read', value: current };
    }
  }

  /** What a snapshot holds: a copy of the contents and the applied index they are at. */
  exportSnapshot(): KvSnapshot {
    return { applied: this.applied, values: [...this.values.entries()] };
  }

  /** Replaces everything with a snapshot's contents (a snapshot install; atomic like apply). */
  restore(snapshot: KvSnapshot): void {
    this.values.clear();
    for (const [key, value] of snapshot.values) this.values.set(key, value);
    this.applied = snapshot.applied;
    this.cachedHash = null;
  }

  get(key: string): KvValue {
    return this.values.get(key) ?? null;
  }

  /** A canonical rendering of the contents (not of the applied index), to compare replicas. */
  hash(): string {
    if (this.cachedHash === null) {
      this.cachedHash = [...this.values.entries()]
        .filter(([, v]) => v !== null)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
        .join(';');
    }
    return this.cachedHash;
  }

  private set(key: string, value: KvValue): void {
    this.values.set(key, value);
    this.cachedHash = null;
  }
}

function invariantAppliedAt(applied: number, index: number): void {
  if (applied !== index) throw new Error(`undoing the apply of ${index} with the state machine at ${applied}: undo out of order`);
}
