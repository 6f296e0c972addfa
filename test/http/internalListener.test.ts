import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';

import Fastify from 'fastify';
import pino from 'pino';

import { InternalListener } from '../../src/http/internalListener.js';
import { waitFor } from '../helpers/tmp.js';
import { generatePki, tempDir } from '../transport/helpers.js';

/**
 * The internal listener meets whoever reaches its port: a silent TCP client is cut after the TLS handshake timeout
 * (Node's default would hold the descriptor two minutes), connections beyond its bound are closed at once, and
 * refused TLS clients cost a few log lines a minute, not one each.
 */
test('the internal listener cuts silent clients, bounds its connections and rate-limits refusal lines', async () => {
  const tmp = tempDir();
  const pki = generatePki(tmp.dir);
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  const app = Fastify();
  app.get('/ping', async () => ({ ok: true }));
  await app.ready();
  const listener = await InternalListener.start(app, {
    host: '127.0.0.1',
    port: 0,
    tls: { cert: readFileSync(pki.certFile), key: readFileSync(pki.keyFile), ca: readFileSync(pki.caFile) },
    log,
    // Long enough that the four held connections below outlive the check of the bound even on a loaded machine.
    handshakeTimeoutMs: 2000,
    connectionsMax: 4,
    refusalLogLinesPerMinuteMax: 2,
  });
  const sockets: Socket[] = [];
  const open = async (): Promise<{ socket: Socket; closed: Promise<void> }> => {
    const socket = connect(listener.port, '127.0.0.1');
    sockets.push(socket);
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    return { socket, closed };
  };
  try {
    // Silent: never a byte of TLS. Closed by the server after the handshake timeout, well within the bound.
    const silent = await open();
    let cut = false;
    void silent.closed.then(() => (cut = true));
    await waitFor('the silent client to be cut', () => (cut ? true : undefined), 10_000);

    // The bound: with four held, a fifth is closed at once (the earlier ones are still open).
    // (They would all be cut by the handshake timeout too, in the order they came: the extra one must go first.)
    const held = await Promise.all([open(), open(), open(), open()]);
    let heldClosed = 0;
    for (const h of held) void h.closed.then(() => heldClosed++);
    const extra = await open();
    let heldClosedWhenExtraWent = -1;
    void extra.closed.then(() => (heldClosedWhenExtraWent = heldClosed));
    await waitFor('the connection over the bound to be closed', () => (heldClosedWhenExtraWent >= 0 ? true : undefined), 5_000);
    assert.equal(heldClosedWhenExtraWent, 0, 'the connection over the bound was closed while the four held were still open');
    for (const h of held) h.socket.destroy();

    // Refused TLS clients (no certificate): each refused, their lines limited to two a minute.
    for (let i = 0; i < 8; i++) {
      await new Promise<void>((resolve) => {
        const client = tlsConnect({ host: '127.0.0.1', port: listener.port, ca: readFileSync(pki.caFile), rejectUnauthorized: false });
        client.on('error', () => resolve());
        client.on('close', () => resolve());
      });
    }
    await waitFor('refusals to be logged', () => (lines.some((l) => l['code'] === 'TLS_HANDSHAKE_FAILED') ? true : undefined), 5_000);
    const refusals = lines.filter((l) => l['code'] === 'TLS_HANDSHAKE_FAILED');
    assert.ok(refusals.length <= 2, `${refusals.length} refusal lines for 8 refused clients`);
  } finally {
    for (const s of sockets) s.destroy();
    await listener.close(100);
    await app.close();
    tmp.cleanup();
  }
});
