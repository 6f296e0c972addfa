import assert from 'node:assert/strict';
import { test } from 'node:test';

import fc from 'fast-check';

import { applyCommand } from '../../src/content/apply.js';
import type { Command } from '../../src/content/commands.js';
import type { ContentNode, User } from '../../src/content/model.js';
import { canonicalJson, contentDigest, utf8Before } from '../../src/replication/contentDigest.js';
import { ContentTables } from '../../src/storage/contentTables.js';
import { openDatabase } from '../../src/storage/database.js';
import { tempDir } from '../helpers/tmp.js';

const time = '2026-01-01T00:00:00.000Z';
const sha = (c: string) => c.repeat(64);

function node(id: string, path: string, properties: ContentNode['properties'] = {}, binaries: ContentNode['binaries'] = {}): ContentNode {
  return {
    id,
    path,
    name: path.slice(path.lastIndexOf('/') + 1),
    parentId: path === '/' ? null : 'root',
    position: 0,
    type: 'node',
    properties,
    binaries,
    version: 1,
    createdAt: time,
    createdBy: 'admin',
    modifiedAt: time,
    modifiedBy: 'admin',
  };
}

const admin: User = { name: 'admin', passwordHash: 'h', roles: ['admin'], version: 1, createdAt: time, modifiedAt: time };

test('canonical JSON sorts keys at every depth and keeps array order', () => {
  assert.equal(canonicalJson({ b: 1, a: { d: [3, { z: null, y: 'x' }], c: true } }), '{"a":{"c":true,"d":[3,{"y":"x","z":null}]},"b":1}');
  assert.equal(canonicalJson(['é', '\n', 1.5, -0]), '["é","\\n",1.5,0]');
});

test('ids and names are ordered by their UTF-8 bytes, as SQLite orders them, whatever their characters', () => {
  // The characters where UTF-16 and UTF-8 orders part: the last below the surrogates, the private use area above
  // them, the end of the BMP, and a character outside it (a surrogate pair in UTF-16).
  const edgy = fc.string({ unit: fc.constantFrom('a', 'z', 'é', '\uD7FF', '\uE000', '\uFFFF', '😀', '𝄞'), maxLength: 6 });
  const anyUnits = fc.string({ unit: 'binary', maxLength: 8 });
  for (const text of [edgy, anyUnits]) {
    fc.assert(
      fc.property(text, text, (a, b) => utf8Before(a, b) === Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')) < 0),
      { numRuns: 5000 },
    );
  }
});

test('the digest ignores the key order of properties, and changes with any content', () => {
  const base = contentDigest([node('a', '/a', { x: 1, y: { p: 1, q: 2 } })], [admin]);
  assert.match(base.digest, /^[0-9a-f]{64}$/);
  assert.deepEqual(base.counts, { nodes: 1, users: 1, binaryReferences: 0, blobs: 0, versions: 0, schemaLines: 0 });
  assert.equal(contentDigest([node('a', '/a', { y: { q: 2, p: 1 }, x: 1 })], [admin]).digest, base.digest, 'same content, other key order');

  const variants: Array<[string, ContentNode[], User[]]> = [
    ['a property value', [node('a', '/a', { x: 2, y: { p: 1, q: 2 } })], [admin]],
    ['a property type', [node('a', '/a', { x: '1', y: { p: 1, q: 2 } })], [admin]],
    ['a path', [node('a', '/b', { x: 1, y: { p: 1, q: 2 } })], [admin]],
    ['a position', [{ ...node('a', '/a', { x: 1, y: { p: 1, q: 2 } }), position: 1 }], [admin]],
    ['a version', [{ ...node('a', '/a', { x: 1, y: { p: 1, q: 2 } }), version: 2 }], [admin]],
    ['a binary', [node('a', '/a', { x: 1, y: { p: 1, q: 2 } }, { f: { sha256: sha('1'), size: 3, contentType: 'text/plain' } })], [admin]],
    ['a user', [node('a', '/a', { x: 1, y: { p: 1, q: 2 } })], [{ ...admin, roles: ['reader'] }]],
    ['no user', [node('a', '/a', { x: 1, y: { p: 1, q: 2 } })], []],
    ['another node', [node('a', '/a', { x: 1, y: { p: 1, q: 2 } }), node('b', '/b')], [admin]],
  ];
  const seen = new Set([base.digest]);
  for (const [what, nodes, users] of variants) {
    const { digest } = contentDigest(nodes, users);
    assert.ok(!seen.has(digest), `changing ${what} changes the digest`);
    seen.add(digest);
  }
});

test('binaries are counted and ordered by name, not by insertion', () => {
  const f = { sha256: sha('1'), size: 3, contentType: 'text/plain' };
  const g = { sha256: sha('2'), size: 4, contentType: 'image/png' };
  const one = contentDigest([node('a', '/a', {}, { f, g }), node('b', '/b', {}, { f })], []);
  const two = contentDigest([node('a', '/a', {}, { g, f }), node('b', '/b', {}, { f })], []);
  assert.equal(one.digest, two.digest);
  assert.deepEqual(one.counts, { nodes: 2, users: 0, binaryReferences: 3, blobs: 2, versions: 0, schemaLines: 0 });
});

test('nodes out of id order are a broken invariant, not a different digest', () => {
  assert.throws(() => contentDigest([node('b', '/b'), node('a', '/a')], []), /invariant/);
});

test('two stores that applied the same commands in separate databases digest the same; a different command differs', () => {
  const commands: Command[] = [
    { type: 'bootstrap', rootId: 'root', time, tokenKey: 'k', adminPasswordHash: 'h', history: { versionsPerNodeMax: 10 } },
    { type: 'put', path: '/b', newId: 'id-b', nodeType: 'node', properties: { z: 1, a: [1, 2] }, time, user: 'admin' },
    { type: 'put', path: '/a', newId: 'id-a', nodeType: 'page', properties: {}, time, user: 'admin' },
    { type: 'patch', path: '/b', patch: { m: { n: 'o' } }, time, user: 'admin' },
    { type: 'setBinary', path: '/a', property: 'file', binary: { sha256: sha('3'), size: 9, contentType: 'text/plain' }, time, user: 'admin' },
    { type: 'putUser', name: 'editor', passwordHash: 'e', roles: ['editor'], createOnly: true, time },
    { type: 'putSchema', typeName: 'article', definition: { properties: { title: { type: 'string' } }, additionalProperties: true }, time, user: 'admin' },
  ];
  const digestOf = (list: Command[]) => {
    const tmp = tempDir();
    const db = openDatabase(tmp.dir);
    try {
      const tables = new ContentTables(db);
      // Rows inserted in another order on one side must not matter: only the content does.
      for (const command of list) applyCommand(tables, command);
      return contentDigest(tables.nodesById(), tables.users(), tables.versions.all(), tables.schemas.digestLines());
    } finally {
      db.close();
      tmp.cleanup();
    }
  };
  const one = digestOf(commands);
  const two = digestOf(commands);
  assert.equal(one.digest, two.digest);
  // Versions: three creations, a patch and an upload.
  assert.deepEqual(one.counts, { nodes: 3, users: 2, binaryReferences: 1, blobs: 1, versions: 5, schemaLines: 1 });
  const changed = digestOf([...commands.slice(0, -2), { type: 'putUser', name: 'editor', passwordHash: 'e', roles: ['reader'], createOnly: true, time }, commands.at(-1)!]);
  assert.notEqual(changed.digest, one.digest);
  const otherSchema = digestOf([...commands.slice(0, -1), { type: 'putSchema', typeName: 'article', definition: { properties: {}, additionalProperties: true }, time, user: 'admin' }]);
  assert.notEqual(otherSchema.digest, one.digest, 'the schemas are part of the digest');
});
