import assert from 'node:assert/strict';
import { test } from 'node:test';

import fc from 'fast-check';

import { accessEntriesPerNodeMax, parseAccessEntries } from '../../src/content/access.js';
import { ConclaveError } from '../../src/errors/catalogue.js';

test('any JSON is either entries in their stored form (parsed again: the same) or INVALID_ACCESS naming a field', () => {
  const principal = fc.oneof(fc.constantFrom('everyone', 'role:reader', 'role:editor', 'role:admin', 'role:root', 'user:', 'user:a b', 'group:x'), fc.string().map((s) => `user:${s}`), fc.jsonValue());
  const permission = fc.oneof(fc.constantFrom('read', 'write', 'manage-access', 'admin'), fc.jsonValue());
  const entry = fc.oneof(
    fc.record({ principal, effect: fc.oneof(fc.constantFrom('allow', 'deny'), fc.jsonValue()), permissions: fc.oneof(fc.array(permission, { maxLength: 4 }), fc.jsonValue()) }, { requiredKeys: [] }),
    fc.record({ principal, effect: fc.constantFrom('allow', 'deny'), permissions: fc.array(permission, { maxLength: 4 }), extra: fc.jsonValue() }),
    fc.jsonValue(),
  );
  fc.assert(
    fc.property(fc.oneof(fc.array(entry, { maxLength: 6 }), fc.jsonValue()), (raw) => {
      let parsed;
      try {
        parsed = parseAccessEntries(raw);
      } catch (err) {
        assert.ok(err instanceof ConclaveError && err.code === 'INVALID_ACCESS' && typeof err.details['field'] === 'string', String(err));
        return;
      }
      assert.deepEqual(parseAccessEntries(JSON.parse(JSON.stringify(parsed))), parsed, 'the stored form parses to itself');
      for (const e of parsed) assert.ok(e.permissions.length > 0 && ['allow', 'deny'].includes(e.effect));
    }),
    { numRuns: 3000 },
  );
  assert.throws(() => parseAccessEntries(Array.from({ length: accessEntriesPerNodeMax + 1 }, () => ({ principal: 'everyone', effect: 'deny', permissions: ['read'] }))), /at most 64/);
});
