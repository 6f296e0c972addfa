import assert from 'node:assert/strict';
import net from 'node:net';
import { afterEach, describe, it } from 'node:test';

import { pino } from 'pino';

import { isTransportError } from '../../src/transport/errors.js';
import { Transport, type TransportLogger } from '../../src/transport/transport.js';
import {
  RawPeer,
  captureLogger,
  handshakeAsServer,
  identity,
  isUp,
  rawServer,
  otherSecret,
  secret,
  startNode,
  stopAll,
  waitFor,
  type TestNode,
} from './helpers.js';

afterEach(stopAll);

async function connected(a: TestNode, b: TestNode): Promise<void> {
  a.transport.connect(b.address);
  await waitFor(`${a.name} → ${b.name} up`, () => isUp(a, b.id));
}

describe('transport', () => {
  it('handshakes both ways and carries messages A→B and B→A', async () => {
    const a = await startNode('a');
    const b = await startNode('b');
    await connected(a, b);
    await connected(b, a);
    assert.deepEqual(a.transport.connectedPeers(), [{ id: 'id-b', name: 'b', address: b.address }]);
    assert.deepEqual(b.transport.connectedPeers(), [{ id: 'id-a', name: 'a', address: a.address }]);
    await waitFor('inbound peers', () => a.transport.inboundPeers().length === 1 && b.transport.inboundPeers().length === 1);
    assert.deepEqual(b.transport.inboundPeers(), [{ id: 'id-a', name: 'a', address: a.address }]);

    assert.equal(a.transport.send('id-b', { type: 'ping', n: 1, bytes: new Uint8Array([7, 8]), skipped: undefined }), true);
    assert.equal(b.transport.send('id-a', { type: 'pong', n: 1 }), true);
    await waitFor('both messages', () => a.messages.length === 1 && b.messages.length === 1);
    assert.deepEqual(b.messages, [{ from: 'id-a', message: { type: 'ping', n: 1, bytes: new Uint8Array([7, 8]) } }]);
    assert.deepEqual(a.messages, [{ from: 'id-b', message: { type: 'pong', n: 1 } }]);

    // Order is kept on one connection.
    for (let n = 0; n < 500; n++) assert.equal(a.transport.send('id-b', { n }), true);
    await waitFor('500 more', () => b.messages.length === 501);
    assert.deepEqual(b.messages.slice(1).map((m) => (m.message as { n: number }).n), [...Array(500).keys()]);

    assert.equal(a.transport.send('id-nobody', { type: 'ping' }), false, 'no connection to an unknown node');
    assert.deepEqual(a.ups, ['id-b']);
    a.transport.connect(b.address); // idempotent
    assert.equal(a.transport.connectedPeers().length, 1);
  });

  it('disconnect() drops the peer at once and does not reconnect', async () => {
    const a = await startNode('a');
    const b = await startNode('b');
    await connected(a, b);
    a.transport.disconnect(b.address);
    assert.deepEqual(a.downs, ['id-b']);
    assert.deepEqual(a.transport.connectedPeers(), []);
    assert.equal(a.transport.send('id-b', 'x'), false);
    // Nothing is left to reconnect: no wanted address, so no retry timer.
    assert.deepEqual(a.transport.outgoingStats(), []);
    await waitFor('b sees a go', () => b.transport.inboundPeers().length === 0);
    assert.deepEqual(a.ups, ['id-b']);
  });

  describe('refusals reach onRefused with their code, are logged on both sides, and are retried', () => {
    const cases: Array<{ what: string; code: string; a?: object; b?: object; remedy: RegExp }> = [
      { what: 'a wrong secret', code: 'CLUSTER_SECRET_MISMATCH', b: { clusterSecret: otherSecret }, remedy: /CONCLAVE_CLUSTER_SECRET/ },
      { what: 'a wrong cluster name', code: 'CLUSTER_NAME_MISMATCH', b: { clusterName: 'elsewhere' }, remedy: /cluster\.name/ },
      { what: 'another protocol major', code: 'PROTOCOL_MISMATCH', b: { protocolVersion: '2.0' }, remedy: /same transport protocol major/ },
      { what: 'another cluster UUID', code: 'CLUSTER_UUID_MISMATCH', a: { clusterUuid: () => 'uuid-a' }, b: { clusterUuid: () => 'uuid-b' }, remedy: /conclave node detach-cluster/ },
    ];
    for (const c of cases) {
      it(c.what, async () => {
        const a = await startNode('a', c.a);
        const b = await startNode('b', c.b);
        a.transport.connect(b.address);
        await waitFor('two refusals (it retries)', () => a.refusals.length >= 2);
        assert.deepEqual(new Set(a.refusals.map((r) => r.code)), new Set([c.code]));
        assert.equal(a.refusals[0]!.address, b.address);
        assert.match(a.refusals[0]!.message, c.remedy);
        const line = a.log.find('error', c.code);
        assert.ok(line, 'the refused side logs an error with the code');
        assert.match(line.message, c.remedy);
        await waitFor('the other side logs a warning with the code', () => b.log.find('warn', c.code));
        assert.equal(a.transport.connectedPeers().length, 0);
        assert.equal(b.messages.length, 0);
        assert.deepEqual(a.ups, []);
      });
    }

    it('connecting to itself', async () => {
      const a = await startNode('a');
      a.transport.connect(a.address);
      await waitFor('a refusal', () => a.refusals[0]);
      assert.equal(a.refusals[0]!.code, 'SELF_CONNECTION');
      assert.ok(a.log.find('error', 'SELF_CONNECTION'));
      assert.ok(a.log.find('warn', 'SELF_CONNECTION'));
      assert.deepEqual(a.transport.connectedPeers(), []);
    });

    it('connects once the remote side is fixed (the cluster UUID is read at each handshake)', async () => {
      let uuidB = 'uuid-old';
      const a = await startNode('a', { clusterUuid: () => 'uuid-a' });
      const b = await startNode('b', { clusterUuid: () => uuidB });
      a.transport.connect(b.address);
      await waitFor('a refusal', () => a.refusals[0]);
      uuidB = 'uuid-a';
      await waitFor('a → b up after the fix', () => isUp(a, 'id-b'));
      assert.equal(a.transport.send('id-b', 'hello'), true);
      await waitFor('delivered', () => b.messages[0]);
    });

    it('a server that never answers: HANDSHAKE_TIMEOUT', async () => {
      const silent = await rawServer(() => undefined);
      try {
        const a = await startNode('a', { handshakeTimeoutMs: 100 });
        a.transport.connect(silent.address);
        await waitFor('a refusal', () => a.refusals[0]);
        assert.equal(a.refusals[0]!.code, 'HANDSHAKE_TIMEOUT');
        assert.match(a.refusals[0]!.message, /100 ms.*transport port/);
      } finally {
        await silent.close();
      }
    });

    it('inbound beyond connectionsMax: TOO_MANY_CONNECTIONS', async () => {
      const b = await startNode('b', { connectionsMax: 1 });
      const squatter = await RawPeer.connect(b.address);
      await squatter.handshakeAsClient(identity('squatter'));
      const a = await startNode('a');
      a.transport.connect(b.address);
      await waitFor('a refusal', () => a.refusals[0]);
      assert.equal(a.refusals[0]!.code, 'TOO_MANY_CONNECTIONS');
      squatter.socket.destroy();
      await waitFor('a gets in once there is room', () => isUp(a, 'id-b'));
    });
  });

  describe('the server side refuses bad clients with a refused frame, then closes', () => {
    it('silence: HANDSHAKE_TIMEOUT', async () => {
      const b = await startNode('b', { handshakeTimeoutMs: 100 });
      const peer = await RawPeer.connect(b.address);
      const refused = await peer.nextFrame('a refusal');
      assert.deepEqual({ ...(refused as object), message: undefined }, { type: 'refused', code: 'HANDSHAKE_TIMEOUT', message: undefined });
      await waitFor('closed', () => peer.closed);
      assert.ok(b.log.find('warn', 'HANDSHAKE_TIMEOUT'));
    });

    it('garbage, and an HTTP request: HANDSHAKE_INVALID', async () => {
      const b = await startNode('b');
      const garbage = await RawPeer.connect(b.address);
      garbage.send({ type: 'hello', nodeId: 42 });
      assert.equal((await garbage.nextFrame('a refusal') as { code: string }).code, 'HANDSHAKE_INVALID');
      await waitFor('closed', () => garbage.closed);
      const http = await RawPeer.connect(b.address);
      http.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal((await http.nextFrame('a refusal') as { code: string }).code, 'HANDSHAKE_INVALID');
      await waitFor('closed', () => http.closed);
    });

    it('a client without the secret (that skips checking the server): CLUSTER_SECRET_MISMATCH', async () => {
      const b = await startNode('b');
      const peer = await RawPeer.connect(b.address);
      await assert.rejects(peer.handshakeAsClient(identity('x'), 'not the secret at all'), /handshake refused/);
      // It gave up on checking the server's proof; play a forger that sends a proof anyway.
      const forger = await RawPeer.connect(b.address);
      const { clientHello, newNonce } = await import('../../src/transport/handshake.js');
      forger.send(clientHello({ local: identity('x'), clusterSecret: 'irrelevant', nonce: newNonce() }));
      await forger.nextFrame('a challenge');
      forger.send({ type: 'proof', ...identity('x'), proof: new Uint8Array(32) });
      const refused = await forger.nextFrame('a refusal') as { code: string; message: string };
      assert.equal(refused.code, 'CLUSTER_SECRET_MISMATCH');
      assert.match(refused.message, /CONCLAVE_CLUSTER_SECRET/);
      // Nothing the forger received names the node, its address or its cluster.
      const received = Buffer.concat(forger.received);
      for (const text of ['test-cluster', 'id-b', b.address, '"b"']) assert.equal(received.indexOf(Buffer.from(text)), -1, text);
      await waitFor('closed', () => forger.closed);
    });
  });

  it('never writes the secret to a socket (bytes captured by a relay in between, both directions)', async () => {
    const a = await startNode('a');
    const b = await startNode('b');
    const captured: Buffer[] = [];
    const [bHost, bPort] = b.address.split(':') as [string, string];
    const relaySockets = new Set<net.Socket>();
    const relay = net.createServer((client) => {
      relaySockets.add(client);
      const upstream = net.connect({ host: bHost, port: Number(bPort) });
      client.on('data', (chunk: Buffer) => {
        captured.push(chunk);
        upstream.write(chunk);
      });
      upstream.on('data', (chunk: Buffer) => {
        captured.push(chunk);
        client.write(chunk);
      });
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      client.on('error', () => undefined);
      upstream.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', () => resolve()));
    try {
      const relayAddress = `127.0.0.1:${(relay.address() as net.AddressInfo).port}`;
      a.transport.connect(relayAddress);
      await waitFor('a → b through the relay', () => isUp(a, 'id-b'));
      assert.equal(a.transport.send('id-b', { type: 'data', text: 'payload' }), true);
      await waitFor('delivered', () => b.messages[0]);
      const bytes = Buffer.concat(captured);
      assert.ok(bytes.length > 100, 'the handshake went through the relay');
      for (const form of [Buffer.from(secret), Buffer.from(Buffer.from(secret).toString('hex')), Buffer.from(Buffer.from(secret).toString('base64'))]) {
        assert.equal(bytes.indexOf(form), -1, `the secret appears on the wire as ${form.toString()}`);
      }
      // And no long piece of it either.
      assert.equal(bytes.indexOf(Buffer.from(secret.slice(0, 8))), -1);
    } finally {
      for (const socket of relaySockets) socket.destroy();
      await new Promise<void>((resolve) => relay.close(() => resolve()));
    }
  });

  describe('frame limits', () => {
    it('a frame over the receiver\'s frameBytesMax closes the connection with FRAME_TOO_LARGE', async () => {
      const b = await startNode('b', { frameBytesMax: 1024 });
      const peer = await RawPeer.connect(b.address);
      await peer.handshakeAsClient(identity('x'));
      await waitFor('b knows x', () => b.transport.inboundPeers().length === 1);
      peer.send({ small: true });
      await waitFor('the small one arrives', () => b.messages[0]);
      const header = Buffer.alloc(4);
      header.writeUInt32BE(1025, 0);
      peer.socket.write(header);
      const notice = await peer.nextFrame('a closing notice') as { type: string; code: string; message: string };
      assert.equal(notice.type, 'closing');
      assert.equal(notice.code, 'FRAME_TOO_LARGE');
      assert.match(notice.message, /1025.*1024.*transport\.frameBytesMax/);
      await waitFor('closed', () => peer.closed);
      assert.ok(b.log.find('warn', 'FRAME_TOO_LARGE'));
      await waitFor('b forgets x', () => b.transport.inboundPeers().length === 0);
    });

    it('a sender learns the peer\'s limit at the handshake: an oversized message is dropped and logged, the link stays', async () => {
      const a = await startNode('a', { frameBytesMax: 1024 * 1024 });
      const b = await startNode('b', { frameBytesMax: 1024 });
      await connected(a, b);
      assert.equal(a.transport.send('id-b', { blob: 'x'.repeat(2000) }), false);
      const line = a.log.find('error', 'FRAME_TOO_LARGE');
      assert.ok(line);
      assert.match(line.message, /transport\.frameBytesMax/);
      assert.equal(a.transport.send('id-b', { small: true }), true);
      await waitFor('the small one arrives', () => b.messages[0]);
      assert.ok(isUp(a, 'id-b'));
    });

    it('an oversized frame sent by a node with a larger limit is refused by the receiver (closing notice logged by the sender)', async () => {
      const b = await startNode('b', { frameBytesMax: 1024 });
      // A client lying about nothing but its own limit cannot make b accept more than b's own.
      const peer = await RawPeer.connect(b.address);
      await peer.handshakeAsClient(identity('x', { frameBytesMax: 1 << 20 }));
      peer.send({ blob: 'x'.repeat(4000) });
      const notice = await peer.nextFrame('a closing notice') as { code: string };
      assert.equal(notice.code, 'FRAME_TOO_LARGE');
    });
  });

  it('reconnects after the remote transport stops and starts again on the same port', async () => {
    const a = await startNode('a');
    let b = await startNode('b');
    await connected(a, b);
    const port = b.transport.port;
    await b.transport.stop();
    await waitFor('peer down', () => a.downs.length === 1);
    assert.equal(a.transport.send('id-b', 'lost'), false);
    await waitFor('a retried at least once against the closed port', () => a.transport.outgoingStats()[0]!.failedAttempts >= 2);
    b = await startNode('b', { port });
    await waitFor('peer up again', () => isUp(a, 'id-b'));
    assert.deepEqual(a.ups, ['id-b', 'id-b']);
    assert.equal(a.transport.send('id-b', 'after'), true);
    await waitFor('delivered to the new b', () => b.messages[0]);
    assert.deepEqual(b.messages, [{ from: 'id-a', message: 'after' }]);
    // The retries in between were expected: one warning for the series, the rest at debug level.
    assert.equal(a.log.lines.filter((l) => l.level === 'warn' && /cannot connect/.test(l.message)).length, 1);
  });

  it('a peer that dials in while its address is backing off is dialled back at once, not when the back-off ends', async () => {
    // A back-off of a minute: only the dial-back can bring the connection up within the test's wait.
    const a = await startNode('a', { reconnectDelayMinMs: 60_000, reconnectDelayMaxMs: 60_000 });
    let b = await startNode('b');
    await connected(a, b);
    const port = b.transport.port;
    await b.transport.stop();
    await waitFor('peer down', () => a.downs.length === 1);
    b = await startNode('b', { port });
    b.transport.connect(a.address);
    await waitFor('a dials b back as soon as b reached it', () => isUp(a, 'id-b'), 5000);
    assert.equal(a.transport.send('id-b', 'back'), true);
    await waitFor('delivered', () => b.messages[0]);
  });

  it('stop() closes everything and nothing reconnects afterwards', async () => {
    const a = await startNode('a');
    const b = await startNode('b');
    await connected(a, b);
    await connected(b, a);
    await a.transport.stop();
    assert.deepEqual(a.downs, ['id-b']);
    await waitFor('b sees a go', () => b.downs.length === 1 && b.transport.inboundPeers().length === 0);
    assert.deepEqual(a.transport.outgoingStats(), [], 'nothing left to reconnect');
    assert.throws(() => a.transport.connect(b.address), (err: unknown) => isTransportError(err, 'NOT_RUNNING'));
  });

  it('an inbound connection from a node id already connected replaces the old one', async () => {
    const b = await startNode('b');
    const first = await RawPeer.connect(b.address);
    await first.handshakeAsClient(identity('x'));
    const second = await RawPeer.connect(b.address);
    await second.handshakeAsClient(identity('x'));
    await waitFor('the first is closed', () => first.closed);
    assert.equal(b.transport.inboundPeers().length, 1);
    second.send('from the second');
    await waitFor('delivered', () => b.messages[0]);
    assert.deepEqual(b.messages, [{ from: 'id-x', message: 'from the second' }]);
  });

  it('the send queue is bounded by frames and bytes against a peer that never reads', async () => {
    const sendQueueFramesMax = 64;
    const sendQueueBytesMax = 32 * 1024;
    const stuck = await rawServer((peer) => {
      void handshakeAsServer(peer, identity('stuck')).then(() => peer.socket.pause());
    });
    try {
      const a = await startNode('a', { sendQueueFramesMax, sendQueueBytesMax });
      a.transport.connect(stuck.address);
      await waitFor('a → stuck up', () => isUp(a, 'id-stuck'));
      const message = { blob: 'y'.repeat(1000) };
      let accepted = 0;
      let refused = 0;
      // Rounds of sending until refused, letting the socket drain between them, until the kernel's buffers are
      // full too and a whole round is refused from its first frame.
      await waitFor('a round where nothing is accepted', () => {
        let acceptedThisRound = 0;
        for (let i = 0; i < 100_000; i++) {
          if (!a.transport.send('id-stuck', message)) {
            refused += 1;
            break;
          }
          accepted += 1;
          acceptedThisRound += 1;
        }
        const stats = a.transport.outgoingStats()[0]!;
        assert.ok(stats.queuedFrames <= sendQueueFramesMax, `${stats.queuedFrames} frames queued`);
        assert.ok(stats.queuedBytes <= sendQueueBytesMax, `${stats.queuedBytes} bytes queued`);
        return acceptedThisRound === 0;
      }, 5000);
      assert.ok(refused > 0);
      const stats = a.transport.outgoingStats()[0]!;
      assert.ok(stats.queuedFrames > 0, 'the queue is in use');
      assert.ok(stats.droppedFrames >= refused);
      // Once full, it stays full: nothing more is taken, nothing more is held.
      for (let i = 0; i < 1000; i++) assert.equal(a.transport.send('id-stuck', message), false);
      assert.deepEqual(a.transport.outgoingStats()[0]!.queuedBytes, stats.queuedBytes);
      // Beyond the queue's bound, only the socket's and the kernel's buffers (a few MiB on loopback) hold frames.
      assert.ok(accepted * 1000 < 32 * 1024 * 1024, `${accepted} frames accepted by a peer that never reads`);
      assert.ok(isUp(a, 'id-stuck'), 'a full queue drops frames, not the connection');
    } finally {
      await stuck.close();
    }
  });

  it('checks its options, and takes a pino logger', () => {
    const logger: TransportLogger = pino({ enabled: false });
    assert.ok(logger);
    const base = {
      host: '127.0.0.1',
      port: 0,
      self: { id: 'a', name: 'a' },
      clusterName: 'c',
      clusterSecret: secret,
      protocolVersion: '1.0',
      clusterUuid: () => null,
      logger: captureLogger('x'),
    };
    for (const bad of [{ clusterSecret: '' }, { protocolVersion: '1' }, { reconnectDelayMinMs: 500, reconnectDelayMaxMs: 100 }, { sendQueueBytesMax: 0 }, { publishAddress: 'nowhere' }]) {
      assert.throws(() => new Transport({ ...base, ...bad }), (err: unknown) => isTransportError(err, 'OPTIONS_INVALID') || isTransportError(err, 'ADDRESS_INVALID'), JSON.stringify(bad));
    }
  });
});
