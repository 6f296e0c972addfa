import type { FastifyInstance, FastifyRequest } from 'fastify';

import { can } from '../../auth/authenticator.js';
import { ConclaveError } from '../../errors/catalogue.js';
import { viaMetricsListener } from '../metricsListener.js';

/**
 *   GET /metrics   (any role, never anonymous; or open on the listener of metrics.port) Prometheus text format
 *
 * The series (docs/operations.md) map the cluster — member names, indexes, traffic — without a byte of content, so
 * they are read like the cluster status: credentials of a user with any role (a monitoring account with the reader
 * role), never anonymously, even where auth.anonymousRead publishes content. metrics.access "open" drops the
 * credentials on the listener of metrics.port only, which an operator can fence off to the scraper's network; the
 * API's port always asks. A refused request learns nothing but the refusal.
 *
 * Served from this node's own state at once: no read consistency to wait for, and during an election or without a
 * master too (that is when an operator looks).
 */
export async function metricsRoutes(app: FastifyInstance): Promise<void> {
  const { metrics, config, authenticator, repository } = app.conclave;
  if (metrics === null) return;

  const admit = async (request: FastifyRequest) => {
    if (config.metrics.access === 'open' && viaMetricsListener(request.raw)) return;
    // Until the bootstrap entry is applied here no user exists: say so rather than refuse the credentials as wrong.
    repository.requireBootstrapped();
    const principal = await authenticator.authenticate(request.headers.authorization, request.raw.socket);
    if (principal === undefined) throw new ConclaveError('AUTH_REQUIRED', 'Log in to read the metrics: send HTTP Basic credentials or a Bearer token (any role will do).');
    if (!can(principal, 'read')) throw new ConclaveError('FORBIDDEN', `User ${principal.name} may not read the metrics.`, { needs: 'read' });
  };

  app.get('/metrics', async (request, reply) => {
    await admit(request);
    const { text, contentType } = await metrics.exposition();
    return reply.header('cache-control', 'no-store').type(contentType).send(text);
  });
}
