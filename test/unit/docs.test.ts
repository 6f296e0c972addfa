import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { envNameOf, settingSpecs } from '../../src/config/settings.js';
import { errorCatalogue } from '../../src/errors/catalogue.js';

const read = (file: string) => readFileSync(new URL(`../../../docs/${file}`, import.meta.url), 'utf8');

test('docs/http-api.md lists every error code with its status, and no other', () => {
  const doc = read('http-api.md');
  const rows = [...doc.matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1]!, Number(m[2])] as const);
  const documented = new Map(rows);
  for (const [code, entry] of Object.entries(errorCatalogue)) {
    assert.equal(documented.get(code), entry.status, `${code} is documented with status ${entry.status}`);
  }
  for (const code of documented.keys()) assert.ok(code in errorCatalogue, `${code} is in the catalogue`);
  assert.equal(documented.size, Object.keys(errorCatalogue).length);
});

test('docs/configuration.md lists every setting with its environment variable', () => {
  const doc = read('configuration.md');
  const rows = [...doc.matchAll(/^\| `([a-zA-Z.]+)` \| `(CONCLAVE_[A-Z_]+)` \|/gm)].map((m) => [m[1]!, m[2]!] as const);
  const documented = new Map(rows);
  for (const spec of settingSpecs) {
    assert.equal(documented.get(spec.key), envNameOf(spec.key), `${spec.key} is documented`);
  }
  assert.equal(documented.size, settingSpecs.length, 'no setting is documented that does not exist');
});
