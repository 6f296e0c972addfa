import type { FastifyInstance, FastifyRequest } from 'fastify';

import { encodeCursor, parseQuery } from '../../content/query.js';
import { PageBody } from '../pageBody.js';
import { readFilter, viewerOf } from '../readAccess.js';

/** GET /api/v1/query — filters, sort and keyset pagination; the parameters are documented in content/query.ts. */
export async function queryRoutes(app: FastifyInstance): Promise<void> {
  const { repository, config } = app.conclave;
  app.get(
    '/api/v1/query',
    { config: { permission: 'read', query: 'checkedByRoute' } },
    async (request: FastifyRequest<{ Querystring: Record<string, unknown> }>, reply) => {
      const spec = parseQuery(request.query, config.content);
      // Bounded in bytes as well as in nodes (content.pageBytesMax): a page may end early, with a cursor.
      const body = new PageBody(config.content.pageBytesMax);
      const page = repository.query(spec, body.take, readFilter(repository.content, viewerOf(request)));
      const nextCursor = page.next === undefined ? null : encodeCursor(page.next, spec.fingerprint);
      return reply.type('application/json; charset=utf-8').send(body.body('{"items":', `,"nextCursor":${JSON.stringify(nextCursor)}}`));
    },
  );
}
