import { invariant } from '../errors/catalogue.js';

/** A read index being confirmed on the master: answered once a quorum acknowledged an append numbered ≥ minSeq. */
export interface PendingRead {
  readonly id: string;
  /** The node that asked (the master itself for its own reads). */
  readonly from: string;
  readonly minSeq: number;
}

/**
 * The reads a master is confirming (Raft thesis §6.4), oldest first, at most `pendingMax` of them. Each waits for a
 * quorum to acknowledge an append sent after it was asked — numbered from its minSeq — and for an entry of the
 * master's term to be committed; the core decides both and takes the confirmed ones from here. Reads are asked in
 * the order of the appends' numbers, so the confirmed ones are always a prefix.
 */
export class ReadIndexQueue {
  private reads: PendingRead[] = [];

  constructor(private readonly pendingMax: number) {
    invariant(Number.isInteger(pendingMax) && pendingMax >= 1, `readIndexPendingMax must be a positive integer, got ${pendingMax}`);
  }

  get size(): number {
    return this.reads.length;
  }

  /** Queues a read; false (and nothing queued) when pendingMax are waiting already. */
  add(read: PendingRead): boolean {
    if (this.reads.length >= this.pendingMax) return false;
    invariant(this.reads.length === 0 || this.reads[this.reads.length - 1]!.minSeq <= read.minSeq, `a read asked at ${read.minSeq} after one at ${this.reads[this.reads.length - 1]?.minSeq}`);
    this.reads.push(read);
    return true;
  }

  /** Takes the reads that an acknowledgement by a quorum of appends numbered up to `confirmedSeq` confirms. */
  takeConfirmed(confirmedSeq: number): PendingRead[] {
    let count = 0;
    while (count < this.reads.length && this.reads[count]!.minSeq <= confirmedSeq) count++;
    return count === 0 ? [] : this.reads.splice(0, count);
  }

  /** Takes every read (the master stepped down, or a new reign starts). */
  takeAll(): PendingRead[] {
    return this.reads.splice(0);
  }
}
