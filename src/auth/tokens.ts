import { jwtVerify, SignJWT } from 'jose';

import { ConclaveError } from '../errors/catalogue.js';

/** Bearer tokens: HS256 JWTs signed with the repository's token key (from the journal's bootstrap entry). */
export interface TokenClaims {
  readonly user: string;
  /** The user's version when the token was issued; a later change of password or roles revokes the token. */
  readonly userVersion: number;
  /** When the user was created: a user deleted and created again under the same name starts over at version 1. */
  readonly userCreatedAt: string;
}

const issuer = 'conclave';

export class TokenSigner {
  private keyBytes: Uint8Array | undefined;

  /**
   * `keyText` reads the key from the content tables: a node that joined a cluster has none until the repository's
   * bootstrap entry reaches it, and then it never changes.
   */
  constructor(private readonly keyText: () => string | undefined, private readonly ttlSeconds: number) {}

  private get key(): Uint8Array | undefined {
    if (this.keyBytes === undefined) {
      const text = this.keyText();
      if (text !== undefined) this.keyBytes = Buffer.from(text, 'base64url');
    }
    return this.keyBytes;
  }

  async issue(claims: TokenClaims): Promise<{ token: string; expiresAt: string }> {
    const key = this.key;
    if (key === undefined) throw new ConclaveError('NOT_READY', 'This node has not received the repository yet; retry shortly or log in on another node.');
    const expiresAtSeconds = Math.floor(Date.now() / 1000) + this.ttlSeconds;
    const token = await new SignJWT({ uv: claims.userVersion, uc: claims.userCreatedAt })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(claims.user)
      .setIssuer(issuer)
      .setIssuedAt()
      .setExpirationTime(expiresAtSeconds)
      .sign(key);
    return { token, expiresAt: new Date(expiresAtSeconds * 1000).toISOString() };
  }

  /** The claims of a valid, unexpired token, or undefined. */
  async verify(token: string): Promise<TokenClaims | undefined> {
    const key = this.key;
    if (key === undefined) return undefined;
    try {
      const { payload } = await jwtVerify(token, key, { issuer, algorithms: ['HS256'] });
      if (typeof payload.sub !== 'string' || typeof payload['uv'] !== 'number' || typeof payload['uc'] !== 'string') return undefined;
      return { user: payload.sub, userVersion: payload['uv'], userCreatedAt: payload['uc'] };
    } catch {
      return undefined;
    }
  }
}
