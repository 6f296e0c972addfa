/**
 * Every refusal forwarding makes or relays, in one place so that the request relay (requestRelay.ts) and the command
 * client (commandClient.ts) word the same situation the same way:
 *
 *   CLUSTER_NO_MASTER / NOT_MASTER   a write this node cannot take (writeRefusal), as the runtime words it
 *   MASTER_UNREACHABLE               nothing reached the master: no address to dial, no connection
 *   WRITE_OUTCOME_UNKNOWN            sent, and no answer: the write may have been applied
 *   OVERLOADED                       this node's bound on forwards in flight
 *   SHUTTING_DOWN                    the master stops and takes no more forwarded commands
 *   ForwardedRefusal                 a refusal the master decided, rethrown here with the master's applied index
 *
 * A master is named by `describeMaster`: its name (its id while this node's cluster state does not know it) and the
 * details every refusal about it carries. The master's checks of a forwarded command (wire.ts, commandServer.ts)
 * refuse with the errors the same HTTP request would get there, and stay beside those checks.
 */

import { ConclaveError, errorCatalogue, type ErrorCode } from '../errors/catalogue.js';
import { isWriteMethod } from './decision.js';
import type { ForwardedError } from './wire.js';

/** A master as refusals name it. */
export interface MasterDescription {
  readonly id: string;
  /** Its name, or its id while this node's cluster state does not list it. */
  readonly name: string;
  /** `master` (the name) and `masterHttpAddress` when known: where a client can send its writes itself. */
  readonly details: Record<string, unknown>;
}

export function describeMaster(
  masterId: string,
  nodes: readonly { readonly id: string; readonly name: string; readonly httpAddress?: string }[],
): MasterDescription {
  const node = nodes.find((n) => n.id === masterId);
  const name = node?.name ?? masterId;
  return { id: masterId, name, details: { master: name, ...(node?.httpAddress !== undefined ? { masterHttpAddress: node.httpAddress } : {}) } };
}

/** The refusal of a write this node cannot take, in the same words as the cluster runtime's. */
export function writeRefusal(master: MasterDescription | null): ConclaveError {
  if (master === null) {
    return new ConclaveError('CLUSTER_NO_MASTER', 'No master is elected at the moment; writes are refused until one is. Retry shortly.');
  }
  return new ConclaveError('NOT_MASTER', `This node is not the master; send writes to ${master.name}.`, master.details);
}

/** The master has published no address this node can dial: for a redirect (`internal` false) or a forward. */
export function unknownMasterAddress(master: MasterDescription, internal: boolean): ConclaveError {
  const what = internal ? 'an internal HTTPS address (TLS between nodes: http.internalPort)' : 'an HTTP address';
  return new ConclaveError(
    'MASTER_UNREACHABLE',
    `The master ${master.name} has not published ${what} this node can dial yet (set transport.publishHost when listening on 0.0.0.0); retry shortly.`,
    master.details,
  );
}

/** The command client has no working connection to the master (or its send queue is full): nothing was sent. */
export function masterNotConnected(master: MasterDescription): ConclaveError {
  return new ConclaveError(
    'MASTER_UNREACHABLE',
    `This node has no working connection to the master ${master.name} (or its send queue is full); nothing was sent. Retry shortly.`,
    master.details,
  );
}

/** This node's bound on forwards in flight: `what` are requests (the relay) or writes (the command client). */
export function tooManyForwards(inFlight: number, what: 'requests' | 'writes', bound: Record<string, number>): ConclaveError {
  return new ConclaveError('OVERLOADED', `${inFlight} ${what} are already being forwarded to the master; retry shortly.`, bound);
}

/** The master refuses a forwarded command during its graceful stop; nothing was applied. */
export function masterShuttingDown(): ConclaveError {
  return new ConclaveError('SHUTTING_DOWN', 'The master is shutting down; the write was not applied. Retry shortly.');
}

/**
 * A write sent to the master whose answer did not come: `where` names the master (and the address the relay used),
 * `what` what happened, `cause` the short reason in the details.
 */
export function writeOutcomeUnknown(where: string, master: MasterDescription, what: string, cause: string): ConclaveError {
  return new ConclaveError(
    'WRITE_OUTCOME_UNKNOWN',
    `The forward of this write to ${where} ${what}; the write may have been applied. Read before retrying.`,
    { ...master.details, cause },
  );
}

/** The command client's unknown outcome: the command went on the transport and its answer did not come. */
export function unknownCommandOutcome(master: MasterDescription, what: string, cause: string): ConclaveError {
  return writeOutcomeUnknown(`the master ${master.name}`, master, what, cause);
}

/** Why a forward or a command was given up: the node it went to is no longer the master. */
export const givenUpForNewMaster = 'was given up: another node became master meanwhile';

/** The abort reason of a relayed request given up because another node became master. */
export class MasterChangedWhileForwarding extends Error {
  readonly code = 'MASTER_CHANGED_WHILE_FORWARDING';
}

/** Failures in which no byte of the request can have reached the master: the connection was never made. */
const notConnectedCodes = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
]);

function errorCodeOf(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown }; errors?: { code?: unknown }[] } | null;
  for (const code of [e?.code, e?.cause?.code, e?.errors?.[0]?.code]) {
    if (typeof code === 'string') return code;
  }
  return 'unknown error';
}

/**
 * A relayed request that failed before any answer: MASTER_UNREACHABLE when nothing reached the master (or for a
 * read); WRITE_OUTCOME_UNKNOWN when a write was sent and the connection failed or the answer did not come in time.
 */
export function forwardFailure(err: unknown, master: MasterDescription, forwardUrl: string | null, method: string, responseTimeoutMs: number): ConclaveError {
  const code = errorCodeOf(err);
  const where = `the master ${master.name} at ${forwardUrl}`;
  if (notConnectedCodes.has(code)) {
    return new ConclaveError('MASTER_UNREACHABLE', `Could not connect to ${where} to forward the request (${code}); nothing was sent. Retry shortly.`, {
      ...master.details,
      cause: code,
    });
  }
  const what =
    code === 'UND_ERR_HEADERS_TIMEOUT'
      ? `did not answer within ${responseTimeoutMs} ms`
      : err instanceof MasterChangedWhileForwarding
        ? givenUpForNewMaster
        : `failed after the request was sent (${code})`;
  if (!isWriteMethod(method)) {
    return new ConclaveError('MASTER_UNREACHABLE', `The forward to ${where} ${what}. Retry shortly.`, { ...master.details, cause: code });
  }
  return writeOutcomeUnknown(where, master, what, code);
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

/** The master's refusal of a forwarded command, as this node rethrows it: a code it does not know becomes INTERNAL. */
export function refusalFromMaster(error: ForwardedError, masterAppliedIndex: number): ForwardedRefusal {
  const { code, message, details } = error;
  return Object.hasOwn(errorCatalogue, code)
    ? new ForwardedRefusal(code as ErrorCode, message, details, masterAppliedIndex)
    : new ForwardedRefusal('INTERNAL', `The master answered with an error this node does not know (${code}): ${message}`, {}, masterAppliedIndex);
}
