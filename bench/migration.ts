import { performance } from 'node:perf_hooks';

import type { BenchCluster } from './benchCluster.js';
import { LatencyHistogram } from './histogram.js';
import { callJson } from './operations.js';

/**
 * A schema migration under load (issue 18): `nodes` nodes of one type on a 3-node cluster, then a schema change that
 * converts every one of them (a rename and a default), while `writesPerSec` writes of other content go on, spread
 * over the nodes at a fixed rate. It reports the migration's rate — nodes converted per second, from the schema
 * change's acknowledgement to the moment the migration reads done — and what the writes saw meanwhile.
 */

export interface MigrationBenchOptions {
  readonly nodes: number;
  readonly writesPerSec: number;
  readonly progress: (text: string) => void;
}

export interface MigrationBenchResult {
  readonly nodes: number;
  readonly batchNodesMax: number;
  readonly batches: number;
  readonly seconds: number;
  readonly nodesPerSec: number;
  readonly writesPerSecTarget: number;
  readonly writesAcknowledgedPerSec: number;
  readonly writeErrors: number;
  readonly writeP50Ms: number;
  readonly writeP99Ms: number;
  readonly writeMaxMs: number;
}

/** The environment the part's cluster runs with (batches of 1,000 to fill it quickly, at any rate). */
export const migrationBenchEnv = (batchNodesMax: number): Record<string, string> => ({
  CONCLAVE_CONTENT_BATCH_OPERATIONS_MAX: '1000',
  CONCLAVE_AUTH_USER_WRITES_PER_SECOND_MAX: '1000000',
  CONCLAVE_SCHEMAS_MIGRATION_BATCH_NODES_MAX: String(batchNodesMax),
});

const call = (url: string, method: string, body?: unknown) => callJson(url, method, body, { timeoutMs: 60_000 });

export async function measureMigration(cluster: BenchCluster, batchNodesMax: number, options: MigrationBenchOptions): Promise<MigrationBenchResult> {
  const master = await cluster.master();
  const at = (path: string) => `${cluster.url(master)}${path}`;
  assert200((await call(at('/api/v1/content/docs'), 'PUT', { properties: {} })).status, 'the parent');
  assert200((await call(at('/api/v1/content/load'), 'PUT', { properties: {} })).status, 'the parent');
  options.progress(`migration: writing ${options.nodes} nodes`);
  for (let from = 0; from < options.nodes; from += 1000) {
    const count = Math.min(1000, options.nodes - from);
    const operations = Array.from({ length: count }, (_, i) => ({ op: 'put', path: `/docs/d${from + i}`, type: 'doc', properties: { title: `document ${from + i}`, body: 'x'.repeat(200) } }));
    assert200((await call(at('/api/v1/batch'), 'POST', { operations })).status, 'a batch');
  }

  // The fixed-rate writes, round-robin over the nodes (replicas forward them), for the whole migration.
  const latencies = new LatencyHistogram();
  let errors = 0;
  let acknowledged = 0;
  let sent = 0;
  const inflight = new Set<Promise<void>>();
  const started = performance.now();
  const timer = setInterval(() => {
    const due = Math.floor(((performance.now() - started) / 1000) * options.writesPerSec) - sent;
    for (let i = 0; i < due; i++) {
      const n = sent++;
      const node = cluster.names[n % cluster.names.length]!;
      const t0 = performance.now();
      const request = call(`${cluster.url(node)}/api/v1/content/load/w${n % 1000}`, 'PUT', { properties: { n } })
        .then((answer) => {
          if (answer.status === 200 || answer.status === 201) {
            acknowledged++;
            latencies.record(performance.now() - t0);
          } else errors++;
        })
        .catch(() => void errors++)
        .finally(() => inflight.delete(request));
      inflight.add(request);
    }
  }, 10);

  options.progress('migration: changing the schema');
  const t0 = performance.now();
  const change = await call(at('/api/v1/schemas/doc'), 'PUT', {
    properties: { headline: { type: 'string', required: true, renamedFrom: 'title' }, body: { type: 'string' }, rank: { type: 'integer', default: 1 } },
    additionalProperties: false,
  });
  if (change.status !== 202) throw new Error(`the schema change answered ${change.status}: ${JSON.stringify(change.json)}`);
  let migration: Record<string, unknown>;
  for (;;) {
    migration = (await call(at('/api/v1/schemas/doc/migration'), 'GET')).json;
    if (migration['state'] !== 'running') break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const seconds = (performance.now() - t0) / 1000;
  const writeSeconds = (performance.now() - started) / 1000;
  clearInterval(timer);
  await Promise.allSettled([...inflight]);
  if (migration['state'] !== 'done') throw new Error(`the migration ended ${String(migration['state'])}: ${JSON.stringify(migration['failure'])}`);
  const latency = latencies.summary();
  return {
    nodes: migration['nodesDone'] as number,
    batchNodesMax,
    batches: migration['batches'] as number,
    seconds,
    nodesPerSec: (migration['nodesDone'] as number) / seconds,
    writesPerSecTarget: options.writesPerSec,
    writesAcknowledgedPerSec: acknowledged / writeSeconds,
    writeErrors: errors,
    writeP50Ms: latency.p50Ms,
    writeP99Ms: latency.p99Ms,
    writeMaxMs: latency.maxMs,
  };
}

function assert200(status: number, what: string): void {
  if (status !== 200 && status !== 201) throw new Error(`writing ${what} answered ${status}`);
}

export function migrationTable(results: readonly MigrationBenchResult[]): string {
  return [
    'Schema migration on 3 nodes (a rename and a default over every node of the type; the rate from the schema change\'s ' +
      'acknowledgement to the migration done), with fixed-rate writes of other content spread over the nodes meanwhile.',
    '',
    '| nodes | batch | batches | seconds | nodes/s | writes/s (target) | write errors | write p50 ms | write p99 ms | write max ms |',
    '|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
    ...results.map(
      (r) =>
        `| ${r.nodes} | ${r.batchNodesMax} | ${r.batches} | ${r.seconds.toFixed(1)} | ${Math.round(r.nodesPerSec)} | ${r.writesAcknowledgedPerSec.toFixed(0)} (${r.writesPerSecTarget}) | ` +
        `${r.writeErrors} | ${r.writeP50Ms.toFixed(1)} | ${r.writeP99Ms.toFixed(1)} | ${r.writeMaxMs.toFixed(1)} |`,
    ),
  ].join('\n');
}
