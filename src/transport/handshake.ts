import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

import { isTransportRefusalCode, type TransportRefusalCode } from './errors.js';

export type { TransportRefusalCode } from './errors.js';

/**
 * The transport handshake, as pure decisions: each function takes what was received and what this side knows, and
 * says what to answer and whether to go on. The connection code only moves frames and keeps the state.
 *
 *   client (connects)                        server (accepts)
 *   hello {identity, nonce}          ──▶     checks identity
 *                                    ◀──     challenge {identity, nonce, proof}   or refused {code, message}
 *   checks identity, verifies proof
 *   proof {proof}                    ──▶     verifies proof
 *                                    ◀──     welcome                              or refused {code, message}
 *
 * Both proofs are HMAC-SHA256 keyed with the cluster secret over both nonces and both node ids, with a different
 * role label on each side: the secret never crosses the wire, a proof from one connection is worthless on another
 * (fresh nonces), and a server's proof cannot be reflected back as a client's. The server proves first so that a
 * client never talks to a node that lacks the secret either.
 *
 * Without TLS this authenticates the peer, not the link: an active man in the middle can relay the handshake and
 * then alter frames. Use TLS where the network between nodes is not trusted.
 */

export const nonceBytes = 32;
const proofBytes = 32;
/** Handshake frames are small; until the peer has proved itself, frames are limited to this. */
export const handshakeFrameBytesMax = 16 * 1024;
const identityFieldCharsMax = 1024;
const refusalMessageCharsMax = 4096;

/** What a node says about itself in a handshake. */
export interface HandshakeIdentity {
  /** `major.minor`; nodes of different majors never talk, minors may differ during a rolling upgrade. */
  readonly protocolVersion: string;
  readonly clusterName: string;
  /** Null until the cluster has formed (or this node has joined it). */
  readonly clusterUuid: string | null;
  readonly nodeId: string;
  readonly nodeName: string;
  /** Where this node's transport can be reached, host:port. */
  readonly address: string;
  /** The largest frame this node accepts, so the peer can refuse an oversized message itself instead of being cut off. */
  readonly frameBytesMax: number;
}

export interface HelloMessage extends HandshakeIdentity {
  readonly type: 'hello';
  readonly nonce: Uint8Array;
}

export interface ChallengeMessage extends HandshakeIdentity {
  readonly type: 'challenge';
  readonly nonce: Uint8Array;
  readonly proof: Uint8Array;
}

export interface ProofMessage {
  readonly type: 'proof';
  readonly proof: Uint8Array;
}

export interface WelcomeMessage {
  readonly type: 'welcome';
}

export interface RefusedMessage {
  readonly type: 'refused';
  readonly code: TransportRefusalCode;
  readonly message: string;
}

export type HandshakeMessage = HelloMessage | ChallengeMessage | ProofMessage | WelcomeMessage | RefusedMessage;

export interface Refusal {
  readonly code: TransportRefusalCode;
  /** Names the cause and the fix; written for the operator reading either node's log. */
  readonly message: string;
}

/** What one side brings to a handshake. `nonce` is fresh for every connection. */
export interface HandshakeSide {
  readonly local: HandshakeIdentity;
  readonly clusterSecret: string;
  readonly nonce: Uint8Array;
}

export function newNonce(): Uint8Array {
  return randomBytes(nonceBytes);
}

// ---------------------------------------------------------------------------------------------- refusal texts

export function refusal(code: TransportRefusalCode, message: string): Refusal {
  return { code, message };
}

function describe(identity: Pick<HandshakeIdentity, 'nodeName' | 'nodeId' | 'address'>): string {
  return `node "${identity.nodeName}" (id ${identity.nodeId}, ${identity.address})`;
}

export function protocolMismatch(local: HandshakeIdentity, remote: HandshakeIdentity): Refusal {
  return refusal(
    'PROTOCOL_MISMATCH',
    `transport protocol differs: ${describe(remote)} speaks ${remote.protocolVersion}, ${describe(local)} speaks ` +
      `${local.protocolVersion}, and different major versions cannot talk: run releases with the same transport ` +
      'protocol major version on every node (a rolling upgrade may only change the minor version)',
  );
}

export function clusterNameMismatch(local: HandshakeIdentity, remote: HandshakeIdentity): Refusal {
  return refusal(
    'CLUSTER_NAME_MISMATCH',
    `cluster name differs: ${describe(remote)} is in cluster "${remote.clusterName}", ${describe(local)} in ` +
      `"${local.clusterName}": set the same cluster.name (--cluster-name) on every node of a cluster, and list ` +
      "only that cluster's nodes in cluster.seeds",
  );
}

export function clusterSecretMismatch(local: HandshakeIdentity, remote: Pick<HandshakeIdentity, 'nodeName' | 'nodeId' | 'address'>): Refusal {
  return refusal(
    'CLUSTER_SECRET_MISMATCH',
    `cluster secret differs between ${describe(remote)} and ${describe(local)}: set the same cluster.secret ` +
      '(--cluster-secret) on every node',
  );
}

export function clusterUuidMismatch(local: HandshakeIdentity, remote: HandshakeIdentity): Refusal {
  return refusal(
    'CLUSTER_UUID_MISMATCH',
    `cluster UUID differs: ${describe(remote)} belongs to cluster ${remote.clusterUuid ?? '(none)'}, ` +
      `${describe(local)} to cluster ${local.clusterUuid ?? '(none)'}, although both are named ` +
      `"${local.clusterName}": a node belongs to another cluster — run \`conclave node detach-cluster\` on it if it ` +
      'should move, or fix the seed hosts if it should not be contacted',
  );
}

export function selfConnection(local: HandshakeIdentity, remote: HandshakeIdentity): Refusal {
  return refusal(
    'SELF_CONNECTION',
    `${describe(remote)} has the same node id as ${describe(local)}: either a node's seed hosts list its own ` +
      'transport address (remove it), or a data directory was copied to another node (give that node an empty ' +
      'data directory so it gets its own id)',
  );
}

export function handshakeTimeout(timeoutMs: number, address: string): Refusal {
  return refusal(
    'HANDSHAKE_TIMEOUT',
    `no handshake with ${address} within ${timeoutMs} ms: check that the address is a Conclave transport port ` +
      '(not HTTP), that TLS (transport.tlsCertFile) is configured alike on both nodes, and that the network passes ' +
      'the traffic',
  );
}

export function handshakeInvalid(detail: string): Refusal {
  return refusal(
    'HANDSHAKE_INVALID',
    `malformed handshake (${detail}): check that the address is the Conclave transport port of a node running a ` +
      'compatible release',
  );
}

export function tooManyConnections(local: HandshakeIdentity, connectionsMax: number): Refusal {
  return refusal(
    'TOO_MANY_CONNECTIONS',
    `${describe(local)} already holds ${connectionsMax} inbound transport connections: raise its ` +
      'transport connectionsMax, or look for a client that reconnects in a loop',
  );
}

// ---------------------------------------------------------------------------------------------- validation

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly refusal: Refusal };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

const protocolVersionPattern = /^(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})$/;

/** The major version of `major.minor`, or null when the text is not one. */
export function protocolMajor(version: string): number | null {
  const match = protocolVersionPattern.exec(version);
  return match === null ? null : Number(match[1]);
}

function text(record: Record<string, unknown>, field: string, problems: string[]): string {
  const value = record[field];
  if (typeof value !== 'string' || value.length === 0 || value.length > identityFieldCharsMax) {
    problems.push(`${field} must be a non-empty string of at most ${identityFieldCharsMax} characters`);
    return '';
  }
  return value;
}

function bytes(record: Record<string, unknown>, field: string, length: number, problems: string[]): Uint8Array {
  const value = record[field];
  if (!(value instanceof Uint8Array) || value.byteLength !== length) {
    problems.push(`${field} must be ${length} bytes`);
    return new Uint8Array(length);
  }
  return value;
}

function identity(record: Record<string, unknown>, problems: string[]): HandshakeIdentity {
  const protocolVersion = text(record, 'protocolVersion', problems);
  if (protocolVersion !== '' && protocolMajor(protocolVersion) === null) problems.push(`protocolVersion ${JSON.stringify(protocolVersion)} is not major.minor`);
  const uuid = record['clusterUuid'];
  if (!(uuid === null || (typeof uuid === 'string' && uuid.length > 0 && uuid.length <= identityFieldCharsMax))) {
    problems.push('clusterUuid must be null or a non-empty string');
  }
  const frameBytesMax = record['frameBytesMax'];
  if (!(typeof frameBytesMax === 'number' && Number.isSafeInteger(frameBytesMax) && frameBytesMax >= 1)) {
    problems.push('frameBytesMax must be a positive integer');
  }
  return {
    protocolVersion,
    clusterName: text(record, 'clusterName', problems),
    clusterUuid: typeof uuid === 'string' ? uuid : null,
    nodeId: text(record, 'nodeId', problems),
    nodeName: text(record, 'nodeName', problems),
    address: text(record, 'address', problems),
    frameBytesMax: typeof frameBytesMax === 'number' ? frameBytesMax : 1,
  };
}

/**
 * Validates a received handshake message against the types this step accepts. A `refused` from the peer is always
 * accepted: either side may give up at any step. Unknown fields are ignored, so a later minor version may add some.
 */
export function parseHandshakeMessage(value: unknown, expected: HandshakeMessage['type']): Parsed<HandshakeMessage> {
  if (!isRecord(value) || typeof value['type'] !== 'string') return { ok: false, refusal: handshakeInvalid('a handshake message must be a map with a type') };
  const type = value['type'];
  const problems: string[] = [];
  let message: HandshakeMessage;
  if (type === 'refused') {
    const code = value['code'];
    const reason = typeof value['message'] === 'string' ? value['message'].slice(0, refusalMessageCharsMax) : '(no message)';
    // A newer peer may refuse for a reason this release has no code for; keep its words.
    message = isTransportRefusalCode(code)
      ? { type, code, message: reason }
      : { type, code: 'HANDSHAKE_INVALID', message: `the peer refused with an unknown code ${JSON.stringify(code)}: ${reason}` };
    return { ok: true, value: message };
  }
  if (type !== expected) return { ok: false, refusal: handshakeInvalid(`expected ${expected}, received ${type.slice(0, 64)}`) };
  switch (type) {
    case 'hello':
      message = { type, ...identity(value, problems), nonce: bytes(value, 'nonce', nonceBytes, problems) };
      break;
    case 'challenge':
      message = {
        type,
        ...identity(value, problems),
        nonce: bytes(value, 'nonce', nonceBytes, problems),
        proof: bytes(value, 'proof', proofBytes, problems),
      };
      break;
    case 'proof':
      message = { type, proof: bytes(value, 'proof', proofBytes, problems) };
      break;
    case 'welcome':
      message = { type };
      break;
    default:
      return { ok: false, refusal: handshakeInvalid(`unknown message type ${type.slice(0, 64)}`) };
  }
  if (problems.length > 0) return { ok: false, refusal: handshakeInvalid(`${type}: ${problems.join('; ')}`) };
  return { ok: true, value: message };
}

// ---------------------------------------------------------------------------------------------- decisions

/**
 * Whether this node may talk to `remote` at all, before any proof: the checks are the same on both sides, so a
 * mismatch is caught by whichever side sees it first. Order matters for the message: a different protocol major
 * may mean different everything else, and a node talking to itself matches in everything else.
 */
export function checkPeer(local: HandshakeIdentity, remote: HandshakeIdentity): Refusal | null {
  if (protocolMajor(local.protocolVersion) !== protocolMajor(remote.protocolVersion)) return protocolMismatch(local, remote);
  if (local.nodeId === remote.nodeId) return selfConnection(local, remote);
  if (local.clusterName !== remote.clusterName) return clusterNameMismatch(local, remote);
  // A null UUID is a node that has not joined a cluster yet: it is exactly who discovery must reach.
  if (local.clusterUuid !== null && remote.clusterUuid !== null && local.clusterUuid !== remote.clusterUuid) {
    return clusterUuidMismatch(local, remote);
  }
  return null;
}

function lengthPrefixed(hmac: ReturnType<typeof createHmac>, field: Uint8Array | string): void {
  const data = typeof field === 'string' ? Buffer.from(field, 'utf8') : field;
  const header = Buffer.allocUnsafe(4);
  header.writeUInt32BE(data.byteLength, 0);
  // The length prefix keeps the concatenation unambiguous: ("ab","c") and ("a","bc") hash differently.
  hmac.update(header);
  hmac.update(data);
}

interface ProofInput {
  readonly clientNonce: Uint8Array;
  readonly serverNonce: Uint8Array;
  readonly clientId: string;
  readonly serverId: string;
  readonly clusterName: string;
}

/** HMAC(secret, 'server' ‖ clientNonce ‖ serverNonce ‖ clientId ‖ serverId ‖ clusterName). */
export function serverProof(clusterSecret: string, input: ProofInput): Buffer {
  const hmac = createHmac('sha256', clusterSecret);
  for (const field of ['server', input.clientNonce, input.serverNonce, input.clientId, input.serverId, input.clusterName]) lengthPrefixed(hmac, field);
  return hmac.digest();
}

/** HMAC(secret, 'client' ‖ serverNonce ‖ clientNonce ‖ clientId ‖ serverId ‖ clusterName). */
export function clientProof(clusterSecret: string, input: ProofInput): Buffer {
  const hmac = createHmac('sha256', clusterSecret);
  for (const field of ['client', input.serverNonce, input.clientNonce, input.clientId, input.serverId, input.clusterName]) lengthPrefixed(hmac, field);
  return hmac.digest();
}

function proofMatches(expected: Buffer, received: Uint8Array): boolean {
  // Lengths were validated when parsing; timingSafeEqual keeps a forger from learning the proof byte by byte.
  return received.byteLength === expected.byteLength && timingSafeEqual(expected, received);
}

/** The client's first message. */
export function clientHello(side: HandshakeSide): HelloMessage {
  return { type: 'hello', ...side.local, nonce: side.nonce };
}

/** What the server does with a hello: challenge the client (proving itself first), or refuse it. */
export type ServerHelloOutcome =
  | { readonly kind: 'challenge'; readonly reply: ChallengeMessage; readonly hello: HelloMessage }
  | { readonly kind: 'refuse'; readonly reply: RefusedMessage; readonly refusal: Refusal };

export function serverReceiveHello(side: HandshakeSide, received: unknown): ServerHelloOutcome {
  const parsed = parseHandshakeMessage(received, 'hello');
  if (!parsed.ok) return refuse(parsed.refusal);
  if (parsed.value.type !== 'hello') return refuse(handshakeInvalid(`expected hello, received ${parsed.value.type}`));
  const hello = parsed.value;
  const problem = checkPeer(side.local, hello);
  if (problem !== null) return refuse(problem);
  const proof = serverProof(side.clusterSecret, {
    clientNonce: hello.nonce,
    serverNonce: side.nonce,
    clientId: hello.nodeId,
    serverId: side.local.nodeId,
    clusterName: side.local.clusterName,
  });
  return { kind: 'challenge', reply: { type: 'challenge', ...side.local, nonce: side.nonce, proof }, hello };
}

/** What the client does with the server's challenge: prove itself, refuse the server, or accept being refused. */
export type ClientChallengeOutcome =
  | { readonly kind: 'proof'; readonly reply: ProofMessage; readonly challenge: ChallengeMessage }
  | { readonly kind: 'refuse'; readonly reply: RefusedMessage; readonly refusal: Refusal }
  | { readonly kind: 'refused'; readonly refusal: Refusal };

export function clientReceiveChallenge(side: HandshakeSide, received: unknown): ClientChallengeOutcome {
  const parsed = parseHandshakeMessage(received, 'challenge');
  if (!parsed.ok) return refuse(parsed.refusal);
  if (parsed.value.type === 'refused') return { kind: 'refused', refusal: { code: parsed.value.code, message: parsed.value.message } };
  if (parsed.value.type !== 'challenge') return refuse(handshakeInvalid(`expected challenge, received ${parsed.value.type}`));
  const challenge = parsed.value;
  const problem = checkPeer(side.local, challenge);
  if (problem !== null) return refuse(problem);
  const input: ProofInput = {
    clientNonce: side.nonce,
    serverNonce: challenge.nonce,
    clientId: side.local.nodeId,
    serverId: challenge.nodeId,
    clusterName: side.local.clusterName,
  };
  if (!proofMatches(serverProof(side.clusterSecret, input), challenge.proof)) return refuse(clusterSecretMismatch(side.local, challenge));
  return { kind: 'proof', reply: { type: 'proof', proof: clientProof(side.clusterSecret, input) }, challenge };
}

/** What the server does with the client's proof: welcome it, refuse it, or accept being refused. */
export type ServerProofOutcome =
  | { readonly kind: 'welcome'; readonly reply: WelcomeMessage }
  | { readonly kind: 'refuse'; readonly reply: RefusedMessage; readonly refusal: Refusal }
  | { readonly kind: 'refused'; readonly refusal: Refusal };

export function serverReceiveProof(side: HandshakeSide, hello: HelloMessage, received: unknown): ServerProofOutcome {
  const parsed = parseHandshakeMessage(received, 'proof');
  if (!parsed.ok) return refuse(parsed.refusal);
  if (parsed.value.type === 'refused') return { kind: 'refused', refusal: { code: parsed.value.code, message: parsed.value.message } };
  if (parsed.value.type !== 'proof') return refuse(handshakeInvalid(`expected proof, received ${parsed.value.type}`));
  const expected = clientProof(side.clusterSecret, {
    clientNonce: hello.nonce,
    serverNonce: side.nonce,
    clientId: hello.nodeId,
    serverId: side.local.nodeId,
    clusterName: side.local.clusterName,
  });
  if (!proofMatches(expected, parsed.value.proof)) return refuse(clusterSecretMismatch(side.local, hello));
  return { kind: 'welcome', reply: { type: 'welcome' } };
}

/** What the client does with the server's last word. */
export type ClientWelcomeOutcome =
  | { readonly kind: 'welcome' }
  | { readonly kind: 'refuse'; readonly reply: RefusedMessage; readonly refusal: Refusal }
  | { readonly kind: 'refused'; readonly refusal: Refusal };

export function clientReceiveWelcome(received: unknown): ClientWelcomeOutcome {
  const parsed = parseHandshakeMessage(received, 'welcome');
  if (!parsed.ok) return refuse(parsed.refusal);
  if (parsed.value.type === 'refused') return { kind: 'refused', refusal: { code: parsed.value.code, message: parsed.value.message } };
  if (parsed.value.type !== 'welcome') return refuse(handshakeInvalid(`expected welcome, received ${parsed.value.type}`));
  return { kind: 'welcome' };
}

export function refusedMessage(r: Refusal): RefusedMessage {
  return { type: 'refused', code: r.code, message: r.message };
}

function refuse(r: Refusal): { readonly kind: 'refuse'; readonly reply: RefusedMessage; readonly refusal: Refusal } {
  return { kind: 'refuse', reply: refusedMessage(r), refusal: r };
}
