import assert from 'node:assert/strict';
import { test } from 'node:test';

import { isConclaveError } from '../../src/errors/catalogue.js';
import { internalClockSkewMsMax, signInternalRequest, verifyInternalRequest } from '../../src/http/internalAuth.js';

const secret = 'the-cluster-secret-of-the-test';
const path = '/internal/v1/blobs/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef';
const now = 1_760_000_000_000;

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(isConclaveError(err), `a catalogue error, not ${String(err)}`);
    assert.equal(err.code, 'INTERNAL_AUTH_FAILED');
    return err.message;
  }
  assert.fail('the request was accepted');
}

test('a proof of the secret for this method and path is accepted and names the caller', () => {
  const header = signInternalRequest(secret, 'node-a', 'GET', path, now);
  assert.equal(verifyInternalRequest(secret, header, 'GET', path, now), 'node-a');
  // Clocks a little apart are fine; the method compares case-insensitively, as HTTP methods are written.
  assert.equal(verifyInternalRequest(secret, header, 'get', path, now + internalClockSkewMsMax), 'node-a');
  assert.equal(verifyInternalRequest(secret, header, 'GET', path, now - internalClockSkewMsMax), 'node-a');
});

test('a proof made with another secret is refused, naming the remedy', () => {
  const header = signInternalRequest('another-cluster-secret!', 'node-a', 'GET', path, now);
  assert.match(refusal(() => verifyInternalRequest(secret, header, 'GET', path, now)), /cluster secret/);
});

test('a proof is bound to its path, method and node', () => {
  const header = signInternalRequest(secret, 'node-a', 'GET', path, now);
  refusal(() => verifyInternalRequest(secret, header, 'GET', `${path.slice(0, -1)}0`, now));
  refusal(() => verifyInternalRequest(secret, header, 'GET', `${path}?x=1`, now));
  refusal(() => verifyInternalRequest(secret, header, 'PUT', path, now));
  refusal(() => verifyInternalRequest(secret, header, 'HEAD', path, now));
  // Claiming to be another node with node-a's MAC:
  const [, unixMs, nonce, mac] = header.split('.');
  refusal(() => verifyInternalRequest(secret, `node-b.${unixMs}.${nonce}.${mac}`, 'GET', path, now));
  // Another nonce with the same MAC:
  refusal(() => verifyInternalRequest(secret, `node-a.${unixMs}.AAAAAAAAAAAAAAAA.${mac}`, 'GET', path, now));
});

test('an old (or future) time stamp is refused even with a valid MAC', () => {
  const old = signInternalRequest(secret, 'node-a', 'GET', path, now - internalClockSkewMsMax - 1);
  assert.match(refusal(() => verifyInternalRequest(secret, old, 'GET', path, now)), /clock/);
  const future = signInternalRequest(secret, 'node-a', 'GET', path, now + internalClockSkewMsMax + 1);
  refusal(() => verifyInternalRequest(secret, future, 'GET', path, now));
});

test('a missing or malformed header is refused', () => {
  const good = signInternalRequest(secret, 'node-a', 'GET', path, now);
  const [node, unixMs, nonce, mac] = good.split('.') as [string, string, string, string];
  for (const header of [
    undefined,
    '',
    'garbage',
    `${node}.${unixMs}.${nonce}`,
    `${good}.extra`,
    `${node}.not-a-number.${nonce}.${mac}`,
    `${node}.${unixMs}.${nonce}.`,
    `${node}.${unixMs}.${nonce}.${mac.slice(0, -2)}`,
    `${node}.1e12.${nonce}.${mac}`,
  ]) {
    refusal(() => verifyInternalRequest(secret, header, 'GET', path, now));
  }
});
