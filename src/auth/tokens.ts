import { hkdfSync } from 'node:crypto';

import { jwtVerify, SignJWT } from 'jose';

import { ConclaveError } from '../errors/catalogue.js';

/**
 * Bearer tokens: HS256 JWTs. The signing key is HKDF-SHA256(cluster secret, salt = key id): the key id lives in the
 * cluster state (the bootstrap entry, then each rotation), the secret only in each node's configuration. So a
 * journal, a snapshot or a backup — without the secret — cannot forge a token, and proposing a new key id (POST
 * /api/v1/auth/token-key/rotate) invalidates every token at once on every node.
 */
export interface TokenClaims {
  readonly user: string;
  /** The user's version when the token was issued; a later change of password or roles revokes the token. */
  readonly userVersion: number;
  /** When the user was created: a user deleted and created again under the same name starts over at version 1. */
  readonly userCreatedAt: string;
}

const issuer = 'conclave';

export function tokenSigningKey(clusterSecret: string, keyId: string): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', Buffer.from(clusterSecret, 'utf8'), Buffer.from(keyId, 'utf8'), 'conclave bearer token signing key', 32));
}

export interface TokenSignerOptions {
  readonly clusterSecret: string;
  /** Read at each use from the content tables: undefined until the bootstrap entry applies, then changed by rotations. */
  readonly keyId: () => string | undefined;
  readonly ttlSeconds: number;
  /**
   * No token older than this is accepted, whatever its exp says: tokens issued under a longer auth.tokenTtlSeconds
   * (or by a release without the bound) stop working once they are this old.
   */
  readonly lifetimeSecondsMax: number;
  /** Injected for tests; seconds since the epoch. */
  readonly nowSeconds?: () => number;
}

export class TokenSigner {
  private cached: { keyId: string; key: Uint8Array } | undefined;
  private readonly nowSeconds: () => number;

  constructor(private readonly options: TokenSignerOptions) {
    if (options.ttlSeconds > options.lifetimeSecondsMax) {
      throw new ConclaveError('INVALID_REQUEST', `auth.tokenTtlSeconds ${options.ttlSeconds} is above auth.tokenLifetimeSecondsMax ${options.lifetimeSecondsMax}`);
    }
    this.nowSeconds = options.nowSeconds ?? (() => Math.floor(Date.now() / 1000));
  }

  private key(): { keyId: string; key: Uint8Array } | undefined {
    const keyId = this.options.keyId();
    if (keyId === undefined) return undefined;
    if (this.cached?.keyId !== keyId) this.cached = { keyId, key: tokenSigningKey(this.options.clusterSecret, keyId) };
    return this.cached;
  }

  async issue(claims: TokenClaims): Promise<{ token: string; expiresAt: string }> {
    const current = this.key();
    if (current === undefined) throw new ConclaveError('NOT_READY', 'This node has not received the repository yet; retry shortly or log in on another node.');
    const nowSeconds = this.nowSeconds();
    const expiresAtSeconds = nowSeconds + this.options.ttlSeconds;
    const token = await new SignJWT({ uv: claims.userVersion, uc: claims.userCreatedAt })
      .setProtectedHeader({ alg: 'HS256', kid: current.keyId })
      .setSubject(claims.user)
      .setIssuer(issuer)
      .setIssuedAt(nowSeconds)
      .setExpirationTime(expiresAtSeconds)
      .sign(current.key);
    return { token, expiresAt: new Date(expiresAtSeconds * 1000).toISOString() };
  }

  /** The claims of a valid, unexpired token signed with the current key, or undefined. */
  async verify(token: string): Promise<TokenClaims | undefined> {
    const current = this.key();
    if (current === undefined) return undefined;
    try {
      const { payload } = await jwtVerify(token, current.key, {
        issuer,
        algorithms: ['HS256'],
        requiredClaims: ['iat', 'exp'],
        maxTokenAge: this.options.lifetimeSecondsMax,
        currentDate: new Date(this.nowSeconds() * 1000),
      });
      if (typeof payload.sub !== 'string' || typeof payload['uv'] !== 'number' || typeof payload['uc'] !== 'string') return undefined;
      // An exp further out than the bound is a token no node of this configuration issued.
      if (payload.exp! - payload.iat! > this.options.lifetimeSecondsMax) return undefined;
      return { user: payload.sub, userVersion: payload['uv'], userCreatedAt: payload['uc'] };
    } catch {
      return undefined;
    }
  }
}
