import type { FastifyInstance } from 'fastify';

import { ConclaveError } from '../errors/catalogue.js';

/**
 * Every route names the query parameters it takes (route config `query`); any other is refused before the route
 * runs. A parameter a route ignored would be a silent lie: `POST /api/v1/move?dryRun=true` moved the node. The
 * default is none, so a new route refuses parameters until it names them; a route that reads an open family of
 * parameters (`/api/v1/query`: prop.NAME[op]) says 'checkedByRoute' and refuses unknown ones itself.
 *
 * Checked in preHandler: after the read-consistency gate has taken off `consistency` (every read takes it), and
 * after a write the coordinator forwards over HTTP has left (the master checks it against the same route).
 */
export function registerQueryParameterCheck(app: FastifyInstance): void {
  app.addHook('preHandler', async (request) => {
    // The not-found handler has no route: ROUTE_NOT_FOUND says more than an unknown parameter would.
    if (request.routeOptions.url === undefined) return;
    const allowed = request.routeOptions.config.query ?? [];
    if (allowed === 'checkedByRoute') return;
    for (const key of Object.keys(request.query as Record<string, unknown>)) {
      if (allowed.includes(key)) continue;
      const takes = allowed.length === 0 ? 'takes no query parameters' : `takes only ${allowed.join(', ')}`;
      throw new ConclaveError('INVALID_REQUEST', `Unknown query parameter "${key}": ${request.method} ${request.routeOptions.url} ${takes}.`, {
        parameter: key,
      });
    }
  });
}
