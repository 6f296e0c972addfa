import assert from 'node:assert/strict';
import { test } from 'node:test';

import { json, openTestNode } from '../helpers/app.js';

/** X-Conclave-Min-Index: a request waits (bounded) until the node has applied the index it names. */
test('a request waits for the index it names, answers at once below it, and gives up with NOT_READY', async () => {
  const t = await openTestNode({ 'http.minIndexWaitMs': 300 });
  try {
    const applied = t.node.repository.appliedIndex;
    const now = await t.request({ method: 'GET', url: '/api/v1/content/', headers: { 'x-conclave-min-index': String(applied) } });
    assert.equal(now.statusCode, 200);

    // The read names the next index; a write then produces it, and the read answers after it, seeing the write.
    const waiting = t.request({ method: 'GET', url: '/api/v1/content/later', headers: { 'x-conclave-min-index': String(applied + 1) } });
    const write = await t.request({ method: 'PUT', url: '/api/v1/content/later', ...json({ properties: { v: 1 } }) });
    assert.equal(write.statusCode, 201);
    assert.equal(Number(write.headers['x-conclave-index']), applied + 1);
    const read = await waiting;
    assert.equal(read.statusCode, 200, read.body);
    assert.equal((JSON.parse(read.body) as { properties: { v: number } }).properties.v, 1);

    const tooFar = await t.request({ method: 'GET', url: '/api/v1/content/', headers: { 'x-conclave-min-index': String(applied + 1000) } });
    assert.equal(tooFar.statusCode, 503);
    const body = JSON.parse(tooFar.body) as { error: { code: string; minIndex: number } };
    assert.equal(body.error.code, 'NOT_READY');
    assert.equal(body.error.minIndex, applied + 1000);

    for (const bad of ['-1', 'abc', '1.5', '9'.repeat(20)]) {
      const res = await t.request({ method: 'GET', url: '/api/v1/content/', headers: { 'x-conclave-min-index': bad } });
      assert.equal(res.statusCode, 400, bad);
      assert.equal((JSON.parse(res.body) as { error: { code: string } }).error.code, 'INVALID_REQUEST');
    }
  } finally {
    await t.close();
  }
});
