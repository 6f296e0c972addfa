/**
 * The master's side of forwarded commands (wire.ts): checks each one (shape, kind, the author's role), proposes it
 * like a write that came in over HTTP, and answers the replica with the outcome.
 */

import type { Logger } from 'pino';

import { can } from '../auth/authenticator.js';
import type { Command } from '../content/commands.js';
import type { User } from '../content/model.js';
import { ConclaveError } from '../errors/catalogue.js';
import type { Committed } from '../node/clusterRuntime.js';
import { masterShuttingDown } from './refusals.js';
import {
  checkForwardedCommand,
  forwardedErrorOf,
  requestEnvelopeProblem,
  type CommandOutcome,
  type ForwardableCommand,
  type WriteAuthority,
} from './wire.js';

export interface CommandServerDeps {
  /** runtime.propose: refuses with NOT_MASTER / CLUSTER_NO_MASTER when this node is not the master. */
  propose(command: Command): Promise<Committed>;
  /** Checks under this node's own settings and cluster state that its routes make too (a batch's limits); throws the refusal. */
  checkCommand?(command: ForwardableCommand): void;
  readonly appliedIndex: number;
  userByName(name: string): User | undefined;
  /** Sends the outcome to the replica; false when it cannot (the replica's request then times out as unknown). */
  send(nodeId: string, message: CommandOutcome): boolean;
  now(): Date;
}

/**
 * The command server keeps no queue of its own: what it proposes waits in the runtime's write queue, bounded by
 * storage.writeQueueEntriesMax (OVERLOADED beyond), and every proposal settles within cluster.writeTimeoutMs.
 */
export class CommandServer {
  private inFlight = 0;
  private closing = false;
  private onIdle: (() => void) | null = null;

  constructor(
    private readonly deps: CommandServerDeps,
    private readonly log: Logger,
  ) {}

  /**
   * A graceful stop treats forwarded commands as the HTTP server treats requests: new ones are refused with
   * SHUTTING_DOWN (not applied: the replica's client retries), those under way are answered before the runtime
   * closes. Resolves once none is under way, or after `waitMs` (http.shutdownGraceMs).
   */
  close(waitMs: number): Promise<void> {
    this.closing = true;
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, waitMs);
      this.onIdle = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  receive(from: string, message: Record<string, unknown>): void {
    const problem = requestEnvelopeProblem(message);
    if (problem !== null) {
      this.log.warn({ from, problem }, 'dropped a malformed forwarded command');
      return;
    }
    const id = message['id'] as string;
    let checked: { command: ForwardableCommand; authority: WriteAuthority };
    try {
      if (this.closing) throw masterShuttingDown();
      checked = checkForwardedCommand(message['command'], message['authority']);
      this.checkAuthority(checked.authority);
      this.deps.checkCommand?.(checked.command);
    } catch (err) {
      if ((err as ConclaveError).code === 'INTERNAL') this.log.warn({ from, err }, 'refused a forwarded command');
      this.answer(from, { type: 'commandOutcome', id, appliedIndex: this.deps.appliedIndex, ok: false, error: forwardedErrorOf(err) });
      return;
    }
    // The time comes from the master's clock, as it did when the whole request was forwarded: a replica with a
    // skewed clock must not write its skew into createdAt/modifiedAt (which then could run backwards).
    const command = { ...checked.command, time: this.deps.now().toISOString() };
    this.inFlight++;
    this.deps
      .propose(command)
      .then(
        (committed) => this.answer(from, { type: 'commandOutcome', id, appliedIndex: this.deps.appliedIndex, ok: true, index: committed.index, result: committed.result }),
        (err: unknown) => {
          if (forwardedErrorOf(err).code === 'INTERNAL') this.log.error({ from, err }, 'a forwarded command failed');
          this.answer(from, { type: 'commandOutcome', id, appliedIndex: this.deps.appliedIndex, ok: false, error: forwardedErrorOf(err) });
        },
      )
      .finally(() => {
        this.inFlight--;
        if (this.inFlight === 0) this.onIdle?.();
      });
  }

  /** Forwarded commands proposed and not yet answered (for tests and metrics). */
  get commandsInFlight(): number {
    return this.inFlight;
  }

  /**
   * The replica authenticated and authorised the write from its own copy of the user table, which may lag: a user
   * deleted, demoted or given a new password on the master may still pass there for a few milliseconds. One lookup
   * by primary key here closes that window at no measurable cost, so a forwarded write is never accepted under a
   * role the master (whose journal orders the change) has already taken away. Credentials themselves are not
   * re-checked: a password changed after the replica verified it is a race the HTTP forward had too (the master
   * verified the request only on arrival).
   */
  private checkAuthority(authority: WriteAuthority): void {
    // Vouched for by the node that forwarded it (see WriteAuthority), not by a user: admin may be gone.
    if (authority.needs === 'adminReset') return;
    const user = this.deps.userByName(authority.user);
    if (user === undefined) {
      throw new ConclaveError('AUTH_INVALID', `The user ${authority.user} no longer exists; log in again.`);
    }
    if (authority.needs === 'ownPassword') return;
    const principal = { name: user.name, roles: user.roles };
    if (!can(principal, authority.needs)) {
      throw new ConclaveError('FORBIDDEN', `User ${user.name} (${user.roles.join(', ') || 'no roles'}) may not ${authority.needs}.`, { needs: authority.needs });
    }
  }

  private answer(to: string, outcome: CommandOutcome): void {
    if (!this.deps.send(to, outcome)) {
      this.log.warn({ to, id: outcome.id, ok: outcome.ok }, 'could not send the outcome of a forwarded command; the replica answers WRITE_OUTCOME_UNKNOWN');
    }
  }
}
