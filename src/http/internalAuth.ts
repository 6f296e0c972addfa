import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

import { ConclaveError } from '../errors/catalogue.js';

/**
 * Authentication of node-to-node HTTP requests (blob and snapshot transfer under /internal/v1). Bulk bytes travel
 * over HTTP rather than the transport so that a 1 GB snapshot never queues behind, or ahead of, the heartbeats that
 * keep a master elected.
 *
 * The caller proves it knows the cluster secret without sending it, like the transport handshake: the header
 *
 *   X-Conclave-Internal: <nodeId>.<unixMs>.<nonce>.<hmac>
 *
 * carries HMAC-SHA256(secret, "internal" | method | path | nodeId | unixMs | nonce), each field length-prefixed.
 * The receiver accepts it when the MAC matches and unixMs is within `clockSkewMsMax` of its own wall clock.
 * Decision: no nonce memory, so a captured request can be replayed within that window against the same path. Every
 * internal endpoint is therefore idempotent and content-addressed (a blob PUT is verified against its hash; a GET
 * returns what the path names), so a replay changes nothing; use TLS in front of HTTP where the network is hostile.
 */
export const internalAuthHeader = 'x-conclave-internal';
export const internalClockSkewMsMax = 60_000;

export function signInternalRequest(secret: string, nodeId: string, method: string, path: string, nowMs: number): string {
  const nonce = randomBytes(12).toString('base64url');
  return `${nodeId}.${nowMs}.${nonce}.${mac(secret, method, path, nodeId, String(nowMs), nonce)}`;
}

/** The calling node's id, or INTERNAL_AUTH_FAILED. */
export function verifyInternalRequest(
  secret: string,
  header: string | undefined,
  method: string,
  path: string,
  nowMs: number,
  clockSkewMsMax = internalClockSkewMsMax,
): string {
  const parts = (header ?? '').split('.');
  if (parts.length !== 4) throw refused('the request carries no valid X-Conclave-Internal header');
  const [nodeId, unixMs, nonce, given] = parts as [string, string, string, string];
  const sentMs = Number(unixMs);
  if (!Number.isSafeInteger(sentMs) || Math.abs(nowMs - sentMs) > clockSkewMsMax) {
    throw refused(`its time stamp is more than ${clockSkewMsMax} ms from this node's clock; keep the nodes' clocks in sync (NTP)`);
  }
  const expected = Buffer.from(mac(secret, method, path, nodeId, unixMs, nonce), 'base64url');
  const actual = Buffer.from(given, 'base64url');
  if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) {
    throw refused('its proof does not match this node\'s cluster secret; set the same --cluster-secret on every node');
  }
  return nodeId;
}

function mac(secret: string, method: string, path: string, nodeId: string, unixMs: string, nonce: string): string {
  const hmac = createHmac('sha256', secret);
  for (const field of ['internal', method.toUpperCase(), path, nodeId, unixMs, nonce]) {
    const bytes = Buffer.from(field, 'utf8');
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    hmac.update(length);
    hmac.update(bytes);
  }
  return hmac.digest('base64url');
}

function refused(why: string): ConclaveError {
  return new ConclaveError('INTERNAL_AUTH_FAILED', `A node-to-node request was refused: ${why}.`);
}
