import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import Database from 'better-sqlite3';

import { json, openTestNode, type TestNode } from '../helpers/app.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

let t: TestNode;
before(async () => {
  t = await openTestNode({ 'history.versionsPerNodeMax': 4, 'content.pageSizeMax': 50 });
});
after(async () => {
  await t.close();
});

const get = (url: string) => t.request({ method: 'GET', url });
const put = (path: string, properties: object, headers: Record<string, string> = {}) =>
  t.request({ method: 'PUT', url: `/api/v1/content${path}`, ...json({ properties }), headers: { ...json({}).headers, ...headers } });
const restore = (body: object, headers: Record<string, string> = {}) =>
  t.request({ method: 'POST', url: '/api/v1/restore', ...json(body), headers: { ...json({}).headers, ...headers } });

test('GET ?versions=true lists a node\'s versions newest first, in pages; ?version=N reads one', async () => {
  assert.equal((await put('/h', { title: 'v1' })).statusCode, 201);
  await put('/h', { title: 'v2' });
  await t.request({ method: 'PATCH', url: '/api/v1/content/h', ...json({ extra: true }) });
  const listed = await get('/api/v1/content/h?versions=true&limit=2');
  assert.equal(listed.statusCode, 200, listed.body);
  const page = listed.json();
  assert.equal(page.deleted, false);
  assert.deepEqual(page.items.map((v: { version: number; op: string; by: string }) => [v.version, v.op, v.by]), [[3, 'updated', 'admin'], [2, 'updated', 'admin']]);
  assert.ok(page.nextCursor);
  const rest = (await get(`/api/v1/content/h?versions=true&limit=2&cursor=${page.nextCursor}`)).json();
  assert.deepEqual(rest.items.map((v: { version: number; op: string }) => [v.version, v.op]), [[1, 'created']]);
  assert.equal(rest.nextCursor, null);

  const v1 = await get('/api/v1/content/h?version=1');
  assert.equal(v1.statusCode, 200);
  assert.deepEqual(v1.json().properties, { title: 'v1' });
  assert.equal(v1.json().op, 'created');
  assert.equal(v1.json().supersededAt !== null, true);
  // By id, the same.
  const byId = await get(`/api/v1/nodes/${page.id}?version=2`);
  assert.deepEqual(byId.json().properties, { title: 'v2' });

  assert.equal((await get('/api/v1/content/h?version=9')).json().error.code, 'VERSION_NOT_FOUND');
  for (const bad of ['version=0', 'version=x', 'version=1.5', 'versions=maybe', 'versions=true&children=true', 'versions=true&version=1', 'versions=true&cursor=junk']) {
    const answer = await get(`/api/v1/content/h?${bad}`);
    assert.equal(answer.statusCode, 400, `${bad}: ${answer.body}`);
  }
  // A cursor of another node's history is refused.
  assert.equal((await get(`/api/v1/content/?versions=true&cursor=${page.nextCursor}`)).json().error.code, 'INVALID_CURSOR');
});

test('POST /api/v1/restore makes a version current as a new one, honours If-Match, and a node keeps versionsPerNodeMax', async () => {
  const current = await get('/api/v1/content/h');
  const stale = await restore({ path: '/h', version: 1 }, { 'if-match': '"stale:1"' });
  assert.equal(stale.statusCode, 412);
  const restored = await restore({ path: '/h', version: 1 }, { 'if-match': current.headers['etag'] as string });
  assert.equal(restored.statusCode, 200, restored.body);
  assert.equal(restored.json().version, 4);
  assert.deepEqual(restored.json().properties, { title: 'v1' });
  const v4 = (await get('/api/v1/content/h?version=4')).json();
  assert.equal(v4.op, 'restored');
  assert.equal(v4.restoredFrom, 1);
  // A fifth version: the first goes (4 kept).
  await put('/h', { title: 'v5' });
  const versions = (await get('/api/v1/content/h?versions=true')).json().items.map((v: { version: number }) => v.version);
  assert.deepEqual(versions, [5, 4, 3, 2]);
  assert.equal((await restore({ path: '/h', version: 1 })).json().error.code, 'VERSION_NOT_FOUND');
  for (const bad of [{}, { path: '/h' }, { path: '/h', version: -1 }, { path: '/h', version: 1, extra: 1 }, { path: 'h', version: 1 }, { path: '/h', version: 2, to: '/elsewhere' }]) {
    const answer = await restore(bad);
    assert.equal(answer.statusCode, 400, `${JSON.stringify(bad)}: ${answer.body}`);
  }
  assert.equal((await restore({ path: '/nothing-here', version: 1 })).json().error.code, 'NODE_NOT_FOUND');
  
});

test('a deleted node is listed under its parent, keeps its history, and comes back under its id', async () => {
  assert.equal((await put('/folder', {})).statusCode, 201);
  const doc = (await put('/folder/doc', { body: 'text' })).json();
  await put('/folder/doc/part', { n: 1 });
  const deleted = await t.request({ method: 'DELETE', url: '/api/v1/content/folder/doc?recursive=true' });
  assert.equal(deleted.statusCode, 200);
  assert.equal((await get('/api/v1/content/folder/doc')).statusCode, 404);

  const children = (await get('/api/v1/content/folder?deleted=true')).json();
  assert.deepEqual(children.items.map((c: { id: string; path: string; name: string; deletedBy: string }) => [c.id, c.path, c.name, c.deletedBy]), [[doc.id, '/folder/doc', 'doc', 'admin']]);
  const history = (await get('/api/v1/content/folder/doc?versions=true')).json();
  assert.equal(history.deleted, true);
  assert.deepEqual(history.items.map((v: { version: number; op: string }) => [v.version, v.op]), [[2, 'deleted'], [1, 'created']]);

  // Someone else takes the path: the old node comes back elsewhere, by id.
  await put('/folder/doc', { other: true });
  const taken = await restore({ path: '/folder/doc', id: doc.id, version: 1 });
  assert.equal(taken.json().error.code, 'DESTINATION_EXISTS');
  const back = await restore({ path: '/folder/doc', id: doc.id, version: 1, to: '/folder/doc-restored' });
  assert.equal(back.statusCode, 201, back.body);
  assert.equal(back.headers['location'], '/api/v1/content/folder/doc-restored');
  assert.equal(back.json().id, doc.id);
  assert.deepEqual(back.json().properties, { body: 'text' });
  assert.deepEqual((await get('/api/v1/content/folder?deleted=true')).json().items, []);
  // Its child stays deleted, listed under it now that it lives again.
  const parts = (await get('/api/v1/content/folder/doc-restored?deleted=true')).json();
  assert.deepEqual(parts.items.map((c: { path: string }) => c.path), ['/folder/doc/part']);
});

test('history reads need read access and restores need write access', async () => {
  assert.equal((await t.request({ method: 'GET', url: '/api/v1/content/h?versions=true', auth: null })).statusCode, 401);
  assert.equal((await t.request({ method: 'POST', url: '/api/v1/restore', ...json({ path: '/h', version: 2 }), auth: null })).statusCode, 401);
});

test('versions superseded longer ago than history.retainSeconds are dropped by the master, through the journal', async () => {
  const short = await openTestNode({ 'history.retainSeconds': 1, 'history.pruneIntervalMs': 100 });
  try {
    const at = (url: string) => short.request({ method: 'GET', url });
    assert.equal((await short.request({ method: 'PUT', url: '/api/v1/content/r', ...json({ properties: { n: 1 } }) })).statusCode, 201);
    await short.request({ method: 'PUT', url: '/api/v1/content/r', ...json({ properties: { n: 2 } }) });
    const index = short.node.repository.appliedIndex;
    await waitFor('the superseded version to be dropped', async () => {
      const items = (await at('/api/v1/content/r?versions=true')).json().items as Array<{ version: number }>;
      return items.length === 1 ? items : undefined;
    });
    assert.deepEqual((await at('/api/v1/content/r?version=2')).json().properties, { n: 2 }, 'the current version stays');
    assert.equal((await at('/api/v1/content/r?version=1')).json().error.code, 'VERSION_NOT_FOUND');
    assert.ok(short.node.repository.appliedIndex > index, 'dropped by an entry of its own');
  } finally {
    await short.close();
  }
});

test('a data directory of format 3 (0.3) is upgraded in place, and the master starts history: the version a change replaces is kept', async () => {
  const tmp = tempDir();
  try {
    const first = await openTestNode({}, tmp.dir);
    assert.equal((await first.request({ method: 'PUT', url: '/api/v1/content/old', ...json({ properties: { n: 1 } }) })).statusCode, 201);
    await first.close();
    // As 0.3 left it: no versions table, no history.
    const db = new Database(join(tmp.dir, 'conclave.db'));
    db.exec(`DROP TABLE versions; ALTER TABLE nodes DROP COLUMN op; ALTER TABLE nodes DROP COLUMN idx; ALTER TABLE nodes DROP COLUMN restored_from; DELETE FROM meta WHERE key IN ('history_started_at', 'history_versions_per_node'); UPDATE meta SET value = 3 WHERE key = 'format_version'`);
    db.close();

    const upgraded = await openTestNode({ 'history.pruneIntervalMs': 100 }, tmp.dir);
    try {
      const before = (await upgraded.request({ method: 'GET', url: '/api/v1/content/old?versions=true' })).json();
      assert.deepEqual(before.items.map((v: { version: number; op: string | null }) => [v.version, v.op]), [[1, null]], 'the current version, from before history');
      await waitFor('history to start', () => (upgraded.node.repository.content.historyRetention() !== undefined ? true : undefined));
      await upgraded.request({ method: 'PATCH', url: '/api/v1/content/old', ...json({ n: 2 }) });
      const after = (await upgraded.request({ method: 'GET', url: '/api/v1/content/old?versions=true' })).json();
      assert.deepEqual(after.items.map((v: { version: number; op: string | null }) => [v.version, v.op]), [[2, 'updated'], [1, null]]);
      const restored = await upgraded.request({ method: 'POST', url: '/api/v1/restore', ...json({ path: '/old', version: 1 }) });
      assert.equal(restored.statusCode, 200, restored.body);
      assert.deepEqual(restored.json().properties, { n: 1 });
    } finally {
      await upgraded.close();
    }
  } finally {
    tmp.cleanup();
  }
});
