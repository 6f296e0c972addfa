import assert from 'node:assert/strict';
import { test } from 'node:test';

import { baseName, descendantRange, isSameOrDescendant, parentPath, parsePath, utf8Bytes } from '../../src/content/paths.js';
import { ConclaveError } from '../../src/errors/catalogue.js';

function refusal(raw: unknown): string {
  try {
    parsePath(raw);
  } catch (err) {
    assert.ok(err instanceof ConclaveError);
    return err.code;
  }
  return 'accepted';
}

test('acceptable paths pass unchanged', () => {
  for (const path of ['/', '/a', '/a/b c/ü-ñ', '/x.y/z_1', `/${'n'.repeat(255)}`]) assert.equal(parsePath(path), path);
});

test('unacceptable paths are INVALID_PATH, never normalised', () => {
  for (const path of ['', 'a', '/a/', '//a', '/a//b', '/a/./b', '/a/../b', '/..', '/a\u0000b', '/a\nb', '/a\u007fb', `/${'n'.repeat(256)}`, `/${'é'.repeat(128)}`, '/a'.repeat(65), 42, null]) {
    assert.equal(refusal(path), 'INVALID_PATH', JSON.stringify(path));
  }
});

test('path arithmetic', () => {
  assert.equal(parentPath('/a/b'), '/a');
  assert.equal(parentPath('/a'), '/');
  assert.equal(baseName('/a/b'), 'b');
  assert.ok(isSameOrDescendant('/a/b', '/a'));
  assert.ok(isSameOrDescendant('/a', '/a'));
  assert.ok(!isSameOrDescendant('/ab', '/a'));
  assert.ok(isSameOrDescendant('/x', '/'));
});

test('the descendant range holds exactly the strict descendants', () => {
  const { low, high } = descendantRange('/a');
  const inRange = (p: string) => p > low && p < high;
  assert.ok(inRange('/a/b'));
  assert.ok(inRange('/a/b/c'));
  assert.ok(inRange('/a/\u{10ffff}'));
  assert.ok(!inRange('/a'));
  assert.ok(!inRange('/ab'));
  assert.ok(!inRange('/a-b'));
  assert.ok(!inRange('/a.b'));
  const root = descendantRange('/');
  assert.ok('/x' > root.low && '/x' < root.high);
  assert.ok(!('/' > root.low), 'the root is not its own descendant');
});

test('UTF-8 byte counts are those of the encoding, lone surrogates included', () => {
  const encoder = new TextEncoder();
  const texts = ['', 'abc', 'é', '߿', 'ࠀ', '漢字', '\uffff', '😀', 'a😀b', '\ud800', '\udc00', 'a\ud800', '\ud800a', '\udc00\ud800', '😀\ud83d', 'x'.repeat(300) + '€'];
  for (const text of texts) assert.equal(utf8Bytes(text), encoder.encode(text).length, JSON.stringify(text));
});
