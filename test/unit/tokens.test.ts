import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { SignJWT } from 'jose';

import { TokenSigner, tokenSigningKey } from '../../src/auth/tokens.js';
import { generateClusterSecret } from '../../src/config/clusterSecret.js';
import { applyCommand } from '../../src/content/apply.js';
import { legacyTokenKeyId } from '../../src/content/commands.js';
import { ContentTables } from '../../src/storage/contentTables.js';
import { getMeta, openDatabase, setMeta } from '../../src/storage/database.js';
import { adminPassword, json, openTestNode, type TestNode } from '../helpers/app.js';
import { tempDir } from '../helpers/tmp.js';

const claims = { user: 'ed', userVersion: 1, userCreatedAt: '2026-01-01T00:00:00.000Z' };

function signer(overrides: Partial<ConstructorParameters<typeof TokenSigner>[0]> = {}): TokenSigner {
  return new TokenSigner({ clusterSecret: secret, keyId: () => 'key-1', ttlSeconds: 3600, lifetimeSecondsMax: 86_400, ...overrides });
}

const secret = generateClusterSecret();

describe('bearer token keys', () => {
  it('a token verifies on any node with the same secret and key id, and on no node without the secret', async () => {
    const { token } = await signer().issue(claims);
    assert.deepEqual(await signer().verify(token), claims);
    // What a journal, snapshot or backup holds (the key id) is not enough: another secret derives another key.
    assert.equal(await signer({ clusterSecret: generateClusterSecret() }).verify(token), undefined);
    // Nor is the key id used as a key, or an HMAC keyed with an empty secret.
    for (const key of [new TextEncoder().encode('key-1'), tokenSigningKey('', 'key-1')]) {
      const forged = await new SignJWT({ uv: 1, uc: claims.userCreatedAt }).setProtectedHeader({ alg: 'HS256' }).setSubject('admin').setIssuer('conclave').setIssuedAt().setExpirationTime('1h').sign(key);
      assert.equal(await signer().verify(forged), undefined);
    }
  });

  it('a new key id (a rotation) refuses every token issued before', async () => {
    let keyId = 'key-1';
    const tokens = signer({ keyId: () => keyId });
    const { token } = await tokens.issue(claims);
    assert.deepEqual(await tokens.verify(token), claims);
    keyId = 'key-2';
    assert.equal(await tokens.verify(token), undefined);
    const { token: fresh } = await tokens.issue(claims);
    assert.deepEqual(await tokens.verify(fresh), claims);
  });

  it('no token older than lifetimeSecondsMax is accepted, whatever its exp says; the ttl may not exceed it', async () => {
    let nowSeconds = 1_800_000_000;
    const tokens = signer({ nowSeconds: () => nowSeconds });
    const key = tokenSigningKey(secret, 'key-1');
    // Issued by a node with a longer ttl (or by hand with the key): exp a year away.
    const longLived = await new SignJWT({ uv: 1, uc: claims.userCreatedAt })
      .setProtectedHeader({ alg: 'HS256' }).setSubject('ed').setIssuer('conclave').setIssuedAt(nowSeconds).setExpirationTime(nowSeconds + 365 * 86_400).sign(key);
    assert.equal(await tokens.verify(longLived), undefined, 'an exp beyond the bound');
    const { token } = await tokens.issue(claims);
    nowSeconds += 3599;
    assert.deepEqual(await tokens.verify(token), claims);
    nowSeconds += 2;
    assert.equal(await tokens.verify(token), undefined, 'expired');
    // A token without iat cannot be aged: refused.
    const ageless = await new SignJWT({ uv: 1, uc: claims.userCreatedAt }).setProtectedHeader({ alg: 'HS256' }).setSubject('ed').setIssuer('conclave').setExpirationTime(nowSeconds + 60).sign(key);
    assert.equal(await tokens.verify(ageless), undefined);
    assert.throws(() => signer({ ttlSeconds: 90_000 }), /tokenTtlSeconds/);
  });
});

describe('token key on a node', () => {
  let t: TestNode;
  before(async () => {
    t = await openTestNode();
  });
  after(async () => {
    await t.close();
  });

  it('POST /api/v1/auth/token-key/rotate (admin only) revokes every token; logging in again works', async () => {
    const login = await t.request({ method: 'POST', url: '/api/v1/auth/login', ...json({ username: 'admin', password: adminPassword }), auth: null });
    assert.equal(login.statusCode, 200);
    const bearer = `Bearer ${login.json().token}`;
    assert.equal((await t.request({ method: 'GET', url: '/api/v1/auth/whoami', auth: bearer })).statusCode, 200);

    const put = await t.request({ method: 'PUT', url: '/api/v1/users/ed', ...json({ password: 'ed-password-1', roles: ['editor'] }) });
    assert.equal(put.statusCode, 201);
    const edBasic = `Basic ${Buffer.from('ed:ed-password-1').toString('base64')}`;
    assert.equal((await t.request({ method: 'POST', url: '/api/v1/auth/token-key/rotate', auth: edBasic })).statusCode, 403);
    assert.equal((await t.request({ method: 'POST', url: '/api/v1/auth/token-key/rotate', ...json({ keyId: 'mine' }) })).statusCode, 400);

    const rotate = await t.request({ method: 'POST', url: '/api/v1/auth/token-key/rotate' });
    assert.equal(rotate.statusCode, 200, rotate.body);
    assert.equal(rotate.json().rotated, true);
    assert.equal((await t.request({ method: 'GET', url: '/api/v1/auth/whoami', auth: bearer })).statusCode, 401);
    const again = await t.request({ method: 'POST', url: '/api/v1/auth/login', ...json({ username: 'admin', password: adminPassword }), auth: null });
    assert.equal((await t.request({ method: 'GET', url: '/api/v1/auth/whoami', auth: `Bearer ${again.json().token}` })).statusCode, 200);
  });
});

describe('data of older releases', () => {
  it('a bootstrap entry that carries a raw token key applies (the key ignored, the legacy key id used)', () => {
    const tmp = tempDir();
    try {
      const db = openDatabase(tmp.dir);
      const tables = new ContentTables(db);
      assert.equal(tables.tokenKeyId(), undefined, 'no repository yet');
      applyCommand(tables, { type: 'bootstrap', rootId: 'root', time: '2026-01-01T00:00:00.000Z', tokenKey: 'raw-key-of-an-older-release', adminPasswordHash: 'h' });
      assert.equal(tables.tokenKeyId(), legacyTokenKeyId);
      assert.deepEqual(db.prepare(`SELECT key FROM meta WHERE key LIKE 'token%'`).pluck().all(), ['token_key_id'], 'the raw key is not stored');
      db.close();
    } finally {
      tmp.cleanup();
    }
  });

  it('a node whose database still holds the raw key of an older release starts, and drops the key', async () => {
    const tmp = tempDir();
    try {
      const first = await openTestNode({}, tmp.dir);
      await first.node.stop();
      const db = openDatabase(tmp.dir);
      setMeta(db, 'token_key', 'raw-key-of-an-older-release');
      db.prepare(`DELETE FROM meta WHERE key = 'token_key_id'`).run();
      db.close();
      const second = await openTestNode({}, tmp.dir);
      const login = await second.request({ method: 'POST', url: '/api/v1/auth/login', ...json({ username: 'admin', password: adminPassword }), auth: null });
      assert.equal(login.statusCode, 200);
      assert.equal((await second.request({ method: 'GET', url: '/api/v1/auth/whoami', auth: `Bearer ${login.json().token}` })).statusCode, 200);
      await second.node.stop();
      const after = openDatabase(tmp.dir);
      assert.equal(getMeta(after, 'token_key'), undefined);
      after.close();
    } finally {
      tmp.cleanup();
    }
  });
});
