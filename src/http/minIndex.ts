import type { FastifyRequest } from 'fastify';

import { anonymous } from '../auth/authenticator.js';
import { ConclaveError } from '../errors/catalogue.js';
import { header } from './representation.js';

/**
 * `X-Conclave-Min-Index: N`: the request waits (bounded) until this node has applied journal index N. A client
 * that wrote through one node and reads through another sends the write's X-Conclave-Index, and so reads its own
 * write wherever it reads.
 *
 * An index is a promise only the cluster can keep, so the header is bounded twice: an index more than
 * `aheadEntriesMax` beyond the commit index this node knows was never issued by this cluster (or this node is too
 * far behind to reach it in any wait) and is refused at once, and one user (anonymous callers: one source address)
 * holds at most `waitersPerUserMax` of the `waitersMax` waiting slots — so nobody's absurd indices can make every
 * other client's read-your-writes request wait for a slot.
 */
export interface AppliedIndexSource {
  readonly appliedIndex: number;
  onChange(listener: () => void): () => void;
  /** The commit index this node knows: the master's own, or as far as a follower has heard and stored. */
  softState(): { readonly commitIndex: number };
}

export interface MinIndexLimits {
  readonly waitMs: number;
  readonly waitersMax: number;
  readonly waitersPerUserMax: number;
  readonly aheadEntriesMax: number;
}

/** Who holds a waiting slot: a user, or for anonymous callers one source address. */
export function waiterOf(request: FastifyRequest): string {
  const principal = request.principal ?? anonymous;
  return principal === anonymous ? `anonymous@${request.ip}` : `user:${principal.name}`;
}

export class MinIndexGate {
  private waiters = 0;
  private readonly waitersOf = new Map<string, number>();

  constructor(
    private readonly source: AppliedIndexSource,
    private readonly limits: MinIndexLimits,
  ) {}

  async admit(request: FastifyRequest): Promise<void> {
    const text = header(request.headers, 'x-conclave-min-index');
    if (text === undefined) return;
    if (!/^\d{1,15}$/.test(text.trim())) {
      throw new ConclaveError('INVALID_REQUEST', 'X-Conclave-Min-Index must be a journal index: a non-negative integer (send back an X-Conclave-Index).');
    }
    await this.reach(request, Number(text.trim()), 'X-Conclave-Min-Index');
  }

  /**
   * Waits (bounded) until `minIndex` is applied, as X-Conclave-Min-Index does for `request`'s caller (`what` names
   * where the client sent the index), within that caller's share of the waiting slots; one far ahead is refused.
   */
  async reach(request: FastifyRequest, minIndex: number, what: string): Promise<void> {
    if (this.source.appliedIndex >= minIndex) return;
    this.checkAhead(minIndex, what);
    const waiter = waiterOf(request);
    const mine = this.waitersOf.get(waiter) ?? 0;
    if (mine >= this.limits.waitersPerUserMax) {
      throw new ConclaveError('OVERLOADED', `${mine} of your requests are already waiting for an index; retry shortly.`, {
        minIndexWaitersPerUserMax: this.limits.waitersPerUserMax,
      });
    }
    this.waitersOf.set(waiter, mine + 1);
    try {
      await this.waitFor(minIndex);
    } finally {
      const left = this.waitersOf.get(waiter)! - 1;
      if (left === 0) this.waitersOf.delete(waiter);
      else this.waitersOf.set(waiter, left);
    }
  }

  /**
   * An index far beyond the commit index this node knows was never issued by this cluster (or this node is too far
   * behind to reach it in any wait): refused at once. `what` names where the client sent it.
   */
  private checkAhead(minIndex: number, what: string): void {
    const commitIndex = this.source.softState().commitIndex;
    if (minIndex > commitIndex + this.limits.aheadEntriesMax) {
      throw new ConclaveError(
        'MIN_INDEX_AHEAD',
        `${what} ${minIndex} is more than ${this.limits.aheadEntriesMax} entries beyond the commit index this node knows (${commitIndex}): ` +
          'send back an index this cluster gave you, or read from another node.',
        { minIndex, commitIndex, minIndexAheadEntriesMax: this.limits.aheadEntriesMax },
      );
    }
  }

  /** Resolves once this node has applied `minIndex`; NOT_READY after the wait limit, OVERLOADED beyond the waiters limit. */
  async waitFor(minIndex: number): Promise<void> {
    if (this.source.appliedIndex >= minIndex) return;
    if (this.waiters >= this.limits.waitersMax) {
      throw new ConclaveError('OVERLOADED', `${this.waiters} requests are already waiting for an index; retry shortly.`, { minIndexWaitersMax: this.limits.waitersMax });
    }
    this.waiters++;
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          unsubscribe();
          reject(
            new ConclaveError('NOT_READY', `This node has applied up to ${this.source.appliedIndex}, not yet ${minIndex}; retry, or read from another node.`, {
              minIndex,
              appliedIndex: this.source.appliedIndex,
            }),
          );
        }, this.limits.waitMs);
        const unsubscribe = this.source.onChange(() => {
          if (this.source.appliedIndex < minIndex) return;
          clearTimeout(timer);
          unsubscribe();
          resolve();
        });
      });
    } finally {
      this.waiters--;
    }
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Waits for journal indexes a request names (X-Conclave-Min-Index, a feed position). */
    minIndexGate: MinIndexGate;
  }
}
