import '../../src/node/linearRegExp.js';

import assert from 'node:assert/strict';
import { test } from 'node:test';

import fc from 'fast-check';

import { precheckSchemas } from '../../src/content/applySchemas.js';
import { applyCommand, type ApplyResult } from '../../src/content/apply.js';
import type { Command } from '../../src/content/commands.js';
import type { JsonObject } from '../../src/content/model.js';
import { parseSchemaDefinition, schemaViolations } from '../../src/content/schema.js';
import { ConclaveError } from '../../src/errors/catalogue.js';
import { ContentTables } from '../../src/storage/contentTables.js';
import { openDatabase, type Db } from '../../src/storage/database.js';
import { tempDir } from '../helpers/tmp.js';

// Schemas against the real SQLite tables, one entry per transaction (rolled back whole when refused), as the
// write pipeline applies them.
const time = '2026-01-01T00:00:00.000Z';

interface Store {
  readonly db: Db;
  readonly tables: ContentTables;
  index: number;
  readonly close: () => void;
}

function openStore(): Store {
  const tmp = tempDir();
  const db = openDatabase(tmp.dir);
  const store: Store = {
    db,
    tables: new ContentTables(db),
    index: 0,
    close: () => {
      db.close();
      tmp.cleanup();
    },
  };
  run(store, { type: 'bootstrap', rootId: 'root', time, tokenKeyId: 'k', adminPasswordHash: 'h', history: { versionsPerNodeMax: 100 } });
  return store;
}

function run(store: Store, command: Command): ApplyResult {
  store.index++;
  store.tables.beginEntry(store.index);
  try {
    return store.db.transaction(() => applyCommand(store.tables, command))();
  } catch (err) {
    store.tables.rolledBack();
    throw err;
  }
}

function refusal(store: Store, command: Command): ConclaveError {
  try {
    run(store, command);
  } catch (err) {
    assert.ok(err instanceof ConclaveError, String(err));
    return err;
  }
  assert.fail(`${command.type} was applied`);
}

let ids = 0;
const put = (path: string, properties: JsonObject, nodeType?: string): Command => ({
  type: 'put',
  path,
  newId: `id-${String(++ids).padStart(6, '0')}`,
  properties,
  ...(nodeType === undefined ? {} : { nodeType }),
  time,
  user: 'alice',
});
const patch = (path: string, body: JsonObject): Command => ({ type: 'patch', path, patch: body, time, user: 'alice' });
const putSchema = (typeName: string, definition: unknown, extra: object = {}): Command => ({
  type: 'putSchema',
  typeName,
  definition: parseSchemaDefinition(definition),
  time,
  user: 'admin',
  ...extra,
});
const migrate = (store: Store, typeName: string, nodesMax = 2): ApplyResult => {
  const migration = store.tables.schemaMigration(typeName)!;
  return run(store, { type: 'migrateSchema', typeName, toVersion: migration.toVersion, afterId: migration.afterId, nodesMax, time });
};
const props = (store: Store, path: string) => store.tables.nodeByPath(path)!.properties;
const allVersions = (store: Store, typeName: string) => store.tables.schemas.versionsPage(typeName, Number.MAX_SAFE_INTEGER, 1000);

const articleV1 = { properties: { title: { type: 'string', required: true }, rating: { type: 'integer', default: 3 } }, childTypes: ['paragraph'] };

test('a write of a typed node is checked against its schema and stored with its defaults; refused, nothing is stored', () => {
  const store = openStore();
  try {
    assert.equal(run(store, putSchema('article', articleV1)).schema?.state, 'active', 'no node of the type: in force at once');
    run(store, put('/a', { title: 'Hello' }, 'article'));
    assert.deepEqual(props(store, '/a'), { title: 'Hello', rating: 3 });
    const violation = refusal(store, put('/b', { rating: 'high' }, 'article'));
    assert.equal(violation.code, 'SCHEMA_VIOLATION');
    assert.deepEqual((violation.details['violations'] as Array<{ property: string; rule: string }>).map((v) => `${v.property} ${v.rule}`), ['/rating type', '/title required']);
    assert.equal(store.tables.nodeByPath('/b'), undefined);
    assert.equal(refusal(store, patch('/a', { title: null })).code, 'SCHEMA_VIOLATION', 'a patch that removes a required property');
    assert.equal(store.tables.nodeByPath('/a')!.version, 1);
    run(store, patch('/a', { rating: null }));
    assert.deepEqual(props(store, '/a'), { title: 'Hello', rating: 3 }, 'a removed property with a default gets it again');
    // A type change is checked too: to a typed node, and against the new type's child types.
    run(store, put('/free', { any: 'thing' }));
    assert.equal(refusal(store, put('/free', { any: 'thing' }, 'article')).code, 'SCHEMA_VIOLATION');
    // Untyped nodes stay free-form until the policy requires a schema for every type.
    run(store, { type: 'setSchemaPolicy', schemasRequired: true, time, user: 'admin' });
    assert.equal(refusal(store, put('/loose', {})).code, 'SCHEMA_REQUIRED');
    run(store, put('/', { site: 'root stays free' }));
    run(store, { type: 'setSchemaPolicy', schemasRequired: false, time, user: 'admin' });
    run(store, put('/loose', {}));
  } finally {
    store.close();
  }
});

test('defaults that would make a node too large are refused like any write; "root" is the root\'s type alone', () => {
  const store = openStore();
  try {
    run(store, putSchema('padded', { properties: { filler: { type: 'string', default: 'y'.repeat(15_000) } } }));
    const body = 'x'.repeat(1024 * 1024 - 2_000);
    run(store, put('/d', { body }));
    assert.equal(refusal(store, put('/e', { body }, 'padded')).code, 'INVALID_PROPERTIES', 'the default would take it past the size limit');
    assert.equal(store.tables.nodeByPath('/e'), undefined);
    assert.equal(refusal(store, put('/r', {}, 'root')).code, 'INVALID_REQUEST');
  } finally {
    store.close();
  }
});

test('the precheck of a batch leaves an operation on a path an earlier one touched to apply()', () => {
  const store = openStore();
  try {
    run(store, putSchema('strict', { properties: { b: { type: 'integer', required: true } } }));
    run(store, put('/f', { b: 1 }, 'strict'));
    const batch: Command = {
      type: 'batch',
      operations: [
        { type: 'put', path: '/f', newId: 'n9', nodeType: 'free', properties: { b: 1 } },
        { type: 'patch', path: '/f', patch: { b: null } },
      ],
      time,
      user: 'alice',
    };
    precheckSchemas(store.tables, batch);
    run(store, batch);
    assert.deepEqual(props(store, '/f'), {});
  } finally {
    store.close();
  }
});

test('childTypes: creates, moves, type changes and restores under a typed parent are checked', () => {
  const store = openStore();
  try {
    run(store, putSchema('article', articleV1));
    run(store, put('/a', { title: 't' }, 'article'));
    run(store, put('/a/p', {}, 'paragraph'));
    assert.equal(refusal(store, put('/a/img', {}, 'image')).code, 'SCHEMA_VIOLATION');
    run(store, put('/img', {}, 'image'));
    assert.equal(refusal(store, { type: 'move', from: '/img', to: '/a/img', before: null, time, user: 'alice' }).code, 'SCHEMA_VIOLATION');
    assert.equal(refusal(store, put('/a/p', {}, 'image')).code, 'SCHEMA_VIOLATION', 'a child cannot become a type its parent refuses');
    run(store, put('/b', { title: 'b' }));
    run(store, put('/b/img', {}, 'image'));
    assert.equal(refusal(store, put('/b', { title: 'b' }, 'article')).code, 'SCHEMA_VIOLATION', 'a node cannot take a type its children do not fit');
    // A deleted image restored under the article is refused; restored where it was, it is fine.
    const img = store.tables.nodeByPath('/b/img')!;
    run(store, { type: 'delete', path: '/b/img', recursive: false, time, user: 'alice' });
    assert.equal(refusal(store, { type: 'restore', id: img.id, version: 1, path: '/a/img', time, user: 'alice' }).code, 'SCHEMA_VIOLATION');
    run(store, { type: 'restore', id: img.id, version: 1, path: '/b/img', time, user: 'alice' });
  } finally {
    store.close();
  }
});

test('a restore of a version the schema in force refuses is refused', () => {
  const store = openStore();
  try {
    run(store, put('/a', { note: 1 }, 'article'));
    run(store, put('/a', { title: 'now' }, 'article'));
    run(store, putSchema('article', articleV1));
    // The schema came with a node of the type present: it waits for its migration.
    while (store.tables.schemaMigration('article')!.state === 'running') migrate(store, 'article');
    const id = store.tables.nodeByPath('/a')!.id;
    assert.equal(refusal(store, { type: 'restore', id, version: 1, path: '/a', time, user: 'alice' }).code, 'SCHEMA_VIOLATION');
  } finally {
    store.close();
  }
});

test('a schema change over existing nodes migrates them in batches, fenced by the committed progress, once each', () => {
  const store = openStore();
  try {
    run(store, putSchema('article', { properties: { title: { type: 'string' } } }));
    for (let i = 0; i < 5; i++) run(store, put(`/a${i}`, { title: `t${i}`, body: 'x' }, 'article'));
    run(store, put('/a4', { headline: 'already new', body: 'x' }, 'article'));
    const started = run(store, putSchema('article', { properties: { headline: { type: 'string', required: true, renamedFrom: 'title' }, views: { type: 'integer', default: 0 } } }));
    assert.equal(started.schema?.state, 'pending');
    assert.equal(started.migration?.nodesTotal, 5);
    assert.equal(refusal(store, putSchema('article', {})).code, 'SCHEMA_MIGRATION_PENDING');
    // The version in force is still 1; writes are checked against the pending 2 (a patch converts first).
    assert.equal(store.tables.writeSchema('article')?.schema.version, 2);
    run(store, patch('/a0', { body: 'edited' }));
    assert.deepEqual(props(store, '/a0'), { headline: 't0', body: 'edited', views: 0 });
    assert.equal(refusal(store, put('/new', { title: 'old shape' }, 'article')).code, 'SCHEMA_VIOLATION');
    const first = store.tables.schemaMigration('article')!;
    migrate(store, 'article', 2);
    // A batch proposed from the progress before that one (a replaced master's) is refused and changes nothing.
    const stale = refusal(store, { type: 'migrateSchema', typeName: 'article', toVersion: 2, afterId: first.afterId, nodesMax: 2, time });
    assert.equal(stale.code, 'SCHEMA_MIGRATION_STALE');
    while (store.tables.schemaMigration('article')!.state === 'running') migrate(store, 'article', 2);
    const done = store.tables.schemaMigration('article')!;
    assert.equal(done.state, 'done');
    assert.equal(done.nodesDone, 5);
    assert.equal(done.nodesConverted, 4, '/a0 was converted by its patch already');
    assert.deepEqual(allVersions(store, 'article').map((s) => `${s.version}:${s.state}`), ['2:active', '1:superseded']);
    for (let i = 0; i < 5; i++) assert.deepEqual(schemaViolations(store.tables.writeSchema('article')!.schema.definition, props(store, `/a${i}`)), []);
    const migrated = store.db.prepare(`SELECT path, count(*) AS n FROM changes WHERE op = 'migrated' GROUP BY path ORDER BY path`).all();
    assert.deepEqual(migrated, [{ path: '/a1', n: 1 }, { path: '/a2', n: 1 }, { path: '/a3', n: 1 }, { path: '/a4', n: 1 }], 'one migrated event per node converted, none twice');
    const history = store.tables.nodeVersion(store.tables.nodeByPath('/a1')!.id, 1);
    assert.deepEqual(history?.node.properties, { title: 't1', body: 'x' }, 'history keeps the version before the migration');
    // Restored, that version comes back converted to the schema in force, as the migration converted it.
    run(store, { type: 'patch', path: '/a1', patch: { body: 'changed' }, time, user: 'alice' });
    run(store, { type: 'restore', id: store.tables.nodeByPath('/a1')!.id, version: 1, path: '/a1', time, user: 'alice' });
    assert.deepEqual(props(store, '/a1'), { headline: 't1', body: 'x', views: 0 });
    assert.equal(refusal(store, { type: 'migrateSchema', typeName: 'article', toVersion: 2, afterId: done.afterId, nodesMax: 2, time }).code, 'SCHEMA_MIGRATION_STALE');
  } finally {
    store.close();
  }
});

test('a node the migration cannot convert stops it; fixed, a retry finishes; an abandon leaves the old version in force', () => {
  const store = openStore();
  try {
    run(store, put('/a', { count: 1 }, 'counter'));
    run(store, put('/b', { count: 'many' }, 'counter'));
    run(store, put('/c', { count: 2 }, 'counter'));
    run(store, putSchema('counter', { properties: { count: { type: 'integer', required: true } } }));
    migrate(store, 'counter', 10);
    const failed = store.tables.schemaMigration('counter')!;
    assert.equal(failed.state, 'failed');
    assert.equal(failed.failure?.path, '/b');
    assert.deepEqual(failed.failure?.violations.map((v) => v.rule), ['type']);
    assert.equal(failed.nodesDone, 1, 'the node before it stays done');
    assert.equal(refusal(store, putSchema('counter', {})).code, 'SCHEMA_MIGRATION_PENDING', 'a failed migration still holds the schema');
    assert.equal(refusal(store, { type: 'migrateSchema', typeName: 'counter', toVersion: 1, afterId: failed.afterId, nodesMax: 10, time }).code, 'SCHEMA_MIGRATION_STALE', 'no batch runs while it is failed');
    run(store, { type: 'resolveSchemaMigration', typeName: 'counter', action: 'retry', time, user: 'admin' });
    migrate(store, 'counter', 10);
    assert.equal(store.tables.schemaMigration('counter')!.failure?.path, '/b', 'still broken: it stops at the same node');
    // Fixed by a write (checked against the pending version), the retry goes on from that node to the end.
    assert.equal(refusal(store, patch('/b', { note: 'x' })).code, 'SCHEMA_VIOLATION');
    run(store, patch('/b', { count: 5 }));
    run(store, { type: 'resolveSchemaMigration', typeName: 'counter', action: 'retry', time, user: 'admin' });
    migrate(store, 'counter', 10);
    assert.equal(store.tables.schemaMigration('counter')!.state, 'done');
    assert.deepEqual(allVersions(store, 'counter').map((s) => `${s.version}:${s.state}`), ['1:active']);
    // A narrower version that /b does not satisfy: abandoned, version 1 stays in force and /b as it is.
    run(store, putSchema('counter', { properties: { count: { type: 'integer', required: true, maximum: 3 } } }));
    migrate(store, 'counter', 10);
    assert.equal(store.tables.schemaMigration('counter')!.failure?.path, '/b');
    run(store, { type: 'resolveSchemaMigration', typeName: 'counter', action: 'abandon', time, user: 'admin' });
    assert.equal(store.tables.schemaMigration('counter')!.state, 'abandoned');
    assert.deepEqual(allVersions(store, 'counter').map((s) => `${s.version}:${s.state}`), ['2:abandoned', '1:active']);
    assert.equal(store.tables.writeSchema('counter')?.schema.version, 1);
    assert.deepEqual(props(store, '/b'), { count: 5 });
    assert.equal(refusal(store, { type: 'resolveSchemaMigration', typeName: 'counter', action: 'retry', time, user: 'admin' }).code, 'SCHEMA_MIGRATION_NOT_FOUND');
    assert.equal(refusal(store, { type: 'resolveSchemaMigration', typeName: 'counter', action: 'abandon', time, user: 'admin' }).code, 'SCHEMA_MIGRATION_NOT_FOUND');
    // Deleting the schema makes the type free-form.
    run(store, { type: 'deleteSchema', typeName: 'counter', time, user: 'admin' });
    run(store, put('/d', { count: 'anything' }, 'counter'));
    assert.equal(refusal(store, { type: 'deleteSchema', typeName: 'counter', time, user: 'admin' }).code, 'SCHEMA_NOT_FOUND');
  } finally {
    store.close();
  }
});

test('schema preconditions name the version in force', () => {
  const store = openStore();
  try {
    run(store, putSchema('a', {}, { ifNoneMatch: '*' }));
    assert.equal(refusal(store, putSchema('a', { additionalProperties: false }, { ifNoneMatch: '*' })).code, 'PRECONDITION_FAILED');
    assert.equal(refusal(store, putSchema('a', { additionalProperties: false }, { ifMatch: ['"a:2"'] })).code, 'PRECONDITION_FAILED');
    assert.equal(run(store, putSchema('a', { additionalProperties: false }, { ifMatch: ['"a:1"'] })).schema?.version, 2);
    assert.equal(run(store, putSchema('a', { additionalProperties: false })).schema?.version, 2, 'the same definition again is no new version');
  } finally {
    store.close();
  }
});

test('a batch with a write a schema refuses is refused whole, naming the operation; the receiving node refuses it first', () => {
  const store = openStore();
  try {
    run(store, putSchema('article', articleV1));
    const batch: Command = {
      type: 'batch',
      operations: [
        { type: 'put', path: '/ok', newId: 'n1', nodeType: 'article', properties: { title: 'fine' } },
        { type: 'put', path: '/bad', newId: 'n2', nodeType: 'article', properties: {} },
      ],
      time,
      user: 'alice',
    };
    const refused = refusal(store, batch);
    assert.equal(refused.code, 'SCHEMA_VIOLATION');
    assert.equal(refused.details['operation'], 1);
    assert.equal(store.tables.nodeByPath('/ok'), undefined, 'all or nothing');
    assert.throws(() => precheckSchemas(store.tables, batch), (err: ConclaveError) => err.code === 'SCHEMA_VIOLATION' && err.details['operation'] === 1);
    assert.throws(() => precheckSchemas(store.tables, put('/x', {}, 'article')), (err: ConclaveError) => err.code === 'SCHEMA_VIOLATION');
    precheckSchemas(store.tables, put('/x', { title: 'ok' }, 'article'));
  } finally {
    store.close();
  }
});

/**
 * The model: random writes of typed and untyped nodes, schema changes and migration batches (some from stale
 * progress), against the rule that matters: once no migration is pending, every node of a type with a schema in
 * force satisfies it; every migration batch that applied advanced the committed progress (never twice over a node).
 */
test('property: writes, schema changes and migration batches in any order leave every typed node valid, each node migrated at most once per migration', () => {
  const definitions = [
    { properties: { n: { type: 'integer' } } },
    { properties: { n: { type: 'integer', required: true, default: 0 } } },
    { properties: { m: { type: 'integer', renamedFrom: 'n' } } },
    { properties: { n: { type: 'integer', maximum: 5 } }, additionalProperties: false },
  ];
  const step = fc.oneof(
    fc.record({ kind: fc.constant('put' as const), node: fc.nat(7), value: fc.oneof(fc.integer({ min: -2, max: 9 }), fc.constant('text')), key: fc.constantFrom('n', 'm', 'x') }),
    fc.record({ kind: fc.constant('patch' as const), node: fc.nat(7), value: fc.oneof(fc.integer({ min: -2, max: 9 }), fc.constant(null)), key: fc.constantFrom('n', 'm') }),
    fc.record({ kind: fc.constant('schema' as const), definition: fc.nat(definitions.length - 1) }),
    fc.record({ kind: fc.constant('batch' as const), size: fc.integer({ min: 1, max: 3 }), stale: fc.boolean() }),
    fc.record({ kind: fc.constant('resolve' as const), action: fc.constantFrom('retry' as const, 'abandon' as const) }),
  );
  fc.assert(
    fc.property(fc.array(step, { maxLength: 40 }), (steps) => {
      const store = openStore();
      try {
        let previousAfter: string | null = null;
        const attempt = (command: Command) => {
          try {
            return run(store, command);
          } catch (err) {
            if (!(err instanceof ConclaveError)) throw err;
            return undefined;
          }
        };
        for (const s of steps) {
          if (s.kind === 'put') attempt(put(`/n${s.node}`, { [s.key]: s.value }, 'item'));
          else if (s.kind === 'patch') attempt(patch(`/n${s.node}`, { [s.key]: s.value }));
          else if (s.kind === 'schema') attempt(putSchema('item', definitions[s.definition]));
          else if (s.kind === 'resolve') attempt({ type: 'resolveSchemaMigration', typeName: 'item', action: s.action, time, user: 'admin' });
          else {
            const m = store.tables.schemaMigration('item');
            if (m === undefined) continue;
            const afterId: string = s.stale && previousAfter !== null ? previousAfter : m.afterId;
            const before = { ...m };
            const result = attempt({ type: 'migrateSchema', typeName: 'item', toVersion: m.toVersion, afterId, nodesMax: s.size, time });
            if (result !== undefined) {
              assert.equal(before.afterId, afterId, 'a batch applied only from the committed progress');
              assert.ok(result.migration!.afterId >= before.afterId, 'progress only moves forward');
            }
            previousAfter = before.afterId;
          }
        }
        // Finish (or give up) whatever is pending, then check every node of the type.
        for (let i = 0; i < 20 && store.tables.schemaMigration('item')?.state === 'running'; i++) migrate(store, 'item', 3);
        if (store.tables.schemaMigration('item')?.state === 'failed') attempt({ type: 'resolveSchemaMigration', typeName: 'item', action: 'abandon', time, user: 'admin' });
        const migrations = store.db.prepare(`SELECT node_id, idx FROM changes WHERE op = 'migrated'`).all() as Array<{ node_id: string; idx: number }>;
        const perMigration = new Map<string, number>();
        for (const m of migrations) {
          // Events of one node within entries of one migration: keyed by the node and the schema version it went to.
          const version = allVersions(store, 'item').filter((v) => v.index < m.idx).at(0)?.version ?? 0;
          const key = `${m.node_id}@${version}`;
          perMigration.set(key, (perMigration.get(key) ?? 0) + 1);
        }
        for (const [key, count] of perMigration) assert.equal(count, 1, `${key} was migrated ${count} times by one migration`);
        const inForce = allVersions(store, 'item').find((v) => v.state === 'active');
        const migration = store.tables.schemaMigration('item');
        if (inForce !== undefined && migration?.state !== 'abandoned') {
          const rows = store.db.prepare(`SELECT path, properties FROM nodes WHERE type = 'item'`).all() as Array<{ path: string; properties: string }>;
          for (const row of rows) assert.deepEqual(schemaViolations(inForce.definition, JSON.parse(row.properties) as JsonObject), [], `${row.path} breaks version ${inForce.version}`);
        }
      } finally {
        store.close();
      }
    }),
    { numRuns: 150 },
  );
});
