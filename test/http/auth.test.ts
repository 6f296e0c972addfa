import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { adminPassword, json, openTestNode, type TestNode } from '../helpers/app.js';

let t: TestNode;
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

before(async () => {
  t = await openTestNode();
  await t.request({ method: 'PUT', url: '/api/v1/content/doc', ...json({ properties: { x: 1 } }) });
  for (const [name, roles] of [['rita', ['reader']], ['ed', ['editor']]] as const) {
    const r = await t.request({ method: 'PUT', url: `/api/v1/users/${name}`, ...json({ password: `${name}-password`, roles }) });
    assert.equal(r.statusCode, 201, r.body);
  }
});
after(async () => {
  await t.close();
});

test('no or wrong credentials: 401 with WWW-Authenticate; health needs none', async () => {
  const none = await t.request({ method: 'GET', url: '/api/v1/content/doc', auth: null });
  assert.equal(none.statusCode, 401);
  assert.equal(none.json().error.code, 'AUTH_REQUIRED');
  assert.match(String(none.headers['www-authenticate']), /Basic/);
  const wrong = await t.request({ method: 'GET', url: '/api/v1/content/doc', auth: basic('admin', 'nope') });
  assert.equal(wrong.json().error.code, 'AUTH_INVALID');
  const ghost = await t.request({ method: 'GET', url: '/api/v1/content/doc', auth: basic('ghost', 'nope') });
  assert.equal(ghost.json().error.code, 'AUTH_INVALID');
  const scheme = await t.request({ method: 'GET', url: '/api/v1/content/doc', auth: 'Digest x' });
  assert.equal(scheme.json().error.code, 'AUTH_INVALID');
  assert.equal((await t.request({ method: 'GET', url: '/health/live', auth: null })).statusCode, 200);
  assert.equal((await t.request({ method: 'GET', url: '/health/ready', auth: null })).statusCode, 200);
});

test('roles: reader reads, editor writes, admin manages users', async () => {
  const reader = basic('rita', 'rita-password');
  assert.equal((await t.request({ method: 'GET', url: '/api/v1/content/doc', auth: reader })).statusCode, 200);
  const denied = await t.request({ method: 'PUT', url: '/api/v1/content/doc2', ...json({}), auth: reader });
  assert.equal(denied.statusCode, 403);
  assert.equal(denied.json().error.code, 'FORBIDDEN');
  const editor = basic('ed', 'ed-password');
  assert.equal((await t.request({ method: 'PUT', url: '/api/v1/content/doc2', ...json({}), auth: editor })).statusCode, 201);
  assert.equal((await t.request({ method: 'GET', url: '/api/v1/users', auth: editor })).statusCode, 403);
  const list = await t.request({ method: 'GET', url: '/api/v1/users' });
  assert.deepEqual(list.json().items.map((u: { name: string }) => u.name), ['admin', 'ed', 'rita']);
  assert.ok(!list.body.includes('scrypt'), 'password hashes never leave the server');
});

test('bearer tokens from login; a password change revokes them', async () => {
  const bad = await t.request({ method: 'POST', url: '/api/v1/auth/login', ...json({ username: 'ed', password: 'wrong' }), auth: null });
  assert.equal(bad.statusCode, 401);
  const login = await t.request({ method: 'POST', url: '/api/v1/auth/login', ...json({ username: 'ed', password: 'ed-password' }), auth: null });
  assert.equal(login.statusCode, 200);
  const token = `Bearer ${login.json().token}`;
  const who = await t.request({ method: 'GET', url: '/api/v1/auth/whoami', auth: token });
  assert.deepEqual(who.json(), { name: 'ed', roles: ['editor'] });
  // A user may change its own password, nothing else.
  const own = await t.request({ method: 'PUT', url: '/api/v1/users/ed', ...json({ password: 'ed-password-2' }), auth: token });
  assert.equal(own.statusCode, 200, own.body);
  const revoked = await t.request({ method: 'GET', url: '/api/v1/auth/whoami', auth: token });
  assert.equal(revoked.json().error.code, 'AUTH_INVALID');
  assert.equal((await t.request({ method: 'GET', url: '/api/v1/auth/whoami', auth: basic('ed', 'ed-password') })).statusCode, 401);
  const promote = await t.request({ method: 'PUT', url: '/api/v1/users/ed', ...json({ roles: ['admin'] }), auth: basic('ed', 'ed-password-2') });
  assert.equal(promote.statusCode, 403);
  const tampered = await t.request({ method: 'GET', url: '/api/v1/auth/whoami', auth: `${token.slice(0, -2)}xx` });
  assert.equal(tampered.statusCode, 401);
});

test('the last admin cannot be removed', async () => {
  const r = await t.request({ method: 'DELETE', url: '/api/v1/users/admin' });
  assert.equal(r.statusCode, 409);
  assert.equal(r.json().error.code, 'LAST_ADMIN');
  assert.equal((await t.request({ method: 'GET', url: '/api/v1/auth/whoami', auth: basic('admin', adminPassword) })).statusCode, 200);
});

test('anonymous reading when configured, never anonymous writing', async () => {
  const open = await openTestNode({ 'auth.anonymousRead': true });
  try {
    await open.request({ method: 'PUT', url: '/api/v1/content/pub', ...json({}) });
    assert.equal((await open.request({ method: 'GET', url: '/api/v1/content/pub', auth: null })).statusCode, 200);
    assert.equal((await open.request({ method: 'GET', url: '/api/v1/query', auth: null })).statusCode, 200);
    const write = await open.request({ method: 'PUT', url: '/api/v1/content/pub2', ...json({}), auth: null });
    assert.equal(write.statusCode, 401);
    assert.equal((await open.request({ method: 'GET', url: '/api/v1/users', auth: null })).statusCode, 401);
  } finally {
    await open.close();
  }
});

test('a token dies with its user, even if a user of the same name is created again', async () => {
  await t.request({ method: 'PUT', url: '/api/v1/users/temp', ...json({ password: 'temp-password', roles: ['reader'] }) });
  const login = await t.request({ method: 'POST', url: '/api/v1/auth/login', ...json({ username: 'temp', password: 'temp-password' }), auth: null });
  const token = `Bearer ${login.json().token}`;
  assert.equal((await t.request({ method: 'GET', url: '/api/v1/auth/whoami', auth: token })).statusCode, 200);
  assert.equal((await t.request({ method: 'DELETE', url: '/api/v1/users/temp' })).statusCode, 200);
  assert.equal((await t.request({ method: 'GET', url: '/api/v1/auth/whoami', auth: token })).statusCode, 401);
  await t.request({ method: 'PUT', url: '/api/v1/users/temp', ...json({ password: 'temp-password', roles: ['reader'] }) });
  assert.equal((await t.request({ method: 'GET', url: '/api/v1/auth/whoami', auth: token })).statusCode, 401);
});

test('a cached Basic password does not open a user created again under the same name', async () => {
  await t.request({ method: 'PUT', url: '/api/v1/users/bob', ...json({ password: 'bob-old-password', roles: ['reader'] }) });
  const old = basic('bob', 'bob-old-password');
  assert.equal((await t.request({ method: 'GET', url: '/api/v1/auth/whoami', auth: old })).statusCode, 200);
  await t.request({ method: 'DELETE', url: '/api/v1/users/bob' });
  await t.request({ method: 'PUT', url: '/api/v1/users/bob', ...json({ password: 'bob-new-password', roles: ['admin'] }) });
  assert.equal((await t.request({ method: 'GET', url: '/api/v1/auth/whoami', auth: old })).statusCode, 401);
  assert.equal((await t.request({ method: 'GET', url: '/api/v1/auth/whoami', auth: basic('bob', 'bob-new-password') })).statusCode, 200);
});

test('a change of roles applies at once to cached credentials and tokens', async () => {
  await t.request({ method: 'PUT', url: '/api/v1/users/carol', ...json({ password: 'carol-password', roles: ['editor'] }) });
  const carol = basic('carol', 'carol-password');
  assert.equal((await t.request({ method: 'PUT', url: '/api/v1/content/carol1', ...json({}), auth: carol })).statusCode, 201);
  assert.deepEqual((await t.request({ method: 'GET', url: '/api/v1/auth/whoami', auth: carol })).json(), { name: 'carol', roles: ['editor'] });
  assert.equal((await t.request({ method: 'PUT', url: '/api/v1/users/carol', ...json({ roles: ['reader'] }) })).statusCode, 200);
  const refused = await t.request({ method: 'PUT', url: '/api/v1/content/carol2', ...json({}), auth: carol });
  assert.equal(refused.statusCode, 403);
  assert.equal(refused.json().error.code, 'FORBIDDEN');
  assert.deepEqual((await t.request({ method: 'GET', url: '/api/v1/auth/whoami', auth: carol })).json(), { name: 'carol', roles: ['reader'] });
  assert.equal((await t.request({ method: 'PUT', url: '/api/v1/users/carol', ...json({ roles: ['editor'] }) })).statusCode, 200);
  assert.equal((await t.request({ method: 'PUT', url: '/api/v1/content/carol2', ...json({}), auth: carol })).statusCode, 201);
});

test('anonymous reading never reaches users', async () => {
  const open = await openTestNode({ 'auth.anonymousRead': true });
  try {
    await open.request({ method: 'PUT', url: '/api/v1/users/anonymous', ...json({ password: 'anonymous-password', roles: ['editor'] }) });
    const digest = open.node.repository.content.digest();
    const takeover = await open.request({ method: 'PUT', url: '/api/v1/users/anonymous', ...json({ password: 'attacker-password' }), auth: null });
    assert.equal(takeover.statusCode, 401);
    assert.equal((await open.request({ method: 'GET', url: '/api/v1/users/anonymous', auth: null })).statusCode, 401);
    assert.equal((await open.request({ method: 'GET', url: '/api/v1/auth/whoami', auth: null })).statusCode, 401);
    assert.equal(open.node.repository.content.digest(), digest);
  } finally {
    await open.close();
  }
});

test('anonymous reading does not show the cluster status; any logged-in user sees it', async () => {
  const open = await openTestNode({ 'auth.anonymousRead': true });
  try {
    await open.request({ method: 'PUT', url: '/api/v1/users/watcher', ...json({ password: 'watcher-password', roles: ['reader'] }) });
    const anonymousStatus = await open.request({ method: 'GET', url: '/api/v1/cluster/status', auth: null });
    assert.equal(anonymousStatus.statusCode, 401, anonymousStatus.body);
    assert.equal(anonymousStatus.json().error.code, 'AUTH_REQUIRED');
    assert.ok(!anonymousStatus.body.includes(open.node.runtime.self().id), 'no node id leaks in the refusal');
    const readerStatus = await open.request({ method: 'GET', url: '/api/v1/cluster/status', auth: basic('watcher', 'watcher-password') });
    assert.equal(readerStatus.statusCode, 200, readerStatus.body);
    assert.ok(readerStatus.body.includes(open.node.runtime.self().id));
  } finally {
    await open.close();
  }
});
