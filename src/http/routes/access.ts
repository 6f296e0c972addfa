import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { hasAccess, parseAccessEntries } from '../../content/access.js';
import { isPlainObject } from '../../content/mergePatch.js';
import { ConclaveError } from '../../errors/catalogue.js';
import { everyMemberAtLeast, type ClusterState } from '../../core/clusterState.js';
import { writeOriginOf } from '../writeOrigin.js';
import { canRead, viewerOf } from '../readAccess.js';
import { contentPathOf } from './content.js';

/**
 * Access control entries (src/content/access.ts) on content nodes:
 *
 *   GET /api/v1/access/{path}   the entries the node carries, and what the caller may do there
 *   PUT /api/v1/access/{path}   {"entries": [...]} replaces them (an empty list removes them)
 *
 * Both need manage-access on the node (admins have it everywhere); a node the caller may not read is answered as
 * one that does not exist. A change is a journal entry like any write, so every node decides alike from then on.
 */

/** The first release that knows access entries: a member of an older one could not apply them. */
export const accessSinceVersion = '0.6.0';

/** Refuses a write of access entries (or of the search policy, of the same release) while a member could not apply it. */
export function checkAccessAvailable(state: ClusterState, what = 'Access entries'): void {
  if (!everyMemberAtLeast(state, accessSinceVersion)) {
    throw new ConclaveError('UPGRADE_IN_PROGRESS', `${what} need every member to run ${accessSinceVersion} or newer; finish the rolling upgrade first.`, {
      needs: accessSinceVersion,
      members: state.nodes.map((n) => ({ name: n.name, version: n.version })),
    });
  }
}

type WildcardRequest = FastifyRequest<{ Params: { '*'?: string }; Querystring: Record<string, string | string[]> }>;

export async function accessRoutes(app: FastifyInstance): Promise<void> {
  const { repository, runtime } = app.conclave;
  const content = repository.content;

  /** The node at `path`, when the caller may read it and manage its access; the refusals as for any read and write. */
  const managed = (request: WildcardRequest, path: string) => {
    if (!canRead(content, request, path)) throw new ConclaveError('NODE_NOT_FOUND', `No node exists at ${path}.`, { path });
    const node = repository.node(path);
    if (!hasAccess(content.access.entriesAt, path, viewerOf(request), 'manage-access')) {
      throw new ConclaveError('FORBIDDEN', 'You may not see or change access there.', { needs: 'manage-access' });
    }
    return node;
  };

  const getAccess = async (request: WildcardRequest) => {
    const path = contentPathOf(request);
    const node = managed(request, path);
    const viewer = viewerOf(request);
    const may = (permission: 'read' | 'write' | 'manage-access') => hasAccess(content.access.entriesAt, path, viewer, permission);
    return { path, id: node.id, entries: content.access.entriesOf(node.id), yours: { read: may('read'), write: may('write'), manageAccess: may('manage-access') } };
  };
  app.get('/api/v1/access', { config: { permission: 'read' } }, getAccess);
  app.get('/api/v1/access/*', { config: { permission: 'read' } }, getAccess);

  const putAccess = async (request: WildcardRequest, reply: FastifyReply) => {
    const path = contentPathOf(request);
    if (!isPlainObject(request.body) || Object.keys(request.body).some((k) => k !== 'entries')) {
      throw new ConclaveError('INVALID_ACCESS', 'The body must be {"entries": [...]}.', { field: 'body' });
    }
    const entries = parseAccessEntries((request.body as Record<string, unknown>)['entries']);
    checkAccessAvailable(runtime.clusterState());
    managed(request, path);
    const committed = await repository.setAccess(path, entries, writeOriginOf(request, 'write'));
    reply.header('X-Conclave-Index', committed.index);
    return { path, id: committed.result.node!.id, entries };
  };
  const write = { config: { permission: 'write' as const, forwardsCommand: true as const } };
  app.put('/api/v1/access', write, putAccess);
  app.put('/api/v1/access/*', write, putAccess);
}
