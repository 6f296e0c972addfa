import type { Principal } from '../auth/authenticator.js';
import type { User } from '../content/model.js';
import { parseRoles, parseUserName } from '../content/validate.js';
import { ConclaveError, isConclaveError } from '../errors/catalogue.js';

/**
 * The identity a replica forwards with a client's request instead of the client's credentials
 * (X-Conclave-Identity, signed with the request: src/auth/internalAuth.ts). The replica authenticated the client
 * itself (it has the users table and the token key); the master trusts the identity only on a request whose
 * signature it verified, and takes the user's roles from its own table, which is never behind the replica's for a
 * write the master orders.
 *
 * Encoding: base64url of the JSON {"user": name, "roles": [...]}, at most identityBytesMax.
 */
export interface ForwardedIdentity {
  readonly user: string;
  readonly roles: readonly string[];
}

const identityBytesMax = 4096;

export function encodeIdentity(principal: Principal): string {
  return Buffer.from(JSON.stringify({ user: principal.name, roles: principal.roles }), 'utf8').toString('base64url');
}

/** The identity a header names; INTERNAL_AUTH_FAILED when it is not one this version writes. */
export function decodeIdentity(value: string): ForwardedIdentity {
  const malformed = () => new ConclaveError('INTERNAL_AUTH_FAILED', 'A node-to-node request was refused: its X-Conclave-Identity header is malformed; the nodes may run incompatible versions.');
  if (value.length > identityBytesMax || !/^[A-Za-z0-9_-]+$/.test(value)) throw malformed();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(value, 'base64url').toString('utf8'));
  } catch {
    throw malformed();
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw malformed();
  const { user, roles } = parsed as Record<string, unknown>;
  try {
    return { user: parseUserName(user), roles: parseRoles(roles) };
  } catch (err) {
    if (isConclaveError(err)) throw malformed();
    throw err;
  }
}

/**
 * The principal of a forwarded identity, as the master's users table has it now: a user deleted meanwhile is
 * refused (AUTH_INVALID), and a role removed meanwhile is not granted.
 */
export function principalOfIdentity(identity: ForwardedIdentity, users: { userByName(name: string): User | undefined }): Principal {
  const user = users.userByName(identity.user);
  if (user === undefined) {
    throw new ConclaveError('AUTH_INVALID', `The user ${identity.user} no longer exists.`);
  }
  return { name: user.name, roles: user.roles };
}
