import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { json, openTestNode, type TestNode } from '../helpers/app.js';

/**
 * Listings and queries are bounded in bytes (content.pageBytesMax), not only in nodes: a page ends early, with a
 * cursor, once the next node would pass the bound, and a node larger than the bound still comes alone on its page.
 * Real SQLite, real pages: every node is read back exactly once, in order.
 */
const pageBytesMax = 256 * 1024;
const children = 40;
let t: TestNode;

interface Listed {
  path: string;
  properties: { text: string };
}

before(async () => {
  t = await openTestNode({ 'content.pageBytesMax': pageBytesMax });
  assert.equal((await t.request({ method: 'PUT', url: '/api/v1/content/big', ...json({ type: 'folder' }) })).statusCode, 201);
  for (let i = 0; i < children; i++) {
    // Child 7 alone is larger than a page may be.
    const size = i === 7 ? pageBytesMax + 10_000 : 50_000;
    const res = await t.request({ method: 'PUT', url: `/api/v1/content/big/c${String(i).padStart(2, '0')}`, ...json({ properties: { text: 'x'.repeat(size) } }) });
    assert.equal(res.statusCode, 201, res.body);
  }
});
after(async () => {
  await t.close();
});

async function readAll(firstUrl: string, itemsOf: (body: Record<string, unknown>) => { items: Listed[]; nextCursor: string | null }): Promise<Listed[][]> {
  const pages: Listed[][] = [];
  let url: string | undefined = firstUrl;
  while (url !== undefined) {
    const res = await t.request({ method: 'GET', url });
    assert.equal(res.statusCode, 200, res.body.slice(0, 300));
    const { items, nextCursor } = itemsOf(JSON.parse(res.body) as Record<string, unknown>);
    const itemBytes = items.reduce((sum, item) => sum + Buffer.byteLength(JSON.stringify(item)), 0);
    assert.ok(items.length === 1 || itemBytes <= pageBytesMax, `a page of ${items.length} nodes holds ${itemBytes} bytes`);
    // Large pages are streamed in pieces, not built as one string (which would have a Content-Length).
    if (itemBytes > 64 * 1024) assert.equal(res.headers['transfer-encoding'], 'chunked');
    pages.push(items);
    assert.ok(pages.length <= children, 'the cursor moves on');
    url = nextCursor === null ? undefined : `${firstUrl}&cursor=${encodeURIComponent(nextCursor)}`;
  }
  return pages;
}

function checkPages(pages: Listed[][]): void {
  const paths = pages.flat().map((n) => n.path);
  assert.deepEqual(paths, Array.from({ length: children }, (_, i) => `/big/c${String(i).padStart(2, '0')}`));
  assert.ok(pages.length >= 8, `${pages.length} pages`);
  const alone = pages.find((p) => p.some((n) => n.path === '/big/c07'));
  assert.equal(alone?.length, 1, 'a node larger than the bound comes alone');
  assert.equal(alone![0]!.properties.text.length, pageBytesMax + 10_000);
}

test('a child listing of large nodes stops each page at content.pageBytesMax and continues by cursor', async () => {
  const pages = await readAll('/api/v1/content/big?children=true&limit=1000', (body) => {
    assert.equal(body['path'], '/big');
    assert.equal(body['type'], 'folder');
    return body['children'] as { items: Listed[]; nextCursor: string | null };
  });
  checkPages(pages);
});

test('a query of large nodes stops each page at content.pageBytesMax and continues by cursor', async () => {
  const pages = await readAll('/api/v1/query?under=/big&limit=1000', (body) => body as unknown as { items: Listed[]; nextCursor: string | null });
  checkPages(pages);
});

test('a page of small nodes is the same document as before: the node, then children in order', async () => {
  const res = await t.request({ method: 'GET', url: '/api/v1/content/big?children=true&limit=2' });
  const body = JSON.parse(res.body) as Record<string, unknown>;
  const node = await t.request({ method: 'GET', url: '/api/v1/content/big' });
  const { children: listed, ...own } = body;
  assert.deepEqual(own, JSON.parse(node.body));
  assert.equal(res.headers['etag'], node.headers['etag']);
  assert.equal((listed as { items: unknown[] }).items.length, 2);
  assert.match(String(res.headers['content-type']), /^application\/json/);
});
