/**
 * The decision table of the request coordinator: what a node does with one request, from the coordinator mode, the
 * method and path, and where the master is. Pure: the request relay (requestRelay.ts) reads the inputs from the
 * request and the runtime and acts on the answer.
 *
 *   CUD       writes are forwarded to the master; reads are served here
 *   ALL       every API request is forwarded to the master
 *   DISABLED  writes are answered 307 Temporary Redirect to the same path and query on the master
 *
 * `X-Conclave-Direct: true` makes a node answer a request itself. A forwarded request carries
 * `X-Conclave-Forwarded-From: <name>`, and a node never forwards such a request again: if it is no longer the
 * master it refuses the write (NOT_MASTER naming the master it knows, or CLUSTER_NO_MASTER: refusals.ts) and the
 * refusal travels back unchanged. The answer the client gets through a forward carries the same header with the
 * forwarding node's name.
 */

import type { Config } from '../config/settings.js';

/** cluster.coordinatorMode: CUD, ALL or DISABLED. */
export type CoordinatorMode = Config['cluster']['coordinatorMode'];

export const forwardedFromHeader = 'x-conclave-forwarded-from';
export const directHeader = 'x-conclave-direct';

/**
 * What a node does with one request: serve it, forward it, serve it up to the proposal and forward the command,
 * redirect it, or refuse it (a write it cannot take).
 */
export type Coordination = 'local' | 'forward' | 'command' | 'redirect' | 'refuse';

export interface CoordinationInput {
  readonly mode: CoordinatorMode;
  readonly method: string;
  /** The URL's path, without the query. */
  readonly path: string;
  /** Where the master is, as this node sees it. */
  readonly master: 'self' | 'other' | 'none';
  /** The request asks to be answered here: X-Conclave-Direct, or it was forwarded already. */
  readonly answerHere: boolean;
  /** This node cannot write its journal (a full disk): its own refusal of a write says so, not "no master". */
  readonly persistFailing: boolean;
  /** The route turns the request into one command the master can take over the transport (`forwardsCommand`). */
  readonly sendsCommand?: boolean;
}

export function isWriteMethod(method: string): boolean {
  return method === 'POST' || method === 'PUT' || method === 'PATCH' || method === 'DELETE';
}

/**
 * Requests the coordinator may send to the master: the API under /api/v1, except the cluster views (status and
 * digest: they are how an operator sees what each node holds and thinks) and login (tokens are verified on every node with the replicated key).
 * Health and node-to-node endpoints always answer for the node they reach.
 */
function coordinated(method: string, path: string): boolean {
  if (path !== '/api/v1' && !path.startsWith('/api/v1/')) return false;
  if ((method === 'GET' || method === 'HEAD') && path.startsWith('/api/v1/cluster/')) return false;
  if (method === 'POST' && path === '/api/v1/auth/login') return false;
  // A backup comes from the node asked (the operator picks a replica to spare the master), never the master's.
  if (path === '/api/v1/admin/backup') return false;
  return true;
}

export function coordinationOf(input: CoordinationInput): Coordination {
  if (input.master === 'self' || !coordinated(input.method, input.path)) return 'local';
  if (!isWriteMethod(input.method)) {
    // Without a master a read is served here, marked stale (cluster.noMasterBlock decides whether at all).
    return input.mode === 'ALL' && input.master === 'other' && !input.answerHere ? 'forward' : 'local';
  }
  // Refused before the body is read: a replica must not take in a 1 GB upload only to say NOT_MASTER.
  if (input.master === 'none') return input.persistFailing ? 'local' : 'refuse';
  if (input.answerHere) return 'refuse';
  if (input.mode === 'DISABLED') return 'redirect';
  return input.sendsCommand === true ? 'command' : 'forward';
}
