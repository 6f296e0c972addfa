import type { FastifyInstance, FastifyRequest } from 'fastify';

import { encodeCursor, parseQuery } from '../../content/query.js';
import { nodeJson } from '../representation.js';

/** GET /api/v1/query — filters, sort and keyset pagination; the parameters are documented in content/query.ts. */
export async function queryRoutes(app: FastifyInstance): Promise<void> {
  const { repository, config } = app.conclave;
  app.get(
    '/api/v1/query',
    { config: { permission: 'read', query: 'checkedByRoute' } },
    async (request: FastifyRequest<{ Querystring: Record<string, unknown> }>) => {
      const spec = parseQuery(request.query, config.content);
      const page = repository.query(spec);
      return {
        items: page.items.map(nodeJson),
        nextCursor: page.next === undefined ? null : encodeCursor(page.next, spec.fingerprint),
      };
    },
  );
}
