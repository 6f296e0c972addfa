import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { join } from 'node:path';

import Database from 'better-sqlite3';

import { dataFormatVersion } from '../../src/storage/database.js';
import { json, openTestNode, type TestNode } from '../helpers/app.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

let t: TestNode;
before(async () => {
  t = await openTestNode({ 'jobs.checkIntervalMs': 100, 'schemas.migrationBatchNodesMax': 7, 'content.pageSizeMax': 50 });
  const editor = await t.request({ method: 'PUT', url: '/api/v1/users/ed', ...json({ password: 'editor-password-1', roles: ['editor'] }) });
  assert.equal(editor.statusCode, 201, editor.body);
});
after(async () => {
  await t.close();
});

const editorAuth = `Basic ${Buffer.from('ed:editor-password-1').toString('base64')}`;
const get = (url: string) => t.request({ method: 'GET', url });
const send = (method: 'PUT' | 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown, headers: Record<string, string> = {}) =>
  t.request({ method, url, ...(body === undefined ? {} : json(body)), headers: { ...(body === undefined ? {} : json({}).headers), ...headers } });
const putNode = (path: string, type: string, properties: object) => send('PUT', `/api/v1/content${path}`, { type, properties });

const article = {
  properties: {
    title: { type: 'string', required: true, maxLength: 40 },
    rating: { type: 'integer', minimum: 0, maximum: 5, default: 3 },
    slug: { type: 'string', pattern: '^[a-z-]+$' },
  },
  additionalProperties: false,
  childTypes: ['paragraph'],
};

test('PUT /api/v1/schemas/{type} writes version 1 (201), with an ETag; reads list it, by page, and by version', async () => {
  const created = await send('PUT', '/api/v1/schemas/article', article, { 'if-none-match': '*' });
  assert.equal(created.statusCode, 201, created.body);
  assert.equal(created.headers['etag'], '"article:1"');
  assert.equal(created.json().schema.state, 'active');
  assert.equal((await send('PUT', '/api/v1/schemas/article', article)).statusCode, 200, 'the same definition again: nothing new');
  for (const type of ['paragraph', 'image']) assert.equal((await send('PUT', `/api/v1/schemas/${type}`, {})).statusCode, 201);
  const one = await get('/api/v1/schemas/article');
  assert.equal(one.statusCode, 200);
  assert.equal(one.headers['etag'], '"article:1"');
  assert.deepEqual(one.json().definition.childTypes, ['paragraph']);
  const page = (await get('/api/v1/schemas?limit=2')).json();
  assert.deepEqual(page.items.map((s: { type: string }) => s.type), ['article', 'image']);
  assert.equal(page.schemasRequired, false);
  const rest = (await get(`/api/v1/schemas?limit=2&cursor=${page.nextCursor}`)).json();
  assert.deepEqual(rest.items.map((s: { type: string }) => s.type), ['paragraph']);
  assert.equal(rest.nextCursor, null);
  assert.equal((await get('/api/v1/schemas/none')).json().error.code, 'SCHEMA_NOT_FOUND');
  assert.equal((await send('PUT', '/api/v1/schemas/article', { ...article, additionalProperties: true }, { 'if-match': '"article:9"' })).statusCode, 412);
});

test('a bad definition, the root type and a non-admin are refused, and nothing is written', async () => {
  const bad = await send('PUT', '/api/v1/schemas/x', { properties: { a: { pattern: '(a+)+\\1' } } });
  assert.equal(bad.statusCode, 400);
  assert.equal(bad.json().error.code, 'INVALID_SCHEMA');
  assert.equal(bad.json().error.field, 'properties.a.pattern');
  assert.equal((await send('PUT', '/api/v1/schemas/root', {})).statusCode, 400);
  assert.equal((await send('PUT', '/api/v1/schemas/9bad', {})).statusCode, 400);
  const editor = await t.request({ method: 'PUT', url: '/api/v1/schemas/x', ...json({}), auth: editorAuth });
  assert.equal(editor.statusCode, 403);
  assert.equal((await t.request({ method: 'GET', url: '/api/v1/schemas/article', auth: editorAuth })).statusCode, 200, 'an editor reads schemas');
  assert.equal((await get('/api/v1/schemas/x')).statusCode, 404);
});

test('content writes are checked: 422 SCHEMA_VIOLATION naming every failing property, defaults stored, childTypes held', async () => {
  const refused = await putNode('/news', 'article', { title: 'x'.repeat(41), rating: 9, slug: 'Not A Slug', extra: true });
  assert.equal(refused.statusCode, 422, refused.body);
  const error = refused.json().error;
  assert.equal(error.code, 'SCHEMA_VIOLATION');
  assert.deepEqual(error.violations.map((v: { property: string; rule: string }) => `${v.property} ${v.rule}`), ['/rating maximum', '/slug pattern', '/title maxLength', '/extra additionalProperties']);
  assert.equal((await get('/api/v1/content/news')).statusCode, 404, 'nothing stored');
  const created = await putNode('/news', 'article', { title: 'News' });
  assert.equal(created.statusCode, 201);
  assert.deepEqual(created.json().properties, { title: 'News', rating: 3 });
  const patched = await send('PATCH', '/api/v1/content/news', { rating: 7 });
  assert.equal(patched.statusCode, 422);
  assert.equal((await putNode('/news/p', 'paragraph', {})).statusCode, 201);
  const image = await putNode('/news/i', 'image', {});
  assert.equal(image.statusCode, 422);
  assert.equal(image.json().error.violations[0].rule, 'childTypes');
  // In a batch: refused whole, naming the operation.
  const batch = await send('POST', '/api/v1/batch', { operations: [{ op: 'put', path: '/b1', type: 'article', properties: { title: 'ok' } }, { op: 'patch', path: '/news', patch: { title: null } }] });
  assert.equal(batch.statusCode, 422, batch.body);
  assert.equal(batch.json().error.operation, 1);
  assert.equal((await get('/api/v1/content/b1')).statusCode, 404);
});

test('schema-policy: with schemas required, a type without one is refused; the root stays free', async () => {
  assert.deepEqual((await get('/api/v1/schema-policy')).json(), { schemasRequired: false });
  assert.equal((await send('PUT', '/api/v1/schema-policy', { schemasRequired: true })).statusCode, 200);
  const refused = await putNode('/free', 'note', {});
  assert.equal(refused.statusCode, 422);
  assert.equal(refused.json().error.code, 'SCHEMA_REQUIRED');
  assert.equal((await send('PATCH', '/api/v1/content', { site: 'x' })).statusCode, 200, 'the root has no schema and needs none');
  assert.equal((await send('PUT', '/api/v1/schema-policy', { schemasRequired: 'yes' })).statusCode, 400);
  assert.equal((await send('PUT', '/api/v1/schema-policy', { schemasRequired: false })).statusCode, 200);
  assert.equal((await putNode('/free', 'note', {})).statusCode, 201);
});

test('a schema change over existing nodes answers 202 and migrates them on the master; progress, feed events and history show it', async () => {
  for (let i = 0; i < 30; i++) assert.equal((await putNode(`/post${String(i).padStart(2, '0')}`, 'post', { heading: `h${i}`, views: i })).statusCode, 201);
  const started = await send('PUT', '/api/v1/schemas/post', { properties: { title: { type: 'string', required: true, renamedFrom: 'heading' }, views: { type: 'integer' }, lang: { type: 'string', default: 'en' } } });
  assert.equal(started.statusCode, 202, started.body);
  assert.equal(started.json().schema.state, 'pending');
  assert.equal(started.json().migration.nodesTotal, 30);
  const done = await waitFor('the migration of post', async () => {
    const m = (await get('/api/v1/schemas/post/migration')).json();
    return m.state === 'done' ? m : undefined;
  });
  assert.equal(done.nodesDone, 30);
  assert.equal(done.nodesConverted, 30);
  assert.ok(done.batches >= 5, `batches of 7 nodes: ${done.batches}`);
  assert.equal((await get('/api/v1/schemas/post')).json().version, 1);
  assert.deepEqual((await get('/api/v1/content/post07')).json().properties, { title: 'h7', views: 7, lang: 'en' });
  const events = (await get('/api/v1/changes?op=migrated&limit=100')).json();
  assert.equal(events.events.length, 30);
  const versions = (await get('/api/v1/content/post07?versions=true')).json();
  assert.deepEqual(versions.items.map((v: { op: string }) => v.op), ['migrated', 'created']);
});

test('a migration that meets a node it cannot convert fails naming it; retry after the fix finishes it; abandon keeps the old version', async () => {
  await send('PUT', '/api/v1/schemas/tally', { properties: { n: { type: 'integer' } } });
  for (const [i, n] of [[1, 1], [2, 2], [3, 3]] as const) assert.equal((await putNode(`/tally${i}`, 'tally', { n })).statusCode, 201);
  const narrower = await send('PUT', '/api/v1/schemas/tally', { properties: { n: { type: 'integer', maximum: 2 } } });
  assert.equal(narrower.statusCode, 202);
  const failed = await waitFor('the migration to fail', async () => {
    const m = (await get('/api/v1/schemas/tally/migration')).json();
    return m.state === 'failed' ? m : undefined;
  });
  assert.equal(failed.failure.path, '/tally3');
  assert.equal(failed.failure.violations[0].rule, 'maximum');
  const listed = (await get('/api/v1/schemas/tally')).json();
  assert.equal(listed.version, 1);
  assert.equal(listed.pending.version, 2);
  assert.equal(listed.migration.state, 'failed');
  assert.equal((await send('PUT', '/api/v1/schemas/tally', {})).json().error.code, 'SCHEMA_MIGRATION_PENDING');
  // Writes of the type are checked against the pending version meanwhile.
  assert.equal((await send('PATCH', '/api/v1/content/tally3', { n: 5 })).statusCode, 422);
  assert.equal((await send('PATCH', '/api/v1/content/tally3', { n: 0 })).statusCode, 200);
  assert.equal((await send('POST', '/api/v1/schemas/tally/migration', { action: 'retry' })).statusCode, 200);
  await waitFor('the retried migration', async () => ((await get('/api/v1/schemas/tally/migration')).json().state === 'done' ? true : undefined));
  assert.equal((await get('/api/v1/schemas/tally')).json().version, 2);

  assert.equal((await send('PUT', '/api/v1/schemas/tally', { properties: { n: { type: 'string' } } })).statusCode, 202);
  await waitFor('the migration to fail', async () => ((await get('/api/v1/schemas/tally/migration')).json().state === 'failed' ? true : undefined));
  assert.equal((await send('POST', '/api/v1/schemas/tally/migration', { action: 'abandon' })).statusCode, 200);
  const after = (await get('/api/v1/schemas/tally')).json();
  assert.equal(after.version, 2);
  assert.equal(after.pending, null);
  assert.deepEqual((await get('/api/v1/schemas/tally?versions=true')).json().items.map((s: { version: number; state: string }) => `${s.version}:${s.state}`), ['3:abandoned', '2:active', '1:superseded']);
  assert.equal((await send('POST', '/api/v1/schemas/tally/migration', { action: 'abandon' })).json().error.code, 'SCHEMA_MIGRATION_NOT_FOUND');
  assert.equal((await send('POST', '/api/v1/schemas/tally/migration', { action: 'undo' })).statusCode, 400);
  assert.equal((await send('DELETE', '/api/v1/schemas/tally', undefined, { 'if-match': '"tally:2"' })).statusCode, 200);
  assert.equal((await get('/api/v1/schemas/tally')).statusCode, 404);
});

test('a data directory of format 4 (0.4) is upgraded in place: its nodes take a schema, migrated like any others', async () => {
  const tmp = tempDir();
  try {
    const first = await openTestNode({}, tmp.dir);
    for (let i = 0; i < 3; i++) assert.equal((await first.request({ method: 'PUT', url: `/api/v1/content/old${i}`, ...json({ type: 'memo', properties: { text: `m${i}` } }) })).statusCode, 201);
    await first.close();
    // As 0.4 left it: no schema tables, no index of nodes by type and id, no full-text index.
    const db = new Database(join(tmp.dir, 'conclave.db'));
    db.exec(`DROP TABLE schemas; DROP TABLE schema_migrations; DROP INDEX nodes_type_id; DROP TABLE search_index; DELETE FROM meta WHERE key IN ('schemas_required', 'search_index_built'); UPDATE meta SET value = 4 WHERE key = 'format_version'`);
    db.close();

    const upgraded = await openTestNode({ 'jobs.checkIntervalMs': 100 }, tmp.dir);
    try {
      const started = await upgraded.request({ method: 'PUT', url: '/api/v1/schemas/memo', ...json({ properties: { body: { type: 'string', required: true, renamedFrom: 'text' } } }) });
      assert.equal(started.statusCode, 202, started.body);
      await waitFor('the migration', async () => ((await upgraded.request({ method: 'GET', url: '/api/v1/schemas/memo/migration' })).json().state === 'done' ? true : undefined));
      assert.deepEqual((await upgraded.request({ method: 'GET', url: '/api/v1/content/old2' })).json().properties, { body: 'm2' });
      // The full-text index was built at the upgrade (the schema marks no property fulltext: names alone).
      const found = (await upgraded.request({ method: 'GET', url: '/api/v1/search?q=old2' })).json();
      assert.deepEqual(found.items.map((h: { path: string }) => h.path), ['/old2']);
      const check = new Database(join(tmp.dir, 'conclave.db'), { readonly: true });
      try {
        assert.equal(check.prepare(`SELECT value FROM meta WHERE key = 'format_version'`).pluck().get(), dataFormatVersion);
      } finally {
        check.close();
      }
    } finally {
      await upgraded.close();
    }
  } finally {
    tmp.cleanup();
  }
});
