import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { json, openTestNode, type TestNode } from '../helpers/app.js';

/**
 * Every write route refuses a query parameter it does not take, before it changes anything: a client that sent
 * `POST /api/v1/move?dryRun=true` had its node moved, `DELETE …?force=1` deleted.
 */
let t: TestNode;
before(async () => {
  t = await openTestNode();
  for (const path of ['/q', '/q/a', '/q/b', '/q/file']) {
    const created = await t.request({ method: 'PUT', url: `/api/v1/content${path}`, ...json({ properties: {} }) });
    assert.equal(created.statusCode, 201);
  }
  const upload = await t.request({
    method: 'PUT',
    url: '/api/v1/binaries/q/file?property=data',
    payload: 'bytes',
    headers: { 'content-type': 'application/octet-stream' },
  });
  assert.equal(upload.statusCode, 200);
  const user = await t.request({ method: 'PUT', url: '/api/v1/users/someone', ...json({ password: 'a-long-password', roles: ['reader'] }) });
  assert.equal(user.statusCode, 201);
});
after(async () => {
  await t.close();
});

const jsonWrite = (method: 'PUT' | 'PATCH' | 'POST', url: string, body: unknown) => ({ method, url, ...json(body) });

const writes: ReadonlyArray<{ name: string; request: Parameters<TestNode['request']>[0] }> = [
  { name: 'PUT content', request: jsonWrite('PUT', '/api/v1/content/q/a?overwrite=false', { properties: { changed: true } }) },
  { name: 'PUT the root', request: jsonWrite('PUT', '/api/v1/content?x=1', { properties: { changed: true } }) },
  {
    name: 'PATCH content',
    request: { method: 'PATCH', url: '/api/v1/content/q/a?dryRun=true', payload: '{"changed":true}', headers: { 'content-type': 'application/merge-patch+json' } },
  },
  { name: 'DELETE content', request: { method: 'DELETE', url: '/api/v1/content/q/b?force=1' } },
  { name: 'DELETE content, recursive and more', request: { method: 'DELETE', url: '/api/v1/content/q?recursive=true&force=1' } },
  { name: 'POST move', request: jsonWrite('POST', '/api/v1/move?dryRun=true', { from: '/q/a', to: '/q/moved' }) },
  { name: 'POST reorder', request: jsonWrite('POST', '/api/v1/reorder?dryRun=true', { path: '/q', order: ['file', 'b', 'a'] }) },
  {
    name: 'PUT binary',
    request: { method: 'PUT', url: '/api/v1/binaries/q/file?property=data&replace=no', payload: 'other', headers: { 'content-type': 'application/octet-stream' } },
  },
  { name: 'DELETE binary', request: { method: 'DELETE', url: '/api/v1/binaries/q/file?property=data&force=1' } },
  { name: 'PUT user', request: jsonWrite('PUT', '/api/v1/users/someone?notify=false', { roles: ['admin'] }) },
  { name: 'DELETE user', request: { method: 'DELETE', url: '/api/v1/users/someone?force=1' } },
  { name: 'POST voting exclusions', request: jsonWrite('POST', '/api/v1/cluster/voting-exclusions?wait=false', { nodes: ['nobody'] }) },
  { name: 'DELETE voting exclusions', request: { method: 'DELETE', url: '/api/v1/cluster/voting-exclusions?wait=false' } },
  { name: 'POST login', request: jsonWrite('POST', '/api/v1/auth/login?remember=1', { username: 'admin', password: 'test-admin-password' }) },
];

for (const { name, request } of writes) {
  test(`${name} refuses an unknown query parameter and changes nothing`, async () => {
    const indexBefore = t.node.repository.appliedIndex;
    const digestBefore = await t.request({ method: 'GET', url: '/api/v1/cluster/digest' });
    const answer = await t.request(request);
    assert.equal(answer.statusCode, 400, answer.body);
    const error = answer.json().error;
    assert.equal(error.code, 'INVALID_REQUEST');
    assert.match(error.message, /Unknown query parameter "[a-zA-Z]+"/);
    assert.equal(t.node.repository.appliedIndex, indexBefore, 'nothing was proposed');
    const digestAfter = await t.request({ method: 'GET', url: '/api/v1/cluster/digest' });
    assert.equal(digestAfter.json().digest, digestBefore.json().digest);
  });
}

test('the parameters a route takes still work, and reads still take consistency', async () => {
  const listing = await t.request({ method: 'GET', url: '/api/v1/content/q?children=true&limit=2&consistency=stale' });
  assert.equal(listing.statusCode, 200, listing.body);
  const binary = await t.request({ method: 'GET', url: '/api/v1/binaries/q/file?property=data&consistency=sequential' });
  assert.equal(binary.statusCode, 200, binary.body);
  const unknownRead = await t.request({ method: 'GET', url: '/api/v1/nodes/whatever?expand=1' });
  assert.equal(unknownRead.json().error.code, 'INVALID_REQUEST');
  const health = await t.request({ method: 'GET', url: '/health/ready?verbose=1' });
  assert.equal(health.json().error.code, 'INVALID_REQUEST');
  const noRoute = await t.request({ method: 'GET', url: '/api/v1/nowhere?x=1' });
  assert.equal(noRoute.json().error.code, 'ROUTE_NOT_FOUND');
  const deleted = await t.request({ method: 'DELETE', url: '/api/v1/content/q?recursive=true' });
  assert.equal(deleted.statusCode, 200, deleted.body);
  assert.equal(deleted.json().deletedCount, 4);
});
