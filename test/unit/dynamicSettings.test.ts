import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { checkSettingsUpdate, dynamicSetting, dynamicSettingSpecs, effectiveSettings } from '../../src/config/dynamicSettings.js';
import { ConclaveError } from '../../src/errors/catalogue.js';

test('docs/configuration.md lists every dynamic cluster setting with its default, and no other', () => {
  const doc = readFileSync(new URL('../../../docs/configuration.md', import.meta.url), 'utf8');
  const section = doc.slice(doc.indexOf('## Dynamic cluster settings'), doc.indexOf('## Limits of the data format'));
  const rows = [...section.matchAll(/^\| `([a-zA-Z.]+)` \| `([^`]*)` \|/gm)].map((m) => [m[1]!, m[2]!] as const);
  assert.deepEqual(
    rows,
    dynamicSettingSpecs.map((spec) => [spec.key, typeof spec.default === 'string' ? JSON.stringify(spec.default).replace(/^"(.+)"$/, '$1') : String(spec.default)]),
  );
});

test('an update names known settings with valid values; the first wrong one is refused by name', () => {
  assert.deepEqual(checkSettingsUpdate({ 'backup.schedule.interval': ' 1h ', 'backup.schedule.keep': null }), { 'backup.schedule.interval': '1h', 'backup.schedule.keep': null });
  for (const [update, setting] of [
    [{ unknown: 1 }, 'unknown'],
    [{ 'backup.schedule.keep': 51 }, 'backup.schedule.keep'],
    [{ 'backup.schedule.keep': 2.5 }, 'backup.schedule.keep'],
    [{ 'backup.schedule.directory': 5 }, 'backup.schedule.directory'],
    [{ 'backup.schedule.directory': `/${'x'.repeat(600)}` }, 'backup.schedule.directory'],
    [{ 'backup.schedule.interval': true }, 'backup.schedule.interval'],
  ] as const) {
    assert.throws(
      () => checkSettingsUpdate(update),
      (err: unknown) => err instanceof ConclaveError && err.code === 'INVALID_REQUEST' && err.details['setting'] === setting && err.message.includes(setting),
    );
  }
  for (const empty of [{}, null, [], 'x']) assert.throws(() => checkSettingsUpdate(empty), /at least one setting/);
});

test('a stored value its rule refuses reads as the default', () => {
  assert.equal(dynamicSetting({ 'backup.schedule.keep': 0 }, 'backup.schedule.keep'), 7);
  assert.equal(dynamicSetting({ 'backup.schedule.interval': '0 3 * * *' }, 'backup.schedule.interval'), '0 3 * * *');
  assert.deepEqual(effectiveSettings({}), { 'backup.schedule.directory': '', 'backup.schedule.interval': '1d', 'backup.schedule.keep': 7 });
});
