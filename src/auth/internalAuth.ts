import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';

import { ConclaveError } from '../errors/catalogue.js';

/**
 * Authentication of node-to-node HTTP requests: blob and snapshot transfer under /internal/v1, and client requests a
 * replica forwards to the master (src/forwarding/requestRelay.ts). Bulk bytes travel over HTTP rather than the
 * transport so that a 1 GB snapshot never queues behind, or ahead of, the heartbeats that keep a master elected.
 * Here in src/auth, below src/http: the API, the relay and the internal transfers (src/replication) all use it.
 *
 * The caller proves it knows the cluster secret without sending it. The header
 *
 *   X-Conclave-Internal: v2.<caller>.<target>.<unixMs>.<nonce>.<body>.<mac>
 *
 * carries HMAC-SHA256(key, "conclave-internal-http-v2" | method | path with query | caller | target | unixMs |
 * nonce | body | identity), each field length-prefixed, where
 *
 *   key       HKDF-SHA256 of the cluster secret with an HTTP label: a MAC leaks nothing usable elsewhere (the
 *             transport handshake proves the same secret under other labels), and the raw secret is never a key
 *   target    the node the request is for: a captured header is worthless at any other node
 *   body      `e`: the request has no body (the receiver checks); `s`: the body streams and is not covered — every
 *             internal endpoint that takes one verifies it by its content hash (blobs), and a forwarded upload is a
 *             client's body relayed unread (over TLS whenever the cluster uses TLS)
 *   identity  the X-Conclave-Identity header (a forwarded request's authenticated client), or empty
 *
 * The receiver accepts a header when the MAC matches, the target is itself, the time stamp is within
 * `clockSkewMsMax` of its own clock and the nonce is new: it remembers every nonce it accepted until the time stamp
 * leaves the window, so a captured request replayed within the window is refused too. That memory is bounded
 * (http.internalNoncesMax): when it is full the receiver refuses (OVERLOADED, retryable) rather than forget a nonce
 * early, which would let a replay through.
 */
export const internalAuthHeader = 'x-conclave-internal';
/** The client a replica authenticated, forwarded with its request (base64url JSON {user, roles}); signed with it. */
export const identityHeader = 'x-conclave-identity';
export const internalClockSkewMsMax = 60_000;

const version = 'v2';
const label = 'conclave-internal-http-v2';

export type BodyStatement = 'empty' | 'streamed';

export interface SignedTarget {
  /** The node the request is sent to. */
  readonly target: string;
  readonly method: string;
  /** The request target as sent: path and query. */
  readonly path: string;
  readonly body: BodyStatement;
  /** The X-Conclave-Identity header sent with the request, if any. */
  readonly identity?: string;
}

/** The HTTP signing key: HKDF of the cluster secret under a label of its own. */
export function internalKeyOf(secret: string): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(secret, 'utf8'), Buffer.alloc(0), Buffer.from('conclave http internal requests', 'utf8'), 32));
}

export function signInternalRequest(key: Buffer, caller: string, request: SignedTarget, nowMs: number): string {
  const nonce = randomBytes(16).toString('base64url');
  const body = request.body === 'empty' ? 'e' : 's';
  const unixMs = String(nowMs);
  return [version, caller, request.target, unixMs, nonce, body, mac(key, request.method, request.path, caller, request.target, unixMs, nonce, body, request.identity ?? '')].join('.');
}

export interface VerifiedHeader {
  readonly caller: string;
  readonly nonce: string;
  readonly sentMs: number;
}

export interface ReceivedRequest {
  /** This node's id: the target the header must name. */
  readonly self: string;
  readonly method: string;
  readonly path: string;
  /** Whether the request carries a body (a Content-Length above 0, or chunks). */
  readonly hasBody: boolean;
  readonly identity: string | undefined;
}

/** Checks a header without the nonce memory (see InternalAuth.verify): the caller's id, or INTERNAL_AUTH_FAILED. */
export function verifyInternalHeader(key: Buffer, header: string | undefined, request: ReceivedRequest, nowMs: number, clockSkewMsMax = internalClockSkewMsMax): VerifiedHeader {
  const parts = (header ?? '').split('.');
  if (parts.length !== 7 || parts[0] !== version) throw refused('the request carries no valid X-Conclave-Internal header');
  const [, caller, target, unixMs, nonce, body, given] = parts as [string, string, string, string, string, string, string];
  if (caller === '' || !/^[A-Za-z0-9_-]{16,64}$/.test(nonce) || (body !== 'e' && body !== 's')) throw refused('the request carries no valid X-Conclave-Internal header');
  const sentMs = Number(unixMs);
  if (!/^\d{1,15}$/.test(unixMs) || Math.abs(nowMs - sentMs) > clockSkewMsMax) {
    throw refused(`its time stamp is more than ${clockSkewMsMax} ms from this node's clock; keep the nodes' clocks in sync (NTP)`);
  }
  const expected = Buffer.from(mac(key, request.method, request.path, caller, target, unixMs, nonce, body, request.identity ?? ''), 'base64url');
  const actual = Buffer.from(given, 'base64url');
  if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) {
    throw refused('its proof does not match this node\'s cluster secret for this method, path and identity; set the same cluster secret on every node');
  }
  // After the MAC: only a holder of the secret learns that a header was meant for another node.
  if (target !== request.self) throw refused('it was signed for another node');
  if (body === 'e' && request.hasBody) throw refused('it was signed for a request without a body, and has one');
  return { caller, nonce, sentMs };
}

/**
 * Nonces accepted and not yet out of their window, oldest first. Pruned from the front: a nonce whose time stamp was
 * a little older than one in front of it is kept a little longer than needed, never shorter.
 */
export class NonceMemory {
  private readonly expiries = new Map<string, number>();

  constructor(private readonly entriesMax: number) {}

  get size(): number {
    return this.expiries.size;
  }

  /** Remembers a nonce until `expiresMs`; throws INTERNAL_AUTH_FAILED for one seen before, OVERLOADED when full. */
  remember(key: string, expiresMs: number, nowMs: number): void {
    for (const [old, expiry] of this.expiries) {
      if (expiry >= nowMs) break;
      this.expiries.delete(old);
    }
    if (this.expiries.has(key)) throw refused('it repeats a request this node has already accepted (a replay)');
    if (this.expiries.size >= this.entriesMax) {
      throw new ConclaveError('OVERLOADED', `This node remembers ${this.expiries.size} node-to-node requests of the last minute (http.internalNoncesMax); retry shortly.`, {
        internalNoncesMax: this.entriesMax,
      });
    }
    this.expiries.set(key, expiresMs);
  }
}

/** One node's signer and verifier: the derived key, its own id, and the nonces it accepted. */
export class InternalAuth {
  private readonly key: Buffer;
  private readonly nonces: NonceMemory;

  constructor(
    secret: string,
    readonly selfId: string,
    noncesMax: number,
    private readonly clockSkewMsMax = internalClockSkewMsMax,
    private readonly now: () => number = Date.now,
  ) {
    this.key = internalKeyOf(secret);
    this.nonces = new NonceMemory(noncesMax);
  }

  sign(request: SignedTarget): string {
    return signInternalRequest(this.key, this.selfId, request, this.now());
  }

  /** The calling node's id; throws INTERNAL_AUTH_FAILED (or OVERLOADED when the nonce memory is full). */
  verify(header: string | undefined, request: Omit<ReceivedRequest, 'self'>): string {
    const nowMs = this.now();
    const verified = verifyInternalHeader(this.key, header, { ...request, self: this.selfId }, nowMs, this.clockSkewMsMax);
    this.nonces.remember(`${verified.caller}.${verified.nonce}`, verified.sentMs + this.clockSkewMsMax, nowMs);
    return verified.caller;
  }

  /** Nonces remembered now (for tests and metrics). */
  get noncesRemembered(): number {
    return this.nonces.size;
  }
}

function mac(key: Buffer, method: string, path: string, caller: string, target: string, unixMs: string, nonce: string, body: string, identity: string): string {
  const hmac = createHmac('sha256', key);
  for (const field of [label, method.toUpperCase(), path, caller, target, unixMs, nonce, body, identity]) {
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
