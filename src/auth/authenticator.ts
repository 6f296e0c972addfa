import { hash } from 'node:crypto';

import type { Role, User } from '../content/model.js';
import { ConclaveError, isConclaveError } from '../errors/catalogue.js';
import { LoginThrottle, type LoginThrottleLimits } from './loginThrottle.js';
import { RateLimiter } from './rateLimiter.js';
import { sourceKey } from './sourceAddress.js';
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

export interface AuthenticatorLimits extends LoginThrottleLimits {
  readonly cacheEntriesMax: number;
  readonly passwordChecksInFlightMax: number;
  readonly passwordChecksPerSourceMax: number;
  readonly loginFailuresPerSourcePerMinuteMax: number;
}

/** A check of one (name, password), shared by every request that carries the same credentials while it runs. */
type Check = Promise<{ ok: true; user: User } | { ok: false; error: ConclaveError }>;

/**
 * Resolves an Authorization header to a user. Basic credentials cost one scrypt (tens of milliseconds), so:
 *
 * - verified credentials are remembered — keyed by a SHA-256 of the user name and password, tied to the stored
 *   password hash so a password change (or a user deleted and created again) takes effect at once — in a bounded
 *   map that forgets the least recently used first. A credential served from it costs no scrypt, takes no check
 *   slot and never waits for failed logins: known-good credentials cannot be starved by failing ones, so they need
 *   no budget of their own. The cache holds no password, only the digest; a digest of a password is as strong as
 *   the password against guessing, and lives only in this process's memory.
 * - identical checks in flight are shared (keyed the same way): 64 requests with the same new credentials pay one
 *   scrypt, not 64.
 * - checks are bounded three ways: at most passwordChecksInFlightMax at once (scrypt runs on the libuv pool, which
 *   file I/O shares), at most passwordChecksPerSourceMax of them for one source address (so one client cannot take
 *   every slot), and failures per (user, source) are throttled with growing waits (loginThrottle.ts).
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
  private readonly lastBasicOf = new WeakMap<object, { value: string; cacheKey: string; name: string }>();
  private readonly checksInFlight = new Map<string, Check>();
  private readonly checksOfSource = new Map<string, number>();
  private passwordHashesInFlight = 0;
  private readonly throttle: LoginThrottle;
  /** Failed checks per source across all user names: a new name each time must not buy a new budget. */
  private readonly failuresOfSource: RateLimiter;

  constructor(
    private readonly users: UserSource,
    private readonly tokens: TokenSigner,
    private readonly limits: AuthenticatorLimits,
    nowMs?: () => number,
  ) {
    this.throttle = new LoginThrottle(limits, nowMs);
    const perMinute = limits.loginFailuresPerSourcePerMinuteMax;
    this.failuresOfSource = new RateLimiter({ perInterval: perMinute, intervalMs: 60_000, burst: perMinute, what: 'failed password checks' }, nowMs);
  }

  /**
   * The principal an Authorization header names (undefined: none given). `connection` is what the request came on
   * (its socket): a client that sends the same Basic credentials on every request of a keep-alive connection has
   * them hashed once per connection, not once per request; its remote address is the source failed logins count
   * against.
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
    let cacheKey: string;
    let name: string;
    let password: string | undefined;
    if (last !== undefined && last.value === value) {
      ({ cacheKey, name } = last);
    } else {
      ({ name, password } = decodeBasic(value));
      cacheKey = credentialKey(name, password);
    }
    const source = sourceOf(connection);
    // The waits come first even for cached credentials, as in login(): else an address made to wait could keep
    // guessing, every wrong guess refused unchecked and the right one let through by the cache.
    this.admit(name, sourceKey(source));
    const known = this.fromCache(cacheKey);
    if (known !== undefined) {
      if (connection !== undefined && last?.cacheKey !== cacheKey) this.lastBasicOf.set(connection, { value, cacheKey, name });
      return known.principal;
    }
    // The connection's last credentials no longer open the cache: decode them for a full check.
    if (password === undefined) password = decodeBasic(value).password;
    const user = await this.checkShared(cacheKey, name, password, source);
    this.remember(cacheKey, user);
    return { name: user.name, roles: user.roles };
  }

  /** The user verified credentials with this key open, if they still do. */
  private fromCache(cacheKey: string): { user: User; principal: Principal } | undefined {
    const cached = this.verified.get(cacheKey);
    if (cached === undefined) return undefined;
    const known = this.known(cached.user);
    // Tied to the stored hash (random salt), not the version: a user deleted and created again restarts at
    // version 1, and the old password must not open the new account.
    if (known !== undefined && known.user.passwordHash === cached.passwordHash) {
      // Least recently used goes first: a credential in use stays.
      this.verified.delete(cacheKey);
      this.verified.set(cacheKey, cached);
      return known;
    }
    this.verified.delete(cacheKey);
    return undefined;
  }

  private remember(cacheKey: string, user: User): void {
    if (this.limits.cacheEntriesMax > 0) {
      if (this.verified.size >= this.limits.cacheEntriesMax) this.verified.delete(this.verified.keys().next().value!);
      this.verified.set(cacheKey, { user: user.name, passwordHash: user.passwordHash });
    }
  }

  private async bearer(token: string): Promise<Principal> {
    const claims = await this.tokens.verify(token);
    const user = claims && this.known(claims.user)?.user;
    if (claims === undefined || user === undefined || user.version !== claims.userVersion || user.createdAt !== claims.userCreatedAt) {
      throw new ConclaveError('AUTH_INVALID', 'The token is invalid, expired or revoked; log in again.');
    }
    return { name: user.name, roles: user.roles };
  }

  /**
   * Checks a password for login (or a user's current password before it changes it) through the same cache and
   * limits as Basic credentials: a known-good password never waits for a check slot, so a flood of failing ones
   * cannot lock its user out. `source` (the client's address) is what failures count against.
   */
  async login(name: string, password: string, source: string): Promise<User> {
    const cacheKey = credentialKey(name, password);
    // The waits come first even for a cached password: else a throttled address could keep guessing, every wrong
    // guess refused and the right one let through by the cache.
    this.admit(name, sourceKey(source));
    const known = this.fromCache(cacheKey);
    if (known !== undefined) return known.user;
    const user = await this.checkShared(cacheKey, name, password, source);
    this.remember(cacheKey, user);
    return user;
  }

  /** Hashes a new password under the same bound as checks: hashing costs the same scrypt. */
  async hashNewPassword(password: string): Promise<string> {
    if (this.checksInFlight.size + this.passwordHashesInFlight >= this.limits.passwordChecksInFlightMax) {
      throw new ConclaveError('OVERLOADED', 'Too many password checks are in progress; retry shortly.');
    }
    this.passwordHashesInFlight++;
    try {
      return await hashPassword(password);
    } finally {
      this.passwordHashesInFlight--;
    }
  }

  /** Throws RATE_LIMITED while this (user, source) must wait, or this source has used its failure budget. */
  private admit(name: string, source: string): void {
    this.throttle.admit(name, source);
    // Before any hashing: an address that fails over and over, a new user name each time, is refused here.
    this.failuresOfSource.admit(source);
  }

  /** Joins the check of these credentials in flight, or starts one within the limits. */
  private async checkShared(key: string, name: string, password: string, address: string): Promise<User> {
    const source = sourceKey(address);
    this.admit(name, source);
    let check = this.checksInFlight.get(key);
    if (check === undefined) {
      // scrypt runs on the libuv pool, which file I/O shares: a flood of wrong passwords must not starve it.
      const inFlight = this.checksInFlight.size + this.passwordHashesInFlight;
      if (inFlight >= this.limits.passwordChecksInFlightMax) {
        throw new ConclaveError('OVERLOADED', 'Too many password checks are in progress; retry shortly or use a bearer token.');
      }
      // Half the slots are kept for sources with no recent failure: however many addresses a flood of wrong
      // passwords comes from, it can hold at most half, and a client with a good password (which has not failed
      // lately) still finds a slot. Half, not a fixed count, so the reserve scales with the setting.
      if (this.failuresOfSource.used(source) && inFlight >= Math.floor(this.limits.passwordChecksInFlightMax / 2)) {
        throw new ConclaveError('OVERLOADED', 'Too many password checks are in progress for addresses with recent failures; retry shortly.');
      }
      const ofSource = this.checksOfSource.get(source) ?? 0;
      if (ofSource >= this.limits.passwordChecksPerSourceMax) {
        throw new ConclaveError('RATE_LIMITED', `${ofSource} password checks from your address are in progress; wait for them.`, { retryAfterSeconds: 1 });
      }
      this.checksOfSource.set(source, ofSource + 1);
      check = this.check(name, password).finally(() => {
        this.checksInFlight.delete(key);
        const left = this.checksOfSource.get(source)! - 1;
        if (left === 0) this.checksOfSource.delete(source);
        else this.checksOfSource.set(source, left);
      });
      this.checksInFlight.set(key, check);
      // Counted once per check, by the request that started it, whoever shares it.
      void check.then((outcome) => {
        if (outcome.ok) this.throttle.succeeded(name, source);
        else if (outcome.error.code === 'AUTH_INVALID') {
          this.throttle.failed(name, source);
          this.failuresOfSource.charge(source);
        }
      });
    }
    const outcome = await check;
    if (!outcome.ok) throw outcome.error;
    return outcome.user;
  }

  /** Never rejects: a shared check's outcome is read by every request that joined it. */
  private async check(name: string, password: string): Check {
    try {
      const user = this.users.userByName(name);
      // An unknown user costs the same scrypt as a known one, so timing does not tell which names exist.
      const valid = await verifyPassword(password, user?.passwordHash ?? (await this.decoyHash()));
      if (user === undefined || !valid) return { ok: false, error: new ConclaveError('AUTH_INVALID', 'The user name or password is wrong.') };
      return { ok: true, user };
    } catch (err) {
      return { ok: false, error: isConclaveError(err) ? err : new ConclaveError('INTERNAL', `The password check failed: ${(err as Error).message}`) };
    }
  }

  private decoy: Promise<string> | undefined;
  private decoyHash(): Promise<string> {
    this.decoy ??= hashPassword(generatePassword());
    return this.decoy;
  }
}

/** The key credentials are cached and shared under: a fast digest of the name and password, never the password. */
function credentialKey(name: string, password: string): string {
  return hash('sha256', `${name}\u0000${password}`, 'base64url');
}

/** The address a request came from (its socket's); requests without one share a single source. */
/** The name and password of a Basic credential (`name:password` in base64; no colon: a name, empty password). */
function decodeBasic(value: string): { name: string; password: string } {
  const decoded = Buffer.from(value, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? { name: decoded, password: '' } : { name: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function sourceOf(connection: object | undefined): string {
  const address = (connection as { remoteAddress?: unknown } | undefined)?.remoteAddress;
  return typeof address === 'string' ? address : 'unknown';
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
