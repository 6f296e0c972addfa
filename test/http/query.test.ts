import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { json, openTestNode, type TestNode } from '../helpers/app.js';

let t: TestNode;
const items = Array.from({ length: 40 }, (_, i) => ({
  name: `item${String(i).padStart(2, '0')}`,
  type: i % 2 === 0 ? 'even' : 'odd',
  properties: i % 5 === 0 ? { group: 'g' } : { price: (i * 7) % 23, group: i % 3 === 0 ? 'a' : 'b' },
}));

before(async () => {
  t = await openTestNode();
  await t.request({ method: 'PUT', url: '/api/v1/content/shop', ...json({}) });
  await t.request({ method: 'PUT', url: '/api/v1/content/other', ...json({ properties: { price: 1 } }) });
  for (const item of items) {
    const r = await t.request({ method: 'PUT', url: `/api/v1/content/shop/${item.name}`, ...json({ type: item.type, properties: item.properties }) });
    assert.equal(r.statusCode, 201);
  }
});
after(async () => {
  await t.close();
});

async function all(query: string, limit: number): Promise<Array<{ name: string; properties: { price?: number } }>> {
  const out = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 100; pages++) {
    const r = await t.request({ method: 'GET', url: `/api/v1/query?${query}&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}` });
    assert.equal(r.statusCode, 200, r.body);
    const body = r.json();
    assert.ok(body.items.length <= limit);
    out.push(...body.items);
    cursor = body.nextCursor;
    if (cursor === null) return out;
  }
  assert.fail('pagination did not end');
}

test('subtree, type and property filters', async () => {
  const under = await all('under=/shop', 100);
  assert.equal(under.length, 40);
  const even = await all('under=/shop&type=even', 7);
  assert.deepEqual(even.map((n) => n.name), items.filter((i) => i.type === 'even').map((i) => i.name));
  const groupA = await all('prop.group=a', 3);
  assert.deepEqual(groupA.map((n) => n.name).sort(), items.filter((i) => i.properties.group === 'a').map((i) => i.name));
  const cheap = await all('under=/shop&prop.price[lt]=5&prop.price[gte]=1', 2);
  const expected = items.filter((i) => 'price' in i.properties && i.properties.price! < 5 && i.properties.price! >= 1);
  assert.deepEqual(cheap.map((n) => n.name), expected.map((i) => i.name));
});

test('sorting by a property pages through every node exactly once, missing values last', async () => {
  for (const [sort, limit] of [['prop.price', 6], ['-prop.price', 7], ['-name', 9], ['modified', 11]] as const) {
    const got = await all(`under=/shop&sort=${sort}`, limit);
    assert.equal(got.length, 40, sort);
    assert.equal(new Set(got.map((n) => n.name)).size, 40, sort);
    if (sort.endsWith('prop.price')) {
      const prices = got.map((n) => n.properties.price);
      const present = prices.filter((p) => p !== undefined) as number[];
      assert.deepEqual(prices.slice(present.length), Array(prices.length - present.length).fill(undefined), 'missing values come last');
      const sorted = [...present].sort((a, b) => (sort.startsWith('-') ? b - a : a - b));
      assert.deepEqual(present, sorted, sort);
    }
  }
});

test('a cursor from another query is refused', async () => {
  const r = await t.request({ method: 'GET', url: '/api/v1/query?under=/shop&limit=2' });
  const cursor = r.json().nextCursor;
  const misuse = await t.request({ method: 'GET', url: `/api/v1/query?under=/other&limit=2&cursor=${cursor}` });
  assert.equal(misuse.statusCode, 400);
  assert.equal(misuse.json().error.code, 'INVALID_CURSOR');
  const tooBig = await t.request({ method: 'GET', url: '/api/v1/query?limit=100000' });
  assert.equal(tooBig.json().error.code, 'INVALID_REQUEST');
});
