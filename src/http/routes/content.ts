import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { etagOf, rootNodeType } from '../../content/model.js';
import { parsePath } from '../../content/paths.js';
import { decodeCursor, encodeCursor, parseLimit } from '../../content/query.js';
import { parseChildName, parseNodeType, parseProperties } from '../../content/validate.js';
import { isPlainObject } from '../../content/mergePatch.js';
import { ConclaveError } from '../../errors/catalogue.js';
import type { Committed } from '../../node/clusterRuntime.js';
import { writeOriginOf } from '../writeOrigin.js';
import { answerHistory, historyQueryParameters, historyReadOf } from './history.js';
import { PageBody } from '../pageBody.js';
import { nodeReadFilter, readFilter, viewerOf } from '../readAccess.js';
import { header, isTrue, nodeJson, parsePreconditions, parseTags, storedNodeJson } from '../representation.js';

type WildcardRequest = FastifyRequest<{ Params: { '*'?: string }; Querystring: Record<string, string | string[]> }>;

/** The content path named by the URL: everything after /api/v1/content, "/" for the root. */
export function contentPathOf(request: WildcardRequest): string {
  const rest = request.params['*'] ?? '';
  return parsePath(`/${rest}`);
}

/** A content path as it must appear in a URL or a header: every segment percent-encoded, "" for the root. */
export function encodePath(path: string): string {
  return path === '/' ? '' : path.split('/').map(encodeURIComponent).join('/');
}

export function sendCommitted(reply: FastifyReply, committed: Committed, status = 200) {
  reply.header('X-Conclave-Index', committed.index);
  const node = committed.result.node;
  if (node !== undefined) reply.header('ETag', etagOf(node));
  return reply.status(status).send(node === undefined ? {} : nodeJson(node));
}

function jsonBody(request: FastifyRequest): Record<string, unknown> {
  if (!isPlainObject(request.body)) throw new ConclaveError('INVALID_REQUEST', 'The body must be a JSON object.');
  return request.body as Record<string, unknown>;
}

function only(body: Record<string, unknown>, allowed: readonly string[]): void {
  const unknown = Object.keys(body).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) {
    throw new ConclaveError('INVALID_REQUEST', `Unknown field(s) ${unknown.join(', ')}; expected ${allowed.join(', ')}.`);
  }
}

/**
 * Content by path:
 *   GET    /api/v1/content/{path}[?children=true&limit=&cursor=]
 *   PUT    /api/v1/content/{path}   {"type"?, "properties"}   create or replace (If-None-Match: * / If-Match)
 *   PATCH  /api/v1/content/{path}   a JSON merge patch of the properties (If-Match)
 *   DELETE /api/v1/content/{path}[?recursive=true]            (If-Match)
 *   POST   /api/v1/move     {"from", "to"?, "before"?}         move, rename or reposition (If-Match on "from")
 *   POST   /api/v1/reorder  {"path", "order": [names]}         reorder all children (If-Match on "path")
 *   GET    /api/v1/nodes/{id}
 * and the history of a node, live or deleted (src/http/routes/history.ts):
 *   GET    /api/v1/content/{path}?versions=true[&limit=&cursor=]   its versions, newest first
 *   GET    /api/v1/content/{path}?version=N                        its state at version N
 *   GET    /api/v1/content/{path}?deleted=true[&limit=&cursor=]    its deleted children, last deleted first
 *   GET    /api/v1/nodes/{id}?versions=true | ?version=N
 */
export async function contentRoutes(app: FastifyInstance): Promise<void> {
  const { repository, config } = app.conclave;
  const read = { config: { permission: 'read' as const } };
  // Every write here is one command: a replica forwards the command, not the request (src/forwarding/).
  const write = { config: { permission: 'write' as const, forwardsCommand: true as const } };
  const listing = { config: { ...read.config, query: ['children', 'limit', 'cursor', ...historyQueryParameters] } };
  const recursiveWrite = { config: { ...write.config, query: ['recursive'] } };

  // application/merge-patch+json (RFC 7396) is parsed by the API's one JSON parser (src/http/jsonBody.ts).

  const getNode = async (request: WildcardRequest, reply: FastifyReply) => {
    const path = contentPathOf(request);
    const visible = readFilter(repository.content, viewerOf(request));
    const history = historyReadOf(request.query);
    // A node the caller may not read is one that does not exist: the same answer, whatever is asked of it.
    if (visible !== null && !visible(path)) {
      throw new ConclaveError('NODE_NOT_FOUND', history === null ? `No node exists at ${path}.` : `No node exists at ${path}, and none deleted there is in the history.`, { path });
    }
    if (history !== null) {
      const target = repository.historyNodeId(path);
      // A deleted node is decided by the entries it had (nodeReadFilter): neither its delete nor a move uncovers it.
      const readsNode = nodeReadFilter(repository.content, viewerOf(request));
      if (readsNode !== null && target.deleted && !readsNode(target.id, path)) {
        throw new ConclaveError('NODE_NOT_FOUND', `No node exists at ${path}, and none deleted there is in the history.`, { path });
      }
      return answerHistory(app, request, reply, history, target, readsNode);
    }
    const withChildren = isTrue(request.query['children'], 'children');
    const ifNoneMatch = header(request.headers, 'if-none-match');
    if (!withChildren) {
      const stored = repository.storedNode(path);
      const etag = etagOf(stored);
      reply.header('ETag', etag);
      if (ifNoneMatch !== undefined && (ifNoneMatch.trim() === '*' || parseTags(ifNoneMatch, 'If-None-Match', 'weak').includes(etag))) {
        return reply.status(304).send();
      }
      return reply.type('application/json; charset=utf-8').send(storedNodeJson(stored));
    }
    const node = repository.storedNode(path);
    reply.header('ETag', etagOf(node));
    // Validated although a listing is never answered 304.
    if (ifNoneMatch !== undefined && ifNoneMatch.trim() !== '*') parseTags(ifNoneMatch, 'If-None-Match', 'weak');
    const fingerprint = `children:${node.id}`;
    const limit = parseLimit(request.query['limit'], config.content.pageSizeDefault, config.content.pageSizeMax);
    const cursorText = request.query['cursor'];
    const after = typeof cursorText === 'string' ? decodeCursor(cursorText, fingerprint) : undefined;
    // Bounded in bytes as well as in nodes (content.pageBytesMax): a page may end early, with a cursor.
    const body = new PageBody(config.content.pageBytesMax);
    const page = repository.children(node.id, after, limit, body.take, visible);
    const nextCursor = page.next === undefined ? null : encodeCursor(page.next, fingerprint);
    // The node's own fields, then "children": the same document as {...nodeJson(node), children: {...}}.
    const prefix = `${storedNodeJson(node).slice(0, -1)},"children":{"items":`;
    return reply.type('application/json; charset=utf-8').send(body.body(prefix, `,"nextCursor":${JSON.stringify(nextCursor)}}}`));
  };
  app.get('/api/v1/content', listing, getNode);
  app.get('/api/v1/content/*', listing, getNode);

  const putNode = async (request: WildcardRequest, reply: FastifyReply) => {
    const path = contentPathOf(request);
    const body = jsonBody(request);
    only(body, ['type', 'properties']);
    // Without "type", a replace keeps the node's type (apply() decides, against the node the entry meets).
    const nodeType = body['type'] === undefined ? undefined : parseNodeType(body['type']);
    if (nodeType === rootNodeType && path !== '/') throw new ConclaveError('INVALID_REQUEST', `The type "${rootNodeType}" belongs to the root node; give ${path} another.`, { field: 'type' });
    const properties = parseProperties(body['properties'] ?? {});
    const committed = await repository.put(path, nodeType, properties, parsePreconditions(request.headers), writeOriginOf(request, 'write'));
    if (committed.result.created === true) reply.header('Location', `/api/v1/content${encodePath(path)}`);
    return sendCommitted(reply, committed, committed.result.created === true ? 201 : 200);
  };
  app.put('/api/v1/content', write, putNode);
  app.put('/api/v1/content/*', write, putNode);

  const patchNode = async (request: WildcardRequest, reply: FastifyReply) => {
    const path = contentPathOf(request);
    const patch = parseProperties(request.body, 'body');
    const committed = await repository.patch(path, patch, parsePreconditions(request.headers), writeOriginOf(request, 'write'));
    return sendCommitted(reply, committed);
  };
  app.patch('/api/v1/content', write, patchNode);
  app.patch('/api/v1/content/*', write, patchNode);

  app.delete('/api/v1/content/*', recursiveWrite, async (request: WildcardRequest, reply) => {
    const path = contentPathOf(request);
    const recursive = isTrue(request.query['recursive'], 'recursive');
    const committed = await repository.delete(path, recursive, parsePreconditions(request.headers), writeOriginOf(request, 'write'));
    reply.header('X-Conclave-Index', committed.index);
    return { path, deletedCount: committed.result.deletedCount };
  });
  app.delete('/api/v1/content', recursiveWrite, async () => {
    throw new ConclaveError('ROOT_IMMUTABLE', 'The root node cannot be deleted; delete its children instead.');
  });

  app.post('/api/v1/move', write, async (request, reply) => {
    const body = jsonBody(request);
    only(body, ['from', 'to', 'before']);
    const from = parsePath(body['from'], 'from');
    const to = body['to'] === undefined ? from : parsePath(body['to'], 'to');
    const before = body['before'] === undefined || body['before'] === null ? null : parseChildName(body['before'], 'before');
    if (to === from && before === null) {
      throw new ConclaveError('INVALID_REQUEST', 'Name a new path in "to", a sibling in "before", or both.');
    }
    const committed = await repository.move(from, to, before, parsePreconditions(request.headers), writeOriginOf(request, 'write'));
    return sendCommitted(reply, committed);
  });

  app.post('/api/v1/reorder', write, async (request, reply) => {
    const body = jsonBody(request);
    only(body, ['path', 'order']);
    const path = parsePath(body['path']);
    const order = body['order'];
    if (!Array.isArray(order)) throw new ConclaveError('INVALID_REQUEST', '"order" must be an array of child names.');
    const names = order.map((name, i) => parseChildName(name, `order[${i}]`));
    const committed = await repository.reorder(path, names, parsePreconditions(request.headers), writeOriginOf(request, 'write'));
    return sendCommitted(reply, committed);
  });

  app.get('/api/v1/nodes/:id', listing, async (request: FastifyRequest<{ Params: { id: string }; Querystring: Record<string, string | string[]> }>, reply) => {
    const history = historyReadOf(request.query);
    const id = request.params.id;
    const visible = readFilter(repository.content, viewerOf(request));
    if (history !== null) {
      const target = repository.historyNodeById(id);
      const readsNode = nodeReadFilter(repository.content, viewerOf(request));
      if (readsNode !== null && !readsNode(id, '/')) {
        throw new ConclaveError('NODE_NOT_FOUND', `No node has the id ${id}, and none deleted with it is in the history.`, { id });
      }
      return answerHistory(app, request, reply, history, target, readsNode);
    }
    if (isTrue(request.query['children'], 'children')) throw new ConclaveError('INVALID_REQUEST', 'List children by path: GET /api/v1/content/{path}?children=true.');
    const node = repository.nodeById(id);
    if (visible !== null && !visible(node.path)) throw new ConclaveError('NODE_NOT_FOUND', `No node has the id ${id}.`, { id });
    reply.header('ETag', etagOf(node));
    return nodeJson(node);
  });
}
