import assert from 'node:assert/strict';
import { test } from 'node:test';

import { applyCommand } from '../../src/content/apply.js';
import type { Command } from '../../src/content/commands.js';
import { nodeJson, storedNodeJson } from '../../src/http/representation.js';
import { ContentTables } from '../../src/storage/contentTables.js';
import { openDatabase } from '../../src/storage/database.js';
import { tempDir } from '../helpers/tmp.js';

// A read sends the stored text of a node's properties as it is: it must be the very bytes that parsing and
// serialising the node again gives, whatever the properties hold.
test('the JSON of a stored node is byte for byte the JSON of the node', () => {
  const tmp = tempDir();
  const db = openDatabase(tmp.dir);
  try {
    const tables = new ContentTables(db);
    const time = '2026-01-01T00:00:00.000Z';
    const run = (command: Command) => db.transaction(() => applyCommand(tables, command))();
    run({ type: 'bootstrap', rootId: 'root-id', time, tokenKey: 'k', adminPasswordHash: 'scrypt$x' });
    const properties = {
      b: 1,
      a: 'x',
      10: 'ten',
      2: 'two',
      '-1': 'minus one',
      nested: { z: [1, 2.5, -0, 1e21, 1e-7, null, true, false], y: { '01': 'leading zero', 1: 'one' } },
      text: 'quote " backslash \\ newline \n tab \t control \u0001 \u001f del \u007f nbsp \u00a0 é 漢字 😀 lone \ud800 end',
      'key with "quotes" and \u2028 separators \u2029': '',
      empty: {},
      list: [],
    };
    run({ type: 'put', path: '/doc', newId: 'doc-id', nodeType: 'node', properties, time, user: 'user "name" é' });
    run({ type: 'setBinary', path: '/doc', property: 'file', binary: { sha256: 'a'.repeat(64), size: 3, contentType: 'text/plain' }, time, user: 'u' });
    run({ type: 'put', path: '/doc/child é😀', newId: 'child-id', nodeType: 'node', properties: { x: 1 }, time, user: 'u' });
    for (const path of ['/', '/doc', '/doc/child é😀']) {
      const stored = tables.storedNodeByPath(path)!;
      const node = tables.nodeByPath(path)!;
      assert.equal(storedNodeJson(stored), JSON.stringify(nodeJson(node)), path);
    }
    assert.equal(tables.storedNodeByPath('/missing'), undefined);
  } finally {
    db.close();
    tmp.cleanup();
  }
});
