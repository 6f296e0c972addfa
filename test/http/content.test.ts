import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { json, openTestNode, type TestNode } from '../helpers/app.js';

let t: TestNode;
before(async () => {
  t = await openTestNode();
});
after(async () => {
  await t.close();
});

const putNode = (path: string, body: object, headers: Record<string, string> = {}) =>
  t.request({ method: 'PUT', url: `/api/v1/content${path}`, ...json(body), headers: { ...json(body).headers, ...headers } });

test('PUT creates (201), GET returns it with an ETag and the index it reflects', async () => {
  const created = await putNode('/site', { type: 'folder', properties: { title: 'Site' } });
  assert.equal(created.statusCode, 201);
  assert.equal(created.headers['location'], '/api/v1/content/site');
  const body = created.json();
  assert.equal(body.path, '/site');
  assert.equal(body.type, 'folder');
  assert.equal(body.version, 1);
  assert.equal(body.createdBy, 'admin');
  const writeIndex = Number(created.headers['x-conclave-index']);
  assert.ok(writeIndex > 0);

  const read = await t.request({ method: 'GET', url: '/api/v1/content/site' });
  assert.equal(read.statusCode, 200);
  assert.equal(read.headers['etag'], created.headers['etag']);
  assert.ok(Number(read.headers['x-conclave-index']) >= writeIndex);
  assert.deepEqual(read.json().properties, { title: 'Site' });

  const byId = await t.request({ method: 'GET', url: `/api/v1/nodes/${body.id}` });
  assert.equal(byId.json().path, '/site');
  const notModified = await t.request({ method: 'GET', url: '/api/v1/content/site', headers: { 'if-none-match': String(read.headers['etag']) } });
  assert.equal(notModified.statusCode, 304);
});

test('conditional writes: create-only and If-Match; a failure is 412 and changes nothing', async () => {
  await putNode('/cond', { properties: { v: 1 } });
  const again = await putNode('/cond', { properties: { v: 2 } }, { 'if-none-match': '*' });
  assert.equal(again.statusCode, 412);
  assert.equal(again.json().error.code, 'PRECONDITION_FAILED');
  const current = await t.request({ method: 'GET', url: '/api/v1/content/cond' });
  assert.deepEqual(current.json().properties, { v: 1 });
  const etag = String(current.headers['etag']);
  const stale = await putNode('/cond', { properties: { v: 3 } }, { 'if-match': '"x:1"' });
  assert.equal(stale.statusCode, 412);
  const ok = await putNode('/cond', { properties: { v: 4 } }, { 'if-match': etag });
  assert.equal(ok.statusCode, 200);
  assert.equal(ok.json().version, 2);
  const reused = await putNode('/cond', { properties: { v: 5 } }, { 'if-match': etag });
  assert.equal(reused.statusCode, 412);
});

test('PATCH applies a merge patch with If-Match', async () => {
  const created = await putNode('/patchme', { properties: { a: 1, nested: { b: 2 } } });
  const patched = await t.request({
    method: 'PATCH',
    url: '/api/v1/content/patchme',
    payload: JSON.stringify({ a: null, nested: { c: 3 } }),
    headers: { 'content-type': 'application/merge-patch+json', 'if-match': String(created.headers['etag']) },
  });
  assert.equal(patched.statusCode, 200);
  assert.deepEqual(patched.json().properties, { nested: { b: 2, c: 3 } });
  const stale = await t.request({
    method: 'PATCH',
    url: '/api/v1/content/patchme',
    ...json({ a: 9 }),
    headers: { 'content-type': 'application/json', 'if-match': String(created.headers['etag']) },
  });
  assert.equal(stale.statusCode, 412);
});

test('children are ordered and paginated; reorder and move endpoints', async () => {
  await putNode('/list', {});
  const names = Array.from({ length: 7 }, (_, i) => `c${i}`);
  for (const name of names) await putNode(`/list/${name}`, { properties: { name } });
  const seen: string[] = [];
  let cursor: string | null = null;
  do {
    const url: string = `/api/v1/content/list?children=true&limit=3${cursor ? `&cursor=${cursor}` : ''}`;
    const page = await t.request({ method: 'GET', url });
    assert.equal(page.statusCode, 200);
    const children = page.json().children;
    assert.ok(children.items.length <= 3);
    seen.push(...children.items.map((c: { name: string }) => c.name));
    cursor = children.nextCursor;
  } while (cursor !== null);
  assert.deepEqual(seen, names);

  const reordered = await t.request({ method: 'POST', url: '/api/v1/reorder', ...json({ path: '/list', order: [...names].reverse() }) });
  assert.equal(reordered.statusCode, 200);
  const after = await t.request({ method: 'GET', url: '/api/v1/content/list?children=true&limit=100' });
  assert.deepEqual(after.json().children.items.map((c: { name: string }) => c.name), [...names].reverse());

  const moved = await t.request({ method: 'POST', url: '/api/v1/move', ...json({ from: '/list/c0', to: '/list/first', before: 'c6' }) });
  assert.equal(moved.statusCode, 200);
  assert.equal(moved.json().path, '/list/first');
  const final = await t.request({ method: 'GET', url: '/api/v1/content/list?children=true&limit=100' });
  assert.deepEqual(final.json().children.items.map((c: { name: string }) => c.name).slice(0, 2), ['first', 'c6']);
  const badMove = await t.request({ method: 'POST', url: '/api/v1/move', ...json({ from: '/list', to: '/list/first/x' }) });
  assert.equal(badMove.json().error.code, 'MOVE_INTO_DESCENDANT');
});

test('DELETE refuses a subtree without recursive=true', async () => {
  await putNode('/tree', {});
  await putNode('/tree/leaf', {});
  const refused = await t.request({ method: 'DELETE', url: '/api/v1/content/tree' });
  assert.equal(refused.statusCode, 409);
  assert.equal(refused.json().error.code, 'NODE_HAS_CHILDREN');
  const deleted = await t.request({ method: 'DELETE', url: '/api/v1/content/tree?recursive=true' });
  assert.equal(deleted.statusCode, 200);
  assert.equal(deleted.json().deletedCount, 2);
  assert.equal((await t.request({ method: 'GET', url: '/api/v1/content/tree/leaf' })).statusCode, 404);
  assert.equal((await t.request({ method: 'DELETE', url: '/api/v1/content' })).json().error.code, 'ROOT_IMMUTABLE');
});

test('errors have stable codes and a message', async () => {
  const cases: Array<[Promise<{ statusCode: number; json(): { error: { code: string; message: string } } }>, number, string]> = [
    [t.request({ method: 'PUT', url: '/api/v1/content/x', payload: '{bad', headers: { 'content-type': 'application/json' } }), 400, 'INVALID_JSON'],
    [putNode('/a/b%0A', {}), 400, 'INVALID_PATH'],
    [putNode('/missing/child', {}), 409, 'PARENT_NOT_FOUND'],
    [putNode('/typed', { type: '1bad' }), 400, 'INVALID_REQUEST'],
    [putNode('/props', { properties: [1] }), 400, 'INVALID_PROPERTIES'],
    [putNode('/extra', { propertiez: {} }), 400, 'INVALID_REQUEST'],
    [t.request({ method: 'PUT', url: '/api/v1/content/x', payload: 'a', headers: { 'content-type': 'text/plain' } }), 415, 'UNSUPPORTED_MEDIA_TYPE'],
    [t.request({ method: 'GET', url: '/api/v1/content/nothing-here' }), 404, 'NODE_NOT_FOUND'],
    [t.request({ method: 'GET', url: '/api/v2/anything' }), 404, 'ROUTE_NOT_FOUND'],
    [t.request({ method: 'GET', url: '/api/v1/content/x?color=red' }), 400, 'INVALID_REQUEST'],
  ];
  for (const [response, status, code] of cases) {
    const r = await response;
    assert.equal(r.statusCode, status, code);
    assert.equal(r.json().error.code, code);
    assert.ok(r.json().error.message.length > 0);
  }
});

test('properties nested too deeply are refused with a 400, not a 500', async () => {
  let deep: object = { leaf: 1 };
  for (let i = 0; i < 150; i++) deep = { d: deep };
  const r = await putNode('/deep', { properties: deep });
  assert.equal(r.statusCode, 400);
  assert.equal(r.json().error.code, 'INVALID_PROPERTIES');
  assert.equal((await t.request({ method: 'GET', url: '/api/v1/content/deep' })).statusCode, 404);
});

test('a query under the root lists its descendants, not the root', async () => {
  const r = await t.request({ method: 'GET', url: '/api/v1/query?under=/&type=root' });
  assert.deepEqual(r.json().items, []);
});

test('PUT without "type" keeps the type of the node it replaces; a new node gets "node"', async () => {
  const created = await putNode('/keeps-type', { type: 'folder', properties: { a: 1 } });
  assert.equal(created.json().type, 'folder');
  const replaced = await putNode('/keeps-type', { properties: { b: 2 } });
  assert.equal(replaced.statusCode, 200);
  assert.equal(replaced.json().type, 'folder');
  assert.deepEqual(replaced.json().properties, { b: 2 });
  const read = await t.request({ method: 'GET', url: '/api/v1/content/keeps-type' });
  assert.equal(read.json().type, 'folder');
  const retyped = await putNode('/keeps-type', { type: 'page', properties: {} });
  assert.equal(retyped.json().type, 'page');
  const fresh = await putNode('/keeps-type-new', { properties: {} });
  assert.equal(fresh.json().type, 'node');
  const root = await putNode('', { properties: { title: 'Home' } });
  assert.equal(root.statusCode, 200, root.body);
  assert.equal(root.json().type, 'root');
});
