import assert from 'node:assert/strict';
import { test } from 'node:test';

import { RateLimiter } from '../../src/auth/rateLimiter.js';
import { ConclaveError } from '../../src/errors/catalogue.js';

test('take(count) takes that many tokens or none, never more than the burst, and says when enough are back', () => {
  let now = 0;
  const limiter = new RateLimiter({ perInterval: 10, intervalMs: 1000, burst: 20, what: 'writes' }, () => now);
  const refusal = (count: number) => {
    try {
      limiter.take('u', count);
    } catch (err) {
      assert.ok(err instanceof ConclaveError);
      assert.equal(err.code, 'RATE_LIMITED');
      return err.details['retryAfterSeconds'];
    }
    return 'taken';
  };
  assert.equal(refusal(15), 'taken');
  // 5 left: 6 are refused, and nothing is taken by the refusal.
  assert.equal(refusal(6), 1);
  assert.equal(refusal(5), 'taken');
  // Empty: 15 come back in 1.5 s at 10 a second.
  assert.equal(refusal(15), 2);
  now += 1500;
  assert.equal(refusal(15), 'taken');
  // More than the burst costs the burst: a full bucket takes it.
  now += 10_000;
  assert.equal(refusal(1000), 'taken');
  assert.equal(refusal(1), 1);
});
