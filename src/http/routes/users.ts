import type { FastifyInstance, FastifyRequest } from 'fastify';

import { anonymous, can } from '../../auth/authenticator.js';
import { passwordLengthMax, passwordLengthMin } from '../../auth/passwords.js';
import { RateLimiter } from '../../auth/rateLimiter.js';
import { isPlainObject } from '../../content/mergePatch.js';
import { decodeCursor, encodeCursor, parseLimit, single } from '../../content/query.js';
import { parseRoles, parseUserName } from '../../content/validate.js';
import { ConclaveError, isConclaveError } from '../../errors/catalogue.js';
import { writeOriginOf } from '../writeOrigin.js';
import { header } from '../representation.js';

/** Marks a cursor as one of the users listing: a content query's cursor is refused here, and the other way round. */
const usersCursorFingerprint = 'users';

type NameRequest = FastifyRequest<{ Params: { name: string } }>;

/** Anonymous reading covers content only: an anonymous caller has no user to read or change. */
function requireUser(request: FastifyRequest): void {
  if (request.principal === anonymous) {
    throw new ConclaveError('AUTH_REQUIRED', 'Log in to read or change users.');
  }
}

function publicUser(user: { name: string; roles: readonly string[]; version: number; createdAt: string; modifiedAt: string }) {
  return { name: user.name, roles: user.roles, version: user.version, createdAt: user.createdAt, modifiedAt: user.modifiedAt };
}

/**
 *   GET    /api/v1/users            (admin)
 *   GET    /api/v1/users/{name}     (admin, or the user itself)
 *   PUT    /api/v1/users/{name}     {"password"?, "roles"?}  create or change (admin); a user may change its own
 *                                   password, sending "currentPassword" too (admins as well, for their own).
 *                                   If-None-Match: * makes it create-only.
 *   DELETE /api/v1/users/{name}     (admin)
 */
export async function userRoutes(app: FastifyInstance): Promise<void> {
  const { repository, authenticator, config } = app.conclave;
  const ownPasswordChanges = new RateLimiter({
    perInterval: config.auth.passwordChangesPerHourMax,
    intervalMs: 3_600_000,
    burst: config.auth.passwordChangesPerHourMax,
    what: 'password changes',
  });

  // Paged like content listings: an answer that grew with the number of users would have no bound.
  app.get('/api/v1/users', { config: { permission: 'admin', query: ['limit', 'cursor'] } }, async (request: FastifyRequest<{ Querystring: Record<string, unknown> }>) => {
    const limit = parseLimit(request.query['limit'], config.content.pageSizeDefault, config.content.pageSizeMax);
    const cursor = request.query['cursor'];
    const after = cursor === undefined ? undefined : decodeCursor(single(cursor, 'cursor'), usersCursorFingerprint).id;
    const page = repository.content.usersPage(after, limit);
    const last = page.items.at(-1);
    return {
      items: page.items.map(publicUser),
      nextCursor: page.more && last !== undefined ? encodeCursor({ value: null, id: last.name }, usersCursorFingerprint) : null,
    };
  });

  app.get('/api/v1/users/:name', { config: { permission: 'read' } }, async (request: NameRequest) => {
    requireUser(request);
    const name = parseUserName(request.params.name);
    if (name !== request.principal.name && !can(request.principal, 'admin')) {
      throw new ConclaveError('FORBIDDEN', 'Only an admin may read other users.');
    }
    const user = repository.content.userByName(name);
    if (user === undefined) throw new ConclaveError('USER_NOT_FOUND', `No user named ${name} exists.`, { name });
    return publicUser(user);
  });

  app.put('/api/v1/users/:name', { config: { permission: 'read', forwardsCommand: true } }, async (request: NameRequest, reply) => {
    requireUser(request);
    const name = parseUserName(request.params.name);
    const body = request.body;
    if (!isPlainObject(body)) throw new ConclaveError('INVALID_REQUEST', 'Send {"password"?, "roles"?}.');
    const unknown = Object.keys(body).filter((k) => k !== 'password' && k !== 'roles' && k !== 'currentPassword');
    if (unknown.length > 0) throw new ConclaveError('INVALID_REQUEST', `Unknown field(s) ${unknown.join(', ')}.`);
    const isAdmin = can(request.principal, 'admin');
    const ownPasswordOnly = name === request.principal.name && body['roles'] === undefined;
    if (!isAdmin && !ownPasswordOnly) {
      throw new ConclaveError('FORBIDDEN', 'Only an admin may create users or change roles; users may change their own password.');
    }
    const ownPassword = name === request.principal.name && body['password'] !== undefined;
    if (!ownPassword && body['currentPassword'] !== undefined) {
      throw new ConclaveError('INVALID_REQUEST', '"currentPassword" is sent only by a user changing its own password.');
    }
    const change: { passwordHash?: string; roles?: ReturnType<typeof parseRoles> } = {};
    if (body['roles'] !== undefined) change.roles = parseRoles(body['roles']);
    if (body['password'] !== undefined) {
      const password = body['password'];
      if (typeof password !== 'string' || password.length < passwordLengthMin || password.length > passwordLengthMax) {
        throw new ConclaveError('INVALID_REQUEST', `"password" must be a string of ${passwordLengthMin} to ${passwordLengthMax} characters.`);
      }
      if (ownPassword) {
        // A stolen token (or an unattended session) must not become the account for good: a user changing its own
        // password proves it knows the current one, under the limits of a login (failures count against this
        // user from this address). Admins changing another user's password need not know it.
        const current = body['currentPassword'];
        if (typeof current !== 'string') {
          throw new ConclaveError('INVALID_REQUEST', 'To change your own password, send "currentPassword" with the new "password".');
        }
        try {
          await authenticator.login(name, current, request.ip);
        } catch (err) {
          if (isConclaveError(err) && err.code === 'AUTH_INVALID') {
            throw new ConclaveError('FORBIDDEN', '"currentPassword" is not your current password; nothing changed.', { field: 'currentPassword' });
          }
          throw err;
        }
        // Charged only once the current password is proven (wrong guesses count as failed logins instead): a stolen
        // token alone must not use up the budget and leave the real user unable to change a leaked password.
        ownPasswordChanges.take(name);
      }
      change.passwordHash = await authenticator.hashNewPassword(password);
    }
    if (change.roles === undefined && change.passwordHash === undefined) {
      throw new ConclaveError('INVALID_REQUEST', 'Send a new "password", new "roles", or both.');
    }
    const createOnly = header(request.headers, 'if-none-match')?.trim() === '*';
    const committed = await repository.putUser(name, change, createOnly, writeOriginOf(request, isAdmin ? 'admin' : 'ownPassword'));
    reply.header('X-Conclave-Index', committed.index);
    return reply.status(committed.result.created === true ? 201 : 200).send(committed.result.user);
  });

  app.delete('/api/v1/users/:name', { config: { permission: 'admin', forwardsCommand: true } }, async (request: NameRequest, reply) => {
    const committed = await repository.deleteUser(parseUserName(request.params.name), writeOriginOf(request, 'admin'));
    reply.header('X-Conclave-Index', committed.index);
    return committed.result.user;
  });
}
