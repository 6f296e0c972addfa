import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';

import { isTransportError } from '../../src/transport/errors.js';
import { RawPeer, generatePki, isUp, startNode, stopAll, tempDir, waitFor, type TestPki } from './helpers.js';

let pki: TestPki;
let cleanup: () => void;

before(() => {
  const temp = tempDir();
  cleanup = temp.cleanup;
  pki = generatePki(temp.dir);
});
after(() => cleanup());
afterEach(stopAll);

describe('TLS', () => {
  it('nodes with CA-signed certificates handshake and exchange messages both ways', async () => {
    const tls = { certFile: pki.certFile, keyFile: pki.keyFile, caFile: pki.caFile };
    const a = await startNode('a', { tls });
    const b = await startNode('b', { tls });
    a.transport.connect(b.address);
    b.transport.connect(a.address);
    await waitFor('both up', () => isUp(a, 'id-b') && isUp(b, 'id-a'));
    assert.equal(a.transport.send('id-b', { over: 'tls' }), true);
    assert.equal(b.transport.send('id-a', { back: 'too' }), true);
    await waitFor('both delivered', () => a.messages.length === 1 && b.messages.length === 1);
    assert.deepEqual(b.messages, [{ from: 'id-a', message: { over: 'tls' } }]);
    assert.deepEqual(a.messages, [{ from: 'id-b', message: { back: 'too' } }]);
    // A finished handshake gives its slot back, TLS or not (the slot is taken on the raw socket, freed on the TLS one).
    assert.equal(a.transport.handshakesInProgress().total, 0);
    assert.equal(b.transport.handshakesInProgress().total, 0);
  });

  it('a stranger that opens TCP and never starts TLS holds a handshake slot only until handshakeTimeoutMs', async () => {
    const tls = { certFile: pki.certFile, keyFile: pki.keyFile, caFile: pki.caFile };
    const b = await startNode('b', { tls, handshakeTimeoutMs: 200, handshakesPerSourceMax: 1 });
    const stranger = await RawPeer.connect(b.address, '127.0.0.2');
    await waitFor('counted', () => b.transport.handshakesInProgress().total === 1);
    const second = await RawPeer.connect(b.address, '127.0.0.2');
    await waitFor('a second one from the same address is cut', () => second.closed);
    await waitFor('the first is cut at the timeout', () => stranger.closed, 2000);
    await waitFor('its slot is free', () => b.transport.handshakesInProgress().total === 0);
  });

  it('a client whose certificate the cluster CA did not sign is refused', async () => {
    const b = await startNode('b', { tls: { certFile: pki.certFile, keyFile: pki.keyFile, caFile: pki.caFile } });
    // It trusts the right CA (so it would accept b), but presents a certificate from another one.
    const rogue = await startNode('rogue', { tls: { certFile: pki.rogueCertFile, keyFile: pki.rogueKeyFile, caFile: pki.caFile } });
    rogue.transport.connect(b.address);
    await waitFor('the rogue is refused', () => rogue.refusals[0]);
    assert.equal(rogue.refusals[0]!.code, 'TLS_HANDSHAKE_FAILED');
    assert.match(rogue.refusals[0]!.message, /signed by the CA/);
    await waitFor('b logs the refusal', () => b.log.find('warn', 'TLS_HANDSHAKE_FAILED'));
    assert.equal(b.transport.inboundPeers().length, 0);
    assert.equal(rogue.transport.connectedPeers().length, 0);
  });

  it('a client that does not trust the server\'s CA refuses the server', async () => {
    const b = await startNode('b', { tls: { certFile: pki.certFile, keyFile: pki.keyFile, caFile: pki.caFile } });
    const stranger = await startNode('stranger', { tls: { certFile: pki.rogueCertFile, keyFile: pki.rogueKeyFile, caFile: pki.rogueCertFile } });
    stranger.transport.connect(b.address);
    await waitFor('a refusal', () => stranger.refusals[0]);
    assert.equal(stranger.refusals[0]!.code, 'TLS_HANDSHAKE_FAILED');
    assert.equal(b.transport.inboundPeers().length, 0);
  });

  it('a plain client cannot talk to a TLS node, nor a TLS client to a plain node; both sides say why', async () => {
    const tls = { certFile: pki.certFile, keyFile: pki.keyFile, caFile: pki.caFile };
    const secure = await startNode('secure', { tls });
    const plain = await startNode('plain');
    plain.transport.connect(secure.address);
    secure.transport.connect(plain.address);
    await waitFor('the TLS node logs the plain client', () => secure.log.find('warn', 'TLS_HANDSHAKE_FAILED'));
    await waitFor('the plain node logs the TLS client', () => plain.log.find('warn', 'HANDSHAKE_INVALID'));
    assert.match(plain.log.find('warn', 'HANDSHAKE_INVALID')!.message, /looks like TLS/);
    await waitFor('the TLS client reports a refusal', () => secure.refusals[0]);
    assert.equal(secure.refusals[0]!.code, 'TLS_HANDSHAKE_FAILED');
    await waitFor('the plain client warns', () => plain.log.lines.find((l) => l.level === 'warn' && l.fields['address'] === secure.address));
    assert.equal(plain.transport.connectedPeers().length + secure.transport.connectedPeers().length, 0);
    assert.equal(plain.transport.inboundPeers().length + secure.transport.inboundPeers().length, 0);
  });

  it('unreadable TLS files fail start() with OPTIONS_INVALID', async () => {
    await assert.rejects(
      startNode('a', { tls: { certFile: '/nonexistent/cert.pem', keyFile: pki.keyFile, caFile: pki.caFile } }),
      (err: unknown) => isTransportError(err, 'OPTIONS_INVALID'),
    );
    // A key that does not belong to the certificate.
    await assert.rejects(
      startNode('a', { tls: { certFile: pki.certFile, keyFile: pki.rogueKeyFile, caFile: pki.caFile } }),
      (err: unknown) => isTransportError(err, 'OPTIONS_INVALID'),
    );
  });
});
