import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { applyCommand } from '../../src/content/apply.js';
import type { Command } from '../../src/content/commands.js';
import { etagOf } from '../../src/content/model.js';
import { ConclaveError } from '../../src/errors/catalogue.js';
import { ContentTables } from '../../src/storage/contentTables.js';
import { openDatabase, type Db } from '../../src/storage/database.js';
import { tempDir } from '../helpers/tmp.js';

// apply() against the real SQLite tables, one entry per transaction as the write pipeline does it.
let db: Db;
let tables: ContentTables;
let cleanup: () => void;
let ids = 0;
const time = '2026-01-01T00:00:00.000Z';

function run(command: Command) {
  return db.transaction(() => applyCommand(tables, command))();
}
function refusal(command: Command): string {
  const digest = tables.digest();
  try {
    run(command);
  } catch (err) {
    assert.ok(err instanceof ConclaveError, String(err));
    assert.equal(tables.digest(), digest, `a refused ${command.type} changed nothing`);
    return err.code;
  }
  assert.fail(`expected ${command.type} to be refused`);
}
const put = (path: string, properties = {}, extra: object = {}): Command => ({
  type: 'put', path, newId: `id-${++ids}`, nodeType: 'node', properties, time, user: 'u', ...extra,
});
const untypedPut = (path: string, properties = {}): Command => {
  const { nodeType: _typed, ...rest } = put(path, properties) as Extract<Command, { type: 'put' }>;
  return rest;
};
const childNames = (path: string) => tables.children(tables.nodeByPath(path)!.id).map((c) => c.name);

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

test('put creates under an existing parent and replaces in place', () => {
  const created = run(put('/a', { x: 1 }));
  assert.equal(created.created, true);
  assert.equal(created.node!.version, 1);
  assert.equal(created.node!.parentId, 'root');
  const replaced = run(put('/a', { y: 2 }));
  assert.equal(replaced.created, false);
  assert.equal(replaced.node!.id, created.node!.id);
  assert.equal(replaced.node!.version, 2);
  assert.deepEqual(replaced.node!.properties, { y: 2 });
  assert.equal(refusal(put('/nope/b')), 'PARENT_NOT_FOUND');
});

test('preconditions: If-None-Match * and If-Match', () => {
  run(put('/p'));
  assert.equal(refusal(put('/p', {}, { ifNoneMatch: '*' })), 'PRECONDITION_FAILED');
  const node = tables.nodeByPath('/p')!;
  assert.equal(refusal(put('/p', {}, { ifMatch: ['"other:1"'] })), 'PRECONDITION_FAILED');
  assert.equal(refusal(put('/q', {}, { ifMatch: '*' })), 'PRECONDITION_FAILED');
  assert.equal(run(put('/p', { ok: true }, { ifMatch: [etagOf(node)] })).node!.version, 2);
  // A tag of a deleted-and-recreated node never matches its successor.
  run({ type: 'delete', path: '/p', recursive: false, time, user: 'u' });
  run(put('/p'));
  assert.equal(refusal(put('/p', {}, { ifMatch: [etagOf(node)] })), 'PRECONDITION_FAILED');
});

test('patch merges properties and bumps the version', () => {
  run(put('/m', { a: 1, b: { c: 2 } }));
  const patched = run({ type: 'patch', path: '/m', patch: { a: null, b: { d: 3 } }, time, user: 'v' });
  assert.deepEqual(patched.node!.properties, { b: { c: 2, d: 3 } });
  assert.equal(patched.node!.modifiedBy, 'v');
  assert.equal(refusal({ type: 'patch', path: '/none', patch: {}, time, user: 'v' }), 'NODE_NOT_FOUND');
  assert.equal(
    refusal({ type: 'patch', path: '/m', patch: { big: 'x'.repeat(1024 * 1024) }, time, user: 'v' }),
    'INVALID_PROPERTIES',
  );
});

test('delete needs recursive for a subtree and never takes the root', () => {
  run(put('/d'));
  run(put('/d/e'));
  run(put('/d/e/f'));
  run(put('/d-sibling'));
  assert.equal(refusal({ type: 'delete', path: '/d', recursive: false, time, user: 'u' }), 'NODE_HAS_CHILDREN');
  assert.equal(refusal({ type: 'delete', path: '/', recursive: true, time, user: 'u' }), 'ROOT_IMMUTABLE');
  assert.equal(run({ type: 'delete', path: '/d', recursive: true, time, user: 'u' }).deletedCount, 3);
  assert.equal(tables.nodeByPath('/d/e/f'), undefined);
  assert.ok(tables.nodeByPath('/d-sibling'));
});

test('move carries the subtree, refuses cycles and collisions', () => {
  run(put('/src'));
  run(put('/src/x'));
  run(put('/src/x/y'));
  run(put('/dst'));
  run(put('/dst/first'));
  assert.equal(refusal({ type: 'move', from: '/src', to: '/src/x/z', before: null, time, user: 'u' }), 'MOVE_INTO_DESCENDANT');
  assert.equal(refusal({ type: 'move', from: '/src', to: '/dst/first', before: null, time, user: 'u' }), 'DESTINATION_EXISTS');
  assert.equal(refusal({ type: 'move', from: '/src', to: '/missing/src', before: null, time, user: 'u' }), 'PARENT_NOT_FOUND');
  assert.equal(refusal({ type: 'move', from: '/src', to: '/dst/src', before: 'ghost', time, user: 'u' }), 'NODE_NOT_FOUND');
  const moved = run({ type: 'move', from: '/src', to: '/dst/src', before: 'first', time, user: 'u' });
  assert.equal(moved.node!.path, '/dst/src');
  assert.equal(tables.nodeByPath('/dst/src/x/y')!.parentId, tables.nodeByPath('/dst/src/x')!.id);
  assert.equal(tables.nodeByPath('/src/x'), undefined);
  assert.deepEqual(childNames('/dst'), ['src', 'first']);
  // Rename in place, then reposition without renaming.
  run({ type: 'move', from: '/dst/src', to: '/dst/renamed', before: null, time, user: 'u' });
  assert.deepEqual(childNames('/dst'), ['first', 'renamed']);
  run({ type: 'move', from: '/dst/renamed', to: '/dst/renamed', before: 'first', time, user: 'u' });
  assert.deepEqual(childNames('/dst'), ['renamed', 'first']);
});

test('reorder names every child exactly once', () => {
  run(put('/o'));
  for (const n of ['a', 'b', 'c']) run(put(`/o/${n}`));
  assert.equal(refusal({ type: 'reorder', path: '/o', order: ['a', 'b'], time, user: 'u' }), 'INVALID_ORDER');
  assert.equal(refusal({ type: 'reorder', path: '/o', order: ['a', 'a', 'b'], time, user: 'u' }), 'INVALID_ORDER');
  assert.equal(refusal({ type: 'reorder', path: '/o', order: ['a', 'b', 'z'], time, user: 'u' }), 'INVALID_ORDER');
  const version = tables.nodeByPath('/o')!.version;
  run({ type: 'reorder', path: '/o', order: ['c', 'a', 'b'], time, user: 'u' });
  assert.deepEqual(childNames('/o'), ['c', 'a', 'b']);
  assert.equal(tables.nodeByPath('/o')!.version, version + 1);
  run(put('/o/d'));
  assert.deepEqual(childNames('/o'), ['c', 'a', 'b', 'd']);
});

test('binaries are set and removed by reference', () => {
  run(put('/bin'));
  const binary = { sha256: 'a'.repeat(64), size: 3, contentType: 'text/plain' };
  run({ type: 'setBinary', path: '/bin', property: 'file', binary, time, user: 'u' });
  assert.deepEqual(tables.nodeByPath('/bin')!.binaries, { file: binary });
  assert.equal(refusal({ type: 'deleteBinary', path: '/bin', property: 'other', time, user: 'u' }), 'BINARY_NOT_FOUND');
  run({ type: 'deleteBinary', path: '/bin', property: 'file', time, user: 'u' });
  assert.deepEqual(tables.nodeByPath('/bin')!.binaries, {});
});

test('users: the last admin stays', () => {
  assert.equal(refusal({ type: 'deleteUser', name: 'admin', time }), 'LAST_ADMIN');
  assert.equal(refusal({ type: 'putUser', name: 'admin', roles: ['reader'], createOnly: false, time }), 'LAST_ADMIN');
  assert.equal(refusal({ type: 'putUser', name: 'admin', passwordHash: 'x', roles: ['admin'], createOnly: true, time }), 'PRECONDITION_FAILED');
  run({ type: 'putUser', name: 'second', passwordHash: 'x', roles: ['admin'], createOnly: true, time });
  run({ type: 'putUser', name: 'admin', roles: ['reader'], createOnly: false, time });
  assert.deepEqual(tables.userByName('admin')!.roles, ['reader']);
  assert.equal(tables.userByName('admin')!.version, 2);
  assert.equal(refusal({ type: 'deleteUser', name: 'ghost', time }), 'USER_NOT_FOUND');
});

test('the same commands on two fresh stores give the same digest', () => {
  const commands: Command[] = [
    { type: 'bootstrap', rootId: 'r', time, tokenKey: 'k', adminPasswordHash: 'h' },
    { type: 'put', path: '/a', newId: 'a', nodeType: 'node', properties: { n: 1 }, time, user: 'u' },
    { type: 'put', path: '/a/b', newId: 'b', nodeType: 'node', properties: {}, time, user: 'u' },
    { type: 'move', from: '/a', to: '/c', before: null, time, user: 'u' },
  ];
  const digestAfterReplay = () => {
    const tmp = tempDir();
    const store = openDatabase(tmp.dir);
    try {
      const t = new ContentTables(store);
      for (const c of commands) store.transaction(() => applyCommand(t, c))();
      return t.digest();
    } finally {
      store.close();
      tmp.cleanup();
    }
  };
  assert.equal(digestAfterReplay(), digestAfterReplay());
});

test('a put without a type keeps the type of the node it replaces, and creates with the default type', () => {
  const folder = run(put('/typed-folder', { a: 1 }, { nodeType: 'folder' }));
  assert.equal(folder.node!.type, 'folder');
  const replaced = run(untypedPut('/typed-folder', { b: 2 }));
  assert.equal(replaced.node!.type, 'folder');
  assert.deepEqual(replaced.node!.properties, { b: 2 });
  assert.equal(run(put('/typed-folder', {}, { nodeType: 'page' })).node!.type, 'page', 'a type given is a type set');
  assert.equal(run(untypedPut('/untyped-new')).node!.type, 'node');
  assert.equal(run(untypedPut('/', { title: 'root' })).node!.type, 'root', 'the root keeps its type too');
});
