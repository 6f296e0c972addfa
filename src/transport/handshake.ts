import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';

import { isTransportRefusalCode, type TransportRefusalCode } from './errors.js';

export type { TransportRefusalCode } from './errors.js';

/**
 * The transport handshake, as pure decisions: each function takes what was received and what this side knows, and
 * says what to answer and whether to go on. The connection code only moves frames and keeps the state.
 *
 *   client (connects)                        server (accepts)
 *   hello {protocolVersion, nonce}   ──▶     checks the protocol major
 *                                    ◀──     challenge {nonce, proof}                 or refused {code}
 *   verifies the server's proof
 *   proof {identity, proof}          ──▶     verifies the proof, then checks the identity
 *                                    ◀──     welcome {identity, proof}                or refused {code, message}
 *   verifies the proof, checks the identity
 *
 * Every proof is HMAC-SHA256 under a key derived from the cluster secret (HKDF), over both nonces, a role label and
 * (for the last two) the sender's identity: the secret never crosses the wire, a proof is worthless on another
 * connection (fresh nonces), one side's proof cannot be reflected as the other's, and an identity cannot be swapped.
 *
 * Nothing about this node — cluster name, UUID, node id or name, address — is sent before the peer has proved the
 * secret, and a refusal before then carries a code and a fixed text only: an unauthenticated peer learns that this
 * port speaks the Conclave transport, and which protocol major it does not speak.
 *
 * Whichever side proves first hands out a proof that an attacker could test guesses of the secret against
 * offline. That is made useless by the secret's strength, not by the protocol: secrets must carry at least 128 bits
 * (clusterSecret.ts refuses weaker ones), so no dictionary or brute force reaches them.
 *
 * Without TLS this authenticates the peer, not the link: an active man in the middle can relay the handshake and
 * then alter frames, and a passive one reads the identities. Use TLS where the network between nodes is not trusted.
 */

export const nonceBytes = 32;
const proofBytes = 32;
/** Handshake frames are small; until the peer has proved itself, frames are limited to this. */
export const handshakeFrameBytesMax = 16 * 1024;
const identityFieldCharsMax = 1024;
const refusalMessageCharsMax = 4096;

/** What a node says about itself in a handshake, once the peer has proved the secret. */
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

export interface HelloMessage {
  readonly type: 'hello';
  readonly protocolVersion: string;
  readonly nonce: Uint8Array;
}

export interface ChallengeMessage {
  readonly type: 'challenge';
  readonly nonce: Uint8Array;
  readonly proof: Uint8Array;
}

export interface ProofMessage extends HandshakeIdentity {
  readonly type: 'proof';
  readonly proof: Uint8Array;
}

export interface WelcomeMessage extends HandshakeIdentity {
  readonly type: 'welcome';
  readonly proof: Uint8Array;
}

export interface RefusedMessage {
  readonly type: 'refused';
  readonly code: TransportRefusalCode;
  readonly message: string;
}

export type HandshakeMessage = HelloMessage | ChallengeMessage | ProofMessage | WelcomeMessage | RefusedMessage;

export interface Refusal {
  readonly code: TransportRefusalCode;
  /** Names the cause and the fix; written for the operator reading this node's log. */
  readonly message: string;
  /**
   * Whether `message` may be sent to the peer. Only refusals of a peer that proved the secret are: anyone else gets
   * the code and its fixed text (publicRefusalText), never this node's name, id, address or cluster.
   */
  readonly shareable?: boolean;
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

export function refusal(code: TransportRefusalCode, message: string, shareable = false): Refusal {
  return { code, message, shareable };
}

/** What a peer that has not proved the secret is told: the code's remedy, the same from every node. */
export function publicRefusalText(code: TransportRefusalCode): string {
  switch (code) {
    case 'PROTOCOL_MISMATCH':
      return 'the transport protocol major versions differ: run releases with the same transport protocol major version on every node';
    case 'CLUSTER_SECRET_MISMATCH':
      return 'the cluster secret differs: give every node of a cluster the same secret (CONCLAVE_CLUSTER_SECRET or cluster.secretFile)';
    case 'HANDSHAKE_TIMEOUT':
      return 'the handshake did not finish in time: check that this is a Conclave transport port and that TLS is configured alike on both nodes';
    case 'HANDSHAKE_INVALID':
      return 'malformed handshake: check that this is the Conclave transport port of a node running a compatible release';
    case 'TOO_MANY_CONNECTIONS':
      return 'the node holds as many inbound transport connections as it accepts (transport.connectionsMax); look for a client that reconnects in a loop';
    case 'TOO_MANY_HANDSHAKES':
      return 'the node has as many transport handshakes in progress as it accepts (transport.handshakesMax, transport.handshakesPerSourceMax); retry later';
    case 'TLS_HANDSHAKE_FAILED':
      return 'the TLS certificate was refused: give every node a certificate signed by the CA in transport.tlsCaFile';
    case 'CLUSTER_NAME_MISMATCH':
    case 'CLUSTER_UUID_MISMATCH':
    case 'SELF_CONNECTION':
      // Only ever found after both proved the secret, so the detailed message is sent instead; this is a fallback.
      return `refused: ${code}`;
  }
}

function describe(identity: Pick<HandshakeIdentity, 'nodeName' | 'nodeId' | 'address'>): string {
  return `node "${identity.nodeName}" (id ${identity.nodeId}, ${identity.address})`;
}

/** Found from the hello alone, before anything is proved: the log names this node, the peer hears only the code. */
export function protocolMismatch(local: HandshakeIdentity, remoteVersion: string): Refusal {
  return refusal(
    'PROTOCOL_MISMATCH',
    `transport protocol differs: the peer speaks ${remoteVersion.slice(0, 64)}, ${describe(local)} speaks ` +
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
    true,
  );
}

/** `peer` is what this node knows of the other side without trusting it: an address. */
export function clusterSecretMismatch(local: HandshakeIdentity, peer: string): Refusal {
  return refusal(
    'CLUSTER_SECRET_MISMATCH',
    `cluster secret differs between the node at ${peer} and ${describe(local)} (or ${peer} is not a node of this ` +
      'cluster): give every node the same secret (CONCLAVE_CLUSTER_SECRET or cluster.secretFile)',
  );
}

export function clusterUuidMismatch(local: HandshakeIdentity, remote: HandshakeIdentity): Refusal {
  return refusal(
    'CLUSTER_UUID_MISMATCH',
    `cluster UUID differs: ${describe(remote)} belongs to cluster ${remote.clusterUuid ?? '(none)'}, ` +
      `${describe(local)} to cluster ${local.clusterUuid ?? '(none)'}, although both are named ` +
      `"${local.clusterName}": a node belongs to another cluster — run \`conclave node detach-cluster\` on it if it ` +
      'should move, or fix the seed hosts if it should not be contacted',
    true,
  );
}

export function selfConnection(local: HandshakeIdentity, remote: HandshakeIdentity): Refusal {
  return refusal(
    'SELF_CONNECTION',
    `${describe(remote)} has the same node id as ${describe(local)}: either a node's seed hosts list its own ` +
      'transport address (remove it), or a data directory was copied to another node (give that node an empty ' +
      'data directory so it gets its own id)',
    true,
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

function protocolVersionField(record: Record<string, unknown>, problems: string[]): string {
  const protocolVersion = text(record, 'protocolVersion', problems);
  if (protocolVersion !== '' && protocolMajor(protocolVersion) === null) problems.push(`protocolVersion ${JSON.stringify(protocolVersion.slice(0, 64))} is not major.minor`);
  return protocolVersion;
}

function identity(record: Record<string, unknown>, problems: string[]): HandshakeIdentity {
  const protocolVersion = protocolVersionField(record, problems);
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
      message = { type, protocolVersion: protocolVersionField(value, problems), nonce: bytes(value, 'nonce', nonceBytes, problems) };
      break;
    case 'challenge':
      message = { type, nonce: bytes(value, 'nonce', nonceBytes, problems), proof: bytes(value, 'proof', proofBytes, problems) };
      break;
    case 'proof':
      message = { type, ...identity(value, problems), proof: bytes(value, 'proof', proofBytes, problems) };
      break;
    case 'welcome':
      message = { type, ...identity(value, problems), proof: bytes(value, 'proof', proofBytes, problems) };
      break;
    default:
      return { ok: false, refusal: handshakeInvalid(`unknown message type ${type.slice(0, 64)}`) };
  }
  if (problems.length > 0) return { ok: false, refusal: handshakeInvalid(`${type}: ${problems.join('; ')}`) };
  return { ok: true, value: message };
}

// ---------------------------------------------------------------------------------------------- proofs

/**
 * The handshake's MAC key: HKDF-SHA256 of the secret, so that the secret itself keys nothing directly and other
 * uses of it (internal HTTP signatures, token keys) get keys of their own. Cached: one per secret in a process.
 */
const handshakeKeys = new Map<string, Buffer>();

export function handshakeKey(clusterSecret: string): Buffer {
  let key = handshakeKeys.get(clusterSecret);
  if (key === undefined) {
    key = Buffer.from(hkdfSync('sha256', Buffer.from(clusterSecret, 'utf8'), 'conclave', 'conclave transport handshake v3', 32));
    if (handshakeKeys.size >= 16) handshakeKeys.clear();
    handshakeKeys.set(clusterSecret, key);
  }
  return key;
}

function lengthPrefixed(hmac: ReturnType<typeof createHmac>, field: Uint8Array | string): void {
  const data = typeof field === 'string' ? Buffer.from(field, 'utf8') : field;
  const header = Buffer.allocUnsafe(4);
  header.writeUInt32BE(data.byteLength, 0);
  // The length prefix keeps the concatenation unambiguous: ("ab","c") and ("a","bc") hash differently.
  hmac.update(header);
  hmac.update(data);
}

function mac(clusterSecret: string, fields: ReadonlyArray<Uint8Array | string>): Buffer {
  const hmac = createHmac('sha256', handshakeKey(clusterSecret));
  for (const field of fields) lengthPrefixed(hmac, field);
  return hmac.digest();
}

function identityFields(identity: HandshakeIdentity): string[] {
  // A UUID is never empty, so '' stands for null without ambiguity.
  return [identity.protocolVersion, identity.clusterName, identity.clusterUuid ?? '', identity.nodeId, identity.nodeName, identity.address, String(identity.frameBytesMax)];
}

export interface Nonces {
  readonly clientNonce: Uint8Array;
  readonly serverNonce: Uint8Array;
}

/** HMAC(K, 'challenge' ‖ clientNonce ‖ serverNonce). */
export function challengeProof(clusterSecret: string, nonces: Nonces): Buffer {
  return mac(clusterSecret, ['challenge', nonces.clientNonce, nonces.serverNonce]);
}

/** HMAC(K, 'client' ‖ clientNonce ‖ serverNonce ‖ the client's identity). */
export function clientProof(clusterSecret: string, nonces: Nonces, client: HandshakeIdentity): Buffer {
  return mac(clusterSecret, ['client', nonces.clientNonce, nonces.serverNonce, ...identityFields(client)]);
}

/** HMAC(K, 'welcome' ‖ clientNonce ‖ serverNonce ‖ the server's identity). */
export function welcomeProof(clusterSecret: string, nonces: Nonces, server: HandshakeIdentity): Buffer {
  return mac(clusterSecret, ['welcome', nonces.clientNonce, nonces.serverNonce, ...identityFields(server)]);
}

function proofMatches(expected: Buffer, received: Uint8Array): boolean {
  // Lengths were validated when parsing; timingSafeEqual keeps a forger from learning the proof byte by byte.
  return received.byteLength === expected.byteLength && timingSafeEqual(expected, received);
}

function identityOf(message: HandshakeIdentity): HandshakeIdentity {
  const { protocolVersion, clusterName, clusterUuid, nodeId, nodeName, address, frameBytesMax } = message;
  return { protocolVersion, clusterName, clusterUuid, nodeId, nodeName, address, frameBytesMax };
}

// ---------------------------------------------------------------------------------------------- decisions

/**
 * Whether this node may talk to `remote` at all, once it proved the secret: the checks are the same on both sides
 * (symmetric), so a mismatch is caught by the server and confirmed by the client. Order matters for the message: a
 * node talking to itself matches in everything else.
 */
export function checkPeer(local: HandshakeIdentity, remote: HandshakeIdentity): Refusal | null {
  if (protocolMajor(local.protocolVersion) !== protocolMajor(remote.protocolVersion)) return protocolMismatch(local, remote.protocolVersion);
  if (local.nodeId === remote.nodeId) return selfConnection(local, remote);
  if (local.clusterName !== remote.clusterName) return clusterNameMismatch(local, remote);
  // A null UUID is a node that has not joined a cluster yet: it is exactly who discovery must reach.
  if (local.clusterUuid !== null && remote.clusterUuid !== null && local.clusterUuid !== remote.clusterUuid) {
    return clusterUuidMismatch(local, remote);
  }
  return null;
}

/** The client's first message: its protocol version and a nonce, nothing that names it. */
export function clientHello(side: HandshakeSide): HelloMessage {
  return { type: 'hello', protocolVersion: side.local.protocolVersion, nonce: side.nonce };
}

/** What the server does with a hello: challenge the client (proving the secret first), or refuse it. */
export type ServerHelloOutcome =
  | { readonly kind: 'challenge'; readonly reply: ChallengeMessage; readonly hello: HelloMessage }
  | { readonly kind: 'refuse'; readonly reply: RefusedMessage; readonly refusal: Refusal };

export function serverReceiveHello(side: HandshakeSide, received: unknown): ServerHelloOutcome {
  const parsed = parseHandshakeMessage(received, 'hello');
  if (!parsed.ok) return refuse(parsed.refusal);
  if (parsed.value.type !== 'hello') return refuse(handshakeInvalid(`expected hello, received ${parsed.value.type}`));
  const hello = parsed.value;
  if (protocolMajor(hello.protocolVersion) !== protocolMajor(side.local.protocolVersion)) return refuse(protocolMismatch(side.local, hello.protocolVersion));
  const proof = challengeProof(side.clusterSecret, { clientNonce: hello.nonce, serverNonce: side.nonce });
  return { kind: 'challenge', reply: { type: 'challenge', nonce: side.nonce, proof }, hello };
}

/** What the client does with the server's challenge: prove itself, refuse the server, or accept being refused. */
export type ClientChallengeOutcome =
  | { readonly kind: 'proof'; readonly reply: ProofMessage; readonly challenge: ChallengeMessage }
  | { readonly kind: 'refuse'; readonly reply: RefusedMessage; readonly refusal: Refusal }
  | { readonly kind: 'refused'; readonly refusal: Refusal };

/** `peer` is the address dialled, for the log. */
export function clientReceiveChallenge(side: HandshakeSide, received: unknown, peer = 'the peer'): ClientChallengeOutcome {
  const parsed = parseHandshakeMessage(received, 'challenge');
  if (!parsed.ok) return refuse(parsed.refusal);
  if (parsed.value.type === 'refused') {
    // A node of protocol 2.0 or older cannot parse a hello that names nobody, and says HANDSHAKE_INVALID.
    if (parsed.value.code !== 'HANDSHAKE_INVALID') return refused(parsed.value);
    return refused({ ...parsed.value, message: `${parsed.value.message} (if the peer runs a release of transport protocol 2.0 or older, it cannot talk to this one: run the same release on every node)` });
  }
  if (parsed.value.type !== 'challenge') return refuse(handshakeInvalid(`expected challenge, received ${parsed.value.type}`));
  const challenge = parsed.value;
  const nonces: Nonces = { clientNonce: side.nonce, serverNonce: challenge.nonce };
  if (!proofMatches(challengeProof(side.clusterSecret, nonces), challenge.proof)) return refuse(clusterSecretMismatch(side.local, peer));
  return { kind: 'proof', reply: { type: 'proof', ...side.local, proof: clientProof(side.clusterSecret, nonces, side.local) }, challenge };
}

/** What the server does with the client's proof: welcome it, refuse it, or accept being refused. */
export type ServerProofOutcome =
  | { readonly kind: 'welcome'; readonly reply: WelcomeMessage; readonly peer: HandshakeIdentity }
  | { readonly kind: 'refuse'; readonly reply: RefusedMessage; readonly refusal: Refusal }
  | { readonly kind: 'refused'; readonly refusal: Refusal };

/** `peer` is the remote address of the socket, for the log. */
export function serverReceiveProof(side: HandshakeSide, hello: HelloMessage, received: unknown, peer = 'the peer'): ServerProofOutcome {
  const parsed = parseHandshakeMessage(received, 'proof');
  if (!parsed.ok) return refuse(parsed.refusal);
  if (parsed.value.type === 'refused') return refused(parsed.value);
  if (parsed.value.type !== 'proof') return refuse(handshakeInvalid(`expected proof, received ${parsed.value.type}`));
  const client = identityOf(parsed.value);
  const nonces: Nonces = { clientNonce: hello.nonce, serverNonce: side.nonce };
  if (!proofMatches(clientProof(side.clusterSecret, nonces, client), parsed.value.proof)) return refuse(clusterSecretMismatch(side.local, peer));
  const problem = checkPeer(side.local, client);
  if (problem !== null) return refuse(problem);
  return { kind: 'welcome', reply: { type: 'welcome', ...side.local, proof: welcomeProof(side.clusterSecret, nonces, side.local) }, peer: client };
}

/** What the client does with the server's last word: the server's identity, a refusal of its own, or the server's. */
export type ClientWelcomeOutcome =
  | { readonly kind: 'welcome'; readonly peer: HandshakeIdentity }
  | { readonly kind: 'refuse'; readonly refusal: Refusal }
  | { readonly kind: 'refused'; readonly refusal: Refusal };

/**
 * A refusal here is not sent: the server already counts the connection as up, and closing it is all the client can
 * do. The checks are symmetric, so only a faulty server that knows the secret ever gets here.
 */
export function clientReceiveWelcome(side: HandshakeSide, challenge: ChallengeMessage, received: unknown, peer = 'the peer'): ClientWelcomeOutcome {
  const parsed = parseHandshakeMessage(received, 'welcome');
  if (!parsed.ok) return { kind: 'refuse', refusal: parsed.refusal };
  if (parsed.value.type === 'refused') return refused(parsed.value);
  if (parsed.value.type !== 'welcome') return { kind: 'refuse', refusal: handshakeInvalid(`expected welcome, received ${parsed.value.type}`) };
  const server = identityOf(parsed.value);
  const nonces: Nonces = { clientNonce: side.nonce, serverNonce: challenge.nonce };
  if (!proofMatches(welcomeProof(side.clusterSecret, nonces, server), parsed.value.proof)) return { kind: 'refuse', refusal: clusterSecretMismatch(side.local, peer) };
  const problem = checkPeer(side.local, server);
  if (problem !== null) return { kind: 'refuse', refusal: problem };
  return { kind: 'welcome', peer: server };
}

/** The frame that says no: the detailed message only to a peer that proved the secret, the code's fixed text to anyone else. */
export function refusedMessage(r: Refusal): RefusedMessage {
  return { type: 'refused', code: r.code, message: r.shareable === true ? r.message : publicRefusalText(r.code) };
}

function refuse(r: Refusal): { readonly kind: 'refuse'; readonly reply: RefusedMessage; readonly refusal: Refusal } {
  return { kind: 'refuse', reply: refusedMessage(r), refusal: r };
}

function refused(message: RefusedMessage): { readonly kind: 'refused'; readonly refusal: Refusal } {
  return { kind: 'refused', refusal: { code: message.code, message: message.message } };
}
