import { createHash } from 'node:crypto';

import type { Role, User } from '../content/model.js';
import { ConclaveError } from '../errors/catalogue.js';
import { generatePassword, hashPassword, verifyPassword } from './passwords.js';
import type { TokenSigner } from './tokens.js';

export interface Principal {
  readonly name: string;
  readonly roles: readonly Role[];
}

export const anonymous: Principal = { name: 'anonymous', roles: [] };

/**
 * Resolves an Authorization header to a user. Basic credentials cost one scrypt (tens of milliseconds), so
 * verified credentials are remembered — keyed by a hash of the header, tied to the stored password hash so a
 * password change takes effect at once — in a bounded map that forgets its oldest entry first.
 */
export class Authenticator {
  private readonly verified = new Map<string, { user: string; passwordHash: string }>();

  constructor(
    private readonly users: { userByName(name: string): User | undefined },
    private readonly tokens: TokenSigner,
    private readonly limits: { readonly cacheEntriesMax: number; readonly passwordChecksInFlightMax: number },
  ) {}

  private passwordChecksInFlight = 0;

  async authenticate(authorization: string | undefined): Promise<Principal | undefined> {
    if (authorization === undefined || authorization === '') return undefined;
    const space = authorization.indexOf(' ');
    const scheme = authorization.slice(0, space).toLowerCase();
    const value = authorization.slice(space + 1).trim();
    if (scheme === 'basic') return this.basic(value);
    if (scheme === 'bearer') return this.bearer(value);
    throw new ConclaveError('AUTH_INVALID', 'The Authorization scheme must be Basic or Bearer.');
  }

  private async basic(value: string): Promise<Principal> {
    const cacheKey = createHash('sha256').update(value).digest('base64url');
    const cached = this.verified.get(cacheKey);
    if (cached !== undefined) {
      const user = this.users.userByName(cached.user);
      // Tied to the stored hash (random salt), not the version: a user deleted and created again restarts at
      // version 1, and the old password must not open the new account.
      if (user !== undefined && user.passwordHash === cached.passwordHash) return { name: user.name, roles: user.roles };
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
    const user = claims && this.users.userByName(claims.user);
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
