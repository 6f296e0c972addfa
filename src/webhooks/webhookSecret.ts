import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';

import { ConclaveError } from '../errors/catalogue.js';

/**
 * A webhook's secret: what signs its deliveries (the receiver holds the same). The cluster state, and so every
 * journal, snapshot and backup, holds it sealed: AES-256-GCM under HKDF-SHA256(cluster secret, salt = the webhook's
 * id, info naming the purpose), the id also bound as additional data. A reader of those files without the cluster
 * secret can neither read a secret nor move a sealed one to another webhook.
 */

/** A generated secret: 32 random bytes, base64url (43 characters). */
export function generateWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString('base64url')}`;
}

export const webhookSecretCharsMin = 16;
export const webhookSecretCharsMax = 256;

/** A secret a client chose: printable ASCII, 16 to 256 characters. */
export function checkWebhookSecret(secret: unknown): string {
  if (typeof secret !== 'string' || secret.length < webhookSecretCharsMin || secret.length > webhookSecretCharsMax || !/^[\x21-\x7e]+$/.test(secret)) {
    throw new ConclaveError('INVALID_REQUEST', `"secret" must be ${webhookSecretCharsMin} to ${webhookSecretCharsMax} printable ASCII characters without spaces; leave it out to have one generated.`, {
      parameter: 'secret',
    });
  }
  return secret;
}

const sealingInfo = 'conclave webhook secret sealing key';
const sealedPrefix = 'v1.';
const ivBytes = 12;
const tagBytes = 16;

function sealingKey(clusterSecret: string, webhookId: string): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(clusterSecret, 'utf8'), Buffer.from(webhookId, 'utf8'), sealingInfo, 32));
}

export function sealWebhookSecret(secret: string, clusterSecret: string, webhookId: string): string {
  const iv = randomBytes(ivBytes);
  const cipher = createCipheriv('aes-256-gcm', sealingKey(clusterSecret, webhookId), iv);
  cipher.setAAD(Buffer.from(webhookId, 'utf8'));
  const sealed = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
  return sealedPrefix + Buffer.concat([iv, cipher.getAuthTag(), sealed]).toString('base64url');
}

/** The secret, or WEBHOOK_SECRET_UNREADABLE (another cluster secret, another webhook's, or damaged). Never quotes it. */
export function unsealWebhookSecret(sealed: string, clusterSecret: string, webhookId: string): string {
  const refuse = () => new ConclaveError('WEBHOOK_SECRET_UNREADABLE', `The secret of webhook ${webhookId} does not open with this node's cluster secret; delete the webhook and register it again.`);
  if (!sealed.startsWith(sealedPrefix)) throw refuse();
  const raw = Buffer.from(sealed.slice(sealedPrefix.length), 'base64url');
  if (raw.length <= ivBytes + tagBytes) throw refuse();
  try {
    const decipher = createDecipheriv('aes-256-gcm', sealingKey(clusterSecret, webhookId), raw.subarray(0, ivBytes));
    decipher.setAAD(Buffer.from(webhookId, 'utf8'));
    decipher.setAuthTag(raw.subarray(ivBytes, ivBytes + tagBytes));
    return Buffer.concat([decipher.update(raw.subarray(ivBytes + tagBytes)), decipher.final()]).toString('utf8');
  } catch {
    throw refuse();
  }
}

/**
 * `X-Conclave-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. The timestamp is signed so
 * that a receiver can refuse a replayed delivery older than a few minutes.
 */
export function signatureHeader(secret: string, timestampSeconds: number, body: string): string {
  return `t=${timestampSeconds},v1=${signature(secret, timestampSeconds, body)}`;
}

function signature(secret: string, timestampSeconds: number, body: string): string {
  return createHmac('sha256', secret).update(`${timestampSeconds}.${body}`, 'utf8').digest('hex');
}

/**
 * A receiver's check (documented in docs/http-api.md; the tests use it): the header is well formed, its time within
 * `toleranceSeconds` of `nowSeconds`, and one of its v1 signatures matches (compared in constant time).
 */
export function verifySignature(header: string, secret: string, body: string, nowSeconds: number, toleranceSeconds = 300): boolean {
  const parts = header.split(',').map((part) => part.trim().split('='));
  const t = parts.find(([key]) => key === 't')?.[1];
  if (t === undefined || !/^\d{1,12}$/.test(t)) return false;
  const timestamp = Number(t);
  if (Math.abs(nowSeconds - timestamp) > toleranceSeconds) return false;
  const expected = Buffer.from(signature(secret, timestamp, body), 'hex');
  return parts.some(([key, value]) => key === 'v1' && value !== undefined && /^[0-9a-f]{64}$/.test(value) && timingSafeEqual(Buffer.from(value, 'hex'), expected));
}
