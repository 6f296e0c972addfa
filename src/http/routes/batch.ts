import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';

import type { ApplyResult } from '../../content/apply.js';
import { preconditionFields, type BatchOperation, type Preconditions } from '../../content/commands.js';
import { etagOf } from '../../content/model.js';
import { isPlainObject } from '../../content/mergePatch.js';
import { parsePath } from '../../content/paths.js';
import { parseChildName, parseNodeType, parseProperties } from '../../content/validate.js';
import { everyMemberAtLeast, type ClusterState } from '../../core/clusterState.js';
import { ConclaveError } from '../../errors/catalogue.js';
import { nodeJson, parsePreconditions } from '../representation.js';
import { writeOriginOf } from '../writeOrigin.js';

/** The first release whose nodes apply batches: none is proposed while an older member could meet it. */
export const batchSinceVersion = '0.3.0';

/** The fields each operation may carry, besides "op" and its preconditions. */
const fieldsOf: Record<BatchOperation['type'], readonly string[]> = {
  put: ['path', 'type', 'properties'],
  patch: ['path', 'patch'],
  delete: ['path', 'recursive'],
  move: ['from', 'to', 'before'],
  reorder: ['path', 'order'],
};

/**
 * POST /api/v1/batch  {"operations": [{"op": "put" | "patch" | "delete" | "move" | "reorder", …}, …]}
 *
 * One journal entry: the operations apply in order, each against the state the ones before it left, and either all
 * of them or none (the first refusal — a failed precondition, a missing parent — refuses the batch with its code,
 * naming the operation in error.operation). Each operation takes the fields of its own endpoint, and
 * preconditions as the values of the headers it would send: "ifMatch" (an ETag as a read returned it, a list, or
 * "*") and "ifNoneMatch" ("*": create-only). At most content.batchOperationsMax operations and
 * content.batchBytesMax bytes of JSON (BATCH_TOO_LARGE); binaries stay separate uploads. It costs its author one
 * write per operation of auth.userWritesPerSecondMax.
 */
export async function batchRoutes(app: FastifyInstance): Promise<void> {
  const { repository, config, runtime } = app.conclave;
  app.post('/api/v1/batch', { config: { permission: 'write' as const, forwardsCommand: true as const } }, async (request, reply) => {
    const body = request.body;
    if (!isPlainObject(body)) throw new ConclaveError('INVALID_REQUEST', 'The body must be a JSON object: {"operations": [...]}.');
    const unknown = Object.keys(body).filter((k) => k !== 'operations');
    if (unknown.length > 0) throw new ConclaveError('INVALID_REQUEST', `Unknown field(s) ${unknown.join(', ')}; expected operations.`);
    const raw = body['operations'];
    if (!Array.isArray(raw) || raw.length === 0) throw new ConclaveError('INVALID_REQUEST', '"operations" must be a non-empty array.', { field: 'operations' });
    // Counted before anything else is looked at: the body may hold many more than a batch may.
    checkBatchOperations(raw.length, config.content.batchOperationsMax);
    const operations = raw.map((operation, i) => parseOperation(operation, i));
    checkBatch(operations, config.content, runtime.clusterState());
    // A batch costs its author one write per operation (the request itself took one), as the writes would alone.
    if (operations.length > 1) app.userWrites.take(request.principal.name, operations.length - 1);
    const committed = await repository.batch(operations, writeOriginOf(request, 'write'));
    reply.header('X-Conclave-Index', committed.index);
    const results = committed.result.operations ?? [];
    return { index: committed.index, operations: operations.map((operation, i) => operationJson(operation, results[i] ?? {})) };
  });
}

/**
 * Refuses a batch this node must not propose, under its own settings and the cluster it is in: more operations or
 * bytes than it takes (BATCH_TOO_LARGE), or a member too old to apply a batch (UPGRADE_IN_PROGRESS: it would stop
 * at the entry). The route checks it, and the master again for a batch a replica forwarded as a command.
 */
export function checkBatch(operations: readonly BatchOperation[], limits: { readonly batchOperationsMax: number; readonly batchBytesMax: number }, state: ClusterState): void {
  checkBatchOperations(operations.length, limits.batchOperationsMax);
  const bytes = Buffer.byteLength(JSON.stringify(operations));
  if (bytes > limits.batchBytesMax) {
    throw new ConclaveError('BATCH_TOO_LARGE', `The batch's operations take ${bytes} bytes; at most ${limits.batchBytesMax} go in one (content.batchBytesMax). Split it.`, {
      bytes,
      bytesMax: limits.batchBytesMax,
    });
  }
  if (!everyMemberAtLeast(state, batchSinceVersion)) {
    throw new ConclaveError('UPGRADE_IN_PROGRESS', `Batches need every member to run ${batchSinceVersion} or newer; finish the rolling upgrade first.`, {
      needs: batchSinceVersion,
      members: state.nodes.map((n) => ({ name: n.name, version: n.version })),
    });
  }
}

function checkBatchOperations(count: number, operationsMax: number): void {
  if (count > operationsMax) {
    throw new ConclaveError('BATCH_TOO_LARGE', `The batch holds ${count} operations; at most ${operationsMax} go in one (content.batchOperationsMax). Split it.`, {
      operations: count,
      operationsMax,
    });
  }
}

/** One operation of the request, checked as its own endpoint checks it; errors name it (error.operation). */
function parseOperation(raw: unknown, i: number): BatchOperation {
  try {
    if (!isPlainObject(raw)) throw new ConclaveError('INVALID_REQUEST', 'An operation must be a JSON object with "op".');
    const op = raw['op'];
    if (typeof op !== 'string' || !Object.hasOwn(fieldsOf, op)) {
      throw new ConclaveError('INVALID_REQUEST', `"op" must be one of ${Object.keys(fieldsOf).join(', ')}.`, { field: 'op' });
    }
    const type = op as BatchOperation['type'];
    const allowed = ['op', ...fieldsOf[type], ...preconditionFields];
    const unknown = Object.keys(raw).filter((k) => !allowed.includes(k));
    if (unknown.length > 0) throw new ConclaveError('INVALID_REQUEST', `Unknown field(s) ${unknown.join(', ')} for "${type}"; expected ${allowed.join(', ')}.`);
    const pre = preconditionsOf(raw);
    switch (type) {
      case 'put': {
        const nodeType = raw['type'] === undefined ? undefined : parseNodeType(raw['type']);
        return { type, path: parsePath(raw['path']), newId: randomUUID(), ...(nodeType === undefined ? {} : { nodeType }), properties: parseProperties(raw['properties'] ?? {}), ...pre };
      }
      case 'patch':
        return { type, path: parsePath(raw['path']), patch: parseProperties(raw['patch'], 'patch'), ...pre };
      case 'delete': {
        const recursive = raw['recursive'] ?? false;
        if (typeof recursive !== 'boolean') throw new ConclaveError('INVALID_REQUEST', '"recursive" must be true or false.', { field: 'recursive' });
        const path = parsePath(raw['path']);
        if (path === '/') throw new ConclaveError('ROOT_IMMUTABLE', 'The root node cannot be deleted; delete its children instead.');
        return { type, path, recursive, ...pre };
      }
      case 'move': {
        const from = parsePath(raw['from'], 'from');
        const to = raw['to'] === undefined ? from : parsePath(raw['to'], 'to');
        const before = raw['before'] === undefined || raw['before'] === null ? null : parseChildName(raw['before'], 'before');
        if (to === from && before === null) throw new ConclaveError('INVALID_REQUEST', 'Name a new path in "to", a sibling in "before", or both.');
        return { type, from, to, before, ...pre };
      }
      case 'reorder': {
        const order = raw['order'];
        if (!Array.isArray(order)) throw new ConclaveError('INVALID_REQUEST', '"order" must be an array of child names.', { field: 'order' });
        return { type, path: parsePath(raw['path']), order: order.map((name, k) => parseChildName(name, `order[${k}]`)), ...pre };
      }
    }
  } catch (err) {
    if (!(err instanceof ConclaveError)) throw err;
    throw new ConclaveError(err.code, `Operation ${i} of the batch: ${err.message}`, { ...err.details, operation: i });
  }
}

/** "ifMatch" and "ifNoneMatch" take what the If-Match and If-None-Match headers would, and mean the same. */
function preconditionsOf(raw: Record<string, unknown>): Preconditions {
  const headers: Record<string, string> = {};
  for (const [field, name] of [['ifMatch', 'if-match'], ['ifNoneMatch', 'if-none-match']] as const) {
    const value = raw[field];
    if (value === undefined) continue;
    if (typeof value === 'string') headers[name] = value;
    else if (Array.isArray(value) && value.length > 0 && value.every((tag) => typeof tag === 'string')) headers[name] = value.join(', ');
    else throw new ConclaveError('INVALID_REQUEST', `"${field}" must be a string as the header would carry it (an ETag as a read returned it, or "*"), or a list of ETags.`, { field });
  }
  return parsePreconditions(headers);
}

function operationJson(operation: BatchOperation, result: ApplyResult) {
  const path = operation.type === 'move' ? operation.to : operation.path;
  const outcome: Record<string, unknown> = { op: operation.type, path };
  if (operation.type === 'put') outcome['status'] = result.created === true ? 201 : 200;
  // A deleted node is gone: no tag or state of it is handed out (DELETE answers the same).
  if (result.node !== undefined && operation.type !== 'delete') {
    outcome['etag'] = etagOf(result.node);
    outcome['node'] = nodeJson(result.node);
  }
  if (result.deletedCount !== undefined) outcome['deletedCount'] = result.deletedCount;
  return outcome;
}
