import type { FastifyInstance, FastifyRequest } from 'fastify';

import { decodeCursor, encodeCursor, fingerprintOf, parseQuery, single } from '../../content/query.js';
import { parseSearchQuery } from '../../content/searchQuery.js';
import { isPlainObject } from '../../content/mergePatch.js';
import { ConclaveError } from '../../errors/catalogue.js';
import { writeOriginOf } from '../writeOrigin.js';
import { checkAccessAvailable } from './access.js';
import { readFilter, viewerOf } from '../readAccess.js';

/**
 * GET /api/v1/search — full-text search of the content (src/content/searchQuery.ts has the query language).
 *
 *   q=…                 the query (required)
 *   under, type, prop.NAME[op]=…   the filters of /api/v1/query
 *   limit, cursor       a page of results, best first; cursor is the previous page's nextCursor
 *
 * Answers { items: [{ id, path, name, type, score, snippet: [{ text, match }] }], total, totalIsLowerBound,
 * nextCursor }. Results, counts and refusals only ever count the nodes the caller may read. A search is a read: it waits for what its consistency needs, as every read does. Ranks depend on the
 * whole content (BM25), so a write between two pages can move a result across the cursor.
 */
export async function searchRoutes(app: FastifyInstance): Promise<void> {
  const { repository, config, runtime } = app.conclave;

  // The cluster's search policy: whether the strings of nodes whose type has no schema are indexed (their names
  // always are). A change indexes every such node again, in the entry that makes it.
  app.get('/api/v1/search-policy', { config: { permission: 'read' } }, async () => ({ indexUntypedNodes: repository.content.search.indexesUntyped() }));
  app.put('/api/v1/search-policy', { config: { permission: 'admin', forwardsCommand: true } }, async (request, reply) => {
    const body = request.body;
    if (!isPlainObject(body) || Object.keys(body).length !== 1 || typeof body['indexUntypedNodes'] !== 'boolean') {
      throw new ConclaveError('INVALID_REQUEST', 'The body must be {"indexUntypedNodes": true | false}.');
    }
    checkAccessAvailable(runtime.clusterState(), 'Search policies');
    const committed = await repository.setSearchPolicy(body['indexUntypedNodes'], writeOriginOf(request, 'admin'));
    reply.header('X-Conclave-Index', committed.index);
    return { indexUntypedNodes: body['indexUntypedNodes'], reindexed: committed.result.reindexed ?? 0 };
  });

  const limits = { queryCharsMax: config.search.queryCharsMax, termsMax: config.search.queryTermsMax };
  app.get(
    '/api/v1/search',
    { config: { permission: 'read', query: 'checkedByRoute' } },
    async (request: FastifyRequest<{ Querystring: Record<string, unknown> }>, reply) => {
      const { q, cursor: cursorText, sort, ...rest } = request.query;
      if (q === undefined) throw new ConclaveError('INVALID_SEARCH_QUERY', 'Say what to search for in the parameter "q".');
      if (sort !== undefined) throw new ConclaveError('INVALID_REQUEST', 'Search results come best first; "sort" is not one of its parameters.', { field: 'sort' });
      const query = parseSearchQuery(single(q, 'q'), limits);
      const spec = parseQuery(rest, { pageSizeDefault: config.search.pageSizeDefault, pageSizeMax: config.search.pageSizeMax });
      const filters = { under: spec.under, type: spec.type, filters: spec.filters };
      const fingerprint = fingerprintOf(JSON.stringify({ match: query.match, ...filters }));
      const cursor = cursorText === undefined ? undefined : decodeCursor(single(cursorText, 'cursor'), fingerprint);
      if (cursor !== undefined && typeof cursor.value !== 'number') throw new ConclaveError('INVALID_CURSOR', 'The cursor is malformed; pass nextCursor from the previous page unchanged.');
      const search = repository.content.search;
      const visible = readFilter(repository.content, viewerOf(request));
      // What may be ranked is counted among what the caller may read, so that no refusal tells of nodes it may not.
      const candidates =
        visible === null
          ? { count: search.matchCount(query.match, config.search.candidatesMax), capped: false }
          : search.visibleMatchCount(query.match, visible, config.search.candidatesMax, config.search.scanMatchesMax);
      if (candidates.count > config.search.candidatesMax || candidates.capped) {
        throw new ConclaveError(
          'SEARCH_TOO_BROAD',
          `The query matches more than ${config.search.candidatesMax} documents, and every match would be ranked; add words or make them longer (filters do not narrow what is ranked).`,
          { candidatesMax: config.search.candidatesMax },
        );
      }
      const page = search.page(query.match, filters, cursor, spec.limit, config.search.snippetTokens, visible);
      const total = search.total(query.match, filters, config.search.totalMax, visible);
      const last = page.hits.at(-1);
      return reply.send({
        items: page.hits.map(({ cursor: _cursor, ...hit }) => hit),
        total: Math.min(total, config.search.totalMax),
        totalIsLowerBound: total > config.search.totalMax,
        nextCursor: page.more && last !== undefined ? encodeCursor(last.cursor, fingerprint) : null,
      });
    },
  );
}
