import assert from 'node:assert/strict';
import { test } from 'node:test';

import { adminPassword, json, openTestNode } from '../helpers/app.js';
import { rawRequest, type ResponseLike } from '../helpers/rawHttp.js';

/**
 * Basic credentials under load and under attack, over real sockets (every request on a fresh connection, as a
 * client without keep-alive sends them). Loopback has a whole /8, so each "source" is its own local address.
 */
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const codeOf = (res: ResponseLike) => (JSON.parse(res.body) as { error?: { code: string } }).error?.code;

test('64 parallel requests with the same new credentials on fresh connections all succeed (one shared check)', async () => {
  // The default bound of 8 checks at once: before checks were shared, 56 of the 64 got 503 OVERLOADED.
  const t = await openTestNode();
  try {
    const created = await t.request({ method: 'PUT', url: '/api/v1/users/rita', ...json({ password: 'rita-password', roles: ['reader'] }) });
    assert.equal(created.statusCode, 201, created.body);
    const base = await t.node.listen();
    const authorization = basic('rita', 'rita-password');
    const answers = await Promise.all(
      Array.from({ length: 64 }, () => rawRequest(base, { method: 'GET', path: '/api/v1/auth/whoami', headers: { authorization } })),
    );
    assert.deepEqual(
      answers.map((r) => r.statusCode),
      answers.map(() => 200),
      answers.find((r) => r.statusCode !== 200)?.body,
    );
    // A wrong password shared the same way is refused to every request that carried it.
    const wrong = basic('rita', 'not-her-password');
    const refused = await Promise.all(
      Array.from({ length: 2 }, () => rawRequest(base, { method: 'GET', path: '/api/v1/auth/whoami', headers: { authorization: wrong } })),
    );
    assert.deepEqual(refused.map(codeOf), ['AUTH_INVALID', 'AUTH_INVALID']);
  } finally {
    await t.close();
  }
});

test('a flood of wrong passwords for admin from one address does not stop admin from another', async () => {
  // A first wait longer than the test: on a loaded machine the flood may take over a second to arrive, and a wait
  // that ran out meanwhile would let one more guess be checked (and the right password through at the end).
  const t = await openTestNode({ 'auth.loginDelayMsMin': 60_000 });
  try {
    const base = await t.node.listen();
    const attacker = '127.0.0.66';
    const flood = (password: string) =>
      rawRequest(base, { method: 'GET', path: '/api/v1/auth/whoami', headers: { authorization: basic('admin', password) }, localAddress: attacker });
    // The flood starts first and keeps coming while admin logs in elsewhere, with credentials never used before.
    const first = Array.from({ length: 64 }, (_, i) => flood(`guess-${i}`));
    const admin = rawRequest(base, { method: 'GET', path: '/api/v1/auth/whoami', headers: { authorization: basic('admin', adminPassword) }, localAddress: '127.0.0.7' });
    const second = Array.from({ length: 64 }, (_, i) => flood(`guess-${64 + i}`));
    const adminAnswer = await admin;
    assert.equal(adminAnswer.statusCode, 200, adminAnswer.body);
    const floodAnswers = await Promise.all([...first, ...second]);
    for (const res of floodAnswers) assert.ok(['AUTH_INVALID', 'RATE_LIMITED'].includes(codeOf(res)!), res.body);
    // Few guesses were checked at all: the rest were refused without a password hash.
    const checked = floodAnswers.filter((r) => codeOf(r) === 'AUTH_INVALID').length;
    assert.ok(checked <= t.config.auth.loginFailuresFree + t.config.auth.passwordChecksPerSourceMax, `${checked} guesses were checked`);

    // However the flood's timing fell (guesses beyond passwordChecksPerSourceMax at once are refused unchecked and
    // count for nothing: on a loaded machine the whole flood can arrive while the first two checks run), guesses one
    // at a time use up the free failures: within loginFailuresFree + 1 of them, the address waits.
    let waiting = false;
    for (let i = 0; i <= t.config.auth.loginFailuresFree && !waiting; i++) {
      const guess = await flood(`one-at-a-time-${i}`);
      assert.ok(['AUTH_INVALID', 'RATE_LIMITED'].includes(codeOf(guess)!), guess.body);
      waiting = codeOf(guess) === 'RATE_LIMITED';
    }
    assert.ok(waiting, 'the attacker\'s address waits once its free failures are used');
    // The attacker's address now waits, even with the right password (else the wait would be no limit on guessing)...
    const throttled = await rawRequest(base, { method: 'POST', path: '/api/v1/auth/login', ...jsonRaw({ username: 'admin', password: adminPassword }), localAddress: attacker });
    assert.equal(throttled.statusCode, 429, throttled.body);
    assert.equal(codeOf(throttled), 'RATE_LIMITED');
    assert.ok(Number(throttled.headers['retry-after']) >= 1);
    // ...and with Basic credentials the node has already verified (admin's, above): the cache must not answer for a
    // waiting address, or it would tell a guesser which of its refused guesses was right.
    const cachedFromAttacker = await rawRequest(base, { method: 'GET', path: '/api/v1/auth/whoami', headers: { authorization: basic('admin', adminPassword) }, localAddress: attacker });
    assert.equal(cachedFromAttacker.statusCode, 429, cachedFromAttacker.body);
    // ...while admin logs in from anywhere else, by password as well as with cached credentials.
    const login = await rawRequest(base, { method: 'POST', path: '/api/v1/auth/login', ...jsonRaw({ username: 'admin', password: adminPassword }), localAddress: '127.0.0.8' });
    assert.equal(login.statusCode, 200, login.body);
    // Another user from the attacker's address is not held by admin's failures.
    await t.request({ method: 'PUT', url: '/api/v1/users/ed', ...json({ password: 'ed-password', roles: ['editor'] }) });
    const ed = await rawRequest(base, { method: 'GET', path: '/api/v1/auth/whoami', headers: { authorization: basic('ed', 'ed-password') }, localAddress: attacker });
    assert.equal(ed.statusCode, 200, ed.body);
  } finally {
    await t.close();
  }
});

test('a flood of wrong passwords with random user names from several addresses does not stop admin logging in from a clean one', async () => {
  const t = await openTestNode();
  let flooding = true;
  let loops: Promise<void>[] = [];
  try {
    const base = await t.node.listen();
    // More admins, so that each Basic attempt below comes with credentials this node has never verified.
    for (let i = 0; i < 5; i++) await t.request({ method: 'PUT', url: `/api/v1/users/ops${i}`, ...json({ password: `ops-password-${i}`, roles: ['admin'] }) });
    const attackers = ['127.0.0.81', '127.0.0.82', '127.0.0.83', '127.0.0.84', '127.0.0.85', '127.0.0.86'];
    const failedFrom = new Set<string>();
    const refusedFrom = new Set<string>();
    let n = 0;
    // Each attacker keeps as many requests going as it may (passwordChecksPerSourceMax), a new name every time.
    loops = attackers.flatMap((attacker) =>
      [0, 1].map(async () => {
        while (flooding) {
          const res = await rawRequest(base, { method: 'POST', path: '/api/v1/auth/login', ...jsonRaw({ username: `nobody-${n++}`, password: 'wrong' }), localAddress: attacker });
          const code = codeOf(res);
          assert.ok(['AUTH_INVALID', 'RATE_LIMITED', 'OVERLOADED'].includes(code!), res.body);
          if (code === 'AUTH_INVALID') failedFrom.add(attacker);
          if (code === 'RATE_LIMITED') {
            refusedFrom.add(attacker);
            assert.ok(Number(res.headers['retry-after']) >= 1);
          }
        }
      }),
    );
    const deadline = Date.now() + 30_000;
    while (failedFrom.size < attackers.length) {
      assert.ok(Date.now() < deadline, `only ${failedFrom.size} attackers were checked`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    // Every attacker has failed and keeps going: admin, from a clean address, still logs in both ways, every time.
    for (let i = 0; i < 5; i++) {
      const login = await rawRequest(base, { method: 'POST', path: '/api/v1/auth/login', ...jsonRaw({ username: 'admin', password: adminPassword }), localAddress: '127.0.0.9' });
      assert.equal(login.statusCode, 200, login.body);
      const ops = await rawRequest(base, { method: 'GET', path: '/api/v1/auth/whoami', headers: { authorization: basic(`ops${i}`, `ops-password-${i}`) }, localAddress: `127.0.0.${10 + i}` });
      assert.equal(ops.statusCode, 200, ops.body);
    }
    // Each attacker runs into its failure budget (never into a per-user wait: every name is new), refused unhashed.
    while (refusedFrom.size < attackers.length) {
      assert.ok(Date.now() < deadline, `only ${refusedFrom.size} attackers were refused`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    flooding = false;
    await Promise.all(loops);
  } finally {
    flooding = false;
    await Promise.allSettled(loops);
    await t.close();
  }
});

function jsonRaw(body: unknown): { headers: Record<string, string>; payload: string } {
  return { headers: { 'content-type': 'application/json' }, payload: JSON.stringify(body) };
}
