import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';

import type { User } from '../../src/content/model.js';
import { isConclaveError } from '../../src/errors/catalogue.js';
import { decodeIdentity, encodeIdentity, principalOfIdentity } from '../../src/auth/forwardedIdentity.js';
import { propertyParameters } from '../sim/testSeed.js';

// The identity a replica forwards instead of the client's credentials (X-Conclave-Identity).

const refusedAs = (code: string) => (err: unknown) => isConclaveError(err) && err.code === code;

test('an identity round-trips; the master takes the roles from its own users table', () => {
  const value = encodeIdentity({ name: 'alice', roles: ['editor'] });
  assert.deepEqual(decodeIdentity(value), { user: 'alice', roles: ['editor'] });
  const users = new Map<string, User>([['alice', { name: 'alice', roles: ['reader'] } as unknown as User]]);
  const lookup = { userByName: (name: string) => users.get(name) };
  // A role removed since the replica's table was read is not granted.
  assert.deepEqual(principalOfIdentity(decodeIdentity(value), lookup), { name: 'alice', roles: ['reader'] });
  // A user deleted meanwhile is refused.
  assert.throws(() => principalOfIdentity({ user: 'bob', roles: ['admin'] }, lookup), refusedAs('AUTH_INVALID'));
});

test('malformed identities are refused with INTERNAL_AUTH_FAILED', () => {
  const b64 = (text: string) => Buffer.from(text).toString('base64url');
  for (const value of ['', 'not base64!', b64('not json'), b64('[]'), b64('null'), b64('{"user":"a"}'), b64('{"user":"a","roles":["god"]}'), b64('{"user":"","roles":["admin"]}'), 'A'.repeat(5000)]) {
    assert.throws(() => decodeIdentity(value), refusedAs('INTERNAL_AUTH_FAILED'), value.slice(0, 40));
  }
});

test('property: decoding any string either gives a valid identity or refuses with INTERNAL_AUTH_FAILED', () => {
  const anyText = fc.oneof(fc.string({ maxLength: 200 }), fc.json({ maxDepth: 3 }).map((j) => Buffer.from(j).toString('base64url')), fc.jsonValue().map((v) => Buffer.from(JSON.stringify({ user: 'u', roles: v })).toString('base64url')));
  fc.assert(
    fc.property(anyText, (value) => {
      try {
        const identity = decodeIdentity(value);
        assert.equal(typeof identity.user, 'string');
        assert.ok(identity.roles.length > 0 && identity.roles.every((r) => ['reader', 'editor', 'admin'].includes(r)));
        assert.deepEqual(decodeIdentity(encodeIdentity({ name: identity.user, roles: identity.roles as User['roles'] })), identity);
      } catch (err) {
        assert.ok(refusedAs('INTERNAL_AUTH_FAILED')(err), String(err));
      }
    }),
    propertyParameters(1000),
  );
});
