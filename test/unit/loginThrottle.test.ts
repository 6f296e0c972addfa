import assert from 'node:assert/strict';
import { test } from 'node:test';

import { LoginThrottle } from '../../src/auth/loginThrottle.js';
import { isConclaveError } from '../../src/errors/catalogue.js';

const limits = { loginFailuresFree: 3, loginDelayMsMin: 1000, loginDelayMsMax: 60_000, loginFailureRecordsMax: 4 };

test('failures beyond the free ones make the next attempt wait, twice as long each time, up to the limit', () => {
  let now = 0;
  const throttle = new LoginThrottle(limits, () => now);
  // The free attempts cost nothing; after the last of them, the next attempt waits.
  for (let i = 0; i < 3; i++) {
    assert.equal(throttle.waitMs('admin', 'a'), 0);
    throttle.failed('admin', 'a');
  }
  const waits: number[] = [];
  for (let i = 0; i < 8; i++) {
    if (i > 0) throttle.failed('admin', 'a');
    const wait = throttle.waitMs('admin', 'a');
    waits.push(wait);
    assert.throws(() => throttle.admit('admin', 'a'), (err: unknown) => isConclaveError(err) && err.code === 'RATE_LIMITED' && err.details['retryAfterSeconds'] === Math.ceil(wait / 1000));
    now += wait;
    assert.equal(throttle.waitMs('admin', 'a'), 0);
  }
  assert.deepEqual(waits, [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]);
  // Other sources and other users are not held.
  assert.equal(throttle.waitMs('admin', 'b'), 0);
  assert.equal(throttle.waitMs('ed', 'a'), 0);
  // A success forgets the failures; so does a quiet spell as long as the longest wait.
  throttle.failed('admin', 'a');
  assert.ok(throttle.waitMs('admin', 'a') > 0);
  throttle.succeeded('admin', 'a');
  assert.equal(throttle.waitMs('admin', 'a'), 0);
  for (let i = 0; i < 5; i++) throttle.failed('ed', 'a');
  now += 60_001;
  assert.equal(throttle.waitMs('ed', 'a'), 0);
});

test('the records are bounded: the least recently failed is forgotten first', () => {
  const throttle = new LoginThrottle(limits, () => 0);
  for (let source = 0; source < 10; source++) for (let i = 0; i < 5; i++) throttle.failed('admin', `s${source}`);
  assert.equal(throttle.size, 4);
  assert.ok(throttle.waitMs('admin', 's9') > 0);
  assert.equal(throttle.waitMs('admin', 's0'), 0);
});
