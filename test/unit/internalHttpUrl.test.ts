import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { NodeDescriptor } from '../../src/core/clusterState.js';
import { InternalAuth } from '../../src/auth/internalAuth.js';
import { InternalHttpClient, internalHttpUrlOf, PeerUnreachable } from '../../src/replication/internalHttp.js';

// Where node-to-node requests go: with TLS between nodes only to a peer's internal listener over HTTPS, never in
// clear to its API.

const peer = (extra: Partial<NodeDescriptor>): NodeDescriptor => ({
  id: 'p',
  name: 'p',
  address: '10.0.0.2:7500',
  roles: { masterEligible: true, votingOnly: false },
  version: '0.1.0',
  ...extra,
});

test('with TLS between nodes: the internal listener over HTTPS, or nothing', () => {
  assert.equal(internalHttpUrlOf(peer({ httpAddress: '10.0.0.2:7400', internalHttpAddress: '10.0.0.2:7401' }), true), 'https://10.0.0.2:7401');
  assert.equal(internalHttpUrlOf(peer({ httpAddress: '10.0.0.2:7400' }), true), null, 'never the API address in clear');
  // A wildcard listener: the transport's host.
  assert.equal(internalHttpUrlOf(peer({ internalHttpAddress: '0.0.0.0:7401' }), true), 'https://10.0.0.2:7401');
  assert.equal(internalHttpUrlOf(peer({ address: '0.0.0.0:7500', internalHttpAddress: '0.0.0.0:7401' }), true), null);
});

test('without TLS between nodes: the internal listener when the peer runs one (its API uses TLS), else its API, in clear', () => {
  assert.equal(internalHttpUrlOf(peer({ httpAddress: '10.0.0.2:7400' }), false), 'http://10.0.0.2:7400');
  assert.equal(internalHttpUrlOf(peer({ httpAddress: '10.0.0.2:7400', internalHttpAddress: '10.0.0.2:7401' }), false), 'http://10.0.0.2:7401');
  assert.equal(internalHttpUrlOf(peer({}), false), null);
});

test('a TLS client does not send to a peer that published no internal address', async () => {
  const material = { cert: Buffer.alloc(0), key: Buffer.alloc(0), ca: Buffer.alloc(0) };
  const client = new InternalHttpClient({ auth: new InternalAuth('secret-of-the-unit-test', 'me', 16), tls: material, connectionsPerPeerMax: 1, idleTimeoutMs: 1000 });
  try {
    await assert.rejects(client.send(peer({ httpAddress: '127.0.0.1:1' }), { method: 'GET', path: '/internal/v1/blobs/x' }), (err) => err instanceof PeerUnreachable && /internal HTTPS/.test(err.message));
  } finally {
    await client.close();
  }
});
