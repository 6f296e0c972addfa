import assert from 'node:assert/strict';
import { test } from 'node:test';

import fc from 'fast-check';

import { applyCommand } from '../../src/content/apply.js';
import type { BatchOperation, Command } from '../../src/content/commands.js';
import { etagOf } from '../../src/content/model.js';
import { ConclaveError } from '../../src/errors/catalogue.js';
import { emptyClusterState } from '../../src/core/clusterState.js';
import { checkForwardedCommand } from '../../src/forwarding/wire.js';
import { batchSinceVersion, checkBatch } from '../../src/http/routes/batch.js';
import { ContentTables } from '../../src/storage/contentTables.js';
import { openDatabase, type Db } from '../../src/storage/database.js';
import { tempDir } from '../helpers/tmp.js';

// Batches against the real SQLite tables, one entry per transaction as the write pipeline applies them.
const time = '2026-01-01T00:00:00.000Z';

interface Store {
  readonly db: Db;
  readonly tables: ContentTables;
  readonly close: () => void;
}

function openStore(): Store {
  const tmp = tempDir();
  const db = openDatabase(tmp.dir);
  const tables = new ContentTables(db);
  db.transaction(() => applyCommand(tables, { type: 'bootstrap', rootId: 'root', time, tokenKeyId: 'k', adminPasswordHash: 'h' }))();
  return {
    db,
    tables,
    close: () => {
      db.close();
      tmp.cleanup();
    },
  };
}

/** Applies `command` as one entry: all of it, or nothing when it throws. */
function run(store: Store, command: Command) {
  return store.db.transaction(() => applyCommand(store.tables, command))();
}

const batch = (operations: readonly BatchOperation[]): Command => ({ type: 'batch', operations, time, user: 'u' });
let ids = 0;
const put = (path: string, properties = {}, extra: object = {}): BatchOperation => ({ type: 'put', path, newId: `id-${++ids}`, nodeType: 'node', properties, ...extra });

test('a batch applies its operations in order as one entry, each against the state the ones before left', () => {
  const store = openStore();
  try {
    const result = run(store, batch([put('/a'), put('/a/b', { x: 1 }), { type: 'patch', path: '/a/b', patch: { y: 2 } }, { type: 'move', from: '/a/b', to: '/c', before: null }]));
    assert.equal(result.operations?.length, 4);
    assert.equal(result.operations![0]!.created, true);
    assert.equal(result.operations![2]!.node!.version, 2);
    assert.equal(result.operations![3]!.node!.path, '/c');
    assert.deepEqual(store.tables.nodeByPath('/c')!.properties, { x: 1, y: 2 });
    assert.equal(store.tables.nodeByPath('/a/b'), undefined);
    // Every operation is authored by the batch.
    assert.equal(store.tables.nodeByPath('/c')!.modifiedBy, 'u');
  } finally {
    store.close();
  }
});

test('a refused operation refuses the whole batch with its code, names it, and leaves nothing of the ones before', () => {
  const store = openStore();
  try {
    const a = run(store, batch([put('/a', { v: 1 })])).operations![0]!.node!;
    const digest = store.tables.digest();
    const refused = (operations: readonly BatchOperation[]) => {
      try {
        run(store, batch(operations));
      } catch (err) {
        assert.ok(err instanceof ConclaveError, String(err));
        assert.equal(store.tables.digest(), digest, 'nothing of a refused batch stays');
        return { code: err.code, operation: err.details['operation'], message: err.message };
      }
      assert.fail('the batch was applied');
    };
    const stale = refused([put('/b'), { type: 'patch', path: '/a', patch: { v: 2 }, ifMatch: ['"stale"'] }]);
    assert.deepEqual([stale.code, stale.operation], ['PRECONDITION_FAILED', 1]);
    assert.match(stale.message, /Operation 1 of the batch \(patch\)/);
    assert.deepEqual(Object.values(refused([put('/b'), put('/b/c'), put('/x/y')])).slice(0, 2), ['PARENT_NOT_FOUND', 2]);
    assert.deepEqual(Object.values(refused([{ type: 'delete', path: '/a', recursive: false, ifNoneMatch: '*' }])).slice(0, 2), ['PRECONDITION_FAILED', 0]);
    // The right tag goes through.
    run(store, batch([{ type: 'patch', path: '/a', patch: { v: 2 }, ifMatch: [etagOf(a)] }]));
    assert.equal(store.tables.nodeByPath('/a')!.properties['v'], 2);
  } finally {
    store.close();
  }
});

test('property: a batch does exactly what its operations do one after another in one transaction, or nothing', () => {
  const paths = ['/a', '/b', '/a/x', '/a/y', '/b/x', '/a/x/z'];
  const path = fc.constantFrom(...paths);
  const operation: fc.Arbitrary<BatchOperation> = fc.oneof(
    fc.record({ path, v: fc.integer({ min: 0, max: 3 }), create: fc.boolean() }).map(({ path: p, v, create }) => put(p, { v }, create ? { ifNoneMatch: '*' } : {})),
    fc.record({ path, v: fc.integer({ min: 0, max: 3 }) }).map(({ path: p, v }): BatchOperation => ({ type: 'patch', path: p, patch: { w: v } })),
    fc.record({ path, recursive: fc.boolean() }).map(({ path: p, recursive }): BatchOperation => ({ type: 'delete', path: p, recursive })),
    fc.record({ from: path, to: path }).map(({ from, to }): BatchOperation => ({ type: 'move', from, to, before: null })),
  );
  const batchA = openStore();
  const sequential = openStore();
  try {
    fc.assert(
      fc.property(fc.array(operation, { minLength: 1, maxLength: 8 }), (generated) => {
        // Ids are never reused (apply holds that as an invariant): fresh ones for every case, the same in both stores.
        const operations = generated.map((op) => (op.type === 'put' ? { ...op, newId: `id-${++ids}` } : op));
        const before = batchA.tables.digest();
        assert.equal(sequential.tables.digest(), before, 'the two stores start each case alike');
        // The model: each operation as its own command, in one transaction that a refusal rolls back whole.
        let failedAt = -1;
        let failedCode = '';
        try {
          sequential.db.transaction(() => {
            operations.forEach((op, i) => {
              failedAt = i;
              applyCommand(sequential.tables, { ...op, time, user: 'u' } as Command);
            });
            failedAt = -1;
          })();
        } catch (err) {
          assert.ok(err instanceof ConclaveError, String(err));
          failedCode = err.code;
        }
        try {
          run(batchA, batch(operations));
          assert.equal(failedAt, -1, `the batch was applied, but operation ${failedAt} alone was refused with ${failedCode}`);
        } catch (err) {
          if (err instanceof assert.AssertionError) throw err;
          assert.ok(err instanceof ConclaveError, String(err));
          assert.deepEqual([err.code, err.details['operation']], [failedCode, failedAt]);
          assert.equal(batchA.tables.digest(), before, 'a refused batch changed nothing');
        }
        assert.equal(batchA.tables.digest(), sequential.tables.digest());
      }),
      { numRuns: 300 },
    );
  } finally {
    batchA.close();
    sequential.close();
  }
});

test('a forwarded batch is checked operation by operation, as the routes check them', () => {
  const authority = { user: 'u', needs: 'write' };
  const ok = batch([put('/a'), { type: 'delete', path: '/a', recursive: true }]);
  assert.deepEqual(checkForwardedCommand(ok, authority).command, ok);
  const codeOf = (command: unknown) => {
    try {
      checkForwardedCommand(command, authority);
    } catch (err) {
      assert.ok(err instanceof ConclaveError, String(err));
      return err.code;
    }
    return 'accepted';
  };
  assert.equal(codeOf({ ...ok, operations: [] }), 'INTERNAL');
  assert.equal(codeOf({ ...ok, operations: [{ type: 'setBinary', path: '/a', property: 'p', binary: {} }] }), 'INTERNAL');
  assert.equal(codeOf({ ...ok, operations: [{ type: 'batch', operations: [] }] }), 'INTERNAL');
  assert.equal(codeOf({ ...ok, operations: [{ ...put('/a'), path: 'no-slash' }] }), 'INVALID_PATH');
  assert.equal(codeOf({ ...ok, operations: [{ ...put('/a'), ifMatch: 7 }] }), 'INTERNAL');
  assert.equal(codeOf({ ...ok, user: 'someone-else' }), 'INTERNAL');
});

test('a forwarded batch carries only the fields the route builds, and never one id for two new nodes', () => {
  const authority = { user: 'u', needs: 'write' };
  const codeOf = (operations: unknown[]) => {
    try {
      checkForwardedCommand({ ...batch([]), operations }, authority);
    } catch (err) {
      assert.ok(err instanceof ConclaveError, String(err));
      return err.code;
    }
    return 'accepted';
  };
  assert.equal(codeOf([put('/a'), { type: 'patch', path: '/a', patch: {}, ifMatch: ['"x:1"'] }]), 'accepted');
  assert.equal(codeOf([{ ...put('/a'), extra: 'smuggled into the journal' }]), 'INTERNAL');
  assert.equal(codeOf([{ type: 'delete', path: '/a', recursive: false, time: 'x' }]), 'INTERNAL');
  const twin = put('/a');
  assert.equal(codeOf([twin, { ...twin, path: '/b' }]), 'INTERNAL');
});

test('a batch is refused past this node\'s limits, and while a member runs a release that could not apply it', () => {
  const member = (id: string, version: string) => ({ id, name: id, address: `${id}:1`, roles: { masterEligible: true, votingOnly: false }, version });
  const cluster = (...versions: string[]) => ({ ...emptyClusterState, nodes: versions.map((v, i) => member(`n${i}`, v)) });
  const limits = { batchOperationsMax: 3, batchBytesMax: 400 };
  const codeOf = (operations: readonly BatchOperation[], state = cluster(batchSinceVersion, '1.0.0')) => {
    try {
      checkBatch(operations, limits, state);
    } catch (err) {
      assert.ok(err instanceof ConclaveError, String(err));
      return [err.code, err.details['operationsMax'] ?? err.details['bytesMax'] ?? err.details['needs']];
    }
    return ['accepted'];
  };
  assert.deepEqual(codeOf([put('/a'), put('/b')]), ['accepted']);
  assert.deepEqual(codeOf([put('/a'), put('/b'), put('/c'), put('/d')]), ['BATCH_TOO_LARGE', 3]);
  assert.deepEqual(codeOf([put('/a', { text: 'x'.repeat(400) })]), ['BATCH_TOO_LARGE', 400]);
  assert.deepEqual(codeOf([put('/a')], cluster(batchSinceVersion, '0.2.0')), ['UPGRADE_IN_PROGRESS', batchSinceVersion]);
});
