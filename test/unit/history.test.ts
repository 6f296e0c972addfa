import assert from 'node:assert/strict';
import { test } from 'node:test';

import fc from 'fast-check';

import { applyCommand, type ApplyResult } from '../../src/content/apply.js';
import type { BatchOperation, Command } from '../../src/content/commands.js';
import type { ContentNode, JsonObject } from '../../src/content/model.js';
import { ConclaveError } from '../../src/errors/catalogue.js';
import { contentDigest } from '../../src/replication/contentDigest.js';
import { ContentTables } from '../../src/storage/contentTables.js';
import { openDatabase, type Db } from '../../src/storage/database.js';
import { tempDir } from '../helpers/tmp.js';

// History against the real SQLite tables, one entry per transaction as the write pipeline applies them.
const time = '2026-01-01T00:00:00.000Z';
const later = (minutes: number) => new Date(Date.parse(time) + minutes * 60_000).toISOString();

interface Store {
  readonly db: Db;
  readonly tables: ContentTables;
  index: number;
  readonly close: () => void;
}

function openStore(history: { versionsPerNodeMax: number } | null = { versionsPerNodeMax: 100 }): Store {
  const tmp = tempDir();
  const db = openDatabase(tmp.dir);
  const tables = new ContentTables(db);
  const store: Store = {
    db,
    tables,
    index: 0,
    close: () => {
      db.close();
      tmp.cleanup();
    },
  };
  run(store, { type: 'bootstrap', rootId: 'root', time, tokenKeyId: 'k', adminPasswordHash: 'h', ...(history === null ? {} : { history }) });
  return store;
}

/** Applies `command` as entry index+1: all of it, or nothing when it throws. */
function run(store: Store, command: Command): ApplyResult {
  store.index++;
  store.tables.beginEntry(store.index);
  return store.db.transaction(() => applyCommand(store.tables, command))();
}

function refusal(store: Store, command: Command): string {
  try {
    run(store, command);
  } catch (err) {
    assert.ok(err instanceof ConclaveError, String(err));
    return err.code;
  }
  assert.fail(`${command.type} was applied`);
}

let ids = 0;
const put = (path: string, properties: JsonObject = {}, at = time, nodeType = 'node'): Command => ({
  type: 'put',
  path,
  newId: `id-${++ids}`,
  nodeType,
  properties,
  time: at,
  user: 'ed',
});
const patch = (path: string, p: JsonObject, at = time): Command => ({ type: 'patch', path, patch: p, time: at, user: 'ed' });
const del = (path: string, at = time, recursive = true): Command => ({ type: 'delete', path, recursive, time: at, user: 'del' });
const restore = (id: string, version: number, path: string, at = time): Command => ({ type: 'restore', id, version, path, time: at, user: 'rx' });
const binary = { sha256: 'a'.repeat(64), size: 3, contentType: 'text/plain' };

/** The state a version holds that a restore brings back. */
const content = (node: Pick<ContentNode, 'type' | 'properties' | 'binaries'>) => ({ type: node.type, properties: node.properties, binaries: node.binaries });

test('every change keeps a version: listed newest first with what made it, each readable with the state it left', () => {
  const s = openStore();
  try {
    const created = run(s, put('/a', { title: 'one' })).node!;
    run(s, patch('/a', { title: 'two' }));
    run(s, { type: 'setBinary', path: '/a', property: 'file', binary, time: later(1), user: 'up' });
    run(s, { type: 'move', from: '/a', to: '/b', before: null, time: later(2), user: 'mv' });
    run(s, { type: 'deleteBinary', path: '/b', property: 'file', time: later(3), user: 'up' });
    const page = s.tables.versions.page(created.id, Number.MAX_SAFE_INTEGER, 10);
    assert.deepEqual(
      page.items.map((v) => [v.version, v.op, v.path, v.by]),
      [
        [5, 'binary-removed', '/b', 'up'],
        [4, 'moved', '/b', 'mv'],
        [3, 'binary-set', '/a', 'up'],
        [2, 'updated', '/a', 'ed'],
        [1, 'created', '/a', 'ed'],
      ],
    );
    assert.equal(page.more, false);
    assert.deepEqual(page.items.map((v) => v.supersededAt), [null, later(3), later(2), later(1), time]);
    assert.deepEqual(s.tables.nodeVersion(created.id, 2)!.node.properties, { title: 'two' });
    assert.deepEqual(s.tables.nodeVersion(created.id, 3)!.node.binaries, { file: binary });
    assert.equal(s.tables.nodeVersion(created.id, 3)!.node.path, '/a', 'a version keeps the path it had, though the node moved since');
    assert.equal(s.tables.nodeVersion(created.id, 6), undefined);
    // Pages of two: the cursor is the last version listed.
    const first = s.tables.versions.page(created.id, Number.MAX_SAFE_INTEGER, 2);
    assert.equal(first.more, true);
    assert.deepEqual(s.tables.versions.page(created.id, 4, 2).items.map((v) => v.version), [3, 2]);
  } finally {
    s.close();
  }
});

test('a restore makes an earlier version current as a new version, and a deleted node comes back under its id', () => {
  const s = openStore();
  try {
    run(s, put('/docs'));
    const node = run(s, put('/docs/a', { n: 1 })).node!;
    run(s, { type: 'setBinary', path: '/docs/a', property: 'f', binary, time, user: 'up' });
    run(s, put('/docs/a', { n: 2 }, later(1), 'article'));
    const restored = run(s, restore(node.id, 2, '/docs/a', later(2)));
    assert.equal(restored.node!.version, 4);
    assert.deepEqual(content(restored.node!), { type: 'node', properties: { n: 1 }, binaries: { f: binary } });
    const v4 = s.tables.nodeVersion(node.id, 4)!;
    assert.equal(v4.op, 'restored');
    assert.equal(v4.restoredFrom, 2);

    run(s, put('/docs/a/child', { c: true }));
    const deleted = run(s, del('/docs/a', later(3)));
    assert.equal(deleted.deletedCount, 2);
    const tombstone = s.tables.nodeVersion(node.id, 5)!;
    assert.equal(tombstone.op, 'deleted');
    assert.equal(tombstone.by, 'del');
    assert.equal(tombstone.at, later(3));
    assert.deepEqual(content(tombstone.node), content(restored.node!), 'a delete keeps the last state');
    // Listed under its parent, with the descendant under its own parent (deleted too).
    const docs = s.tables.nodeByPath('/docs')!;
    assert.deepEqual(s.tables.versions.deletedChildren(docs.id, undefined, 10).items.map((v) => v.path), ['/docs/a']);
    assert.equal(s.tables.versions.deletedAt('/docs/a'), node.id);
    assert.equal(s.tables.versions.deletedAt('/docs/a/child') !== undefined, true);

    // Back under its id, at its path, as version 6, with the state of version 3; its child stays deleted.
    const back = run(s, restore(node.id, 3, '/docs/a', later(4)));
    assert.equal(back.created, true);
    assert.equal(back.node!.id, node.id);
    assert.equal(back.node!.version, 6);
    assert.deepEqual(content(back.node!), { type: 'article', properties: { n: 2 }, binaries: { f: binary } });
    assert.equal(back.node!.createdAt, node.createdAt, 'it keeps when it was first made');
    assert.deepEqual(s.tables.nodeByPath('/docs/a')!.id, node.id);
    assert.equal(s.tables.nodeByPath('/docs/a/child'), undefined);
    assert.deepEqual(s.tables.versions.deletedChildren(docs.id, undefined, 10).items, [], 'a restored node is not deleted any more');
    assert.equal(s.tables.versions.deletedAt('/docs/a'), undefined);
  } finally {
    s.close();
  }
});

test('a restore is refused, changing nothing, when its version, its place or its precondition is wrong', () => {
  const s = openStore();
  try {
    run(s, put('/p'));
    const node = run(s, put('/p/x', { v: 1 })).node!;
    run(s, patch('/p/x', { v: 2 }));
    const digest = s.tables.digest();
    assert.equal(refusal(s, restore(node.id, 9, '/p/x')), 'VERSION_NOT_FOUND');
    assert.equal(refusal(s, restore('no-such-id', 1, '/p/x')), 'VERSION_NOT_FOUND');
    assert.equal(refusal(s, { ...restore(node.id, 1, '/p/x'), ifMatch: ['"other:1"'] } as Command), 'PRECONDITION_FAILED');
    run(s, del('/p/x'));
    run(s, put('/p/x', { someone: 'else' }));
    const afterDelete = s.tables.digest();
    assert.notEqual(afterDelete, digest);
    assert.equal(refusal(s, restore(node.id, 2, '/p/x')), 'DESTINATION_EXISTS', 'another node lives there now');
    assert.equal(refusal(s, restore(node.id, 2, '/gone/x')), 'PARENT_NOT_FOUND');
    assert.equal(s.tables.digest(), afterDelete, 'nothing changed');
    // Elsewhere, it comes back.
    assert.equal(run(s, restore(node.id, 2, '/p/y')).node!.path, '/p/y');
  } finally {
    s.close();
  }
});

test('retention: a node keeps versionsPerNodeMax versions; versions superseded before the cut-off go, current ones never', () => {
  const s = openStore({ versionsPerNodeMax: 3 });
  try {
    const a = run(s, put('/a', { v: 0 })).node!;
    for (let i = 1; i <= 5; i++) run(s, patch('/a', { v: i }, later(i)));
    assert.deepEqual(s.tables.versions.page(a.id, Number.MAX_SAFE_INTEGER, 10).items.map((v) => v.version), [6, 5, 4]);
    assert.equal(refusal(s, restore(a.id, 3, '/a')), 'VERSION_NOT_FOUND');

    const b = run(s, put('/b', {}, later(0))).node!;
    run(s, del('/b', later(1)));
    // Everything superseded before minute 5 goes: /a's version 4 (superseded at 4), /b's whole history.
    run(s, { type: 'pruneVersions', versionsPerNodeMax: 3, supersededBefore: later(5), versionsMax: 100, time: later(60) });
    assert.deepEqual(s.tables.versions.page(a.id, Number.MAX_SAFE_INTEGER, 10).items.map((v) => v.version), [6, 5]);
    assert.equal(s.tables.versions.lastVersionNumber(b.id), undefined);
    assert.equal(s.tables.versions.deletedAt('/b'), undefined);
    // Far in the future: the current version of /a (and of the root) stays.
    run(s, { type: 'pruneVersions', versionsPerNodeMax: 2, supersededBefore: later(10_000), versionsMax: 1, time: later(60) });
    run(s, { type: 'pruneVersions', versionsPerNodeMax: 2, supersededBefore: later(10_000), versionsMax: 1, time: later(60) });
    assert.deepEqual(s.tables.versions.page(a.id, Number.MAX_SAFE_INTEGER, 10).items.map((v) => v.version), [6]);
    assert.equal(s.tables.historyRetention()!.versionsPerNodeMax, 2);
  } finally {
    s.close();
  }
});

test('delete and restore cycles keep a node within versionsPerNodeMax; a new node never takes an id history keeps', () => {
  const s = openStore({ versionsPerNodeMax: 3 });
  try {
    run(s, put('/dir'));
    const node = run(s, put('/dir/x', { n: 0 })).node!;
    for (let i = 0; i < 10; i++) {
      run(s, del('/dir/x', later(i)));
      run(s, restore(node.id, s.tables.lastVersionNumber(node.id)! - 1, '/dir/x', later(i)));
    }
    const listed = s.tables.versions.page(node.id, Number.MAX_SAFE_INTEGER, 100).items.map((v) => v.version);
    assert.equal(listed.length, 3, `kept ${listed.join(', ')}`);
    run(s, del('/dir', later(20)));
    assert.ok(s.db.prepare('SELECT count(*) FROM versions WHERE node_id = ?').pluck().get(node.id)! as number <= 3);

    // A forged command naming the deleted node's id for a new node: refused, nothing stored.
    const digest = s.tables.digest();
    assert.equal(refusal(s, { type: 'put', path: '/other', newId: node.id, properties: {}, time, user: 'ed' }), 'NODE_ID_IN_USE');
    const live = run(s, put('/live')).node!;
    assert.equal(refusal(s, { type: 'put', path: '/another', newId: live.id, properties: {}, time, user: 'ed' }), 'NODE_ID_IN_USE');
    assert.equal(s.tables.digest().length, digest.length);
  } finally {
    s.close();
  }
});

test('before history starts nothing is kept; once it starts, the version a change replaces is kept too', () => {
  const s = openStore(null);
  try {
    const a = run(s, put('/a', { v: 1 })).node!;
    run(s, patch('/a', { v: 2 }));
    assert.deepEqual(s.tables.versions.page(a.id, Number.MAX_SAFE_INTEGER, 10).items.map((v) => [v.version, v.op]), [[2, null]], 'the current one only, from the node');
    assert.equal(refusal(s, restore(a.id, 1, '/a')), 'HISTORY_NOT_STARTED');
    assert.equal([...s.tables.versions.all()].length, 0);
    run(s, { type: 'startHistory', versionsPerNodeMax: 10, time: later(1) });
    run(s, patch('/a', { v: 3 }, later(2)));
    assert.deepEqual(s.tables.versions.page(a.id, Number.MAX_SAFE_INTEGER, 10).items.map((v) => [v.version, v.op, v.index]), [
      [3, 'updated', s.index],
      [2, null, null],
    ]);
    assert.deepEqual(s.tables.nodeVersion(a.id, 2)!.node.properties, { v: 2 });
  } finally {
    s.close();
  }
});

test('blobs named only by kept versions stay referenced; the digest covers the versions', () => {
  const s = openStore();
  try {
    run(s, put('/a'));
    run(s, { type: 'setBinary', path: '/a', property: 'f', binary, time, user: 'up' });
    run(s, { type: 'deleteBinary', path: '/a', property: 'f', time, user: 'up' });
    assert.deepEqual(s.tables.blobReferences().map((r) => r.sha256), [binary.sha256]);
    assert.equal(s.tables.isBlobReferenced(binary.sha256), true);
    const withVersions = contentDigest(s.tables.nodesById(), s.tables.users(), s.tables.versions.all());
    const without = contentDigest(s.tables.nodesById(), s.tables.users());
    assert.notEqual(withVersions.digest, without.digest);
    assert.equal(withVersions.counts.versions, 4);
    assert.equal(without.counts.versions, 0);
  } finally {
    s.close();
  }
});

// ---- a model of history, against random sequences of writes, batches and restores

type Step =
  | { kind: 'put'; name: number; value: number }
  | { kind: 'patch'; name: number; value: number }
  | { kind: 'delete'; name: number }
  | { kind: 'move'; name: number; to: number }
  | { kind: 'restore'; name: number; back: number }
  | { kind: 'batch'; names: number[]; fail: boolean };

const names = ['a', 'b', 'c', 'd'];
const pathOf = (n: number) => `/${names[n]}`;

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('put' as const), name: fc.nat(3), value: fc.nat(9) }),
  fc.record({ kind: fc.constant('patch' as const), name: fc.nat(3), value: fc.nat(9) }),
  fc.record({ kind: fc.constant('delete' as const), name: fc.nat(3) }),
  fc.record({ kind: fc.constant('move' as const), name: fc.nat(3), to: fc.nat(3) }),
  fc.record({ kind: fc.constant('restore' as const), name: fc.nat(3), back: fc.nat(4) }),
  fc.record({ kind: fc.constant('batch' as const), names: fc.array(fc.nat(3), { minLength: 1, maxLength: 3 }), fail: fc.boolean() }),
);

/** The versions each node keeps in the property test below. */
const keptMax = 4;

interface ModelNode {
  id: string;
  path: string | null;
  /** Every version's content by number; the last is current (or the delete). */
  versions: Map<number, { properties: JsonObject; deleted: boolean }>;
}

test('property: every version is readable as the model kept it, restores return the exact earlier state, batches are all or nothing', () => {
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 40 }), (steps) => {
      // A small retention, so that trimming (at changes, deletes and restores) is part of every run.
      const s = openStore({ versionsPerNodeMax: keptMax });
      const model = new Map<string, ModelNode>();
      const livePath = (path: string) => [...model.values()].find((m) => m.path === path);
      const last = (m: ModelNode) => Math.max(...m.versions.keys());
      /** A new version of `m`: the oldest go beyond the retention, which counts the newest. */
      const addVersion = (m: ModelNode, v: { properties: JsonObject; deleted: boolean }) => {
        const next = last(m) + 1;
        m.versions.set(next, v);
        for (const k of [...m.versions.keys()]) if (k <= next - keptMax) m.versions.delete(k);
      };
      const current = (m: ModelNode) => m.versions.get(last(m))!;
      const tryRun = (command: Command) => {
        try {
          return run(s, command);
        } catch (err) {
          if (err instanceof ConclaveError) return undefined;
          throw err;
        }
      };
      try {
        for (const st of steps) {
          if (st.kind === 'put' || st.kind === 'patch') {
            const path = pathOf(st.name);
            const props = { v: st.value };
            const m = livePath(path);
            const result = tryRun(st.kind === 'put' ? put(path, props) : patch(path, props));
            if (m === undefined) {
              if (st.kind === 'put') {
                assert.ok(result?.node);
                model.set(result.node.id, { id: result.node.id, path, versions: new Map([[1, { properties: props, deleted: false }]]) });
              } else assert.equal(result, undefined);
            } else {
              assert.ok(result?.node);
              addVersion(m, { properties: st.kind === 'put' ? props : { ...current(m).properties, ...props }, deleted: false });
            }
          } else if (st.kind === 'delete') {
            const m = livePath(pathOf(st.name));
            const result = tryRun(del(pathOf(st.name)));
            assert.equal(result === undefined, m === undefined);
            if (m !== undefined) {
              addVersion(m, { properties: current(m).properties, deleted: true });
              m.path = null;
            }
          } else if (st.kind === 'move') {
            const m = livePath(pathOf(st.name));
            const result = tryRun({ type: 'move', from: pathOf(st.name), to: pathOf(st.to), before: null, time, user: 'mv' });
            const ok = m !== undefined && (st.to === st.name || livePath(pathOf(st.to)) === undefined);
            assert.equal(result !== undefined, ok, `move ${st.name} → ${st.to}`);
            if (ok) {
              addVersion(m, { properties: current(m).properties, deleted: false });
              m.path = pathOf(st.to);
            }
          } else if (st.kind === 'restore') {
            // The node that was last at this path (live or deleted), back to one of its versions.
            const m = livePath(pathOf(st.name)) ?? [...model.values()].reverse().find((x) => x.path === null);
            if (m === undefined) continue;
            const version = Math.max(1, last(m) - st.back);
            const target = m.path ?? pathOf(st.name);
            const result = tryRun(restore(m.id, version, target));
            const free = m.path !== null || livePath(target) === undefined;
            assert.equal(result !== undefined, free && m.versions.has(version), `restore of ${m.id} v${version} at ${target}`);
            if (result !== undefined) {
              const source = m.versions.get(version)!;
              assert.deepEqual(result.node!.properties, source.properties, 'a restore returns the exact earlier state');
              addVersion(m, { properties: source.properties, deleted: false });
              m.path = target;
            }
          } else {
            const before = s.tables.digest();
            const ops: BatchOperation[] = st.names.map((n) => ({ type: 'put', path: pathOf(n), newId: `id-${++ids}`, nodeType: 'node', properties: { b: n } }));
            if (st.fail) ops.push({ type: 'patch', path: '/nowhere', patch: {} });
            const result = tryRun({ type: 'batch', operations: ops, time, user: 'b' });
            if (st.fail) {
              assert.equal(result, undefined);
              assert.equal(s.tables.digest(), before, 'a refused batch leaves no version behind');
            } else {
              assert.ok(result?.operations);
              result.operations.forEach((r, i) => {
                const path = pathOf(st.names[i]!);
                const m = model.get(r.node!.id);
                if (m === undefined) model.set(r.node!.id, { id: r.node!.id, path, versions: new Map([[1, { properties: { b: st.names[i]! }, deleted: false }]]) });
                else addVersion(m, { properties: { b: st.names[i]! }, deleted: false });
              });
            }
          }
          // Every version of every node, as the model has it.
          for (const m of model.values()) {
            const listed = s.tables.versions.page(m.id, Number.MAX_SAFE_INTEGER, 10_000).items.map((v) => v.version);
            assert.deepEqual(listed, [...m.versions.keys()].sort((x, y) => y - x));
            for (const [n, expected] of m.versions) {
              const v = s.tables.nodeVersion(m.id, n)!;
              assert.deepEqual(v.node.properties, expected.properties, `${m.id} v${n}`);
              assert.equal(v.op === 'deleted', expected.deleted);
            }
            assert.equal(s.tables.nodeById(m.id)?.path ?? null, m.path);
          }
        }
      } finally {
        s.close();
      }
    }),
    { numRuns: 60 },
  );
});
