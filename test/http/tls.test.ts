import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { Agent, request } from 'undici';

import { ConfigError, loadConfig } from '../../src/config/load.js';
import { httpsOptionsOf } from '../../src/http/tlsFiles.js';
import { adminAuth, openTestNode } from '../helpers/app.js';
import { tempDir } from '../helpers/tmp.js';
import { generatePki, type TestPki } from '../transport/helpers.js';

// The HTTP API over TLS (http.tlsCertFile, http.tlsKeyFile, http.tlsClientCaFile) on a real node and socket.

let pki: TestPki;
let cleanup: () => void;

before(() => {
  const tmp = tempDir('conclave-https-');
  cleanup = tmp.cleanup;
  pki = generatePki(tmp.dir);
});
after(() => cleanup());

const trustingCa = () => new Agent({ connect: { ca: readFileSync(pki.caFile) } });

test('with a certificate and key the API speaks HTTPS only; the listening URL says https', async () => {
  const t = await openTestNode({ 'http.tlsCertFile': pki.certFile, 'http.tlsKeyFile': pki.keyFile, 'http.internalPort': 0 });
  const agent = trustingCa();
  try {
    const url = await t.node.listen();
    assert.match(url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const res = await request(`${url}/api/v1/content/`, { dispatcher: agent, headers: { authorization: adminAuth } });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    // Plain HTTP on the same port gets nothing: the credentials it would carry are never read in clear.
    await assert.rejects(request(`${url.replace('https:', 'http:')}/api/v1/content/`, { headers: { authorization: adminAuth } }).then((r) => r.body.text()));
    // A client that does not trust the certificate's CA refuses the server.
    await assert.rejects(request(`${url}/health/live`));
  } finally {
    await agent.close();
    await t.close();
  }
});

test('with a client CA the API requires a client certificate that CA signed', async () => {
  const t = await openTestNode({ 'http.tlsCertFile': pki.certFile, 'http.tlsKeyFile': pki.keyFile, 'http.tlsClientCaFile': pki.caFile, 'http.internalPort': 0 });
  const anonymous = trustingCa();
  const rogue = new Agent({ connect: { ca: readFileSync(pki.caFile), cert: readFileSync(pki.rogueCertFile), key: readFileSync(pki.rogueKeyFile) } });
  const client = new Agent({ connect: { ca: readFileSync(pki.caFile), cert: readFileSync(pki.certFile), key: readFileSync(pki.keyFile) } });
  try {
    const url = await t.node.listen();
    await assert.rejects(request(`${url}/health/live`, { dispatcher: anonymous }).then((r) => r.body.text()));
    await assert.rejects(request(`${url}/health/live`, { dispatcher: rogue }).then((r) => r.body.text()));
    const res = await request(`${url}/health/live`, { dispatcher: client });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
  } finally {
    await Promise.all([anonymous.close(), rogue.close(), client.close()]);
    await t.close();
  }
});

test('TLS settings that cannot work are refused at start, naming the setting', () => {
  const load = (flags: Record<string, string>) => loadConfig({ env: {}, flags: { 'data.dir': '/tmp/unused', ...flags } });
  assert.throws(() => load({ 'http.tlsCertFile': pki.certFile }), (err) => err instanceof ConfigError && /http\.tlsKeyFile/.test(err.message));
  assert.throws(() => load({ 'http.tlsKeyFile': pki.keyFile }), (err) => err instanceof ConfigError && /http\.tlsCertFile/.test(err.message));
  assert.throws(() => load({ 'http.tlsClientCaFile': pki.caFile }), (err) => err instanceof ConfigError && /http\.tlsCertFile/.test(err.message));
  assert.throws(
    () => httpsOptionsOf(load({ 'http.tlsCertFile': '/nonexistent/cert.pem', 'http.tlsKeyFile': pki.keyFile })),
    (err) => err instanceof ConfigError && /http\.tlsCertFile \/nonexistent\/cert\.pem/.test(err.message),
  );
  // A key that does not belong to the certificate.
  assert.throws(
    () => httpsOptionsOf(load({ 'http.tlsCertFile': pki.certFile, 'http.tlsKeyFile': pki.rogueKeyFile })),
    (err) => err instanceof ConfigError && /usable TLS setup/.test(err.message),
  );
});
