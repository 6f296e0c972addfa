import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';

import { anonymous, can, type Principal } from '../auth/authenticator.js';
import { RateLimiter } from '../auth/rateLimiter.js';
import { ConclaveError } from '../errors/catalogue.js';
import type { HttpContext } from './context.js';
import { clientErrorHandler, registerErrorHandling, registerServerRefusals } from './errors.js';
import { decodeIdentity, principalOfIdentity } from '../auth/forwardedIdentity.js';
import { identityHeader, internalAuthHeader } from '../auth/internalAuth.js';
import { forwardedFromHeader } from '../forwarding/decision.js';
import { RequestRelay } from '../forwarding/requestRelay.js';
import { viaInternalListener } from './internalListener.js';
import { verifyInternalCaller } from '../replication/internalAccess.js';
import { header } from './representation.js';
import { httpsOptionsOf, nodeTlsOf } from './tlsFiles.js';
import { parseJsonBody } from './jsonBody.js';
import { MinIndexGate } from './minIndex.js';
import { changesRoutes } from './routes/changes.js';
import { registerQueryParameterCheck } from './queryParameters.js';
import { ReadConsistencyGate } from './readConsistency.js';
import { LazyRequestLogger } from './requestLogger.js';
import { authRoutes } from './routes/auth.js';
import { backupPath, backupRoutes } from './routes/backup.js';
import { scheduledBackupRoutes } from './routes/scheduledBackups.js';
import { binaryRoutes } from './routes/binaries.js';
import { clusterRoutes } from './routes/cluster.js';
import { batchRoutes } from './routes/batch.js';
import { contentRoutes } from './routes/content.js';
import { historyRoutes } from './routes/history.js';
import { schemaRoutes } from './routes/schemas.js';
import { healthRoutes } from './routes/health.js';
import { metricsRoutes } from './routes/metrics.js';
import { internalBlobRoutes } from './routes/internal.js';
import { internalSnapshotRoutes } from './routes/internalSnapshots.js';
import { queryRoutes } from './routes/query.js';
import { searchRoutes } from './routes/search.js';
import { accessRoutes } from './routes/access.js';
import { userRoutes } from './routes/users.js';
import { webhookRoutes } from './routes/webhooks.js';

/**
 * Builds the HTTP API. Infrastructure — the context, error handling, authentication and the index header — is set
 * up here once; each concern is a plugin under routes/.
 */
export async function buildApp(context: HttpContext, log: Logger): Promise<FastifyInstance> {
  // HTTP/1.1 over TLS when http.tlsCertFile is set (read at start: a bad file fails the start, not a request).
  const https = httpsOptionsOf(context.config);
  const nodeTls = nodeTlsOf(context.config);
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
    // Typed as the plain variant: an https.Server has every method of an http.Server the node uses (address,
    // close, closeAllConnections), and routes and hooks see the same requests and replies either way.
    // The https options replace the http ones: the Host refusal stays ours there too.
    ...(https === null ? {} : ({ https: { ...https, requireHostHeader: false } } as object)),
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
  // One JSON parser for every JSON type the API takes, with one set of rules (jsonBody.ts).
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser(['application/json', 'application/merge-patch+json'], { parseAs: 'string' }, (_request, body, done) => {
    try {
      done(null, parseJsonBody(body as string));
    } catch (err) {
      done(err as Error, undefined);
    }
  });

  const minIndexGate = new MinIndexGate(context.runtime, {
    waitMs: context.config.http.minIndexWaitMs,
    waitersMax: context.config.http.minIndexWaitersMax,
    waitersPerUserMax: context.config.http.minIndexWaitersPerUserMax,
    aheadEntriesMax: context.config.http.minIndexAheadEntriesMax,
  });
  app.decorate('minIndexGate', minIndexGate);
  const readGate = new ReadConsistencyGate(context.runtime, minIndexGate, context.config.cluster.readConsistency, context.metrics?.reads.observe);
  // Reads of content wait for what their consistency needs (cluster status is this node's own view: never).
  const admit = async (request: FastifyRequest) => {
    await minIndexGate.admit(request);
    // A backup is a read whatever its method (POST names the base of an incremental one).
    const read = request.method === 'GET' || request.method === 'HEAD' || request.url.split('?', 1)[0] === backupPath;
    if (!read || request.url.startsWith('/api/v1/cluster/')) return;
    await readGate.admit(readGate.modeOf(request));
  };
  const { userWritesPerSecondMax } = context.config.auth;
  const userWrites = new RateLimiter({ perInterval: userWritesPerSecondMax, intervalMs: 1000, burst: 2 * userWritesPerSecondMax, what: 'writes' });
  app.decorate('userWrites', userWrites);
  // Shared so that a route can send a request on to the master too (a read that must see the latest state).
  const forwarder = RequestRelay.fromConfig(context.runtime, context.config, {
    sign: (request) => context.internalAuth.sign(request),
    tls: nodeTls,
    publicScheme: https === null ? 'http' : 'https',
  });
  app.decorate('forwarder', forwarder);
  if (context.metrics !== null) {
    forwarder.observe = context.metrics.forwards.observeRequest;
    context.metrics.http.register(app);
  }
  // onClose runs once the server has no requests in flight: nothing is forwarded any more.
  app.addHook('onClose', async () => forwarder.close());
  app.addHook('onRequest', async (request, reply) => {
    request.principal = anonymous;
    // Health answers during a stop too: live stays 200, ready says "shutting-down".
    if (context.closing && !request.url.startsWith('/health/')) {
      throw new ConclaveError('SHUTTING_DOWN', 'The node is shutting down; retry on another node or later.');
    }
    // Node-to-node HTTP: with TLS between nodes it is taken on the internal listener only (HTTPS, cluster CA), and
    // that listener takes nothing else. A request a replica forwarded carries no credentials but an identity,
    // trusted only once its signature (for this node, this request, a fresh nonce) is verified.
    const signed = header(request.headers, internalAuthHeader) !== undefined;
    const internal = request.url.startsWith('/internal/');
    const viaInternal = viaInternalListener(request.raw);
    if (nodeTls !== null && !viaInternal && (signed || internal)) {
      throw new ConclaveError('INTERNAL_AUTH_FAILED', 'A node-to-node request was refused: with TLS between nodes they are taken on the internal listener only (http.internalPort).');
    }
    if (viaInternal && !signed) {
      throw new ConclaveError('INTERNAL_AUTH_FAILED', 'A request was refused: the internal listener takes signed node-to-node requests only; clients use the HTTP API\'s port.');
    }
    let forwardedPrincipal: Principal | null = null;
    if (signed && !internal) forwardedPrincipal = verifyForwarded(request);
    else if (header(request.headers, identityHeader) !== undefined) {
      throw new ConclaveError('INTERNAL_AUTH_FAILED', 'A request was refused: X-Conclave-Identity is accepted only on a signed request a node forwarded.');
    }
    // Before the body is parsed (a forwarded body streams through unread). A write forwarded as a command goes on to
    // be authenticated here; one forwarded as a whole request is authenticated here before it goes (`identify`).
    const identify = () => context.authenticator.authenticate(request.headers.authorization, request.raw.socket);
    if (await forwarder.coordinate(request, reply, identify)) return reply;
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
    const principal = forwardedPrincipal ?? (signed ? undefined : await identify());
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
    // One user's writes cannot fill the write queue for everyone (reads are bounded by their own limits).
    if (request.method !== 'GET' && request.method !== 'HEAD') userWrites.take(principal.name);
    // After authentication, so that a refused caller never waits; the waiters are bounded (OVERLOADED beyond).
    await admit(request);
  });

  /** The principal of a request a replica forwarded (anonymous: it forwarded no identity); refusals thrown. */
  function verifyForwarded(request: FastifyRequest): Principal | null {
    if (header(request.headers, forwardedFromHeader) === undefined || request.headers.authorization !== undefined) {
      throw new ConclaveError('INTERNAL_AUTH_FAILED', 'A node-to-node request was refused: a forwarded request names the node it came from and carries no credentials.');
    }
    const identity = header(request.headers, identityHeader);
    verifyInternalCaller(context, request, identity);
    return identity === undefined ? null : principalOfIdentity(decodeIdentity(identity), context.repository.content);
  }

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
  await app.register(changesRoutes);
  await app.register(webhookRoutes);
  await app.register(userRoutes);
  await app.register(contentRoutes);
  await app.register(batchRoutes);
  await app.register(historyRoutes);
  await app.register(schemaRoutes);
  await app.register(queryRoutes);
  await app.register(searchRoutes);
  await app.register(accessRoutes);
  await app.register(binaryRoutes);
  await app.register(clusterRoutes);
  await app.register(backupRoutes);
  await app.register(scheduledBackupRoutes);
  await app.register(internalBlobRoutes);
  await app.register(internalSnapshotRoutes);
  await app.register(metricsRoutes);
  return app;
}
