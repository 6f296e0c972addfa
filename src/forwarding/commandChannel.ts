/**
 * Forwarded commands on the cluster transport: the side channel src/node/clusterNetwork.ts hands every message of
 * a forwarding type (wire.ts), unread. A request goes to the command server (this node as master), an outcome to the
 * command client (this node as the replica that sent the command); a dropped connection fails what the client sent
 * on it. Nothing here reaches the core.
 */

import type { Logger } from 'pino';

import type { SideChannel } from '../node/clusterNetwork.js';
import type { CommandClient } from './commandClient.js';
import type { CommandServer } from './commandServer.js';
import { isForwardedMessageType } from './wire.js';

export class CommandChannel implements SideChannel {
  constructor(
    private readonly client: CommandClient,
    private readonly server: CommandServer,
    private readonly log: Logger,
  ) {}

  carries(type: unknown): boolean {
    return isForwardedMessageType(type);
  }

  receive(from: string, message: Record<string, unknown>): void {
    if (message['type'] === 'commandRequest') {
      this.server.receive(from, message);
      return;
    }
    const problem = this.client.receive(from, message);
    if (problem !== null) this.log.warn({ from, problem }, 'dropped a malformed outcome of a forwarded command');
  }

  peerDown(peerId: string): void {
    this.client.peerDown(peerId);
  }
}
