import assert from 'node:assert/strict';
import { test } from 'node:test';

import { json, openTestNode } from '../helpers/app.js';
import { waitFor } from '../helpers/tmp.js';

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

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

test('an index far beyond the commit index is refused at once with MIN_INDEX_AHEAD, not waited for', { timeout: 30_000 }, async () => {
  // A wait long enough that the test's timeout, not NOT_READY, would end a request that waits.
  const t = await openTestNode({ 'http.minIndexWaitMs': 120_000, 'http.minIndexAheadEntriesMax': 100 });
  try {
    const commit = t.node.runtime.softState().commitIndex;
    for (const index of [commit + 101, 10 ** 12]) {
      const res = await t.request({ method: 'GET', url: '/api/v1/content/', headers: { 'x-conclave-min-index': String(index) } });
      assert.equal(res.statusCode, 400, res.body);
      const error = (JSON.parse(res.body) as { error: { code: string; minIndex: number; commitIndex: number } }).error;
      assert.equal(error.code, 'MIN_INDEX_AHEAD');
      assert.equal(error.minIndex, index);
      assert.equal(error.commitIndex, commit);
    }
    // Within the margin, the request waits as before and is answered once the index is applied.
    const waiting = t.request({ method: 'GET', url: '/api/v1/content/', headers: { 'x-conclave-min-index': String(commit + 1) } });
    assert.equal((await t.request({ method: 'PUT', url: '/api/v1/content/a', ...json({}) })).statusCode, 201);
    assert.equal((await waiting).statusCode, 200);
  } finally {
    await t.close();
  }
});

test('one user waiting on indices cannot take the slots of another user\'s read-your-writes request', { timeout: 30_000 }, async () => {
  const t = await openTestNode({ 'http.minIndexWaitMs': 20_000, 'http.minIndexWaitersMax': 16, 'http.minIndexWaitersPerUserMax': 4 });
  try {
    for (const [name, roles] of [['rita', ['reader']], ['ed', ['editor']]] as const) {
      assert.equal((await t.request({ method: 'PUT', url: `/api/v1/users/${name}`, ...json({ password: `${name}-password`, roles }) })).statusCode, 201);
      // Verified once, so the requests below never wait for a password check.
      assert.equal((await t.request({ method: 'GET', url: '/api/v1/auth/whoami', auth: basic(name, `${name}-password`) })).statusCode, 200);
    }
    const rita = basic('rita', 'rita-password');
    const ed = basic('ed', 'ed-password');
    const applied = t.node.repository.appliedIndex;
    // Rita floods with an index a few entries ahead: she gets her own share of the slots, the rest refused at once.
    const flood = Array.from({ length: 20 }, () =>
      t.request({ method: 'GET', url: '/api/v1/content/', auth: rita, headers: { 'x-conclave-min-index': String(applied + 3) } }),
    );
    const answered: Array<{ statusCode: number; body: string }> = [];
    for (const res of flood) void res.then((r) => answered.push(r));
    await waitFor('16 of the 20 requests answered', () => (answered.length >= 16 ? true : undefined));
    assert.equal(answered.length, 16);
    for (const res of answered) {
      assert.equal(res.statusCode, 503, res.body);
      assert.equal((JSON.parse(res.body) as { error: { code: string } }).error.code, 'OVERLOADED');
    }
    // Ed writes and reads his write back through the header: he waits and is answered.
    const edRead = t.request({ method: 'GET', url: '/api/v1/content/e2', auth: ed, headers: { 'x-conclave-min-index': String(applied + 2) } });
    assert.equal((await t.request({ method: 'PUT', url: '/api/v1/content/e1', auth: ed, ...json({}) })).statusCode, 201);
    assert.equal((await t.request({ method: 'PUT', url: '/api/v1/content/e2', auth: ed, ...json({}) })).statusCode, 201);
    const read = await edRead;
    assert.equal(read.statusCode, 200, read.body);
    assert.equal(Number(read.headers['x-conclave-index']) >= applied + 2, true);
    assert.equal((await t.request({ method: 'PUT', url: '/api/v1/content/e3', auth: ed, ...json({}) })).statusCode, 201);
    const all = await Promise.all(flood);
    assert.equal(all.filter((r) => r.statusCode === 200).length, 4);
  } finally {
    await t.close();
  }
});
