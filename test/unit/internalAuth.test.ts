import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';

import { isConclaveError } from '../../src/errors/catalogue.js';
import {
  InternalAuth,
  internalClockSkewMsMax,
  internalKeyOf,
  NonceMemory,
  signInternalRequest,
  verifyInternalHeader,
  type ReceivedRequest,
  type SignedTarget,
} from '../../src/auth/internalAuth.js';
import { propertyParameters } from '../sim/testSeed.js';

const secret = 'the-cluster-secret-of-the-test';
const key = internalKeyOf(secret);
const path = '/internal/v1/blobs/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef';
const now = 1_760_000_000_000;
const forB: SignedTarget = { target: 'node-b', method: 'GET', path, body: 'empty' };
const atB: ReceivedRequest = { self: 'node-b', method: 'GET', path, hasBody: false, identity: undefined };

function refusal(fn: () => unknown, code = 'INTERNAL_AUTH_FAILED'): string {
  try {
    fn();
  } catch (err) {
    assert.ok(isConclaveError(err), `a catalogue error, not ${String(err)}`);
    assert.equal(err.code, code);
    return err.message;
  }
  assert.fail('the request was accepted');
}

test('a proof of the secret for this node, method and path is accepted and names the caller', () => {
  const header = signInternalRequest(key, 'node-a', forB, now);
  assert.equal(verifyInternalHeader(key, header, atB, now).caller, 'node-a');
  // Clocks a little apart are fine; the method compares case-insensitively, as HTTP methods are written.
  assert.equal(verifyInternalHeader(key, header, { ...atB, method: 'get' }, now + internalClockSkewMsMax).caller, 'node-a');
  assert.equal(verifyInternalHeader(key, header, atB, now - internalClockSkewMsMax).caller, 'node-a');
});

test('the key is derived from the secret (HKDF), never the secret itself', () => {
  assert.equal(key.length, 32);
  assert.notDeepEqual(key, Buffer.from(secret));
  // A MAC keyed with the raw secret, as the previous version made, does not verify.
  const header = signInternalRequest(Buffer.from(secret, 'utf8'), 'node-a', forB, now);
  refusal(() => verifyInternalHeader(key, header, atB, now));
  assert.notEqual(createHmac('sha256', secret).update('x').digest('hex'), createHmac('sha256', key).update('x').digest('hex'));
});

test('a proof made with another secret is refused, naming the remedy', () => {
  const header = signInternalRequest(internalKeyOf('another-cluster-secret!'), 'node-a', forB, now);
  assert.match(refusal(() => verifyInternalHeader(key, header, atB, now)), /cluster secret/);
});

test('a proof is bound to its target node, path with query, method, caller, nonce, body statement and identity', () => {
  const header = signInternalRequest(key, 'node-a', forB, now);
  // Signed for node-b, shown to node-c:
  assert.match(refusal(() => verifyInternalHeader(key, header, { ...atB, self: 'node-c' }, now)), /another node/);
  refusal(() => verifyInternalHeader(key, header, { ...atB, path: `${path.slice(0, -1)}0` }, now));
  refusal(() => verifyInternalHeader(key, header, { ...atB, path: `${path}?x=1` }, now));
  refusal(() => verifyInternalHeader(key, header, { ...atB, method: 'PUT' }, now));
  refusal(() => verifyInternalHeader(key, header, { ...atB, method: 'HEAD' }, now));
  refusal(() => verifyInternalHeader(key, header, { ...atB, identity: 'eyJ1c2VyIjoiYWRtaW4ifQ' }, now));
  // A body on a request signed as having none:
  assert.match(refusal(() => verifyInternalHeader(key, header, { ...atB, hasBody: true }, now)), /without a body/);
  const [v, caller, target, unixMs, nonce, body, mac] = header.split('.') as [string, string, string, string, string, string, string];
  const forged = (parts: string[]) => refusal(() => verifyInternalHeader(key, parts.join('.'), atB, now));
  forged([v, 'node-x', target, unixMs, nonce, body, mac]);
  forged([v, caller, 'node-c', unixMs, nonce, body, mac]);
  forged([v, caller, target, unixMs, 'AAAAAAAAAAAAAAAAAAAAAA', body, mac]);
  forged([v, caller, target, unixMs, nonce, 's', mac]);
  forged([v, caller, target, String(Number(unixMs) + 1), nonce, body, mac]);
  // Streamed bodies are signed as such, and the identity with the request:
  const upload = signInternalRequest(key, 'node-a', { ...forB, method: 'PUT', body: 'streamed', identity: 'abc' }, now);
  assert.equal(verifyInternalHeader(key, upload, { ...atB, method: 'PUT', hasBody: true, identity: 'abc' }, now).caller, 'node-a');
  refusal(() => verifyInternalHeader(key, upload, { ...atB, method: 'PUT', hasBody: true, identity: undefined }, now));
});

test('an old (or future) time stamp is refused even with a valid MAC', () => {
  const old = signInternalRequest(key, 'node-a', forB, now - internalClockSkewMsMax - 1);
  assert.match(refusal(() => verifyInternalHeader(key, old, atB, now)), /clock/);
  const future = signInternalRequest(key, 'node-a', forB, now + internalClockSkewMsMax + 1);
  refusal(() => verifyInternalHeader(key, future, atB, now));
});

test('a missing or malformed header is refused', () => {
  const good = signInternalRequest(key, 'node-a', forB, now);
  const [v, caller, target, unixMs, nonce, body, mac] = good.split('.') as [string, string, string, string, string, string, string];
  for (const header of [
    undefined,
    '',
    'garbage',
    `${caller}.${unixMs}.${nonce}.${mac}`,
    [v, caller, target, unixMs, nonce, body].join('.'),
    `${good}.extra`,
    ['v1', caller, target, unixMs, nonce, body, mac].join('.'),
    [v, caller, target, 'not-a-number', nonce, body, mac].join('.'),
    [v, caller, target, '1e12', nonce, body, mac].join('.'),
    [v, caller, target, unixMs, 'short', body, mac].join('.'),
    [v, caller, target, unixMs, nonce, 'x', mac].join('.'),
    [v, '', target, unixMs, nonce, body, mac].join('.'),
    [v, caller, target, unixMs, nonce, body, ''].join('.'),
    [v, caller, target, unixMs, nonce, body, mac.slice(0, -2)].join('.'),
  ]) {
    refusal(() => verifyInternalHeader(key, header, atB, now));
  }
});

test('property: no header but the one signed for this exact request is ever accepted', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 300 }), fc.string({ maxLength: 40 }), (junk, path2) => {
      const request = { ...atB, path: `/x/${path2}` };
      try {
        verifyInternalHeader(key, junk, request, now);
      } catch (err) {
        assert.ok(isConclaveError(err) && err.code === 'INTERNAL_AUTH_FAILED');
        return;
      }
      assert.fail(`accepted ${JSON.stringify(junk)}`);
    }),
    propertyParameters(500),
  );
});

test('a replayed header is refused by the node that accepted it, and by any other node', () => {
  let clock = now;
  const a = new InternalAuth(secret, 'node-a', 100, internalClockSkewMsMax, () => clock);
  const b = new InternalAuth(secret, 'node-b', 100, internalClockSkewMsMax, () => clock);
  const c = new InternalAuth(secret, 'node-c', 100, internalClockSkewMsMax, () => clock);
  const header = a.sign(forB);
  const received = { method: 'GET', path, hasBody: false, identity: undefined };
  assert.equal(b.verify(header, received), 'node-a');
  clock += 1000;
  assert.match(refusal(() => b.verify(header, received)), /replay/);
  assert.match(refusal(() => c.verify(header, received)), /another node/);
  // Still refused at the last instant of its window; after it, as too old: never accepted again.
  clock = now + internalClockSkewMsMax;
  assert.match(refusal(() => b.verify(header, received)), /replay/);
  clock += 1;
  assert.match(refusal(() => b.verify(header, received)), /clock/);
  // The nonce left the memory once its window was over.
  a.sign(forB);
  assert.equal(b.verify(a.sign(forB), received), 'node-a');
  assert.equal(b.noncesRemembered, 1);
});

test('the nonce memory is bounded: full, it refuses (OVERLOADED) rather than forget a nonce early', () => {
  const memory = new NonceMemory(3);
  memory.remember('a', now + 10, now);
  memory.remember('b', now + 20, now);
  memory.remember('c', now + 30, now);
  const message = refusal(() => memory.remember('d', now + 40, now), 'OVERLOADED');
  assert.match(message, /http\.internalNoncesMax/);
  // Every nonce is still known: a replay of any is refused.
  for (const k of ['a', 'b', 'c']) refusal(() => memory.remember(k, now + 40, now));
  // Once the first expires, there is room again.
  memory.remember('d', now + 40, now + 11);
  assert.equal(memory.size, 3);
  refusal(() => memory.remember('b', now + 40, now + 11));
});
