import assert from 'node:assert/strict';
import { test } from 'node:test';

import Database from 'better-sqlite3';
import fc from 'fast-check';

import { parseSearchQuery, type SearchQueryNode } from '../../src/content/searchQuery.js';
import { searchTextOf } from '../../src/content/searchText.js';
import { ConclaveError } from '../../src/errors/catalogue.js';
import { searchIndexSchema, snippetRuns } from '../../src/storage/searchIndex.js';

const limits = { queryCharsMax: 512, termsMax: 16 };

function ftsTable(): Database.Database {
  const db = new Database(':memory:');
  db.exec(searchIndexSchema);
  return db;
}

test('any text is either a query FTS5 runs or INVALID_SEARCH_QUERY: never another error', () => {
  const db = ftsTable();
  db.prepare('INSERT INTO search_index (rowid, node_id, name, body) VALUES (1, ?, ?, ?)').run('x', 'crème', 'tart "pie" (apple) OR and NOT * - AND');
  const run = db.prepare('SELECT rowid FROM search_index WHERE search_index MATCH ?');
  const pieces = fc.constantFrom('tart', 'crème', 'AND', 'OR', 'NOT', 'and', '-', '*', '"', '(', ')', ' ', '  ', 'ab*', 'a*', '-x', '&', '""', 'é', '日本', '\u0301', '\uE000', '\\', "'", ':', '^', '+', 'NEAR', '{name}', 'name:');
  const queries = fc.oneof(fc.array(pieces, { maxLength: 24 }).map((p) => p.join('')), fc.string({ maxLength: 60 }), fc.string({ unit: 'binary', maxLength: 30 }));
  fc.assert(
    fc.property(queries, (text) => {
      let match: string;
      try {
        match = parseSearchQuery(text, limits).match;
      } catch (err) {
        assert.ok(err instanceof ConclaveError && err.code === 'INVALID_SEARCH_QUERY', `${JSON.stringify(text)}: ${String(err)}`);
        return;
      }
      assert.doesNotThrow(() => run.all(match), `${JSON.stringify(text)} → ${match}`);
    }),
    { numRuns: 5000 },
  );
});

// A model of the language over documents of lowercase ASCII words (which FTS5 tokenises as they are).
const vocabulary = ['apple', 'apricot', 'banana', 'berry', 'cherry', 'date'];
function holds(node: SearchQueryNode, words: readonly string[]): boolean {
  switch (node.kind) {
    case 'term':
      return words.some((w) => (node.prefix ? w.startsWith(node.text) : w === node.text));
    case 'phrase': {
      const phrase = node.text.split(' ').filter((w) => w !== '');
      return words.some((_, i) => phrase.every((p, j) => words[i + j] === p));
    }
    case 'and':
      return node.children.every((c) => holds(c, words));
    case 'or':
      return node.children.some((c) => holds(c, words));
    case 'not':
      return !holds(node.child, words);
  }
}

test('FTS5 answers a parsed query exactly as the model of the language does', () => {
  const word = fc.constantFrom(...vocabulary);
  const doc = fc.array(word, { minLength: 1, maxLength: 8 });
  const term: fc.Arbitrary<string> = fc.oneof(word, word.map((w) => `${w.slice(0, 2)}*`), fc.array(word, { minLength: 2, maxLength: 3 }).map((ws) => `"${ws.join(' ')}"`));
  const { query } = fc.letrec<{ query: string; group: string }>((tie) => ({
    query: fc.oneof(
      { depthSize: 'small' },
      term,
      fc.tuple(tie('group'), tie('group')).map(([a, b]) => `${a} ${b}`),
      fc.tuple(tie('group'), tie('group')).map(([a, b]) => `${a} OR ${b}`),
      fc.tuple(tie('group'), tie('group')).map(([a, b]) => `${a} AND ${b}`),
      fc.tuple(tie('group'), tie('group')).map(([a, b]) => `${a} -${b}`),
    ),
    group: fc.oneof(term, tie('query').map((q) => `(${q})`)),
  }));
  fc.assert(
    fc.property(fc.array(doc, { minLength: 1, maxLength: 12 }), query, (docs, text) => {
      let parsed;
      try {
        parsed = parseSearchQuery(text, { queryCharsMax: 512, termsMax: 64 });
      } catch (err) {
        // The one thing a generated query can break: a negation alone in its group, or beside OR.
        assert.ok(err instanceof ConclaveError && err.code === 'INVALID_SEARCH_QUERY' && /negated|nests deeper/.test(err.message), `${text}: ${String(err)}`);
        return;
      }
      const db = ftsTable();
      docs.forEach((words, i) => db.prepare('INSERT INTO search_index (rowid, node_id, name, body) VALUES (?, ?, ?, ?)').run(i + 1, String(i), '', words.join(' ')));
      const found = (db.prepare('SELECT rowid FROM search_index WHERE search_index MATCH ? ORDER BY rowid').pluck().all(parsed.match) as number[]).map((r) => r - 1);
      const expected = docs.flatMap((words, i) => (holds(parsed.tree, words) ? [i] : []));
      assert.deepEqual(found, expected, `${text} → ${parsed.match} over ${JSON.stringify(docs)}`);
      db.close();
    }),
    { numRuns: 400 },
  );
});

test('what is indexed: a schema\'s fulltext properties (and arrays of strings), or every string of an untyped node; markers are taken out', () => {
  const schema = { properties: { title: { type: 'string' as const, fulltext: true }, tags: { type: 'array' as const, fulltext: true }, code: { type: 'string' as const } }, additionalProperties: true };
  assert.deepEqual(searchTextOf({ name: 'n', properties: { title: 'Hello', tags: ['a', 1, 'b'], code: 'zz', other: 'yy' } }, schema), { name: 'n', body: 'Hello\na\nb' });
  assert.deepEqual(searchTextOf({ name: 'n\uE000', properties: { a: { b: ['x', { c: 'y\uE001' }] }, n: 3 } }, undefined), { name: 'n ', body: 'x\ny ' });
  assert.deepEqual(snippetRuns('a \uE000b\uE001 c'), [{ text: 'a ', match: false }, { text: 'b', match: true }, { text: ' c', match: false }]);
});
