/**
 * Where a write's command goes: proposed here, or sent to the master as a command (commandClient.ts). Decided
 * once, here, when the command is ready to propose; the request relay only decided earlier (decision.ts, 'command')
 * that the route may serve the write up to the proposal, and says so in the origin (`mayForward`).
 *
 * The shape chosen: Repository (src/node/repository.ts) builds the commands and draws their inputs as before, but
 * knows nothing of forwarding. It is generic in the origin of a write, reads only the author from it, and hands
 * every command of a write method to a proposer injected by the composition root (src/node/conclaveNode.ts):
 * `WriteRouter.propose`. The routes pass a WriteOrigin (src/http/writeOrigin.ts) to Repository's write methods as
 * they did. The bootstrap and a new token key, which carry no origin, go to the runtime directly; a binary upload
 * comes here and is proposed here (setBinary is not forwardable: its bytes reach the master in a relayed request).
 */

import type { Command } from '../content/commands.js';
import type { Committed } from '../node/clusterRuntime.js';
import type { CommandClient } from './commandClient.js';
import { isForwardable, type WriteAuthority } from './wire.js';

/**
 * Who asks for a write, and whether the request coordinator chose to forward it: a replica in CUD or ALL mode
 * serves a JSON write itself up to the proposal and sends the command to the master.
 */
export interface WriteOrigin {
  readonly authority: WriteAuthority;
  /** False for a write this node must propose itself or refuse (X-Conclave-Direct, a master at admission). */
  readonly mayForward: boolean;
}

/**
 * The reset `conclave node reset-admin-password` recorded on a stopped node, proposed by that node once it knows a
 * master: vouched for by the node (adminReset), and forwarded when the master is another node.
 */
export const adminResetOrigin: WriteOrigin = { authority: { user: 'admin', needs: 'adminReset' }, mayForward: true };

export class WriteRouter {
  constructor(
    /** Proposes on this node (runtime.propose): refuses with NOT_MASTER / CLUSTER_NO_MASTER when it is not the master. */
    private readonly proposeHere: (command: Command) => Promise<Committed>,
    private readonly client: CommandClient,
  ) {}

  /**
   * Proposes here on the master; on a replica, a write the coordinator let through goes to the master as a command
   * over the cluster transport. Whether this node is the master is read now, not at admission: a replica that has
   * become master meanwhile proposes itself, and one that has lost it forwards (or refuses, unless the write may be
   * forwarded).
   */
  propose(command: Command, origin: WriteOrigin): Promise<Committed> {
    if (origin.mayForward && isForwardable(command) && this.client.masterIsElsewhere()) {
      return this.client.forward(command, origin.authority);
    }
    return this.proposeHere(command);
  }
}
