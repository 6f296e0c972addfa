import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';

import { anonymous, can } from '../auth/authenticator.js';
import { ConclaveError } from '../errors/catalogue.js';
import type { HttpContext } from './context.js';
import { clientErrorHandler, registerErrorHandling, registerServerRefusals } from './errors.js';
import { RequestForwarder } from './forwarding.js';
import { MinIndexGate } from './minIndex.js';
import { registerQueryParameterCheck } from './queryParameters.js';
import { ReadConsistencyGate } from './readConsistency.js';
import { LazyRequestLogger } from './requestLogger.js';
import { authRoutes } from './routes/auth.js';
import { binaryRoutes } from './routes/binaries.js';
import { clusterRoutes } from './routes/cluster.js';
import { contentRoutes } from './routes/content.js';
import { healthRoutes } from './routes/health.js';
import { internalBlobRoutes } from './routes/internal.js';
import { internalSnapshotRoutes } from './routes/internalSnapshots.js';
import { queryRoutes } from './routes/query.js';
import { userRoutes } from './routes/users.js';

/**
 * Builds the HTTP API. Infrastructure — the context, error handling, authentication and the index header — is set
 * up here once; each concern is a plugin under routes/.
 */
export async function buildApp(context: HttpContext, log: Logger): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    // Per-request log lines would cost more than a write; failures are logged by the error handler.
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: (logger, bindings, options) => new LazyRequestLogger(logger, bindings, options),
    bodyLimit: context.config.http.bodyBytesMax,
    // Content paths are long; the default of 100 characters would cut them.
    routerOptions: { maxParamLength: 8192, ignoreDuplicateSlashes: false },
    // We answer 503 ourselves during shutdown, in the catalogue's format.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    clientErrorHandler: clientErrorHandler(() => context.repository.appliedIndex),
    // Refused by registerServerRefusals instead, in the catalogue's format.
    http: { requireHostHeader: false },
    // Errors the router raises before any route runs (a malformed percent-encoding, an over-long path segment)
    // still answer in the catalogue's format.
    frameworkErrors: (error, _request, rawReply) => {
      const reply = rawReply as unknown as FastifyReply;
      const code = (error as { code?: string }).code;
      const refusal =
        code === 'FST_ERR_MAX_PARAM_LENGTH'
          ? new ConclaveError('INVALID_PATH', 'A segment of the URL path is too long.')
          : code === 'FST_ERR_BAD_URL'
            ? new ConclaveError('INVALID_PATH', 'The URL has a malformed percent-encoding.')
            : new ConclaveError('INVALID_REQUEST', error.message);
      void reply
        .status(refusal.status)
        .header('X-Conclave-Index', context.repository.appliedIndex)
        .type('application/json; charset=utf-8')
        .send(refusal.toJSON());
    },
  });
  app.decorate('conclave', context);
  // A reference type cannot be a request decorator's default; every request starts anonymous in onRequest.
  app.decorateRequest('principal', null as unknown as typeof anonymous);
  app.decorateRequest('forwardsCommand', false);
  registerErrorHandling(app);
  registerServerRefusals(app, () => context.repository.appliedIndex);
  registerQueryParameterCheck(app);
  // The API speaks JSON; a text body is a client mistake worth a 415, not a string to misread.
  app.removeContentTypeParser('text/plain');

  const minIndexGate = new MinIndexGate(context.runtime, context.config.http.minIndexWaitMs, context.config.http.minIndexWaitersMax);
  const readGate = new ReadConsistencyGate(context.runtime, minIndexGate, context.config.cluster.readConsistency);
  // Reads of content wait for what their consistency needs (cluster status is this node's own view: never).
  const admit = async (request: FastifyRequest) => {
    await minIndexGate.admit(request);
    if ((request.method !== 'GET' && request.method !== 'HEAD') || request.url.startsWith('/api/v1/cluster/')) return;
    await readGate.admit(readGate.modeOf(request));
  };
  // Shared so that a route can send a request on to the master too (a read that must see the latest state).
  const forwarder = RequestForwarder.fromConfig(context.runtime, context.config);
  app.decorate('forwarder', forwarder);
  // onClose runs once the server has no requests in flight: nothing is forwarded any more.
  app.addHook('onClose', async () => forwarder.close());
  app.addHook('onRequest', async (request, reply) => {
    request.principal = anonymous;
    // Health answers during a stop too: live stays 200, ready says "shutting-down".
    if (context.closing && !request.url.startsWith('/health/')) {
      throw new ConclaveError('SHUTTING_DOWN', 'The node is shutting down; retry on another node or later.');
    }
    // Before authentication (the master authenticates a forwarded request) and before the body is parsed (a
    // forwarded body streams through unread). A write forwarded as a command goes on to be authenticated here.
    if (await forwarder.coordinate(request, reply)) return reply;
    const permission = request.routeOptions.config.permission;
    if (permission === undefined) return;
    // Without a master, reads are served but marked stale, unless cluster.noMasterBlock says all (cluster status
    // stays available: it is how an operator finds out why).
    if (context.runtime.softState().master === null && !request.url.startsWith('/api/v1/cluster/')) {
      if (context.config.cluster.noMasterBlock === 'all') {
        throw new ConclaveError('CLUSTER_NO_MASTER', 'No master is elected; cluster.noMasterBlock is "all", so reads are refused too. Retry shortly.');
      }
    }
    // Until the bootstrap entry is applied here no user exists: credentials would be refused as wrong (401).
    context.repository.requireBootstrapped();
    const principal = await context.authenticator.authenticate(request.headers.authorization, request.raw.socket);
    if (principal === undefined) {
      if (permission === 'read' && context.config.auth.anonymousRead) return admit(request);
      throw new ConclaveError('AUTH_REQUIRED', 'Log in: send HTTP Basic credentials or a Bearer token from POST /api/v1/auth/login.');
    }
    request.principal = principal;
    if (!can(principal, permission)) {
      throw new ConclaveError('FORBIDDEN', `User ${principal.name} (${principal.roles.join(', ') || 'no roles'}) may not ${permission}.`, {
        needs: permission,
      });
    }
    // After authentication, so that a refused caller never waits; the waiters are bounded (OVERLOADED beyond).
    await admit(request);
  });

  // Every answer says which journal index it reflects; writes set it to their own entry's index.
  app.addHook('onSend', async (_request, reply, payload) => {
    if (!reply.hasHeader('x-conclave-index')) reply.header('X-Conclave-Index', context.repository.appliedIndex);
    // What this node serves may be behind a master it cannot reach: say so.
    if (context.runtime.softState().master === null) reply.header('X-Conclave-Stale', 'true');
    // While stopping, a connection must not go back to idle keep-alive after its last response: the stop would
    // wait for it until the grace period ran out.
    if (context.closing) reply.header('Connection', 'close');
    return payload;
  });

  await app.register(healthRoutes);
  await app.register(authRoutes);
  await app.register(userRoutes);
  await app.register(contentRoutes);
  await app.register(queryRoutes);
  await app.register(binaryRoutes);
  await app.register(clusterRoutes);
  await app.register(internalBlobRoutes);
  await app.register(internalSnapshotRoutes);
  return app;
}
