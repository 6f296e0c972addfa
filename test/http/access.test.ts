import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { json, openTestNode, type TestNode } from '../helpers/app.js';

let t: TestNode;
const basic = (name: string) => `Basic ${Buffer.from(`${name}:${name}-password-1`).toString('base64')}`;
const as = {
  admin: undefined as string | undefined,
  alice: basic('alice'),
  bob: basic('bob'),
  rita: basic('rita'),
};
type Who = keyof typeof as;

before(async () => {
  t = await openTestNode({ 'content.pageSizeMax': 50 });
  for (const [name, roles] of [['alice', ['editor']], ['bob', ['editor']], ['rita', ['reader']]] as const) {
    const res = await t.request({ method: 'PUT', url: `/api/v1/users/${name}`, ...json({ password: `${name}-password-1`, roles }) });
    assert.equal(res.statusCode, 201, res.body);
  }
  for (const path of ['/hr', '/hr/salaries', '/hr/salaries/2026', '/shared', '/shared/a', '/shared/secret', '/shared/secret/deep']) {
    const res = await t.request({ method: 'PUT', url: `/api/v1/content${path}`, ...json({ properties: { text: `confidential report ${path}`, n: 1 } }) });
    assert.equal(res.statusCode, 201, res.body);
  }
});
after(async () => {
  await t.close();
});

const request = (who: Who, method: 'GET' | 'PUT' | 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown) =>
  t.request({ method, url, ...(body === undefined ? {} : json(body)), ...(as[who] === undefined ? {} : { auth: as[who] }) });
const setAccess = async (path: string, entries: unknown[], who: Who = 'admin') => request(who, 'PUT', `/api/v1/access${path}`, { entries });

test('on one node a deny beats an allow; an allow lower down gives back what a deny above took', async () => {
  assert.equal((await setAccess('/shared/secret', [{ principal: 'role:editor', effect: 'deny', permissions: ['read'] }, { principal: 'user:alice', effect: 'allow', permissions: ['read'] }])).statusCode, 200);
  assert.equal((await request('alice', 'GET', '/api/v1/content/shared/secret')).statusCode, 404, 'alice is an editor: the deny wins');
  assert.equal((await setAccess('/shared/secret/deep', [{ principal: 'user:alice', effect: 'allow', permissions: ['read'] }])).statusCode, 200);
  assert.equal((await request('alice', 'GET', '/api/v1/content/shared/secret/deep')).statusCode, 200, 'nearer, the allow decides');
  assert.equal((await request('bob', 'GET', '/api/v1/content/shared/secret/deep')).statusCode, 404);
  assert.equal((await setAccess('/shared/secret', [])).statusCode, 200);
  assert.equal((await setAccess('/shared/secret/deep', [])).statusCode, 200);
});

test('entries are set and read by those who manage access; malformed ones are refused naming the field', async () => {
  assert.equal((await setAccess('/hr', [])).statusCode, 200);
  assert.equal((await setAccess('/hr', [], 'alice')).json().error.code, 'FORBIDDEN', 'an editor manages no access by default');
  const bad = await setAccess('/hr', [{ principal: 'group:x', effect: 'allow', permissions: ['read'] }]);
  assert.equal(bad.statusCode, 400);
  assert.equal(bad.json().error.code, 'INVALID_ACCESS');
  assert.equal(bad.json().error.field, 'entries/0/principal');
  assert.equal((await setAccess('/hr', [{ principal: 'everyone', effect: 'maybe', permissions: ['read'] }])).json().error.field, 'entries/0/effect');
  assert.equal((await setAccess('/hr', [{ principal: 'everyone', effect: 'deny', permissions: ['read', 'read'] }])).json().error.field, 'entries/0/permissions');
  assert.equal((await setAccess('/nowhere', [])).statusCode, 404);
  const set = await setAccess('/hr', [
    { principal: 'user:bob', effect: 'deny', permissions: ['write', 'read'] },
    { principal: 'user:alice', effect: 'allow', permissions: ['manage-access'] },
  ]);
  assert.equal(set.statusCode, 200, set.body);
  assert.deepEqual(set.json().entries[0].permissions, ['read', 'write'], 'stored in canonical order');
  const read = await request('alice', 'GET', '/api/v1/access/hr');
  assert.equal(read.statusCode, 200, read.body);
  assert.deepEqual(read.json().yours, { read: true, write: true, manageAccess: true });
  assert.equal(read.json().entries.length, 2);
  assert.equal((await request('bob', 'GET', '/api/v1/access/hr')).statusCode, 404, 'bob may not read /hr: it is not there for him');
  assert.equal((await request('rita', 'GET', '/api/v1/access/shared')).json().error.code, 'FORBIDDEN');
});

test('a node bob may not read answers as a missing one, everywhere content is read', async () => {
  const hidden = await request('bob', 'GET', '/api/v1/content/hr/salaries');
  const missing = await request('bob', 'GET', '/api/v1/content/hq/salaries');
  assert.equal(hidden.statusCode, 404);
  assert.deepEqual(hidden.json().error, { ...missing.json().error, message: missing.json().error.message.replace('/hq/', '/hr/'), path: '/hr/salaries' });
  assert.equal((await request('alice', 'GET', '/api/v1/content/hr/salaries')).statusCode, 200);
  assert.equal((await request('rita', 'GET', '/api/v1/content/hr/salaries')).statusCode, 200, 'the deny names bob alone');

  const id = (await request('admin', 'GET', '/api/v1/content/hr/salaries')).json().id as string;
  const byId = await request('bob', 'GET', `/api/v1/nodes/${id}`);
  assert.equal(byId.statusCode, 404);
  assert.equal(byId.json().error.message, `No node has the id ${id}.`);
  assert.equal((await request('bob', 'GET', `/api/v1/nodes/${id}?versions=true`)).statusCode, 404);
  assert.equal((await request('bob', 'GET', '/api/v1/content/hr?versions=true')).statusCode, 404);

  const rootChildren = (await request('bob', 'GET', '/api/v1/content?children=true')).json().children.items.map((c: { path: string }) => c.path);
  assert.deepEqual(rootChildren, ['/shared']);
  const queried = (await request('bob', 'GET', '/api/v1/query?under=/&limit=50')).json().items.map((c: { path: string }) => c.path);
  assert.ok(queried.length > 0 && queried.every((p: string) => !p.startsWith('/hr')), JSON.stringify(queried));
  const searched = (await request('bob', 'GET', '/api/v1/search?q=confidential&limit=50')).json();
  assert.ok(searched.items.every((h: { path: string }) => !h.path.startsWith('/hr')));
  assert.equal(searched.total, 4, '/shared and its three descendants');
  assert.equal((await request('alice', 'GET', '/api/v1/search?q=confidential&limit=50')).json().total, 7);
  assert.equal((await request('bob', 'GET', '/api/v1/binaries/hr/salaries?property=file')).statusCode, 404);
  const feed = (await request('bob', 'GET', '/api/v1/changes?since=0&limit=1000')).json();
  assert.ok(feed.events.length > 0 && feed.events.every((e: { path: string }) => !e.path.startsWith('/hr')), 'no event of /hr');
});

test('pages of children count only the children the reader may read, and end where they end', async () => {
  assert.equal((await request('admin', 'PUT', '/api/v1/content/list', { properties: {} })).statusCode, 201);
  for (let i = 0; i < 10; i++) assert.equal((await request('admin', 'PUT', `/api/v1/content/list/c${i}`, { properties: {} })).statusCode, 201);
  for (const i of [0, 3, 4, 8, 9]) assert.equal((await setAccess(`/list/c${i}`, [{ principal: 'user:bob', effect: 'deny', permissions: ['read'] }])).statusCode, 200);
  const seen: string[] = [];
  let cursor: string | null = null;
  do {
    const res = await request('bob', 'GET', `/api/v1/content/list?children=true&limit=2${cursor === null ? '' : `&cursor=${cursor}`}`);
    const page = res.json().children;
    seen.push(...page.items.map((c: { name: string }) => c.name));
    cursor = page.nextCursor;
  } while (cursor !== null);
  assert.deepEqual(seen, ['c1', 'c2', 'c5', 'c6', 'c7'], 'and no cursor after c7, though c8 and c9 follow');
});

test('writes need write on everything they touch; a refusal names nothing, and nothing changes', async () => {
  assert.equal((await request('bob', 'PUT', '/api/v1/content/hr/new', { properties: {} })).json().error.code, 'FORBIDDEN');
  assert.equal((await request('bob', 'PUT', '/api/v1/content/hr/absent/x', { properties: {} })).json().error.code, 'FORBIDDEN', 'a missing node where bob may not write: the same');
  // A node bob may not read answers a write as a missing one would: the same 404, before anything else.
  const hiddenPatch = await request('bob', 'PATCH', '/api/v1/content/hr/salaries', { n: 2 });
  const missingPatch = await request('bob', 'PATCH', '/api/v1/content/hq/salaries', { n: 2 });
  assert.equal(hiddenPatch.statusCode, 404);
  assert.equal(hiddenPatch.json().error.message, missingPatch.json().error.message.replace('/hq/', '/hr/'));
  assert.equal((await request('bob', 'PUT', '/api/v1/binaries/hr/salaries?property=f', undefined)).statusCode, 404, 'an upload too, whatever its preconditions');
  assert.equal((await request('alice', 'PATCH', '/api/v1/content/hr/salaries', { n: 2 })).statusCode, 200);

  assert.equal((await setAccess('/shared/secret', [{ principal: 'user:bob', effect: 'deny', permissions: ['write'] }])).statusCode, 200);
  const deleted = await request('bob', 'DELETE', '/api/v1/content/shared?recursive=true');
  assert.equal(deleted.statusCode, 403);
  assert.equal(deleted.json().error.message, 'You may not write there.');
  assert.equal((await request('admin', 'GET', '/api/v1/content/shared/secret/deep')).statusCode, 200, 'nothing was deleted');
  assert.equal((await request('bob', 'POST', '/api/v1/move', { from: '/shared', to: '/moved' })).statusCode, 403, 'a move touches the subtree');
  assert.equal((await request('bob', 'POST', '/api/v1/move', { from: '/shared/a', to: '/hr/a' })).statusCode, 403, 'and its new place');
  assert.equal((await request('bob', 'POST', '/api/v1/batch', { operations: [{ op: 'put', path: '/shared/ok', properties: {} }, { op: 'patch', path: '/shared/secret', patch: { n: 3 } }] })).statusCode, 403);
  assert.equal((await request('admin', 'GET', '/api/v1/content/shared/ok')).statusCode, 404, 'a batch is all or none');
  assert.equal((await request('bob', 'DELETE', '/api/v1/content/shared/a')).statusCode, 200, 'what bob may write, he deletes');

  // An entry never gives more than the roles: a reader allowed to write still cannot.
  assert.equal((await setAccess('/shared', [{ principal: 'user:rita', effect: 'allow', permissions: ['write'] }])).statusCode, 200);
  assert.equal((await request('rita', 'PUT', '/api/v1/content/shared/r', { properties: {} })).statusCode, 403);
});

test('manage-access given to an editor lets her set entries below; an admin is never locked out', async () => {
  const set = await setAccess('/hr/salaries', [{ principal: 'everyone', effect: 'deny', permissions: ['read'] }], 'alice');
  assert.equal(set.statusCode, 200, set.body);
  assert.equal((await request('alice', 'GET', '/api/v1/content/hr/salaries')).statusCode, 404, 'alice denied herself too');
  assert.equal((await request('admin', 'GET', '/api/v1/content/hr/salaries')).statusCode, 200);
  assert.equal((await setAccess('/', [{ principal: 'everyone', effect: 'deny', permissions: ['read', 'write', 'manage-access'] }])).statusCode, 200);
  assert.equal((await request('admin', 'GET', '/api/v1/content?children=true')).statusCode, 200);
  assert.equal((await request('bob', 'GET', '/api/v1/content')).statusCode, 404);
  assert.equal((await setAccess('/', [])).statusCode, 200);
  const digest = (await request('admin', 'GET', '/api/v1/cluster/digest')).json();
  assert.ok(digest.counts.schemaLines >= 4, 'the entries are in the digest');
});

test('neither a delete nor a move uncovers what an entry hid: history and the feed keep to the entries the node had', async () => {
  for (const path of ['/vault', '/vault/doc', '/crate', '/crate/doc']) assert.equal((await request('admin', 'PUT', `/api/v1/content${path}`, { properties: { text: 'sealed' } })).statusCode, 201);
  for (const path of ['/vault', '/crate']) assert.equal((await setAccess(path, [{ principal: 'user:bob', effect: 'deny', permissions: ['read'] }])).statusCode, 200);
  const docId = (await request('admin', 'GET', '/api/v1/content/vault/doc')).json().id as string;
  assert.equal((await request('admin', 'DELETE', '/api/v1/content/vault?recursive=true')).statusCode, 200);
  assert.equal((await request('admin', 'POST', '/api/v1/move', { from: '/crate', to: '/open' })).statusCode, 200);
  assert.equal((await request('bob', 'GET', '/api/v1/content/vault?versions=true')).statusCode, 404);
  assert.equal((await request('bob', 'GET', '/api/v1/content/vault/doc?versions=true')).statusCode, 404, 'below a deleted node that carried the entry');
  assert.equal((await request('bob', 'GET', `/api/v1/nodes/${docId}?version=1`)).statusCode, 404);
  assert.equal((await request('bob', 'GET', '/api/v1/content/open')).statusCode, 404, 'the moved node keeps its entries');
  const deleted = (await request('bob', 'GET', '/api/v1/content?deleted=true')).json().items.map((i: { path: string }) => i.path);
  assert.ok(!deleted.includes('/vault'), JSON.stringify(deleted));
  assert.equal((await request('bob', 'POST', '/api/v1/restore', { path: '/vault', version: 1 })).statusCode, 404);
  const events = (await request('bob', 'GET', '/api/v1/changes?since=0&limit=1000')).json().events as Array<{ path: string }>;
  assert.ok(events.every((e) => !/^\/(vault|crate|open)(\/|$)/.test(e.path)), JSON.stringify(events.map((e) => e.path).filter((p) => /vault|crate|open/.test(p))));
  assert.ok((await request('alice', 'GET', '/api/v1/content/vault?versions=true')).statusCode === 200, 'alice may read it');
  // Restored under its id, the node carries its entries again.
  assert.equal((await request('admin', 'POST', '/api/v1/restore', { path: '/vault', version: 1 })).statusCode, 201);
  assert.equal((await request('bob', 'GET', '/api/v1/content/vault')).statusCode, 404);
  assert.equal((await request('alice', 'GET', '/api/v1/content/vault')).statusCode, 200);
});
