import type { FastifyRequest } from 'fastify';

import { ConclaveError } from '../errors/catalogue.js';
import { header } from './representation.js';

/**
 * `X-Conclave-Min-Index: N`: the request waits (bounded) until this node has applied journal index N. A client
 * that wrote through one node and reads through another sends the write's X-Conclave-Index, and so reads its own
 * write wherever it reads.
 */
export interface AppliedIndexSource {
  readonly appliedIndex: number;
  onChange(listener: () => void): () => void;
}

export class MinIndexGate {
  private waiters = 0;

  constructor(
    private readonly source: AppliedIndexSource,
    private readonly waitMs: number,
    private readonly waitersMax: number,
  ) {}

  async admit(request: FastifyRequest): Promise<void> {
    const text = header(request.headers, 'x-conclave-min-index');
    if (text === undefined) return;
    if (!/^\d{1,15}$/.test(text.trim())) {
      throw new ConclaveError('INVALID_REQUEST', 'X-Conclave-Min-Index must be a journal index: a non-negative integer (send back an X-Conclave-Index).');
    }
    await this.waitFor(Number(text.trim()));
  }

  /** Resolves once this node has applied `minIndex`; NOT_READY after the wait limit, OVERLOADED beyond the waiters limit. */
  async waitFor(minIndex: number): Promise<void> {
    if (this.source.appliedIndex >= minIndex) return;
    if (this.waiters >= this.waitersMax) {
      throw new ConclaveError('OVERLOADED', `${this.waiters} requests are already waiting for an index; retry shortly.`, { minIndexWaitersMax: this.waitersMax });
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
        }, this.waitMs);
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
