import { hash } from 'node:crypto';

import type { Role, User } from '../content/model.js';
import { ConclaveError } from '../errors/catalogue.js';
import { generatePassword, hashPassword, verifyPassword } from './passwords.js';
import type { TokenSigner } from './tokens.js';

export interface Principal {
  readonly name: string;
  readonly roles: readonly Role[];
}

export const anonymous: Principal = { name: 'anonymous', roles: [] };

/** Where users are read: `usersVersion` moves whenever a user may have changed. */
export interface UserSource {
  userByName(name: string): User | undefined;
  readonly usersVersion: number;
}

/**
 * Resolves an Authorization header to a user. Basic credentials cost one scrypt (tens of milliseconds), so
 * verified credentials are remembered — keyed by a hash of the header, tied to the stored password hash so a
 * password change takes effect at once — in a bounded map that forgets its oldest entry first.
 *
 * The users a request names are kept in memory too (as many as credentials), while the users table stays as it
 * was: a lookup per request was a tenth of the CPU of a read.
 */
export class Authenticator {
  private readonly verified = new Map<string, { user: string; passwordHash: string }>();
  private readonly knownUsers = new Map<string, { user: User; principal: Principal }>();
  private knownUsersVersion = -1;
  /**
   * The last Basic credentials that opened the cache on each connection, with their cache key: held only while the
   * connection lives (the request that carried them held them as long), and still checked against the cache.
   */
  private readonly lastBasicOf = new WeakMap<object, { value: string; cacheKey: string }>();

  constructor(
    private readonly users: UserSource,
    private readonly tokens: TokenSigner,
    private readonly limits: { readonly cacheEntriesMax: number; readonly passwordChecksInFlightMax: number },
  ) {}

  private passwordChecksInFlight = 0;

  /**
   * The principal an Authorization header names (undefined: none given). `connection` is what the request came on
   * (its socket): a client that sends the same Basic credentials on every request of a keep-alive connection has
   * them hashed once per connection, not once per request.
   */
  async authenticate(authorization: string | undefined, connection?: object): Promise<Principal | undefined> {
    if (authorization === undefined || authorization === '') return undefined;
    const space = authorization.indexOf(' ');
    const scheme = authorization.slice(0, space).toLowerCase();
    const value = authorization.slice(space + 1).trim();
    if (scheme === 'basic') return this.basic(value, connection);
    if (scheme === 'bearer') return this.bearer(value);
    throw new ConclaveError('AUTH_INVALID', 'The Authorization scheme must be Basic or Bearer.');
  }

  /** The user of this name as stored now, and its principal; undefined when there is none. */
  private known(name: string): { user: User; principal: Principal } | undefined {
    const version = this.users.usersVersion;
    if (version !== this.knownUsersVersion) {
      this.knownUsers.clear();
      this.knownUsersVersion = version;
    }
    const known = this.knownUsers.get(name);
    if (known !== undefined) return known;
    const user = this.users.userByName(name);
    if (user === undefined) return undefined;
    const entry = { user, principal: { name: user.name, roles: user.roles } };
    if (this.limits.cacheEntriesMax > 0) {
      if (this.knownUsers.size >= this.limits.cacheEntriesMax) this.knownUsers.delete(this.knownUsers.keys().next().value!);
      this.knownUsers.set(name, entry);
    }
    return entry;
  }

  private async basic(value: string, connection: object | undefined): Promise<Principal> {
    const last = connection === undefined ? undefined : this.lastBasicOf.get(connection);
    const cacheKey = last !== undefined && last.value === value ? last.cacheKey : hash('sha256', value, 'base64url');
    const cached = this.verified.get(cacheKey);
    if (cached !== undefined) {
      const known = this.known(cached.user);
      // Tied to the stored hash (random salt), not the version: a user deleted and created again restarts at
      // version 1, and the old password must not open the new account.
      if (known !== undefined && known.user.passwordHash === cached.passwordHash) {
        if (connection !== undefined && last?.cacheKey !== cacheKey) this.lastBasicOf.set(connection, { value, cacheKey });
        return known.principal;
      }
      this.verified.delete(cacheKey);
    }
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    const name = colon < 0 ? decoded : decoded.slice(0, colon);
    const password = colon < 0 ? '' : decoded.slice(colon + 1);
    const user = await this.check(name, password);
    if (this.limits.cacheEntriesMax > 0) {
      if (this.verified.size >= this.limits.cacheEntriesMax) this.verified.delete(this.verified.keys().next().value!);
      this.verified.set(cacheKey, { user: user.name, passwordHash: user.passwordHash });
    }
    return { name: user.name, roles: user.roles };
  }

  private async bearer(token: string): Promise<Principal> {
    const claims = await this.tokens.verify(token);
    const user = claims && this.known(claims.user)?.user;
    if (claims === undefined || user === undefined || user.version !== claims.userVersion || user.createdAt !== claims.userCreatedAt) {
      throw new ConclaveError('AUTH_INVALID', 'The token is invalid, expired or revoked; log in again.');
    }
    return { name: user.name, roles: user.roles };
  }

  /** Checks a password for login, without caching. */
  login(name: string, password: string): Promise<User> {
    return this.check(name, password);
  }

  private async check(name: string, password: string): Promise<User> {
    // scrypt runs on the libuv pool, which file I/O shares: a flood of wrong passwords must not starve it.
    if (this.passwordChecksInFlight >= this.limits.passwordChecksInFlightMax) {
      throw new ConclaveError('OVERLOADED', 'Too many password checks are in progress; retry shortly or use a bearer token.');
    }
    this.passwordChecksInFlight++;
    try {
      const user = this.users.userByName(name);
      // An unknown user costs the same scrypt as a known one, so timing does not tell which names exist.
      const valid = await verifyPassword(password, user?.passwordHash ?? (await this.decoyHash()));
      if (user === undefined || !valid) throw new ConclaveError('AUTH_INVALID', 'The user name or password is wrong.');
      return user;
    } finally {
      this.passwordChecksInFlight--;
    }
  }

  private decoy: Promise<string> | undefined;
  private decoyHash(): Promise<string> {
    this.decoy ??= hashPassword(generatePassword());
    return this.decoy;
  }
}

/** What each role may do. Roles are cumulative: an editor reads, an admin edits. */
export type Permission = 'read' | 'write' | 'admin';
const grants: Record<Role, readonly Permission[]> = {
  reader: ['read'],
  editor: ['read', 'write'],
  admin: ['read', 'write', 'admin'],
};

export function can(principal: Principal, permission: Permission): boolean {
  return principal.roles.some((role) => grants[role].includes(permission));
}
