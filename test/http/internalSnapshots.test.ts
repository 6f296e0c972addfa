import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { request } from 'undici';

import { generateClusterSecret } from '../../src/config/clusterSecret.js';
import { internalAuthHeader, internalKeyOf, signInternalRequest } from '../../src/auth/internalAuth.js';
import { openTestNode, type TestNode } from '../helpers/app.js';
import { waitFor } from '../helpers/tmp.js';

// GET /internal/v1/snapshots/:index on a real node that compacted its journal: who may fetch, what Range does,
// and the bound on transfers served at once.

const secret = generateClusterSecret();

async function compactedNode(settings: Record<string, string | number | boolean> = {}): Promise<{ t: TestNode; index: number }> {
  const t = await openTestNode({ 'cluster.secret': secret, 'storage.compactionEntriesMin': 10, 'storage.journalRetainEntries': 0, ...settings });
  let i = 0;
  const index = await waitFor('a compaction', async () => {
    const snapshot = t.node.runtime.snapshotStatus().index;
    if (snapshot > 0) return snapshot;
    const res = await t.request({ method: 'PUT', url: `/api/v1/content/n${i++}`, payload: { properties: { text: 'z'.repeat(3000) } } });
    assert.ok(res.statusCode < 300, res.body);
    return undefined;
  }, 20_000);
  return { t, index };
}

/** A header signed by `nodeId` for the test node `t`. */
const signed = (t: TestNode, path: string, nodeId: string, key = secret) => ({
  [internalAuthHeader]: signInternalRequest(internalKeyOf(key), nodeId, { target: t.node.runtime.self().id, method: 'GET', path, body: 'empty' }, Date.now()),
});

test('a member gets the snapshot file whole or from a byte on; strangers, wrong secrets and unknown indexes are refused', async () => {
  const { t, index } = await compactedNode();
  try {
    const self = t.node.runtime.self().id;
    const path = `/internal/v1/snapshots/${index}`;
    const file = readFileSync(t.app.conclave.snapshots!.pathOf(index));

    const whole = await t.request({ method: 'GET', url: path, headers: signed(t, path, self), auth: null });
    assert.equal(whole.statusCode, 200);
    assert.deepEqual(whole.rawPayload, file);
    const etag = whole.headers['etag'] as string;
    assert.match(etag, /^"[0-9a-f]{64}"$/);
    assert.equal(whole.headers['accept-ranges'], 'bytes');

    const rest = await t.request({ method: 'GET', url: path, headers: { ...signed(t, path, self), range: 'bytes=1000-', 'if-range': etag }, auth: null });
    assert.equal(rest.statusCode, 206);
    assert.equal(rest.headers['content-range'], `bytes 1000-${file.length - 1}/${file.length}`);
    assert.deepEqual(rest.rawPayload, file.subarray(1000));
    // Another file's tag: the whole file, never bytes to append to something else.
    const other = await t.request({ method: 'GET', url: path, headers: { ...signed(t, path, self), range: 'bytes=1000-', 'if-range': `"${'0'.repeat(64)}"` }, auth: null });
    assert.equal(other.statusCode, 200);
    assert.equal(other.rawPayload.length, file.length);
    const beyond = await t.request({ method: 'GET', url: path, headers: { ...signed(t, path, self), range: `bytes=${file.length}-` }, auth: null });
    assert.equal(beyond.json().error.code, 'RANGE_NOT_SATISFIABLE');

    const refusals: Array<[Record<string, string>, string, string]> = [
      [{}, path, 'INTERNAL_AUTH_FAILED'],
      [signed(t, path, self, generateClusterSecret()), path, 'INTERNAL_AUTH_FAILED'],
      [signed(t, `/internal/v1/snapshots/${index + 1}`, self), path, 'INTERNAL_AUTH_FAILED'],
      [signed(t, path, 'a-stranger'), path, 'INTERNAL_AUTH_FAILED'],
      [signed(t, `/internal/v1/snapshots/${index + 1}`, self), `/internal/v1/snapshots/${index + 1}`, 'SNAPSHOT_NOT_FOUND'],
      [signed(t, '/internal/v1/snapshots/x', self), '/internal/v1/snapshots/x', 'INVALID_REQUEST'],
    ];
    for (const [headers, url, code] of refusals) {
      const res = await t.request({ method: 'GET', url, headers, auth: null });
      assert.equal(res.json().error.code, code, `${url} ${JSON.stringify(headers)}`);
    }
    // A captured header, replayed within its window: refused.
    const captured = signed(t, path, self);
    assert.equal((await t.request({ method: 'GET', url: path, headers: captured, auth: null })).statusCode, 200);
    const replayed = await t.request({ method: 'GET', url: path, headers: captured, auth: null });
    assert.equal(replayed.json().error.code, 'INTERNAL_AUTH_FAILED');
    assert.match(replayed.json().error.message, /replay/);
  } finally {
    await t.close();
  }
});

test('transfers beyond replication.snapshotTransfersMax are refused with OVERLOADED until one ends', async () => {
  // Paced, so the first transfer is still under way when the second comes.
  const { t, index } = await compactedNode({ 'replication.snapshotTransfersMax': 1, 'replication.snapshotBytesPerSecondMax': 20_000 });
  try {
    const url = await t.node.listen();
    const self = t.node.runtime.self().id;
    const path = `/internal/v1/snapshots/${index}`;
    const first = await request(`${url}${path}`, { headers: signed(t, path, self) });
    assert.equal(first.statusCode, 200);
    const second = await request(`${url}${path}`, { headers: signed(t, path, self) });
    assert.equal(second.statusCode, 503);
    assert.equal(((await second.body.json()) as { error: { code: string } }).error.code, 'OVERLOADED');
    first.body.destroy();
    const third = await waitFor('the slot to be free again', async () => {
      const res = await request(`${url}${path}`, { headers: { ...signed(t, path, self), range: 'bytes=0-9' } });
      if (res.statusCode === 206) return res;
      await res.body.dump();
      return undefined;
    });
    assert.equal((await third.body.arrayBuffer()).byteLength, 10);
  } finally {
    await t.close();
  }
});
