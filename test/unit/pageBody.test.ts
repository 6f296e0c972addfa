import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';

import fc from 'fast-check';

import { applyCommand } from '../../src/content/apply.js';
import type { Command } from '../../src/content/commands.js';
import type { QueryCursor } from '../../src/content/query.js';
import { nodeJson } from '../../src/http/representation.js';
import { PageBody } from '../../src/http/pageBody.js';
import { ContentTables } from '../../src/storage/contentTables.js';
import { openDatabase, type Db } from '../../src/storage/database.js';
import { propertyParameters } from '../sim/testSeed.js';
import { tempDir } from '../helpers/tmp.js';

// Byte-bounded pages against real SQLite: whatever the node sizes, the bound and the page size, following the
// cursor yields every child once, in order, each page within its bounds, and each page's body is the JSON the
// unbounded serialisation gives.
let db: Db;
let tables: ContentTables;
let cleanup: () => void;
let ids = 0;
const time = '2026-01-01T00:00:00.000Z';
const run = (command: Command) => db.transaction(() => applyCommand(tables, command))();

before(() => {
  const tmp = tempDir();
  cleanup = tmp.cleanup;
  db = openDatabase(tmp.dir);
  tables = new ContentTables(db);
  run({ type: 'bootstrap', rootId: 'root', time, tokenKey: 'k', adminPasswordHash: 'h' });
});
after(() => {
  db.close();
  cleanup();
});

async function text(body: Readable | string): Promise<string> {
  if (typeof body === 'string') return body;
  let all = '';
  for await (const piece of body) all += String(piece);
  return all;
}

test('pages bounded in bytes cover every child once, in order, within their bounds', async () => {
  await fc.assert(
    fc.asyncProperty(
      // Sizes of the children's one property (with non-ASCII text, so bytes and characters differ), the bound, the limit.
      fc.array(fc.integer({ min: 0, max: 40_000 }), { minLength: 0, maxLength: 24 }),
      fc.integer({ min: 1, max: 120_000 }),
      fc.integer({ min: 1, max: 30 }),
      async (sizes, bytesMax, limit) => {
        const parent = `/p${++ids}`;
        run({ type: 'put', path: parent, newId: `id-${ids}`, nodeType: 'folder', properties: {}, time, user: 'u' });
        sizes.forEach((size, i) => {
          const properties = { text: 'é'.repeat(size % 7) + 'x'.repeat(size) };
          run({ type: 'put', path: `${parent}/c${i}`, newId: `id-${ids}-${i}`, nodeType: 'node', properties, time, user: 'u' });
        });
        const parentId = tables.nodeByPath(parent)!.id;
        const expected = tables.children(parentId).map((n) => JSON.stringify(nodeJson(n)));
        const seen: string[] = [];
        let after: QueryCursor | undefined;
        for (let pages = 0; ; pages++) {
          assert.ok(pages <= sizes.length, 'the cursor moves on');
          const body = new PageBody(bytesMax);
          const page = tables.childrenPage(parentId, after, limit, body.take);
          const items = JSON.parse(await text(body.body('{"items":', '}'))) as { items: unknown[] };
          const texts = items.items.map((item) => JSON.stringify(item));
          assert.equal(texts.length, page.items.length);
          assert.ok(texts.length <= limit);
          assert.ok(texts.length >= (sizes.length === 0 ? 0 : 1), 'a page takes at least one node');
          const bytes = texts.reduce((sum, t) => sum + Buffer.byteLength(t), 0);
          assert.ok(texts.length <= 1 || bytes <= bytesMax, `${texts.length} nodes of ${bytes} bytes on a page of at most ${bytesMax}`);
          seen.push(...texts);
          if (page.next === undefined) break;
          after = page.next;
        }
        assert.deepEqual(seen, expected);
      },
    ),
    propertyParameters(40),
  );
});
