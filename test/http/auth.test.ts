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

test('the users listing comes in pages: limit and cursor, like content listings; a foreign or broken cursor is refused', async () => {
  const names: string[] = [];
  let url = '/api/v1/users?limit=2';
  for (let pages = 0; pages < 10; pages++) {
    const page = await t.request({ method: 'GET', url });
    assert.equal(page.statusCode, 200, page.body);
    const body = page.json() as { items: Array<{ name: string }>; nextCursor: string | null };
    assert.ok(body.items.length <= 2);
    names.push(...body.items.map((u) => u.name));
    if (body.nextCursor === null) break;
    url = `/api/v1/users?limit=2&cursor=${body.nextCursor}`;
  }
  assert.deepEqual(names, ['admin', 'ed', 'rita']);
  for (const bad of ['/api/v1/users?cursor=%%%', '/api/v1/users?limit=0', '/api/v1/users?limit=100000']) {
    const res = await t.request({ method: 'GET', url: bad });
    assert.equal(res.statusCode, 400, `${bad}: ${res.body}`);
  }
  const query = await t.request({ method: 'GET', url: '/api/v1/query?under=/&limit=1' });
  const foreign = (query.json() as { nextCursor: string | null }).nextCursor;
  if (foreign !== null) assert.equal((await t.request({ method: 'GET', url: `/api/v1/users?cursor=${foreign}` })).json().error.code, 'INVALID_CURSOR');
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
  const own = await t.request({ method: 'PUT', url: '/api/v1/users/ed', ...json({ password: 'ed-password-2', currentPassword: 'ed-password' }), auth: token });
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

test('a user changing its own password must send the current one: a token alone is not enough', async () => {
  const open = await openTestNode({ 'auth.loginFailuresFree': 2 });
  try {
    await open.request({ method: 'PUT', url: '/api/v1/users/mia', ...json({ password: 'mia-password', roles: ['editor'] }) });
    const login = await open.request({ method: 'POST', url: '/api/v1/auth/login', ...json({ username: 'mia', password: 'mia-password' }), auth: null });
    const token = `Bearer ${login.json().token}`;
    const digest = open.node.repository.content.digest();
    const tokenOnly = await open.request({ method: 'PUT', url: '/api/v1/users/mia', ...json({ password: 'stolen-password' }), auth: token });
    assert.equal(tokenOnly.statusCode, 400, tokenOnly.body);
    assert.equal(tokenOnly.json().error.code, 'INVALID_REQUEST');
    const wrong = await open.request({ method: 'PUT', url: '/api/v1/users/mia', ...json({ password: 'stolen-password', currentPassword: 'guess-1' }), auth: token });
    assert.equal(wrong.statusCode, 403, wrong.body);
    assert.equal(wrong.json().error.code, 'FORBIDDEN');
    assert.equal(open.node.repository.content.digest(), digest, 'nothing changed');
    // Wrong current passwords count as failed logins for (mia, this address): guessing is throttled.
    await open.request({ method: 'PUT', url: '/api/v1/users/mia', ...json({ password: 'stolen-password', currentPassword: 'guess-2' }), auth: token });
    const throttled = await open.request({ method: 'PUT', url: '/api/v1/users/mia', ...json({ password: 'stolen-password', currentPassword: 'guess-3' }), auth: token });
    assert.equal(throttled.statusCode, 429, throttled.body);
    assert.equal(throttled.json().error.code, 'RATE_LIMITED');
    assert.equal(open.node.repository.content.digest(), digest, 'nothing changed');
    assert.equal((await open.request({ method: 'GET', url: '/api/v1/auth/whoami', auth: basic('mia', 'mia-password'), remoteAddress: '10.0.0.2' })).statusCode, 200);
    // An admin changes another user's password without knowing it; its own, only with the current one.
    const reset = await open.request({ method: 'PUT', url: '/api/v1/users/mia', ...json({ password: 'mia-password-2' }) });
    assert.equal(reset.statusCode, 200, reset.body);
    const adminOwn = await open.request({ method: 'PUT', url: '/api/v1/users/admin', ...json({ password: 'admin-password-2' }) });
    assert.equal(adminOwn.statusCode, 400, adminOwn.body);
    const adminOwnRight = await open.request({ method: 'PUT', url: '/api/v1/users/admin', ...json({ password: 'admin-password-2', currentPassword: adminPassword }) });
    assert.equal(adminOwnRight.statusCode, 200, adminOwnRight.body);
  } finally {
    await open.close();
  }
});

test('own password changes are rate-limited per user', async () => {
  const open = await openTestNode({ 'auth.passwordChangesPerHourMax': 2 });
  try {
    for (const name of ['mia', 'ed']) {
      assert.equal((await open.request({ method: 'PUT', url: `/api/v1/users/${name}`, ...json({ password: `${name}-password-0`, roles: ['editor'] }) })).statusCode, 201);
    }
    // Attempts with a wrong current password (a stolen token's) do not use up the budget: they are failed logins.
    for (let i = 0; i < 3; i++) {
      const guess = await open.request({ method: 'PUT', url: '/api/v1/users/mia', ...json({ password: 'mia-password-x', currentPassword: `guess-${i}` }), auth: basic('mia', 'mia-password-0') });
      assert.equal(guess.statusCode, 403, guess.body);
    }
    // Two own password changes an hour, then RATE_LIMITED with Retry-After.
    for (let i = 1; i <= 2; i++) {
      const change = await open.request({ method: 'PUT', url: '/api/v1/users/mia', ...json({ password: `mia-password-${i}`, currentPassword: `mia-password-${i - 1}` }), auth: basic('mia', `mia-password-${i - 1}`) });
      assert.equal(change.statusCode, 200, change.body);
    }
    const third = await open.request({ method: 'PUT', url: '/api/v1/users/mia', ...json({ password: 'mia-password-3', currentPassword: 'mia-password-2' }), auth: basic('mia', 'mia-password-2') });
    assert.equal(third.statusCode, 429, third.body);
    assert.equal(third.json().error.code, 'RATE_LIMITED');
    assert.ok(Number(third.headers['retry-after']) > 60);
    // Another user's own change is not held by mia's.
    const edChange = await open.request({ method: 'PUT', url: '/api/v1/users/ed', ...json({ password: 'ed-password-1', currentPassword: 'ed-password-0' }), auth: basic('ed', 'ed-password-0') });
    assert.equal(edChange.statusCode, 200, edChange.body);
  } finally {
    await open.close();
  }
});

test('writes by one user are rate-limited; its reads and other users\' writes are not held', async () => {
  const open = await openTestNode({ 'auth.userWritesPerSecondMax': 5 });
  try {
    assert.equal((await open.request({ method: 'PUT', url: '/api/v1/users/ed', ...json({ password: 'ed-password-0', roles: ['editor'] }) })).statusCode, 201);
    // Writes: a burst of twice the rate, then refusals; the bucket refills at the rate meanwhile.
    const ed = basic('ed', 'ed-password-0');
    const started = performance.now();
    let accepted = 0;
    let refused = 0;
    for (let i = 0; i < 30; i++) {
      const res = await open.request({ method: 'PUT', url: `/api/v1/content/ed${i}`, ...json({}), auth: ed });
      if (res.statusCode === 201) accepted++;
      else {
        assert.equal(res.json().error.code, 'RATE_LIMITED', res.body);
        refused++;
      }
    }
    const seconds = (performance.now() - started) / 1000;
    assert.ok(refused > 0);
    assert.ok(accepted <= 10 + Math.ceil(5 * seconds), `${accepted} writes accepted in ${seconds} s`);
    // Reads by the same user and writes by others go on.
    assert.equal((await open.request({ method: 'GET', url: '/api/v1/content/ed0', auth: ed })).statusCode, 200);
    assert.equal((await open.request({ method: 'PUT', url: '/api/v1/content/other', ...json({}) })).statusCode, 201);
  } finally {
    await open.close();
  }
});
