import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { json, openTestNode, type TestNode } from '../helpers/app.js';
import { waitFor } from '../helpers/tmp.js';

let t: TestNode;
before(async () => {
  t = await openTestNode({ 'jobs.checkIntervalMs': 100, 'schemas.migrationBatchNodesMax': 2, 'search.candidatesMax': 100, 'search.totalMax': 30, 'search.pageSizeMax': 50 });
});
after(async () => {
  await t.close();
});

interface Hit {
  id: string;
  path: string;
  name: string;
  type: string;
  score: number;
  snippet: Array<{ text: string; match: boolean }>;
}
interface SearchPage {
  items: Hit[];
  total: number;
  totalIsLowerBound: boolean;
  nextCursor: string | null;
}

const get = (url: string) => t.request({ method: 'GET', url });
const send = (method: 'PUT' | 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown) =>
  t.request({ method, url, ...(body === undefined ? {} : json(body)) });
async function put(path: string, properties: object, type?: string): Promise<void> {
  const res = await send('PUT', `/api/v1/content${path}`, type === undefined ? { properties } : { type, properties });
  assert.ok(res.statusCode === 201 || res.statusCode === 200, res.body);
}
async function search(params: string): Promise<SearchPage> {
  const res = await get(`/api/v1/search?${params}`);
  assert.equal(res.statusCode, 200, res.body);
  return res.json() as SearchPage;
}
const paths = (page: SearchPage) => page.items.map((h) => h.path).sort();
async function refused(params: string, code: string): Promise<string> {
  const res = await get(`/api/v1/search?${params}`);
  assert.equal(res.json().error?.code, code, `${params}: ${res.body}`);
  return res.json().error.message as string;
}
async function indexIsExact(): Promise<void> {
  const digest = (await get('/api/v1/cluster/digest')).json();
  assert.equal(digest.searchIndex.mismatchCount, 0, JSON.stringify(digest.searchIndex));
  assert.equal(digest.searchIndex.integrity, 'ok');
  assert.equal(digest.searchIndex.indexed, digest.searchIndex.nodes);
}

test('words, diacritics, prefixes, phrases, OR and NOT find what the content holds, with snippets marking the matches', async () => {
  await put('/kitchen', {});
  await put('/kitchen/dessert', { title: 'Crème brûlée', body: 'A custard under a layer of hard caramel, served cold.' });
  await put('/kitchen/tart', { title: 'Apple tart', body: 'Thin apple slices on puff pastry, with caramel.' });
  await put('/kitchen/pie', { title: 'Cherry pie', body: 'Cherries under a lattice of pastry.', tags: ['baking', 'summer'] });
  assert.deepEqual(paths(await search('q=creme')), ['/kitchen/dessert'], 'diacritics and case folded');
  assert.deepEqual(paths(await search('q=CARAMEL')), ['/kitchen/dessert', '/kitchen/tart']);
  assert.deepEqual(paths(await search('q=past*')), ['/kitchen/pie', '/kitchen/tart']);
  assert.deepEqual(paths(await search(`q=${encodeURIComponent('"puff pastry"')}`)), ['/kitchen/tart']);
  assert.deepEqual(paths(await search(`q=${encodeURIComponent('"pastry puff"')}`)), []);
  assert.deepEqual(paths(await search(`q=${encodeURIComponent('cherry OR custard')}`)), ['/kitchen/dessert', '/kitchen/pie']);
  assert.deepEqual(paths(await search(`q=${encodeURIComponent('caramel -apple')}`)), ['/kitchen/dessert']);
  assert.deepEqual(paths(await search(`q=${encodeURIComponent('caramel NOT (apple OR custard)')}`)), []);
  assert.deepEqual(paths(await search('q=summer')), ['/kitchen/pie'], 'strings inside arrays of an untyped node');
  assert.deepEqual(paths(await search('q=dessert')), ['/kitchen/dessert'], 'the node name');
  const hit = (await search('q=custard')).items[0]!;
  assert.equal(hit.type, 'node');
  assert.ok(hit.score > 0);
  assert.deepEqual(hit.snippet.filter((r) => r.match).map((r) => r.text), ['custard']);
  assert.ok(hit.snippet.map((r) => r.text).join('').includes('A custard under a layer'));
  await indexIsExact();
});

test('a match in the name ranks above one in the body; filters of /api/v1/query narrow the results', async () => {
  await put('/garden', {});
  await put('/garden/rhubarb', { title: 'Spring', body: 'Stalks for the crumble.', season: 'spring', weight: 3 });
  await put('/garden/crumble', { title: 'Crumble', body: 'Any fruit under a crumble topping.', season: 'autumn', weight: 1 });
  await put('/garden/notes', { body: 'crumble' }, 'note');
  const ranked = await search('q=crumble');
  assert.equal(ranked.items[0]!.path, '/garden/crumble', JSON.stringify(ranked.items.map((h) => [h.path, h.score])));
  assert.deepEqual(paths(await search('q=crumble&prop.season=spring')), ['/garden/rhubarb']);
  assert.deepEqual(paths(await search('q=crumble&prop.weight[gte]=2')), ['/garden/rhubarb']);
  assert.deepEqual(paths(await search('q=crumble&type=note')), ['/garden/notes']);
  assert.deepEqual(paths(await search('q=crumble&under=/kitchen')), []);
  assert.equal((await search('q=crumble&under=/garden')).total, 3);
});

test('pages follow each other without a gap or a repeat; the total is a lower bound past search.totalMax', async () => {
  await put('/many', {});
  for (let i = 0; i < 45; i++) await put(`/many/doc-${i}`, { body: `walnut ${'filler '.repeat(i % 7)} number ${i}` });
  const seen: string[] = [];
  let cursor: string | null = null;
  let first: SearchPage | undefined;
  do {
    const page: SearchPage = await search(`q=walnut&limit=7${cursor === null ? '' : `&cursor=${cursor}`}`);
    first ??= page;
    assert.ok(page.items.length <= 7);
    for (let i = 1; i < page.items.length; i++) assert.ok(page.items[i - 1]!.score >= page.items[i]!.score, 'best first');
    seen.push(...page.items.map((h) => h.path));
    cursor = page.nextCursor;
  } while (cursor !== null);
  assert.equal(seen.length, 45);
  assert.equal(new Set(seen).size, 45);
  assert.equal(first!.total, 30);
  assert.equal(first!.totalIsLowerBound, true);
  const small = await search('q=walnut&under=/many&prop.body=nothing');
  assert.deepEqual([small.total, small.totalIsLowerBound], [0, false]);
  await refused(`q=walnut&cursor=${first!.nextCursor}&type=other`, 'INVALID_CURSOR');
  await refused('q=walnut&cursor=garbage', 'INVALID_CURSOR');
});

test('a query matching more than search.candidatesMax documents is refused as too broad', async () => {
  await put('/broad', {});
  for (let i = 0; i < 101; i++) await put(`/broad/d${i}`, { body: `ubiquitous ${i}` });
  const message = await refused('q=ubiquitous', 'SEARCH_TOO_BROAD');
  assert.match(message, /more than 100/);
  assert.equal((await search(`q=${encodeURIComponent('ubiquitous 17')}`)).items.length, 1, 'a narrower query runs');
});

test('malformed queries are 400s naming the problem, never errors of the engine', async () => {
  for (const q of ['', '   ', '"unclosed', '(open', 'close)', 'a OR', 'OR a', 'AND', '-alone', 'NOT alone', 'a OR -b', 'x*', 'a*b', '()', '""', '"&&"', '((((((((((deep))))))))))', 'NOT NOT a b', 'a'.repeat(600)]) {
    await refused(`q=${encodeURIComponent(q)}`, 'INVALID_SEARCH_QUERY');
  }
  await refused('', 'INVALID_SEARCH_QUERY');
  await refused('q=a&q=b', 'INVALID_REQUEST');
  await refused('q=a&sort=name', 'INVALID_REQUEST');
  await refused('q=a&bogus=1', 'INVALID_REQUEST');
  await refused(`q=${Array.from({ length: 17 }, (_, i) => `w${i}`).join('+')}`, 'INVALID_SEARCH_QUERY');
  const message = await refused(`q=${encodeURIComponent('tart "open')}`, 'INVALID_SEARCH_QUERY');
  assert.match(message, /character 6/);
  // Words without a letter or digit are dropped, the rest is searched.
  assert.deepEqual(paths(await search(`q=${encodeURIComponent('cherry & ++')}`)), ['/kitchen/pie']);
});

test('changes, moves and deletes reach the index in the same entry; a schema decides which properties are indexed', async () => {
  await put('/edit', {});
  await put('/edit/doc', { body: 'original gooseberry' });
  await put('/edit/doc', { body: 'replaced elderberry' });
  assert.deepEqual(paths(await search('q=gooseberry')), []);
  assert.deepEqual(paths(await search('q=elderberry')), ['/edit/doc']);
  assert.equal((await send('PATCH', '/api/v1/content/edit/doc', { body: 'patched loganberry' })).statusCode, 200);
  assert.deepEqual(paths(await search('q=loganberry')), ['/edit/doc']);
  const moved = await send('POST', '/api/v1/move', { from: '/edit/doc', to: '/edit/mulberry' });
  assert.ok(moved.statusCode < 300, moved.body);
  assert.deepEqual(paths(await search('q=mulberry')), ['/edit/mulberry'], 'the new name is indexed');
  assert.deepEqual(paths(await search('q=loganberry')), ['/edit/mulberry']);
  await put('/edit/sub', {});
  await put('/edit/sub/leaf', { body: 'boysenberry' });
  assert.equal((await send('DELETE', '/api/v1/content/edit/sub?recursive=true')).statusCode, 200);
  assert.deepEqual(paths(await search('q=boysenberry')), []);

  await put('/typed', {});
  await put('/typed/r1', { title: 'quince jelly', code: 'huckleberry' }, 'recipe');
  assert.deepEqual(paths(await search('q=huckleberry')), ['/typed/r1'], 'no schema: every string');
  const schema = await send('PUT', '/api/v1/schemas/recipe', { properties: { title: { type: 'string', fulltext: true }, code: { type: 'string' } } });
  assert.ok(schema.statusCode < 300, schema.body);
  // A node follows the new schema once the migration has passed it (batch by batch, on every node alike).
  await waitFor('the migration to recipe version 1 done', async () => ((await get('/api/v1/schemas/recipe/migration')).json().state === 'done' ? true : undefined));
  assert.deepEqual(paths(await search('q=huckleberry')), [], 'the schema indexes its fulltext properties only');
  assert.deepEqual(paths(await search('q=quince')), ['/typed/r1']);
  await indexIsExact();
  const deleted = await send('DELETE', '/api/v1/schemas/recipe');
  assert.ok(deleted.statusCode < 300, deleted.body);
  assert.deepEqual(paths(await search('q=huckleberry')), ['/typed/r1'], 'the schema gone: every string again');
  await indexIsExact();
});

test('the search policy: untyped nodes\' strings leave the index and come back; names and fulltext properties stay', async () => {
  assert.deepEqual((await get('/api/v1/search-policy')).json(), { indexUntypedNodes: true });
  await put('/policy', {});
  await put('/policy/loose', { body: 'tamarillo' });
  await put('/typed2', {});
  assert.ok((await send('PUT', '/api/v1/schemas/card', { properties: { title: { type: 'string', fulltext: true } } })).statusCode < 300);
  await put('/typed2/c1', { title: 'kumquat' }, 'card');
  const off = await send('PUT', '/api/v1/search-policy', { indexUntypedNodes: false });
  assert.equal(off.statusCode, 200, off.body);
  assert.ok(off.json().reindexed > 10, 'every untyped node indexed again');
  assert.deepEqual(paths(await search('q=tamarillo')), []);
  assert.deepEqual(paths(await search('q=loose')), ['/policy/loose'], 'a name is always indexed');
  assert.deepEqual(paths(await search('q=kumquat')), ['/typed2/c1'], 'a schema\'s fulltext properties are indexed whatever the policy');
  await put('/policy/later', { body: 'tamarillo' });
  assert.deepEqual(paths(await search('q=tamarillo')), [], 'and so are later writes');
  await indexIsExact();
  const editor = await t.request({ method: 'PUT', url: '/api/v1/users/ed2', ...json({ password: 'editor-password-2', roles: ['editor'] }) });
  assert.equal(editor.statusCode, 201);
  const refused = await t.request({ method: 'PUT', url: '/api/v1/search-policy', ...json({ indexUntypedNodes: true }), auth: `Basic ${Buffer.from('ed2:editor-password-2').toString('base64')}` });
  assert.equal(refused.statusCode, 403);
  assert.equal((await send('PUT', '/api/v1/search-policy', { indexUntypedNodes: 'yes' })).statusCode, 400);
  assert.equal((await send('PUT', '/api/v1/search-policy', { indexUntypedNodes: true })).statusCode, 200);
  assert.deepEqual(paths(await search('q=tamarillo')), ['/policy/later', '/policy/loose']);
  await indexIsExact();
});

test('a schema change re-indexes a type batch by batch with its migration: exact mid-way, after a failure, an abandon and the end', async () => {
  assert.ok((await send('PUT', '/api/v1/schemas/leaf', { properties: { label: { type: 'string', fulltext: true }, n: { type: 'integer' } } })).statusCode < 300);
  await put('/leaves', {});
  for (let i = 0; i < 6; i++) await put(`/leaves/l${i}`, { label: 'mango', n: i === 3 ? 99 : i }, 'leaf');
  assert.equal((await search('q=mango')).total, 6);
  const started = await send('PUT', '/api/v1/schemas/leaf', { properties: { label: { type: 'string' }, n: { type: 'integer', maximum: 50 } } });
  assert.equal(started.statusCode, 202, started.body);
  const failed = await waitFor('the migration to fail at l3', async () => {
    const m = (await get('/api/v1/schemas/leaf/migration')).json();
    return m.state === 'failed' ? m : undefined;
  });
  // The nodes the migration passed follow the new version (label no longer indexed); the others the old one.
  assert.equal((await search('q=mango')).total, 6 - failed.nodesDone, JSON.stringify(failed));
  await indexIsExact();
  assert.equal((await send('POST', '/api/v1/schemas/leaf/migration', { action: 'abandon' })).statusCode, 200);
  assert.equal((await search('q=mango')).total, 6, 'abandoned: every node follows the old version again');
  await indexIsExact();
  assert.equal((await send('PATCH', '/api/v1/content/leaves/l3', { n: 3 })).statusCode, 200);
  assert.equal((await send('PUT', '/api/v1/schemas/leaf', { properties: { label: { type: 'string' }, n: { type: 'integer', maximum: 50 } } })).statusCode, 202);
  await waitFor('the migration done', async () => ((await get('/api/v1/schemas/leaf/migration')).json().state === 'done' ? true : undefined));
  assert.equal((await search('q=mango')).total, 0);
  await indexIsExact();
});
