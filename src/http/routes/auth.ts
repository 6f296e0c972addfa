import type { FastifyInstance } from 'fastify';

import { anonymous } from '../../auth/authenticator.js';
import { isPlainObject } from '../../content/mergePatch.js';
import { ConclaveError } from '../../errors/catalogue.js';

/**
 *   POST /api/v1/auth/login   {"username", "password"} → {"token", "expiresAt", "user"}
 *   GET  /api/v1/auth/whoami  the caller's name and roles
 *   POST /api/v1/auth/token-key/rotate  (admin) a new token key: every bearer token issued so far stops working
 */
export async function authRoutes(app: FastifyInstance): Promise<void> {
  const { authenticator, tokens, repository } = app.conclave;
  app.post('/api/v1/auth/login', async (request) => {
    repository.requireBootstrapped();
    const body = request.body;
    if (!isPlainObject(body) || typeof body['username'] !== 'string' || typeof body['password'] !== 'string') {
      throw new ConclaveError('INVALID_REQUEST', 'Send {"username": "...", "password": "..."}.');
    }
    const user = await authenticator.login(body['username'], body['password'], request.ip);
    const issued = await tokens.issue({ user: user.name, userVersion: user.version, userCreatedAt: user.createdAt });
    return { ...issued, user: { name: user.name, roles: user.roles } };
  });
  app.post('/api/v1/auth/token-key/rotate', { config: { permission: 'admin' } }, async (request, reply) => {
    if (request.body !== undefined && request.body !== null && !(isPlainObject(request.body) && Object.keys(request.body).length === 0)) {
      throw new ConclaveError('INVALID_REQUEST', 'Send no body (or {}): the new key id is drawn by the node.');
    }
    const committed = await repository.rotateTokenKey();
    reply.header('X-Conclave-Index', committed.index);
    return { rotated: true, index: committed.index };
  });
  app.get('/api/v1/auth/whoami', { config: { permission: 'read' } }, async (request) => {
    if (request.principal === anonymous) throw new ConclaveError('AUTH_REQUIRED', 'Nobody is logged in.');
    return { name: request.principal.name, roles: request.principal.roles };
  });
}
