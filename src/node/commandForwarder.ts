import { randomUUID } from 'node:crypto';

import type { ApplyResult } from '../content/apply.js';
import { ConclaveError, errorCatalogue, type ErrorCode } from '../errors/catalogue.js';
import type { Committed } from './clusterRuntime.js';
import { outcomeProblem, type CommandOutcome, type CommandRequest, type ForwardableCommand, type WriteAuthority } from './forwardedCommands.js';

/** What the forwarder needs of the cluster runtime: who the master is, and news when that may change. */
export interface CommandForwarderView {
  softState(): { readonly master: string | null };
  clusterState(): { readonly nodes: readonly { readonly id: string; readonly name: string; readonly httpAddress?: string }[] };
  self(): { readonly id: string };
  onChange(listener: () => void): () => void;
}

export interface CommandForwarderOptions {
  /** Commands in flight to the master at once; more are refused with OVERLOADED (http.forwardCommandsMax). */
  readonly commandsMax: number;
  /** From sending to the master's answer: cluster.writeTimeoutMs plus http.forwardResponseMarginMs. */
  readonly answerTimeoutMs: number;
}

/** A refusal the master decided: its X-Conclave-Index is the master's applied index, as the HTTP forward's was. */
export class ForwardedRefusal extends ConclaveError {
  constructor(
    code: ErrorCode,
    message: string,
    details: Record<string, unknown>,
    readonly masterAppliedIndex: number,
  ) {
    super(code, message, details);
  }
}

interface Waiting {
  readonly masterId: string;
  readonly resolve: (committed: Committed) => void;
  readonly reject: (err: ConclaveError) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * The replica's side of forwarded commands (see forwardedCommands.ts). Each command gets a correlation id and
 * waits for the master's outcome, bounded in number (OVERLOADED) and in time (WRITE_OUTCOME_UNKNOWN). Failures:
 *
 *   no master known                         CLUSTER_NO_MASTER (nothing sent)
 *   no connection to the master, queue full MASTER_UNREACHABLE (nothing sent)
 *   the connection to the master dropped    WRITE_OUTCOME_UNKNOWN (it may have been applied)
 *   another node became master              WRITE_OUTCOME_UNKNOWN (the former master may still have committed it)
 *   no answer in time                       WRITE_OUTCOME_UNKNOWN
 *   the master refused (NOT_MASTER, 412, …) the master's error, unchanged
 */
export class CommandForwarder {
  private readonly idPrefix = randomUUID();
  private nextId = 0;
  private readonly waiting = new Map<string, Waiting>();
  /** The master the commands in flight were last checked against (abandonFormerMasters). */
  private masterScanned: string | null = null;
  /** Given the promise of every forward (src/metrics/forwardMetrics.ts); null: none. */
  observe: ((forward: Promise<Committed>) => void) | null = null;

  constructor(
    private readonly view: CommandForwarderView,
    private readonly link: { send(nodeId: string, message: CommandRequest): boolean },
    private readonly options: CommandForwarderOptions,
  ) {
    // Lives as long as the runtime: the node's stop ends both (and the transport's stop fails what is in flight).
    view.onChange(() => this.abandonFormerMasters());
  }

  /** Commands sent and not yet answered (for tests and metrics). */
  get commandsInFlight(): number {
    return this.waiting.size;
  }

  /** Whether writes made here should go to another node: a master is known and it is not this one. */
  masterIsElsewhere(): boolean {
    const master = this.view.softState().master;
    return master !== null && master !== this.view.self().id;
  }

  forward(command: ForwardableCommand, authority: WriteAuthority): Promise<Committed> {
    const forward = this.send(command, authority);
    this.observe?.(forward);
    return forward;
  }

  private send(command: ForwardableCommand, authority: WriteAuthority): Promise<Committed> {
    const masterId = this.view.softState().master;
    if (masterId === null || masterId === this.view.self().id) {
      // The caller proposes here when this node is the master; reaching this means it just stopped being one.
      return Promise.reject(new ConclaveError('CLUSTER_NO_MASTER', 'No master is elected at the moment; writes are refused until one is. Retry shortly.'));
    }
    const master = this.describe(masterId);
    if (this.waiting.size >= this.options.commandsMax) {
      return Promise.reject(
        new ConclaveError('OVERLOADED', `${this.waiting.size} writes are already being forwarded to the master; retry shortly.`, {
          forwardCommandsMax: this.options.commandsMax,
        }),
      );
    }
    const id = `${this.idPrefix}.${this.nextId++}`;
    if (!this.link.send(masterId, { type: 'commandRequest', id, command, authority })) {
      return Promise.reject(
        new ConclaveError('MASTER_UNREACHABLE', `This node has no working connection to the master ${master.name} (or its send queue is full); nothing was sent. Retry shortly.`, master.details),
      );
    }
    return new Promise<Committed>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.settle(id, unknownOutcome(master, `did not answer within ${this.options.answerTimeoutMs} ms`, 'timeout'));
      }, this.options.answerTimeoutMs);
      this.waiting.set(id, { masterId, resolve, reject, timer });
    });
  }

  /** An outcome from a peer. Unknown ids (answered already, timed out, of a former process) are ignored. */
  receive(from: string, message: Record<string, unknown>): string | null {
    const problem = outcomeProblem(message);
    if (problem !== null) return problem;
    const outcome = message as unknown as CommandOutcome;
    const waiting = this.waiting.get(outcome.id);
    if (waiting === undefined) return null;
    if (waiting.masterId !== from) return 'an answer from a node the command was not sent to';
    this.waiting.delete(outcome.id);
    clearTimeout(waiting.timer);
    if (outcome.ok) {
      waiting.resolve({ index: outcome.index, result: outcome.result as ApplyResult });
      return null;
    }
    const { code, message: text, details } = outcome.error;
    waiting.reject(
      Object.hasOwn(errorCatalogue, code)
        ? new ForwardedRefusal(code as ErrorCode, text, details, outcome.appliedIndex)
        : new ForwardedRefusal('INTERNAL', `The master answered with an error this node does not know (${code}): ${text}`, {}, outcome.appliedIndex),
    );
    return null;
  }

  /** The connection to `peerId` dropped: what was sent on it may or may not have been proposed. */
  peerDown(peerId: string): void {
    for (const [id, waiting] of this.waiting) {
      if (waiting.masterId === peerId) this.settle(id, unknownOutcome(this.describe(peerId), 'lost its connection after the command was sent', 'connection lost'));
    }
  }

  /**
   * A master that was paused or cut off may never answer: once another is known, waiting the whole timeout only
   * holds the client (the HTTP forward learnt this from the SIGSTOP failover bench). Losing sight of the master
   * is no such news — an election may confirm it again — so until another is known the timeout bounds the wait.
   */
  private abandonFormerMasters(): void {
    const current = this.view.softState().master;
    // The runtime reports after every drain that may have changed something: scan only when the master did.
    if (current === null || current === this.masterScanned) return;
    this.masterScanned = current;
    for (const [id, waiting] of this.waiting) {
      if (waiting.masterId !== current) {
        this.settle(id, unknownOutcome(this.describe(waiting.masterId), 'was given up: another node became master meanwhile', 'master changed'));
      }
    }
  }

  private settle(id: string, error: ConclaveError): void {
    const waiting = this.waiting.get(id);
    if (waiting === undefined) return;
    this.waiting.delete(id);
    clearTimeout(waiting.timer);
    waiting.reject(error);
  }

  private describe(masterId: string): { name: string; details: Record<string, unknown> } {
    const node = this.view.clusterState().nodes.find((n) => n.id === masterId);
    const name = node?.name ?? masterId;
    return { name, details: { master: name, ...(node?.httpAddress !== undefined ? { masterHttpAddress: node.httpAddress } : {}) } };
  }
}

function unknownOutcome(master: { name: string; details: Record<string, unknown> }, what: string, cause: string): ConclaveError {
  return new ConclaveError(
    'WRITE_OUTCOME_UNKNOWN',
    `The forward of this write to the master ${master.name} ${what}; the write may have been applied. Read before retrying.`,
    { ...master.details, cause },
  );
}
