/**
 * The replica's side of forwarded commands (wire.ts): sends a command to the master over the cluster transport and
 * waits for its outcome. Each command gets a correlation id and waits, bounded in number (OVERLOADED) and in time
 * (WRITE_OUTCOME_UNKNOWN). Failures (worded in refusals.ts):
 *
 *   no master known                         CLUSTER_NO_MASTER (nothing sent)
 *   no connection to the master, queue full MASTER_UNREACHABLE (nothing sent)
 *   the connection to the master dropped    WRITE_OUTCOME_UNKNOWN (it may have been applied)
 *   another node became master              WRITE_OUTCOME_UNKNOWN (the former master may still have committed it)
 *   no answer in time                       WRITE_OUTCOME_UNKNOWN
 *   the master refused (NOT_MASTER, 412, …) the master's error, unchanged (ForwardedRefusal)
 */

import { randomUUID } from 'node:crypto';

import type { ApplyResult } from '../content/apply.js';
import type { ConclaveError } from '../errors/catalogue.js';
import type { Committed } from '../node/clusterRuntime.js';
import { FormerMasters } from './formerMasters.js';
import {
  describeMaster,
  givenUpForNewMaster,
  masterNotConnected,
  refusalFromMaster,
  tooManyForwards,
  unknownCommandOutcome,
  writeRefusal,
  type MasterDescription,
} from './refusals.js';
import { outcomeProblem, type CommandOutcome, type CommandRequest, type ForwardableCommand, type WriteAuthority } from './wire.js';

/** What the command client needs of the cluster runtime: who the master is, and news when that may change. */
export interface CommandClientView {
  softState(): { readonly master: string | null };
  clusterState(): { readonly nodes: readonly { readonly id: string; readonly name: string; readonly httpAddress?: string }[] };
  self(): { readonly id: string };
  onChange(listener: () => void): () => void;
}

export interface CommandClientOptions {
  /** Commands in flight to the master at once; more are refused with OVERLOADED (http.forwardCommandsMax). */
  readonly commandsMax: number;
  /** From sending to the master's answer: cluster.writeTimeoutMs plus http.forwardResponseMarginMs. */
  readonly answerTimeoutMs: number;
}

interface Waiting {
  readonly masterId: string;
  readonly resolve: (committed: Committed) => void;
  readonly reject: (err: ConclaveError) => void;
  readonly timer: NodeJS.Timeout;
}

export class CommandClient {
  private readonly idPrefix = randomUUID();
  private nextId = 0;
  private readonly waiting = new Map<string, Waiting>();
  /** The ids in `waiting`, by the master they went to: given up when another node becomes master. */
  private readonly sent = new FormerMasters<string>('whenMasterChanges', (id, formerMaster) =>
    this.settle(id, unknownCommandOutcome(this.describe(formerMaster), givenUpForNewMaster, 'master changed')),
  );
  /** Given the promise of every forward (src/metrics/forwardMetrics.ts); null: none. */
  observe: ((forward: Promise<Committed>) => void) | null = null;

  constructor(
    private readonly view: CommandClientView,
    private readonly link: { send(nodeId: string, message: CommandRequest): boolean },
    private readonly options: CommandClientOptions,
  ) {
    // Lives as long as the runtime: the node's stop ends both (and the transport's stop fails what is in flight).
    view.onChange(() => this.sent.masterReported(view.softState().master));
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
      return Promise.reject(writeRefusal(null));
    }
    const master = this.describe(masterId);
    if (this.waiting.size >= this.options.commandsMax) {
      return Promise.reject(tooManyForwards(this.waiting.size, 'writes', { forwardCommandsMax: this.options.commandsMax }));
    }
    const id = `${this.idPrefix}.${this.nextId++}`;
    if (!this.link.send(masterId, { type: 'commandRequest', id, command, authority })) {
      return Promise.reject(masterNotConnected(master));
    }
    return new Promise<Committed>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.settle(id, unknownCommandOutcome(master, `did not answer within ${this.options.answerTimeoutMs} ms`, 'timeout'));
      }, this.options.answerTimeoutMs);
      this.waiting.set(id, { masterId, resolve, reject, timer });
      this.sent.add(masterId, id);
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
    this.forget(outcome.id, waiting);
    if (outcome.ok) {
      waiting.resolve({ index: outcome.index, result: outcome.result as ApplyResult });
      return null;
    }
    waiting.reject(refusalFromMaster(outcome.error, outcome.appliedIndex));
    return null;
  }

  /** The connection to `peerId` dropped: what was sent on it may or may not have been proposed. */
  peerDown(peerId: string): void {
    for (const [id, waiting] of this.waiting) {
      if (waiting.masterId === peerId) this.settle(id, unknownCommandOutcome(this.describe(peerId), 'lost its connection after the command was sent', 'connection lost'));
    }
  }

  private settle(id: string, error: ConclaveError): void {
    const waiting = this.waiting.get(id);
    if (waiting === undefined) return;
    this.forget(id, waiting);
    waiting.reject(error);
  }

  private forget(id: string, waiting: Waiting): void {
    this.waiting.delete(id);
    this.sent.delete(waiting.masterId, id);
    clearTimeout(waiting.timer);
  }

  private describe(masterId: string): MasterDescription {
    return describeMaster(masterId, this.view.clusterState().nodes);
  }
}
