import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Authenticator } from '../../src/auth/authenticator.js';
import { hashPassword } from '../../src/auth/passwords.js';
import { TokenSigner } from '../../src/auth/tokens.js';
import type { User } from '../../src/content/model.js';

test('login with a password this node has verified does not hash it again', async () => {
  const user: User = { name: 'admin', passwordHash: await hashPassword('right-password'), roles: ['admin'], version: 1, createdAt: 'c', modifiedAt: 'm' };
  // A full check reads the user for scrypt each time; a cached one reads it once into the versioned cache of users.
  let fullChecks = 0;
  const users = { usersVersion: 1, userByName: (name: string) => (name === user.name ? (fullChecks++, user) : undefined) };
  const tokens = new TokenSigner({ clusterSecret: 's'.repeat(32), keyId: () => 'k', ttlSeconds: 60, lifetimeSecondsMax: 60 });
  const limits = { cacheEntriesMax: 16, passwordChecksInFlightMax: 8, passwordChecksPerSourceMax: 2, loginFailuresFree: 5, loginDelayMsMin: 1000, loginDelayMsMax: 60_000, loginFailureRecordsMax: 16, loginFailuresPerSourcePerMinuteMax: 30 };
  const authenticator = new Authenticator(users, tokens, limits);
  assert.equal((await authenticator.login('admin', 'right-password', '127.0.0.2')).name, 'admin');
  assert.equal((await authenticator.login('admin', 'right-password', '127.0.0.2')).name, 'admin');
  const afterFirst = fullChecks;
  for (let i = 0; i < 3; i++) assert.equal((await authenticator.login('admin', 'right-password', `127.0.0.${3 + i}`)).name, 'admin');
  assert.equal(fullChecks, afterFirst, 'a cached password was checked again');
});
