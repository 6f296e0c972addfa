/**
 * Writes a replica forwards to the master as commands over the cluster transport ("forward the command, not the
 * request", as an etcd follower forwards a proposal). The replica authenticates, validates and builds the command;
 * the master checks it again, proposes it and answers with the outcome. These messages travel beside the
 * coordination messages but never reach the pure core: src/node/clusterNetwork.ts hands them, unread, to the command
 * channel (commandChannel.ts), which gives requests to the command server (master side, commandServer.ts) and
 * outcomes to the command client (replica side, commandClient.ts). This file holds their shapes and validators.
 *
 *   commandRequest  replica → master: a correlation id, the command, and the authority it was accepted under
 *   commandOutcome  master → replica: the same id, then the entry's index and ApplyResult, or a catalogue error
 *
 * Connections are one-way (src/transport/transport.ts): the request goes on the replica's connection to the
 * master, the outcome on the master's connection to the replica.
 */

import type { ApplyResult } from '../content/apply.js';
import { parseAccessEntries } from '../content/access.js';
import { batchOperationTypes, preconditionFields, schemaCommandTypes, type BatchOperation, type Command, type Preconditions } from '../content/commands.js';
import { parsePath } from '../content/paths.js';
import { parseSchemaDefinition, parseSchemaTypeName } from '../content/schema.js';
import { parseBinaryProperty, parseChildName, parseNodeType, parseProperties, parseRoles, parseUserName } from '../content/validate.js';
import { ConclaveError, isConclaveError } from '../errors/catalogue.js';

/** What let the replica accept the write; the master checks it against its own user table at proposal time. */
export interface WriteAuthority {
  /** The authenticated user. */
  readonly user: string;
  /**
   * write: content commands; admin: user commands; ownPassword: a user changing only its own password; adminReset:
   * the reset an operator recorded on a stopped node (`conclave node reset-admin-password`), proposed by that node
   * itself when it starts — no user vouches for it (admin may have been deleted or demoted: that is why one resets),
   * the node does, having proved the cluster secret, and it may only make `admin` an admin with a new password.
   */
  readonly needs: 'write' | 'admin' | 'ownPassword' | 'adminReset';
}

export interface CommandRequest {
  readonly type: 'commandRequest';
  /** Unique per sending process (a random prefix and a counter): an answer can never match a request of a restarted node. */
  readonly id: string;
  readonly command: ForwardableCommand;
  readonly authority: WriteAuthority;
}

export interface ForwardedError {
  readonly code: string;
  readonly message: string;
  readonly details: Record<string, unknown>;
}

export type CommandOutcome =
  | { readonly type: 'commandOutcome'; readonly id: string; readonly appliedIndex: number; readonly ok: true; readonly index: number; readonly result: ApplyResult }
  | { readonly type: 'commandOutcome'; readonly id: string; readonly appliedIndex: number; readonly ok: false; readonly error: ForwardedError };

export type ForwardedMessage = CommandRequest | CommandOutcome;

/**
 * Commands a client may have a replica forward. Never bootstrap (once in a repository's life, by the first master
 * itself) and never setBinary: an upload's entry may only be proposed once its blob is held by a quorum, which the
 * node that stored the upload ensures before proposing — binary uploads keep the HTTP forward to the master.
 */
export type ForwardableCommand = Exclude<Command, { type: 'bootstrap' } | { type: 'setBinary' } | { type: 'rotateTokenKey' } | { type: 'pruneChanges' } | { type: 'startHistory' } | { type: 'pruneVersions' } | { type: 'migrateSchema' }>;

const contentCommandTypes = new Set(['put', 'patch', 'delete', 'move', 'reorder', 'deleteBinary', 'batch', 'restore', 'setAccess']);
/**
 * Most operations a forwarded batch may hold: the settings' upper bound (the master then applies its own setting,
 * content.batchOperationsMax, as the route does: src/http/routes/batch.ts checkBatch).
 */
const batchOperationsForwardedMax = 10_000;
/** The fields of each kind of batch operation, as the route builds them. */
const batchOperationFields: Record<BatchOperation['type'], readonly string[]> = {
  put: ['type', 'path', 'newId', 'nodeType', 'properties', ...preconditionFields],
  patch: ['type', 'path', 'patch', ...preconditionFields],
  delete: ['type', 'path', 'recursive', ...preconditionFields],
  move: ['type', 'from', 'to', 'before', ...preconditionFields],
  reorder: ['type', 'path', 'order', ...preconditionFields],
};
const userCommandTypes = new Set(['putUser', 'deleteUser']);
/** Schema commands (schemaCommandTypes): an admin's, with exactly these fields. */
const schemaCommandFields: Readonly<Record<string, readonly string[]>> = {
  putSchema: ['type', 'typeName', 'definition', 'time', 'user', ...preconditionFields],
  deleteSchema: ['type', 'typeName', 'time', 'user', ...preconditionFields],
  setSchemaPolicy: ['type', 'schemasRequired', 'time', 'user'],
  resolveSchemaMigration: ['type', 'typeName', 'action', 'time', 'user'],
};

export function isForwardable(command: Command): command is ForwardableCommand {
  return contentCommandTypes.has(command.type) || userCommandTypes.has(command.type) || schemaCommandTypes.has(command.type) || command.type === 'setSearchPolicy';
}

export function isForwardedMessageType(type: unknown): type is ForwardedMessage['type'] {
  return type === 'commandRequest' || type === 'commandOutcome';
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isCount = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isText = (v: unknown, max: number) => typeof v === 'string' && v.length > 0 && v.length <= max;
const isId = (v: unknown) => isText(v, 128);

/** Why a commandOutcome is malformed, or null. A malformed one is dropped: its request then times out as unknown. */
export function outcomeProblem(m: Record<string, unknown>): string | null {
  if (!isId(m['id']) || !isCount(m['appliedIndex'])) return 'malformed id or index';
  if (m['ok'] === true) return isCount(m['index']) && isRecord(m['result']) ? null : 'a malformed result';
  if (m['ok'] !== false) return 'neither ok nor refused';
  const error = m['error'];
  if (!isRecord(error) || !isText(error['code'], 64) || typeof error['message'] !== 'string' || !isRecord(error['details'])) return 'a malformed error';
  return null;
}

/** The envelope of a commandRequest: without an id there is nobody to answer, so such a message is dropped. */
export function requestEnvelopeProblem(m: Record<string, unknown>): string | null {
  return isId(m['id']) ? null : 'no correlation id';
}

/**
 * Checks a forwarded command and its authority as the master would check an HTTP request, and returns the command
 * to propose. Input errors (a path, a type, properties, a name) throw the same catalogue errors the routes throw, so
 * a replica of another version gets the master's verdict; a command of a kind a client may not forward, or of the
 * wrong shape, throws INTERNAL: it is a bug or a version mismatch, never the client's doing. apply() trusts what
 * the routes validated, so nothing unchecked must reach the journal: a bad entry would fail on every node.
 */
export function checkForwardedCommand(raw: unknown, authority: unknown): { command: ForwardableCommand; authority: WriteAuthority } {
  const malformed = (why: string) =>
    new ConclaveError('INTERNAL', `The master refused a malformed forwarded command (${why}); the nodes may run incompatible versions.`);
  if (!isRecord(authority) || !isText(authority['user'], 256) || !['write', 'admin', 'ownPassword', 'adminReset'].includes(authority['needs'] as string)) {
    throw malformed('authority');
  }
  const by = authority as unknown as WriteAuthority;
  if (!isRecord(raw) || typeof raw['type'] !== 'string') throw malformed('no command');
  const c = raw;
  const type = c['type'] as string;
  const time = c['time'];
  if (typeof time !== 'string' || Number.isNaN(Date.parse(time))) throw malformed('time');
  if (contentCommandTypes.has(type)) {
    if (by.needs !== 'write' || c['user'] !== by.user) throw malformed('a content command under another authority');
    checkPreconditionsShape(c, malformed);
  } else if (userCommandTypes.has(type)) {
    if (by.needs === 'write') throw malformed('a user command under write authority');
    parseUserName(c['name']);
    if (by.needs === 'ownPassword' && (type !== 'putUser' || c['name'] !== by.user || c['roles'] !== undefined)) throw malformed('more than an own password change');
    if (by.needs === 'adminReset') {
      const roles = c['roles'];
      const adminOnly = Array.isArray(roles) && roles.length === 1 && roles[0] === 'admin';
      if (type !== 'putUser' || c['name'] !== 'admin' || by.user !== 'admin' || !adminOnly || typeof c['passwordHash'] !== 'string') throw malformed('more than an admin reset');
    }
  } else if (schemaCommandTypes.has(type as Command['type'])) {
    if (by.needs !== 'admin' || c['user'] !== by.user) throw malformed('a schema command under another authority');
    if (Object.keys(c).some((key) => !schemaCommandFields[type]!.includes(key))) throw malformed(`a field a ${type} command does not have`);
    checkPreconditionsShape(c, malformed);
    return { command: checkSchemaFields(c, malformed) as unknown as ForwardableCommand, authority: by };
  } else if (type === 'setSearchPolicy') {
    if (by.needs !== 'admin' || c['user'] !== by.user) throw malformed('a search policy under another authority');
    if (Object.keys(c).some((key) => !['type', 'indexUntypedNodes', 'time', 'user'].includes(key))) throw malformed('a field a setSearchPolicy command does not have');
    if (typeof c['indexUntypedNodes'] !== 'boolean') throw malformed('indexUntypedNodes');
    return { command: c as unknown as ForwardableCommand, authority: by };
  } else {
    throw malformed(`the command type ${JSON.stringify(type).slice(0, 40)} is not one a client may forward`);
  }
  if (type === 'batch') {
    const operations = c['operations'];
    if (!Array.isArray(operations) || operations.length === 0 || operations.length > batchOperationsForwardedMax) throw malformed('operations');
    const newIds = new Set<unknown>();
    operations.forEach((operation: unknown) => {
      if (!isRecord(operation) || typeof operation['type'] !== 'string' || !batchOperationTypes.has(operation['type'] as BatchOperation['type'])) {
        throw malformed('a batch operation of a kind a batch may not hold');
      }
      const type = operation['type'] as BatchOperation['type'];
      // Only what the route builds reaches the journal; ids of new nodes are never reused (apply holds it as an invariant).
      if (Object.keys(operation).some((key) => !batchOperationFields[type].includes(key))) throw malformed(`a field a ${type} operation does not have`);
      if (type === 'put') {
        if (newIds.has(operation['newId'])) throw malformed('two puts with one newId');
        newIds.add(operation['newId']);
      }
      checkPreconditionsShape(operation, malformed);
      checkContentFields(type, operation, malformed);
    });
  } else checkContentFields(type, c, malformed);
  return { command: c as unknown as ForwardableCommand, authority: by };
}

/** The fields of a content or user command of `type` (or a batch operation), checked as the routes check them. */
function checkContentFields(type: string, c: Record<string, unknown>, malformed: (why: string) => ConclaveError): void {
  switch (type) {
    case 'put':
      parsePath(c['path']);
      if (!isText(c['newId'], 128)) throw malformed('newId');
      if (c['nodeType'] !== undefined) parseNodeType(c['nodeType']);
      parseProperties(c['properties']);
      break;
    case 'patch':
      parsePath(c['path']);
      parseProperties(c['patch'], 'body');
      break;
    case 'delete':
      parsePath(c['path']);
      if (typeof c['recursive'] !== 'boolean') throw malformed('recursive');
      break;
    case 'move':
      parsePath(c['from'], 'from');
      parsePath(c['to'], 'to');
      if (c['before'] !== null) parseChildName(c['before'], 'before');
      break;
    case 'reorder': {
      parsePath(c['path']);
      const order = c['order'];
      if (!Array.isArray(order)) throw malformed('order');
      order.forEach((name, i) => parseChildName(name, `order[${i}]`));
      break;
    }
    case 'restore':
      parsePath(c['path']);
      if (!isId(c['id'])) throw malformed('id');
      if (typeof c['version'] !== 'number' || !Number.isSafeInteger(c['version']) || c['version'] < 1) throw malformed('version');
      break;
    case 'deleteBinary':
      parsePath(c['path']);
      parseBinaryProperty(c['property']);
      break;
    case 'setAccess': {
      parsePath(c['path']);
      const entries = parseAccessEntries(c['entries']);
      // apply() trusts the stored form: exactly what the route builds, nothing more.
      if (JSON.stringify(entries) !== JSON.stringify(c['entries'])) throw malformed('entries not in their stored form');
      if (Object.keys(c).some((key) => !['type', 'path', 'entries', 'time', 'user'].includes(key))) throw malformed('a field a setAccess command does not have');
      break;
    }
    case 'putUser':
      if (c['roles'] !== undefined) parseRoles(c['roles']);
      if (c['passwordHash'] !== undefined && !isText(c['passwordHash'], 1024)) throw malformed('passwordHash');
      if (c['roles'] === undefined && c['passwordHash'] === undefined) throw malformed('a user change that changes nothing');
      if (typeof c['createOnly'] !== 'boolean') throw malformed('createOnly');
      break;
    case 'deleteUser':
      break;
  }
}

/** A schema command's fields, checked as the schema routes check them; the definition as the master stores it. */
function checkSchemaFields(c: Record<string, unknown>, malformed: (why: string) => ConclaveError): Record<string, unknown> {
  if (c['type'] === 'setSchemaPolicy') {
    if (typeof c['schemasRequired'] !== 'boolean') throw malformed('schemasRequired');
    return c;
  }
  parseSchemaTypeName(c['typeName']);
  if (c['type'] === 'resolveSchemaMigration' && c['action'] !== 'retry' && c['action'] !== 'abandon') throw malformed('action');
  return c['type'] === 'putSchema' ? { ...c, definition: parseSchemaDefinition(c['definition']) } : c;
}

function checkPreconditionsShape(c: Record<string, unknown>, malformed: (why: string) => ConclaveError): void {
  const pre = c as Preconditions & Record<string, unknown>;
  const ifMatch = pre['ifMatch'];
  if (ifMatch !== undefined && ifMatch !== '*' && !(Array.isArray(ifMatch) && ifMatch.every((t) => typeof t === 'string'))) throw malformed('ifMatch');
  if (pre['ifNoneMatch'] !== undefined && pre['ifNoneMatch'] !== '*') throw malformed('ifNoneMatch');
}

/** The outcome message for an error: a catalogue error as it is; anything else as INTERNAL (the log has it). */
export function forwardedErrorOf(err: unknown): ForwardedError {
  if (isConclaveError(err)) return { code: err.code, message: err.message, details: { ...err.details } };
  return { code: 'INTERNAL', message: 'An unexpected server error; the log has the details.', details: {} };
}
