import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { decode, encode } from '@msgpack/msgpack';

import {
  checkPeer,
  clientHello,
  clientProof,
  clientReceiveChallenge,
  clientReceiveWelcome,
  handshakeKey,
  newNonce,
  parseHandshakeMessage,
  serverReceiveHello,
  serverReceiveProof,
  type HandshakeIdentity,
  type HandshakeSide,
} from '../../src/transport/handshake.js';
import { parseAddress, reconnectDelayMs } from '../../src/transport/transport.js';
import { isTransportError } from '../../src/transport/errors.js';
import { identity, otherSecret, secret } from './helpers.js';

function side(local: HandshakeIdentity, clusterSecret = secret): HandshakeSide {
  return { local, clusterSecret, nonce: newNonce() };
}

const wire = (value: unknown): unknown => decode(encode(value));

/** Runs both sides to the end, as the wire would (through encode, so only plain values cross). */
function run(client: HandshakeSide, server: HandshakeSide): { client: string; server: string; code?: string; sent: unknown[] } {
  const sent: unknown[] = [];
  const send = (value: unknown): unknown => {
    sent.push(value);
    return wire(value);
  };
  const hello = serverReceiveHello(server, send(clientHello(client)));
  if (hello.kind === 'refuse') {
    sent.push(hello.reply);
    return { client: 'refused', server: 'refuse', code: hello.refusal.code, sent };
  }
  const challenge = clientReceiveChallenge(client, send(hello.reply));
  if (challenge.kind !== 'proof') return { client: challenge.kind, server: 'challenged', code: challenge.refusal.code, sent };
  const proof = serverReceiveProof(server, hello.hello, send(challenge.reply));
  if (proof.kind !== 'welcome') {
    if (proof.kind === 'refuse') sent.push(proof.reply);
    return { client: 'proved', server: proof.kind, code: proof.refusal.code, sent };
  }
  const welcome = clientReceiveWelcome(client, challenge.challenge, send(proof.reply));
  return welcome.kind === 'welcome' ? { client: 'welcome', server: 'welcome', sent } : { client: welcome.kind, server: 'welcome', code: welcome.refusal.code, sent };
}

/** Every way a message could name a node or its cluster. */
function namesSomething(value: unknown, who: HandshakeIdentity): string | null {
  const bytes = Buffer.from(encode(value));
  for (const text of [who.clusterName, who.nodeId, who.nodeName, who.address, who.clusterUuid ?? '']) {
    if (text !== '' && bytes.indexOf(Buffer.from(text)) !== -1) return text;
  }
  return null;
}

describe('handshake decisions', () => {
  it('welcomes a peer of the same cluster, secret and protocol major (minor and a null UUID may differ)', () => {
    assert.equal(run(side(identity('a')), side(identity('b'))).client, 'welcome');
    const mixed = run(side(identity('a', { protocolVersion: '1.0', clusterUuid: null })), side(identity('b', { protocolVersion: '1.7', clusterUuid: 'u-1' })));
    assert.deepEqual([mixed.client, mixed.server], ['welcome', 'welcome']);
  });

  it('refuses each mismatch between authenticated peers with its code and a message naming the cause and the fix', () => {
    const cases: Array<[string, HandshakeSide, HandshakeSide, string, RegExp]> = [
      ['cluster name', side(identity('a', { clusterName: 'other' })), side(identity('b')), 'CLUSTER_NAME_MISMATCH', /"other".*"test-cluster".*same cluster\.name/],
      ['cluster UUID', side(identity('a', { clusterUuid: 'u-1' })), side(identity('b', { clusterUuid: 'u-2' })), 'CLUSTER_UUID_MISMATCH', /u-1.*u-2.*another cluster.*conclave node detach-cluster/],
      ['self', side(identity('a')), side(identity('a')), 'SELF_CONNECTION', /same node id.*seed hosts/],
    ];
    for (const [what, client, server, code, message] of cases) {
      const result = run(client, server);
      assert.deepEqual([result.client, result.server, result.code], ['proved', 'refuse', code], what);
      const refused = result.sent.at(-1) as { type: string; code: string; message: string };
      assert.equal(refused.type, 'refused', what);
      assert.match(refused.message, message, what);
    }
  });

  it('a peer of another protocol major is refused at the hello, with the code and a fixed text only', () => {
    const server = side(identity('node-bravo', { clusterUuid: 'uuid-b' }));
    const result = run(side(identity('node-alpha', { protocolVersion: '2.0' })), server);
    assert.deepEqual([result.client, result.server, result.code], ['refused', 'refuse', 'PROTOCOL_MISMATCH']);
    const refused = result.sent.at(-1) as { message: string };
    assert.match(refused.message, /same transport protocol major/);
    assert.equal(namesSomething(refused, server.local), null);
    // The server's log still says who speaks what.
    const hello = serverReceiveHello(server, wire(clientHello(side(identity('node-alpha', { protocolVersion: '2.0' })))));
    assert.match(hello.kind === 'refuse' ? hello.refusal.message : '', /2\.0.*"node-bravo".*1\.0/);
  });

  it('nothing names either node or the cluster before the peer has proved the secret', () => {
    const client = side(identity('node-alpha', { clusterUuid: 'uuid-a' }));
    const server = side(identity('node-bravo', { clusterUuid: 'uuid-b', clusterName: 'test-cluster' }), otherSecret);
    const result = run(client, server);
    assert.deepEqual([result.client, result.code], ['refuse', 'CLUSTER_SECRET_MISMATCH']);
    // hello and challenge are all that crossed: neither names anything.
    assert.equal(result.sent.length, 2);
    for (const message of result.sent) {
      assert.equal(namesSomething(message, client.local), null, JSON.stringify(message));
      assert.equal(namesSomething(message, server.local), null, JSON.stringify(message));
    }
  });

  it('the client catches a server without the secret before sending anything about itself', () => {
    const client = side(identity('node-alpha'));
    const hello = serverReceiveHello(side(identity('node-bravo'), otherSecret), clientHello(client));
    assert.equal(hello.kind, 'challenge');
    const outcome = clientReceiveChallenge(client, hello.kind === 'challenge' ? hello.reply : null, '10.0.0.9:7500');
    assert.equal(outcome.kind, 'refuse');
    assert.match(outcome.kind === 'refuse' ? outcome.refusal.message : '', /cluster secret differs.*10\.0\.0\.9:7500.*CONCLAVE_CLUSTER_SECRET/);
    // What goes back to the impostor is the code and its fixed text.
    assert.equal(outcome.kind === 'refuse' && namesSomething(outcome.reply, client.local), null);
  });

  it('the server catches a client without the secret (one that skips checking the challenge) and tells it only the code', () => {
    const client = side(identity('node-alpha'), otherSecret);
    const server = side(identity('node-bravo', { clusterUuid: 'uuid-b' }));
    const hello = serverReceiveHello(server, clientHello(client));
    if (hello.kind !== 'challenge') assert.fail('expected a challenge');
    const forged = { type: 'proof', ...client.local, proof: clientProof(client.clusterSecret, { clientNonce: client.nonce, serverNonce: hello.reply.nonce }, client.local) };
    const outcome = serverReceiveProof(server, hello.hello, forged);
    assert.equal(outcome.kind === 'refuse' && outcome.refusal.code, 'CLUSTER_SECRET_MISMATCH');
    assert.equal(outcome.kind === 'refuse' && namesSomething(outcome.reply, server.local), null);
  });

  it('the client\'s proof covers its identity: the same proof under another name, cluster or address is refused', () => {
    const client = side(identity('a'));
    const server = side(identity('b'));
    const hello = serverReceiveHello(server, clientHello(client));
    if (hello.kind !== 'challenge') assert.fail('expected a challenge');
    const proof = clientReceiveChallenge(client, hello.reply);
    if (proof.kind !== 'proof') assert.fail('expected a proof');
    for (const change of [{ nodeId: 'id-z' }, { nodeName: 'z' }, { address: '10.0.0.1:1' }, { clusterUuid: 'u-x' }, { frameBytesMax: 1 }]) {
      const outcome = serverReceiveProof(server, hello.hello, { ...proof.reply, ...change });
      assert.equal(outcome.kind === 'refuse' && outcome.refusal.code, 'CLUSTER_SECRET_MISMATCH', JSON.stringify(change));
    }
    assert.equal(serverReceiveProof(server, hello.hello, proof.reply).kind, 'welcome');
  });

  it('a proof is bound to its connection: replaying the server\'s proof as the client\'s, or on another nonce, fails', () => {
    const client = side(identity('a'));
    const server = side(identity('b'));
    const hello = serverReceiveHello(server, clientHello(client));
    if (hello.kind !== 'challenge') assert.fail('expected a challenge');
    // Reflection: the server's own proof sent back to it.
    assert.equal(serverReceiveProof(server, hello.hello, { type: 'proof', ...client.local, proof: hello.reply.proof }).kind, 'refuse');
    // A valid proof from another connection (other server nonce).
    const otherServer = side(identity('b'));
    const otherHello = serverReceiveHello(otherServer, clientHello(client));
    if (otherHello.kind !== 'challenge') assert.fail('expected a challenge');
    const otherProof = clientReceiveChallenge(client, otherHello.reply);
    if (otherProof.kind !== 'proof') assert.fail('expected a proof');
    assert.equal(serverReceiveProof(server, hello.hello, otherProof.reply).kind, 'refuse');
    // A welcome from another connection.
    const welcome = serverReceiveProof(otherServer, otherHello.hello, otherProof.reply);
    if (welcome.kind !== 'welcome') assert.fail('expected a welcome');
    const ownProof = clientReceiveChallenge(client, hello.reply);
    if (ownProof.kind !== 'proof') assert.fail('expected a proof');
    assert.equal(clientReceiveWelcome(client, ownProof.challenge, welcome.reply).kind, 'refuse');
  });

  it('the secret, and the key derived from it, are in no handshake message', () => {
    const result = run(side(identity('a')), side(identity('b')));
    assert.equal(result.client, 'welcome');
    assert.equal(result.sent.length, 4);
    for (const message of result.sent) {
      const bytes = Buffer.from(encode(message));
      assert.equal(bytes.indexOf(Buffer.from(secret)), -1);
      assert.equal(bytes.indexOf(handshakeKey(secret)), -1);
    }
  });

  it('malformed messages are HANDSHAKE_INVALID; a refusal from the peer is passed on', () => {
    const server = side(identity('b'));
    for (const bad of [null, 'hello', [1], { type: 'hello' }, { ...clientHello(side(identity('a'))), nonce: new Uint8Array(3) }, { ...clientHello(side(identity('a'))), protocolVersion: 'one' }, { type: 'proof', proof: new Uint8Array(32) }]) {
      const outcome = serverReceiveHello(server, bad);
      assert.equal(outcome.kind === 'refuse' && outcome.refusal.code, 'HANDSHAKE_INVALID', JSON.stringify(bad));
      // The detail is for this node's log; the peer gets the fixed text.
      assert.equal(outcome.kind === 'refuse' && /expected|must be|not major/.test(outcome.reply.message), false, JSON.stringify(bad));
    }
    const refused = parseHandshakeMessage({ type: 'refused', code: 'CLUSTER_NAME_MISMATCH', message: 'why' }, 'challenge');
    assert.deepEqual(refused, { ok: true, value: { type: 'refused', code: 'CLUSTER_NAME_MISMATCH', message: 'why' } });
    const unknown = parseHandshakeMessage({ type: 'refused', code: 'FROM_THE_FUTURE', message: 'why' }, 'welcome');
    assert.equal(unknown.ok && unknown.value.type === 'refused' && unknown.value.code, 'HANDSHAKE_INVALID');
    const client = side(identity('a'));
    const challenge = { type: 'challenge' as const, nonce: newNonce(), proof: new Uint8Array(32) };
    assert.equal(clientReceiveWelcome(client, challenge, { type: 'refused', code: 'CLUSTER_SECRET_MISMATCH', message: 'm' }).kind, 'refused');
  });

  it('checkPeer: a null UUID on either side is a node yet to join, not a mismatch', () => {
    assert.equal(checkPeer(identity('a', { clusterUuid: 'u' }), identity('b')), null);
    assert.equal(checkPeer(identity('a'), identity('b', { clusterUuid: 'u' })), null);
    assert.equal(checkPeer(identity('a', { clusterUuid: 'u' }), identity('b', { clusterUuid: 'u' })), null);
  });
});

describe('reconnection delay and addresses', () => {
  it('grows exponentially with jitter, never below the minimum nor above the maximum', () => {
    assert.equal(reconnectDelayMs(1, 100, 10_000, () => 0), 100);
    assert.equal(reconnectDelayMs(1, 100, 10_000, () => 0.999999), 200);
    assert.equal(reconnectDelayMs(3, 100, 10_000, () => 0.5), 450);
    assert.equal(reconnectDelayMs(50, 100, 10_000, () => 0.999999), 10_000);
    for (let attempt = 1; attempt < 40; attempt++) {
      const delay = reconnectDelayMs(attempt, 100, 10_000, Math.random);
      assert.ok(delay >= 100 && delay <= 10_000, `${delay}`);
    }
  });

  it('parses host:port and [ipv6]:port, and refuses the rest', () => {
    assert.deepEqual(parseAddress('10.0.0.1:7500'), { host: '10.0.0.1', port: 7500 });
    assert.deepEqual(parseAddress('node-1.example:1'), { host: 'node-1.example', port: 1 });
    assert.deepEqual(parseAddress('[::1]:7500'), { host: '::1', port: 7500 });
    for (const bad of ['10.0.0.1', '10.0.0.1:0', 'h:65536', '::1:7500', 'h:x', ':7500', 'a b:1']) {
      assert.throws(() => parseAddress(bad), (err: unknown) => isTransportError(err, 'ADDRESS_INVALID'), bad);
    }
  });
});
