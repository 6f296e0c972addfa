import assert from 'node:assert/strict';
import { test } from 'node:test';

import { decodeCursor, encodeCursor, parseQuery } from '../../src/content/query.js';
import { ConclaveError } from '../../src/errors/catalogue.js';

const limits = { pageSizeDefault: 10, pageSizeMax: 100 };

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConclaveError);
    return err.code;
  }
  return 'ok';
}

test('parses filters, sort and limit', () => {
  const spec = parseQuery(
    { under: '/a', type: 'article', 'prop.title': 'Hello', 'prop.price[gte]': '10', 'prop.n.m[ne]': 'null', 'prop.flag': 'true', sort: '-prop.price', limit: '5' },
    limits,
  );
  assert.equal(spec.under, '/a');
  assert.equal(spec.type, 'article');
  assert.deepEqual(spec.filters, [
    { property: ['title'], op: 'eq', value: 'Hello' },
    { property: ['price'], op: 'gte', value: 10 },
    { property: ['n', 'm'], op: 'ne', value: null },
    { property: ['flag'], op: 'eq', value: 1 },
  ]);
  assert.deepEqual(spec.sort, { kind: 'property', property: ['price'] });
  assert.equal(spec.descending, true);
  assert.equal(spec.limit, 5);
});

test('refuses what it cannot express', () => {
  assert.equal(code(() => parseQuery({ bogus: '1' }, limits)), 'INVALID_REQUEST');
  assert.equal(code(() => parseQuery({ limit: '0' }, limits)), 'INVALID_REQUEST');
  assert.equal(code(() => parseQuery({ limit: '101' }, limits)), 'INVALID_REQUEST');
  assert.equal(code(() => parseQuery({ limit: '1.5' }, limits)), 'INVALID_REQUEST');
  assert.equal(code(() => parseQuery({ 'prop.a"b': '1' }, limits)), 'INVALID_REQUEST');
  assert.equal(code(() => parseQuery({ 'prop.a[gt]': '{"x":1}' }, limits)), 'INVALID_REQUEST');
  assert.equal(code(() => parseQuery({ 'prop.a[gt]': 'null' }, limits)), 'INVALID_REQUEST');
  assert.equal(code(() => parseQuery({ sort: 'size' }, limits)), 'INVALID_REQUEST');
  assert.equal(code(() => parseQuery({ under: 'a' }, limits)), 'INVALID_PATH');
  assert.equal(code(() => parseQuery({ type: ['a', 'b'] }, limits)), 'INVALID_REQUEST');
  assert.equal(code(() => parseQuery({ cursor: '!!!' }, limits)), 'INVALID_CURSOR');
});

test('a cursor round-trips and is bound to its query', () => {
  const a = parseQuery({ type: 'x' }, limits);
  const b = parseQuery({ type: 'y' }, limits);
  const text = encodeCursor({ value: 'é/ü', id: 'id-1' }, a.fingerprint);
  assert.deepEqual(decodeCursor(text, a.fingerprint), { value: 'é/ü', id: 'id-1' });
  assert.equal(code(() => decodeCursor(text, b.fingerprint)), 'INVALID_CURSOR');
  assert.deepEqual(parseQuery({ type: 'x', cursor: text }, limits).cursor, { value: 'é/ü', id: 'id-1' });
});
