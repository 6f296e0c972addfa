import { invariant } from '../errors/catalogue.js';
import type { ConfigurationPayload, Entry, Snapshot } from './types.js';

const noSnapshot: Snapshot = { index: 0, term: 0, configuration: { kind: 'configuration', current: [] }, data: null };

/**
 * The journal as the coordination core holds it in memory: the snapshot it starts after, the entries that follow
 * it, and the unstable suffix — the entries not yet handed to the runtime in a Ready to make durable. Invariants,
 * asserted where they change: entries are consecutive from snapshot.index + 1, the unstable suffix starts within
 * the journal or just past its end, and nothing at or below the snapshot is ever truncated or replaced. What may
 * be truncated (never a committed entry) is the core's to decide: it knows the commit index.
 */
export class MemoryJournal {
  /** Entry i is at entries[i - snapshot.index - 1]. */
  private entries: Entry[];
  private snapshotValue: Snapshot;
  /** The first index not yet handed out as durable work (lastIndex() + 1 when everything was). */
  private unstableFrom: number;

  constructor(snapshot: Snapshot | undefined, entries: readonly Entry[]) {
    this.snapshotValue = snapshot ?? noSnapshot;
    this.entries = [...entries];
    this.entries.forEach((e, i) => invariant(e.index === this.snapshotValue.index + i + 1, `restored journal has index ${e.index} at position ${i}`));
    // What was restored is on disk already.
    this.unstableFrom = this.lastIndex() + 1;
  }

  /** The snapshot the journal starts after (index 0 when the journal was never compacted). */
  get snapshot(): Snapshot {
    return this.snapshotValue;
  }

  lastIndex(): number {
    return this.snapshotValue.index + this.entries.length;
  }

  lastTerm(): number {
    return this.entries[this.entries.length - 1]?.term ?? this.snapshotValue.term;
  }

  /** The entry at `index`; undefined past the end and at or below the snapshot. */
  entryAt(index: number): Entry | undefined {
    return index > this.snapshotValue.index ? this.entries[index - this.snapshotValue.index - 1] : undefined;
  }

  /** The term of the entry at `index`; undefined past the end and below the snapshot (compacted away). */
  termAt(index: number): number | undefined {
    if (index === this.snapshotValue.index) return this.snapshotValue.term;
    return this.entryAt(index)?.term;
  }

  /** The entries from `from` through `through` (both above the snapshot), as far as the journal has them. */
  range(from: number, through: number): Entry[] {
    invariant(from > this.snapshotValue.index, `entries from ${from}, at or below the snapshot at ${this.snapshotValue.index}`);
    const offset = this.snapshotValue.index + 1;
    return this.entries.slice(from - offset, through + 1 - offset);
  }

  /**
   * The entries of one append from `from`: at most `countMax`, and within `bytesMax` as `entryBytes` measures them
   * (when both are given) — but always at least one when there is one.
   */
  batchFrom(from: number, countMax: number, bytesMax?: number, entryBytes?: (entry: Entry) => number): Entry[] {
    invariant(from > this.snapshotValue.index, `an append from ${from}, at or below the snapshot at ${this.snapshotValue.index}`);
    const start = from - this.snapshotValue.index - 1;
    const end = Math.min(this.entries.length, start + countMax);
    if (bytesMax === undefined || entryBytes === undefined) return this.entries.slice(start, end);
    let stop = start;
    let bytes = 0;
    while (stop < end) {
      const size = entryBytes(this.entries[stop]!);
      if (stop > start && bytes + size > bytesMax) break;
      bytes += size;
      stop++;
    }
    return this.entries.slice(start, stop);
  }

  append(entry: Entry): void {
    invariant(entry.index === this.lastIndex() + 1, `append of ${entry.index} after ${this.lastIndex()}`);
    this.entries.push(entry);
  }

  /** Drops the entries from `index` on (the core checked they are not committed); they are written again later. */
  truncateFrom(index: number): void {
    invariant(index > this.snapshotValue.index && index <= this.lastIndex(), `truncation from ${index} of a journal ${this.snapshotValue.index + 1}..${this.lastIndex()}`);
    this.entries.length = index - this.snapshotValue.index - 1;
    this.unstableFrom = Math.min(this.unstableFrom, index);
  }

  hasUnstable(): boolean {
    return this.unstableFrom <= this.lastIndex();
  }

  /** The entries the runtime has not been handed yet: the next Ready's. */
  unstable(): Entry[] {
    return this.entries.slice(this.unstableFrom - this.snapshotValue.index - 1);
  }

  /**
   * The runtime made the entries through `index` durable (they were in a Ready it processed), the last of them of
   * `term`. Inputs are stepped while a Ready is being made durable, so the journal may have been cut and written anew
   * since: when the entry at `index` is no longer of `term`, what the Ready stored is not what the journal holds now,
   * and the rewritten entries stay unstable (the next Ready writes them). The same index and term mean the same
   * entries up to it (log matching), however they were rewritten meanwhile.
   */
  stableThrough(index: number, term: number): void {
    if (index <= this.snapshotValue.index || index > this.lastIndex() || this.entryAt(index)?.term !== term) return;
    this.unstableFrom = Math.max(this.unstableFrom, index + 1);
  }

  /** The last index made durable: what a master counts for itself towards a quorum. */
  stableLastIndex(): number {
    return this.unstableFrom - 1;
  }

  /** The latest configuration entry of the journal, or the snapshot's configuration; null when there is none. */
  latestConfiguration(): { readonly payload: ConfigurationPayload; readonly index: number } | null {
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const payload = this.entries[i]!.payload;
      if (payload.kind === 'configuration') return { payload, index: this.entries[i]!.index };
    }
    if (this.snapshotValue.configuration.current.length > 0) return { payload: this.snapshotValue.configuration, index: this.snapshotValue.index };
    return null;
  }

  /**
   * Compaction: a snapshot of `data` at `index` (applied, so in the journal) replaces the entries up to it. Its term
   * and configuration are those of the journal there.
   */
  compact(index: number, data: unknown): Snapshot {
    invariant(index > this.snapshotValue.index, `compaction to ${index}, at or below the snapshot at ${this.snapshotValue.index}`);
    const term = this.termAt(index);
    invariant(term !== undefined, `no term at applied index ${index}`);
    let configuration = this.snapshotValue.configuration;
    for (let i = index; i > this.snapshotValue.index; i--) {
      const payload = this.entryAt(i)!.payload;
      if (payload.kind === 'configuration') {
        configuration = payload;
        break;
      }
    }
    this.entries = this.entries.slice(index - this.snapshotValue.index);
    this.snapshotValue = { index, term, configuration, data };
    return this.snapshotValue;
  }

  /**
   * A snapshot from the master replaces the journal up to its index. Where ours agrees with it at that index, what
   * follows may still be good and is kept (Raft §7); else everything goes. The runtime drops its whole journal with
   * the install, so whatever is kept is unstable again: written anew after it.
   */
  install(snapshot: Snapshot): void {
    invariant(snapshot.index > this.snapshotValue.index, `a snapshot at ${snapshot.index}, at or below ours at ${this.snapshotValue.index}`);
    this.entries = this.termAt(snapshot.index) === snapshot.term ? this.entries.slice(snapshot.index - this.snapshotValue.index) : [];
    this.snapshotValue = snapshot;
    this.unstableFrom = snapshot.index + 1;
  }
}
