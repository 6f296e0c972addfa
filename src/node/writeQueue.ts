import { invariant } from '../errors/catalogue.js';

/**
 * Writes waiting to be proposed on the master, and group commit: the writes that arrive in one event-loop turn are
 * proposed together and share one Ready (one transaction, one fsync), in groups of at most groupEntriesMax entries
 * and groupBytesMax bytes; the rest wait for the next turn. The queue itself is bounded, counting the writes
 * proposed and not answered yet as well (a master that cannot commit must refuse, not buffer).
 *
 * The runtime (ClusterRuntime) and the simulator (test/sim/simNode.ts) both queue their writes here; each proposes
 * the groups it takes to its coordinator.
 */

export interface WriteQueueLimits {
  /** Writes queued and proposed-unanswered at most (replication.writeQueueEntriesMax). */
  readonly entriesMax: number;
  /** Bytes of queued commands at most (one write is always taken, whatever its size). */
  readonly bytesMax: number;
  /** Entries in one group (one Ready). */
  readonly groupEntriesMax: number;
  /** Bytes in one group (the first write always goes). */
  readonly groupBytesMax: number;
}

/** Why a write cannot queue now. */
export type QueueRefusal = { readonly kind: 'entries'; readonly waiting: number } | { readonly kind: 'bytes'; readonly queuedBytes: number };

export class WriteQueue<T> {
  private readonly items: Array<{ readonly item: T; readonly bytes: number }> = [];
  private bytes = 0;

  constructor(private readonly limits: WriteQueueLimits) {
    invariant(limits.entriesMax >= 1 && limits.groupEntriesMax >= 1, 'a write queue takes at least one write');
  }

  get length(): number {
    return this.items.length;
  }

  get queuedBytes(): number {
    return this.bytes;
  }

  /** Why no write can queue now, with `proposedWaiting` writes proposed and not answered (the entries bound); null if one can. */
  entriesRefusal(proposedWaiting: number): QueueRefusal | null {
    const waiting = this.items.length + proposedWaiting;
    return waiting >= this.limits.entriesMax ? { kind: 'entries', waiting } : null;
  }

  /** Why a write of `bytes` cannot queue, with `proposedWaiting` writes proposed and not answered; null if it can. */
  refusal(bytes: number, proposedWaiting: number): QueueRefusal | null {
    const full = this.entriesRefusal(proposedWaiting);
    if (full !== null) return full;
    if (this.items.length > 0 && this.bytes + bytes > this.limits.bytesMax) return { kind: 'bytes', queuedBytes: this.bytes };
    return null;
  }

  /** Queues a write the caller found no refusal for. */
  push(item: T, bytes: number): void {
    invariant(Number.isSafeInteger(bytes) && bytes >= 0, `a write of ${bytes} bytes`);
    this.items.push({ item, bytes });
    this.bytes += bytes;
  }

  /** The next group to propose, oldest first, within the group bounds (at least one write while any is queued). */
  takeGroup(): T[] {
    let count = 0;
    let bytes = 0;
    while (count < this.items.length && count < this.limits.groupEntriesMax) {
      const next = this.items[count]!.bytes;
      if (count > 0 && bytes + next > this.limits.groupBytesMax) break;
      bytes += next;
      count++;
    }
    this.bytes -= bytes;
    return this.items.splice(0, count).map((queued) => queued.item);
  }

  /** Everything queued (the node stops: each is refused). */
  takeAll(): T[] {
    this.bytes = 0;
    return this.items.splice(0).map((queued) => queued.item);
  }
}
