import { Counter, type Registry } from 'prom-client';

import { isConclaveError } from '../errors/catalogue.js';
import { ForwardedRefusal } from '../forwarding/refusals.js';

/**
 * What became of the writes (and, in coordinator mode ALL, the reads) this node sent on to the master:
 *
 *   ok        the master applied it (or answered 2xx/3xx)
 *   refused   the master decided a refusal (a failed precondition, NOT_MASTER, its own OVERLOADED…)
 *   unknown   sent, and no answer came (the connection dropped, the master changed, a timeout):
 *             WRITE_OUTCOME_UNKNOWN, the write may have been applied
 *   not_sent  nothing reached the master (no connection, no master known, this node's bound on forwards)
 *
 * `via` is how: "command" (the command over the cluster transport) or "http" (the whole request).
 */
export type ForwardOutcome = 'ok' | 'refused' | 'unknown' | 'not_sent';

export class ForwardMetrics {
  private readonly forwarded: Counter<'via' | 'outcome'>;

  constructor(registry: Registry) {
    this.forwarded = new Counter({
      name: 'conclave_forwarded_requests_total',
      help: 'Requests this node forwarded to the master, by how (via="command"|"http") and outcome (ok, refused, unknown, not_sent).',
      labelNames: ['via', 'outcome'],
      registers: [registry],
    });
    for (const via of ['command', 'http']) for (const outcome of ['ok', 'refused', 'unknown', 'not_sent']) this.forwarded.inc({ via, outcome }, 0);
  }

  /** For CommandClient.observe: the promise of one forwarded command. */
  readonly observeCommand = (forward: Promise<unknown>): void => {
    forward.then(
      () => this.forwarded.inc({ via: 'command', outcome: 'ok' }),
      (err: unknown) => this.forwarded.inc({ via: 'command', outcome: failedOutcome(err) }),
    );
  };

  /** For RequestRelay.observe: one forwarded request, settled once the master's answer is relayed on `reply`. */
  readonly observeRequest = (forward: Promise<unknown>, reply: { readonly statusCode: number }): void => {
    forward.then(
      () => this.forwarded.inc({ via: 'http', outcome: reply.statusCode < 400 ? 'ok' : 'refused' }),
      (err: unknown) => this.forwarded.inc({ via: 'http', outcome: failedOutcome(err) }),
    );
  };
}

function failedOutcome(err: unknown): ForwardOutcome {
  if (err instanceof ForwardedRefusal) return 'refused';
  if (isConclaveError(err) && err.code === 'WRITE_OUTCOME_UNKNOWN') return 'unknown';
  return 'not_sent';
}
