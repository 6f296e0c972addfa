import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';

import { envNameOf, settingSpecs } from '../../src/config/settings.js';
import { errorCatalogue } from '../../src/errors/catalogue.js';

/** The names that occur more than once. */
function duplicates(names: readonly string[]): string[] {
  return [...new Set(names.filter((name, i) => names.indexOf(name) !== i))];
}

const read = (file: string) => readFileSync(new URL(`../../../docs/${file}`, import.meta.url), 'utf8');

test('docs/http-api.md lists every error code with its status, and no other', () => {
  const doc = read('http-api.md');
  const rows = [...doc.matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1]!, Number(m[2])] as const);
  const documented = new Map(rows);
  assert.deepEqual(duplicates(rows.map(([code]) => code)), [], 'no error code has two rows');
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
  // A second row would go stale beside the first (cluster.writeTimeoutMs had two that disagreed).
  assert.deepEqual(duplicates(rows.map(([key]) => key)), [], 'no setting has two rows');
  for (const spec of settingSpecs) {
    assert.equal(documented.get(spec.key), envNameOf(spec.key), `${spec.key} is documented`);
  }
  assert.equal(documented.size, settingSpecs.length, 'no setting is documented that does not exist');
});

test('docs/architecture.md describes every folder of src once', () => {
  const rows = [...read('architecture.md').matchAll(/^\| `(src\/[a-z]+)` \|/gm)].map((m) => m[1]!);
  assert.deepEqual(duplicates(rows), [], 'no folder has two rows');
  const folders = readdirSync(new URL('../../../src', import.meta.url), { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => `src/${entry.name}`);
  assert.deepEqual([...new Set(rows)].sort(), folders.sort());
});
