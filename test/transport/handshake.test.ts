import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { decode, encode } from '@msgpack/msgpack';

import {
  checkPeer,
  clientHello,
  clientProof,
  clientReceiveChallenge,
  clientReceiveWelcome,
  newNonce,
  parseHandshakeMessage,
  serverReceiveHello,
  serverReceiveProof,
  type HandshakeIdentity,
  type HandshakeSide,
} from '../../src/transport/handshake.js';
import { parseAddress, reconnectDelayMs } from '../../src/transport/transport.js';
import { isTransportError } from '../../src/transport/errors.js';
import { identity, secret } from './helpers.js';

function side(local: HandshakeIdentity, clusterSecret = secret): HandshakeSide {
  return { local, clusterSecret, nonce: newNonce() };
}

/** Runs both sides to the end, as the wire would (through encode, so only plain values cross). */
function run(client: HandshakeSide, server: HandshakeSide): { client: string; server: string; code?: string } {
  const wire = (value: unknown): unknown => decode(encode(value));
  const hello = serverReceiveHello(server, wire(clientHello(client)));
  if (hello.kind === 'refuse') return { client: 'refused', server: 'refuse', code: hello.refusal.code };
  const challenge = clientReceiveChallenge(client, wire(hello.reply));
  if (challenge.kind !== 'proof') return { client: challenge.kind, server: 'challenged', code: challenge.refusal.code };
  const proof = serverReceiveProof(server, hello.hello, wire(challenge.reply));
  if (proof.kind !== 'welcome') return { client: 'proved', server: proof.kind, code: proof.refusal.code };
  const welcome = clientReceiveWelcome(wire(proof.reply));
  return { client: welcome.kind, server: 'welcome' };
}

describe('handshake decisions', () => {
  it('welcomes a peer of the same cluster, secret and protocol major (minor and a null UUID may differ)', () => {
    assert.deepEqual(run(side(identity('a')), side(identity('b'))), { client: 'welcome', server: 'welcome' });
    assert.deepEqual(
      run(side(identity('a', { protocolVersion: '1.0', clusterUuid: null })), side(identity('b', { protocolVersion: '1.7', clusterUuid: 'u-1' }))),
      { client: 'welcome', server: 'welcome' },
    );
  });

  it('refuses each mismatch with its code and a message naming the cause and the fix', () => {
    const cases: Array<[string, HandshakeSide, HandshakeSide, string, RegExp]> = [
      ['protocol major', side(identity('a', { protocolVersion: '2.0' })), side(identity('b')), 'PROTOCOL_MISMATCH', /2\.0.*1\.0.*same transport protocol major/],
      ['cluster name', side(identity('a', { clusterName: 'other' })), side(identity('b')), 'CLUSTER_NAME_MISMATCH', /"other".*"test-cluster".*same cluster\.name/],
      ['cluster UUID', side(identity('a', { clusterUuid: 'u-1' })), side(identity('b', { clusterUuid: 'u-2' })), 'CLUSTER_UUID_MISMATCH', /u-1.*u-2.*another cluster.*conclave node detach-cluster/],
      ['self', side(identity('a')), side(identity('a')), 'SELF_CONNECTION', /same node id.*seed hosts/],
    ];
    for (const [what, client, server, code, message] of cases) {
      const hello = serverReceiveHello(server, decode(encode(clientHello(client))));
      assert.equal(hello.kind, 'refuse', what);
      assert.equal(hello.kind === 'refuse' && hello.refusal.code, code, what);
      assert.match(hello.kind === 'refuse' ? hello.reply.message : '', message, what);
      assert.equal(hello.kind === 'refuse' && hello.reply.type, 'refused');
    }
  });

  it('the client catches a server without the secret before proving anything', () => {
    const result = run(side(identity('a')), side(identity('b'), 'a different secret'));
    assert.deepEqual(result, { client: 'refuse', server: 'challenged', code: 'CLUSTER_SECRET_MISMATCH' });
    const client = side(identity('a'));
    const server = side(identity('b'), 'a different secret');
    const hello = serverReceiveHello(server, clientHello(client));
    assert.equal(hello.kind, 'challenge');
    const outcome = clientReceiveChallenge(client, hello.kind === 'challenge' ? hello.reply : null);
    assert.equal(outcome.kind, 'refuse');
    assert.match(outcome.kind === 'refuse' ? outcome.reply.message : '', /cluster secret differs.*set the same cluster\.secret \(--cluster-secret\) on every node/);
  });

  it('the server catches a client without the secret (one that skips checking the challenge)', () => {
    const client = side(identity('a'), 'a different secret');
    const server = side(identity('b'));
    const hello = serverReceiveHello(server, clientHello(client));
    assert.equal(hello.kind, 'challenge');
    if (hello.kind !== 'challenge') return;
    const forged = {
      type: 'proof',
      proof: clientProof(client.clusterSecret, { clientNonce: client.nonce, serverNonce: hello.reply.nonce, clientId: 'id-a', serverId: 'id-b', clusterName: 'test-cluster' }),
    };
    const outcome = serverReceiveProof(server, hello.hello, forged);
    assert.equal(outcome.kind === 'refuse' && outcome.refusal.code, 'CLUSTER_SECRET_MISMATCH');
  });

  it('a proof is bound to its connection: replaying a server proof as a client proof, or on another nonce, fails', () => {
    const client = side(identity('a'));
    const server = side(identity('b'));
    const hello = serverReceiveHello(server, clientHello(client));
    if (hello.kind !== 'challenge') assert.fail('expected a challenge');
    // Reflection: the server's own proof sent back to it.
    assert.equal(serverReceiveProof(server, hello.hello, { type: 'proof', proof: hello.reply.proof }).kind, 'refuse');
    // A valid proof from another connection (other server nonce).
    const otherServer = side(identity('b'));
    const otherHello = serverReceiveHello(otherServer, clientHello(client));
    if (otherHello.kind !== 'challenge') assert.fail('expected a challenge');
    const otherProof = clientReceiveChallenge(client, otherHello.reply);
    if (otherProof.kind !== 'proof') assert.fail('expected a proof');
    assert.equal(serverReceiveProof(server, hello.hello, otherProof.reply).kind, 'refuse');
  });

  it('the secret is in no handshake message', () => {
    const client = side(identity('a'));
    const server = side(identity('b'));
    const hello = clientHello(client);
    const challenge = serverReceiveHello(server, hello);
    if (challenge.kind !== 'challenge') assert.fail('expected a challenge');
    const proof = clientReceiveChallenge(client, challenge.reply);
    if (proof.kind !== 'proof') assert.fail('expected a proof');
    for (const message of [hello, challenge.reply, proof.reply]) {
      assert.equal(Buffer.from(encode(message)).indexOf(Buffer.from(secret)), -1);
    }
  });

  it('malformed messages are HANDSHAKE_INVALID; a refusal from the peer is passed on', () => {
    const server = side(identity('b'));
    for (const bad of [null, 'hello', [1], { type: 'hello' }, { ...clientHello(side(identity('a'))), nonce: new Uint8Array(3) }, { ...clientHello(side(identity('a'))), protocolVersion: 'one' }, { type: 'proof', proof: new Uint8Array(32) }]) {
      const outcome = serverReceiveHello(server, bad);
      assert.equal(outcome.kind === 'refuse' && outcome.refusal.code, 'HANDSHAKE_INVALID', JSON.stringify(bad));
    }
    const refused = parseHandshakeMessage({ type: 'refused', code: 'CLUSTER_NAME_MISMATCH', message: 'why' }, 'challenge');
    assert.deepEqual(refused, { ok: true, value: { type: 'refused', code: 'CLUSTER_NAME_MISMATCH', message: 'why' } });
    const unknown = parseHandshakeMessage({ type: 'refused', code: 'FROM_THE_FUTURE', message: 'why' }, 'welcome');
    assert.equal(unknown.ok && unknown.value.type === 'refused' && unknown.value.code, 'HANDSHAKE_INVALID');
    assert.equal(clientReceiveWelcome({ type: 'refused', code: 'CLUSTER_SECRET_MISMATCH', message: 'm' }).kind, 'refused');
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
