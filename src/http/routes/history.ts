import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { requireHistory, type NodeVersion, type VersionSummary } from '../../content/history.js';
import { isPlainObject } from '../../content/mergePatch.js';
import { baseName, parsePath } from '../../content/paths.js';
import { decodeCursor, encodeCursor, parseLimit } from '../../content/query.js';
import { ConclaveError } from '../../errors/catalogue.js';
import { writeOriginOf } from '../writeOrigin.js';
import { isTrue, parsePreconditions } from '../representation.js';
import { encodePath, sendCommitted } from './content.js';
import { canRead, nodeReadFilter, viewerOf } from '../readAccess.js';

type Query = Record<string, string | string[] | undefined>;

/** The query parameters of a history read, beside a node's own (GET /api/v1/content/{path}, /api/v1/nodes/{id}). */
export const historyQueryParameters = ['versions', 'version', 'deleted'] as const;

/** Which history read a query asks for, if any; two at once, or one beside children=true, is refused. */
export function historyReadOf(query: Query): 'versions' | 'version' | 'deleted' | null {
  const asked = [
    isTrue(query['versions'], 'versions') ? ('versions' as const) : null,
    query['version'] !== undefined ? ('version' as const) : null,
    isTrue(query['deleted'], 'deleted') ? ('deleted' as const) : null,
  ].filter((x) => x !== null);
  if (asked.length === 0) return null;
  if (asked.length > 1 || isTrue(query['children'], 'children')) {
    throw new ConclaveError('INVALID_REQUEST', 'Ask for one of children=true, versions=true, version=N and deleted=true at a time.');
  }
  return asked[0]!;
}

function summaryJson(v: VersionSummary) {
  return {
    version: v.version,
    op: v.op,
    at: v.at,
    by: v.by,
    path: v.path,
    type: v.type,
    index: v.index,
    restoredFrom: v.restoredFrom,
    supersededAt: v.supersededAt,
  };
}

/** A version as a read of it answers: the node's state at it, and how it was made. */
export function versionJson(v: NodeVersion) {
  const n = v.node;
  return {
    id: v.id,
    ...summaryJson(v),
    name: n.name,
    parentId: n.parentId,
    properties: n.properties,
    binaries: n.binaries,
    createdAt: n.createdAt,
    createdBy: n.createdBy,
  };
}

function parseVersion(value: unknown, field: string): number {
  const version = typeof value === 'string' && /^[1-9][0-9]{0,15}$/.test(value) ? Number(value) : typeof value === 'number' ? value : NaN;
  if (!Number.isSafeInteger(version) || version < 1) {
    throw new ConclaveError('INVALID_REQUEST', `"${field}" must be a version number (a positive integer).`, { field });
  }
  return version;
}

/**
 * Answers a history read of node `target` (live or deleted): its versions, newest first, one version, or — for a
 * live node — its deleted children. Pages are bounded by content.pageSizeMax like every listing.
 */
export function answerHistory(
  app: FastifyInstance,
  request: FastifyRequest<{ Querystring: Query }>,
  reply: FastifyReply,
  read: 'versions' | 'version' | 'deleted',
  target: { readonly id: string; readonly deleted: boolean },
  /** Which nodes (by id, else where they were) the caller may read: nodeReadFilter. */
  readsNode: ((id: string, path: string) => boolean) | null = null,
): unknown {
  const { repository, config } = app.conclave;
  const query = request.query;
  if (read === 'version') return versionJson(repository.version(target.id, parseVersion(query['version'], 'version')));
  const limit = parseLimit(query['limit'], config.content.pageSizeDefault, config.content.pageSizeMax);
  const cursorText = query['cursor'];
  if (read === 'versions') {
    const fingerprint = `versions:${target.id}`;
    const after = typeof cursorText === 'string' ? decodeCursor(cursorText, fingerprint) : undefined;
    const before = after === undefined ? Number.MAX_SAFE_INTEGER : cursorNumber(after.value);
    const page = repository.versions(target.id, before, limit);
    const last = page.items.at(-1);
    return {
      id: target.id,
      deleted: target.deleted,
      items: page.items.map(summaryJson),
      nextCursor: page.more && last !== undefined ? encodeCursor({ value: last.version, id: target.id }, fingerprint) : null,
    };
  }
  if (target.deleted) throw new ConclaveError('NODE_NOT_FOUND', 'A deleted node has no children to list; restore it first.', { id: target.id });
  const fingerprint = `deleted:${target.id}`;
  const after = typeof cursorText === 'string' ? decodeCursor(cursorText, fingerprint) : undefined;
  const page = repository.deletedChildren(target.id, after === undefined ? undefined : { idx: cursorNumber(after.value), id: after.id }, limit, readsNode);
  const last = page.items.at(-1);
  reply.header('Cache-Control', 'no-store');
  return {
    items: page.items.map((v) => ({ id: v.id, path: v.path, name: baseName(v.path), type: v.type, version: v.version, deletedAt: v.at, deletedBy: v.by, index: v.index })),
    nextCursor: page.more && last !== undefined ? encodeCursor({ value: last.index, id: last.id }, fingerprint) : null,
  };
}

function cursorNumber(value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new ConclaveError('INVALID_CURSOR', 'The cursor is malformed; pass nextCursor from the previous page unchanged.');
  }
  return value;
}

/**
 *   POST /api/v1/restore  {"path", "version", "id"?, "to"?}   (If-Match on the live node)
 * Makes a version current again as a new version. `path` names the node (the live one there, else the one most
 * recently deleted there); `id` names it instead when several deleted nodes had that path. A deleted node comes
 * back under its id at its path, or at `to`.
 */
export async function historyRoutes(app: FastifyInstance): Promise<void> {
  const { repository } = app.conclave;
  app.post('/api/v1/restore', { config: { permission: 'write', forwardsCommand: true } }, async (request, reply) => {
    if (!isPlainObject(request.body)) throw new ConclaveError('INVALID_REQUEST', 'The body must be a JSON object.');
    const body = request.body as Record<string, unknown>;
    const unknown = Object.keys(body).filter((k) => !['path', 'version', 'id', 'to'].includes(k));
    if (unknown.length > 0) throw new ConclaveError('INVALID_REQUEST', `Unknown field(s) ${unknown.join(', ')}; expected path, version, id, to.`);
    const path = parsePath(body['path'], 'path');
    const version = parseVersion(body['version'], 'version');
    requireHistory(repository.content.historyRetention());
    // Restoring reads the node's history: a node the caller may not read is one the history does not have.
    const hidden = (at: string) => !canRead(repository.content, request, at);
    if (hidden(path)) throw new ConclaveError('NODE_NOT_FOUND', `No node exists at ${path}, and none deleted there is in the history.`, { path });
    const readsNode = nodeReadFilter(repository.content, viewerOf(request));
    let target: { id: string; deleted: boolean };
    if (body['id'] !== undefined) {
      if (typeof body['id'] !== 'string' || body['id'].length === 0 || body['id'].length > 128) throw new ConclaveError('INVALID_REQUEST', '"id" must be a node id.');
      target = repository.historyNodeById(body['id']);
      // A deleted node is decided by the entries it had (nodeReadFilter).
      if (target.deleted && readsNode !== null && !readsNode(target.id, path)) {
        throw new ConclaveError('NODE_NOT_FOUND', `No node has the id ${target.id}, and none deleted with it is in the history.`, { id: target.id });
      }
    } else {
      target = repository.historyNodeId(path);
      if (target.deleted && readsNode !== null && !readsNode(target.id, path)) {
        throw new ConclaveError('NODE_NOT_FOUND', `No node exists at ${path}, and none deleted there is in the history.`, { path });
      }
    }
    const to = body['to'] === undefined ? path : parsePath(body['to'], 'to');
    if (!target.deleted) {
      const live = repository.nodeById(target.id);
      if (hidden(live.path)) throw new ConclaveError('NODE_NOT_FOUND', `No node has the id ${target.id}, and none deleted with it is in the history.`, { id: target.id });
      if (live.path !== path) throw new ConclaveError('INVALID_REQUEST', `Node ${target.id} is at ${live.path}, not ${path}.`, { id: target.id, path: live.path });
      if (body['to'] !== undefined && to !== path) throw new ConclaveError('INVALID_REQUEST', '"to" is for a deleted node; move a live one with POST /api/v1/move.');
    }
    const committed = await repository.restore(target.id, version, to, parsePreconditions(request.headers), writeOriginOf(request, 'write'));
    const created = committed.result.created === true;
    if (created) reply.header('Location', `/api/v1/content${encodePath(to)}`);
    return sendCommitted(reply, committed, created ? 201 : 200);
  });
}
