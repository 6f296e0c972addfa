import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { json, openTestNode, type TestNode } from '../helpers/app.js';

let t: TestNode;
before(async () => {
  t = await openTestNode({ 'content.batchOperationsMax': 5, 'content.batchBytesMax': 4096 });
});
after(async () => {
  await t.close();
});

const postBatch = (operations: unknown, auth?: 'none') => t.request({ method: 'POST', url: '/api/v1/batch', ...json({ operations }), ...(auth === undefined ? {} : { auth }) });
const read = (path: string) => t.request({ method: 'GET', url: `/api/v1/content${path}` });
const changesSince = async (index: number) => (await t.request({ method: 'GET', url: `/api/v1/changes?since=${index}` })).json();

test('POST /api/v1/batch applies every operation as one entry and answers each outcome', async () => {
  const start = t.node.repository.appliedIndex;
  const answer = await postBatch([
    { op: 'put', path: '/shop', type: 'folder', properties: { title: 'Shop' } },
    { op: 'put', path: '/shop/item', properties: { price: 3 }, ifNoneMatch: '*' },
    { op: 'patch', path: '/shop/item', patch: { stock: 7 } },
    { op: 'move', from: '/shop/item', to: '/shop/renamed' },
  ]);
  assert.equal(answer.statusCode, 200, answer.body);
  const body = answer.json();
  assert.equal(String(body.index), answer.headers['x-conclave-index']);
  assert.deepEqual(
    body.operations.map((o: { op: string; path: string; status?: number }) => [o.op, o.path, o.status]),
    [['put', '/shop', 201], ['put', '/shop/item', 201], ['patch', '/shop/item', undefined], ['move', '/shop/renamed', undefined]],
  );
  const renamed = await read('/shop/renamed');
  assert.deepEqual(renamed.json().properties, { price: 3, stock: 7 });
  assert.equal(renamed.headers['etag'], body.operations[3].etag);
  // One entry: every event of the batch sits at the batch's index, in the operations' order.
  const ofBatch = (position: string) => position === String(body.index) || position.startsWith(`${body.index}:`);
  const events = (await changesSince(start)).events.filter((e: { position: string }) => ofBatch(e.position));
  assert.deepEqual(events.map((e: { op: string; path: string }) => `${e.op} ${e.path}`), ['created /shop', 'created /shop/item', 'updated /shop/item', 'moved /shop/renamed']);
});

test('a refused operation refuses the batch with its own status and code, names it, and nothing is stored', async () => {
  const before = await read('/shop/renamed');
  const stale = await postBatch([
    { op: 'put', path: '/shop/new', properties: {} },
    { op: 'patch', path: '/shop/renamed', patch: { stock: 0 }, ifMatch: '"stale:1"' },
  ]);
  assert.equal(stale.statusCode, 412);
  assert.equal(stale.json().error.code, 'PRECONDITION_FAILED');
  assert.equal(stale.json().error.operation, 1);
  assert.equal((await read('/shop/new')).statusCode, 404, 'the operation before the refused one left nothing');
  const missingParent = await postBatch([{ op: 'delete', path: '/shop/renamed' }, { op: 'put', path: '/nowhere/x', properties: {} }]);
  assert.equal(missingParent.statusCode, 409);
  assert.equal(missingParent.json().error.code, 'PARENT_NOT_FOUND');
  assert.equal((await read('/shop/renamed')).headers['etag'], before.headers['etag']);
  // With the right tag, it goes through.
  const fresh = await postBatch([{ op: 'patch', path: '/shop/renamed', patch: { stock: 0 }, ifMatch: String(before.headers['etag']) }]);
  assert.equal(fresh.statusCode, 200, fresh.body);
});

test('bad input is refused before anything is proposed, naming the operation', async () => {
  const refusal = async (operations: unknown) => {
    const answer = await postBatch(operations);
    return [answer.statusCode, answer.json().error.code, answer.json().error.operation];
  };
  assert.deepEqual(await refusal([]), [400, 'INVALID_REQUEST', undefined]);
  assert.deepEqual(await refusal('put'), [400, 'INVALID_REQUEST', undefined]);
  assert.deepEqual(await refusal([{ op: 'put', path: '/ok', properties: {} }, { op: 'setBinary', path: '/ok' }]), [400, 'INVALID_REQUEST', 1]);
  assert.deepEqual(await refusal([{ op: 'put', path: 'relative', properties: {} }]), [400, 'INVALID_PATH', 0]);
  assert.deepEqual(await refusal([{ op: 'put', path: '/a', properties: [] }]), [400, 'INVALID_PROPERTIES', 0]);
  assert.deepEqual(await refusal([{ op: 'delete', path: '/a', recursive: 'yes' }]), [400, 'INVALID_REQUEST', 0]);
  assert.deepEqual(await refusal([{ op: 'delete', path: '/' }]), [409, 'ROOT_IMMUTABLE', 0]);
  assert.deepEqual(await refusal([{ op: 'patch', path: '/a', patch: {}, extra: 1 }]), [400, 'INVALID_REQUEST', 0]);
  assert.deepEqual(await refusal([{ op: 'patch', path: '/a', patch: {}, ifMatch: 3 }]), [400, 'INVALID_REQUEST', 0]);
  assert.deepEqual(await refusal([{ op: 'put', path: '/a', properties: {}, ifNoneMatch: '"tag"' }]), [400, 'INVALID_REQUEST', 0]);
  const tooMany = await postBatch(Array.from({ length: 6 }, (_, i) => ({ op: 'put', path: `/m${i}`, properties: {} })));
  assert.equal(tooMany.statusCode, 413);
  assert.deepEqual([tooMany.json().error.code, tooMany.json().error.operationsMax], ['BATCH_TOO_LARGE', 5]);
  const tooBig = await postBatch([{ op: 'put', path: '/big', properties: { text: 'x'.repeat(5000) } }]);
  assert.equal(tooBig.statusCode, 413);
  assert.deepEqual([tooBig.json().error.code, tooBig.json().error.bytesMax], ['BATCH_TOO_LARGE', 4096]);
  for (const path of ['/ok', '/m0', '/big']) assert.equal((await read(path)).statusCode, 404);
});

test('a delete in a batch answers how many nodes went, and nothing of the node that is gone', async () => {
  const answer = await postBatch([{ op: 'put', path: '/gone', properties: {} }, { op: 'put', path: '/gone/child', properties: {} }, { op: 'delete', path: '/gone', recursive: true }]);
  assert.equal(answer.statusCode, 200, answer.body);
  assert.deepEqual(answer.json().operations[2], { op: 'delete', path: '/gone', deletedCount: 2 });
});

test('a batch costs its author one write per operation of auth.userWritesPerSecondMax', async () => {
  // One write a second, in bursts of two: the request takes one, and its three operations would need two more.
  const limited = await openTestNode({ 'auth.userWritesPerSecondMax': 1 });
  try {
    const operations = ['/a', '/b', '/c'].map((path) => ({ op: 'put', path, properties: {} }));
    const refused = await limited.request({ method: 'POST', url: '/api/v1/batch', ...json({ operations }) });
    assert.equal(refused.statusCode, 429, refused.body);
    assert.equal(refused.json().error.code, 'RATE_LIMITED');
    assert.equal((await limited.request({ method: 'GET', url: '/api/v1/content/a' })).statusCode, 404);
  } finally {
    await limited.close();
  }
});

test('a batch needs the write permission', async () => {
  const anonymous = await postBatch([{ op: 'put', path: '/anon', properties: {} }], 'none');
  assert.equal(anonymous.statusCode, 401);
});
