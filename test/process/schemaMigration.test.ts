import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { ProcessCluster } from '../helpers/cluster.js';
import { processAuth } from '../helpers/process.js';
import { waitFor } from '../helpers/tmp.js';

/**
 * A schema migration of 20,000 nodes on a 3-node cluster of processes, the master killed (kill -9) twice while it
 * runs: the migration finishes once, every node converted exactly once (one `migrated` feed event per node, none
 * twice), the digests of the three nodes equal. Writes of the type go on meanwhile and behave as documented: the
 * new shape is taken, the old one refused with SCHEMA_VIOLATION.
 */

const names = ['s1', 's2', 's3'];
const nodesTotal = 20_000;
const batchOperations = 1000;

let cluster: ProcessCluster;

async function api(node: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${cluster.url(node)}${path}`, {
    method,
    headers: { authorization: processAuth, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, body: (await res.json().catch(() => ({}))) as Record<string, unknown> };
}

/** An API call through whichever node is master, retried through elections until it gets an answer that is not 5xx. */
async function onMaster(method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  return waitFor(`${method} ${path}`, async () => {
    const master = await cluster.master(30_000);
    const answer = await api(master, method, path, body).catch(() => null);
    return answer === null || answer.status >= 500 ? undefined : answer;
  }, 60_000);
}

interface Migration {
  readonly state: string;
  readonly nodesDone: number;
  readonly nodesConverted: number;
  readonly nodesTotal: number;
  readonly batches: number;
}

async function migration(): Promise<Migration> {
  return (await onMaster('GET', '/api/v1/schemas/doc/migration')).body as unknown as Migration;
}

describe('a schema migration on a cluster of processes', () => {
  before(async () => {
    cluster = await ProcessCluster.create(
      names,
      (_name, seeds) => [...seeds.flatMap((s) => ['--seed', s]), '--initial-master-nodes', names.join(',')],
      () => ({
        CONCLAVE_JOBS_CHECK_INTERVAL_MS: '100',
        CONCLAVE_CONTENT_BATCH_OPERATIONS_MAX: String(batchOperations),
        // Small batches: the migration takes long enough, in many entries, for the kills to land in the middle of it.
        CONCLAVE_SCHEMAS_MIGRATION_BATCH_NODES_MAX: '100',
        CONCLAVE_CHANGES_RETAIN_EVENTS: '1000000',
        // A batch counts one write per operation: 20,000 in a few seconds are over a user's default rate.
        CONCLAVE_AUTH_USER_WRITES_PER_SECOND_MAX: '1000000',
      }),
    );
    await cluster.start(...names);
    await cluster.write('/docs', {});
    await cluster.caughtUp();
  });

  after(async () => {
    await cluster?.stopAll();
  });

  test('20,000 nodes migrate exactly once while the master is killed twice; writes meanwhile follow the new version; digests equal', async () => {
    for (let from = 0; from < nodesTotal; from += batchOperations) {
      const operations = Array.from({ length: batchOperations }, (_, i) => ({ op: 'put', path: `/docs/d${from + i}`, type: 'doc', properties: { title: `t${from + i}` } }));
      const answer = await onMaster('POST', '/api/v1/batch', { operations });
      assert.equal(answer.status, 200, JSON.stringify(answer.body).slice(0, 300));
    }
    const started = await onMaster('PUT', '/api/v1/schemas/doc', {
      properties: { headline: { type: 'string', required: true, renamedFrom: 'title' }, rank: { type: 'integer', default: 1 } },
      additionalProperties: false,
    });
    assert.equal(started.status, 202, JSON.stringify(started.body));

    // Writes of the type go on all along: the new shape is taken, the old one refused.
    let stop = false;
    const outcomes = { taken: 0, refused: 0, other: [] as string[] };
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        const shape = i % 2 === 0 ? { headline: `w${i}` } : { title: `w${i}` };
        const answer: { status: number; body: Record<string, unknown> } = await onMaster('PUT', `/api/v1/content/docs/w${i}`, { type: 'doc', properties: shape }).catch((err: unknown) => ({ status: 0, body: { err: String(err) } }));
        if (answer.status === 201 || answer.status === 200) outcomes.taken++;
        else if (answer.status === 422 && (answer.body['error'] as { code: string }).code === 'SCHEMA_VIOLATION') outcomes.refused++;
        else outcomes.other.push(`${answer.status} ${JSON.stringify(answer.body).slice(0, 200)}`);
        assert.equal(answer.status === 422, i % 2 === 1, `write ${i} (${JSON.stringify(shape)}) answered ${answer.status}`);
      }
    })();

    for (const threshold of [nodesTotal / 5, nodesTotal / 2]) {
      await waitFor(`the migration past ${threshold} nodes`, async () => ((await migration()).nodesDone >= threshold ? true : undefined), 120_000);
      const master = await cluster.master();
      const before = await migration();
      assert.equal(before.state, 'running', `killed while running, at ${before.nodesDone}`);
      await cluster.kill(master);
      await cluster.start(master);
    }
    const done = await waitFor('the migration to finish', async () => {
      const m = await migration();
      return m.state === 'done' ? m : undefined;
    }, 180_000);
    stop = true;
    await writer;
    assert.deepEqual(outcomes.other, []);
    assert.ok(outcomes.taken > 0 && outcomes.refused > 0, JSON.stringify(outcomes));
    assert.equal(done.nodesConverted, nodesTotal, 'every old node converted once (new-shape writes need no converting)');
    assert.ok(done.nodesDone >= nodesTotal, `${done.nodesDone} done`);

    await cluster.caughtUp(60_000);
    // One migrated event per converted node, none twice, on every node alike.
    const master = await cluster.master();
    const migratedIds: string[] = [];
    let since = '0';
    for (;;) {
      const page = await api(master, 'GET', `/api/v1/changes?since=${since}&op=migrated&limit=1000`);
      assert.equal(page.status, 200, JSON.stringify(page.body));
      const events = page.body['events'] as Array<{ id: string; path: string }>;
      migratedIds.push(...events.map((e) => e.id));
      // A page stops after changes.scanEventsMax events read, matching or not: the end is where next stops moving.
      if (events.length === 0 && page.body['next'] === since) break;
      since = page.body['next'] as string;
    }
    assert.equal(migratedIds.length, nodesTotal, 'one event per node converted');
    assert.equal(new Set(migratedIds).size, nodesTotal, 'no node converted twice');
    for (const i of [0, 7_777, nodesTotal - 1]) {
      const node = await api(master, 'GET', `/api/v1/content/docs/d${i}`);
      assert.deepEqual(node.body['properties'], { headline: `t${i}`, rank: 1 });
    }
    const schema = await api(master, 'GET', '/api/v1/schemas/doc');
    assert.equal(schema.body['version'], 1);
    assert.equal(schema.body['state'], 'active');
    const digests = await cluster.settledDigests(names, 60_000);
    assert.equal(new Set(digests.map((d) => d.digest)).size, 1, JSON.stringify(digests.map((d) => [d.node, d.appliedIndex, d.digest])));
  });
});
