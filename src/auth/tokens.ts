import { jwtVerify, SignJWT } from 'jose';

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
  private readonly key: Uint8Array;

  constructor(keyText: string, private readonly ttlSeconds: number) {
    this.key = Buffer.from(keyText, 'base64url');
  }

  async issue(claims: TokenClaims): Promise<{ token: string; expiresAt: string }> {
    const expiresAtSeconds = Math.floor(Date.now() / 1000) + this.ttlSeconds;
    const token = await new SignJWT({ uv: claims.userVersion, uc: claims.userCreatedAt })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(claims.user)
      .setIssuer(issuer)
      .setIssuedAt()
      .setExpirationTime(expiresAtSeconds)
      .sign(this.key);
    return { token, expiresAt: new Date(expiresAtSeconds * 1000).toISOString() };
  }

  /** The claims of a valid, unexpired token, or undefined. */
  async verify(token: string): Promise<TokenClaims | undefined> {
    try {
      const { payload } = await jwtVerify(token, this.key, { issuer, algorithms: ['HS256'] });
      if (typeof payload.sub !== 'string' || typeof payload['uv'] !== 'number' || typeof payload['uc'] !== 'string') return undefined;
      return { user: payload.sub, userVersion: payload['uv'], userCreatedAt: payload['uc'] };
    } catch {
      return undefined;
    }
  }
}
