import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import { BenchCluster } from './benchCluster.js';
import { LatencyHistogram } from './histogram.js';
import { callJson } from './operations.js';

/**
 * What access control costs a read (issue 19): a 3-node cluster holding a tree of `--documents` nodes (100 folders of
 * documents), read by an editor — a node by path, a page of 50 children, a query page — closed-loop by `--clients`
 * clients over the three nodes, first with no access entry anywhere, then with `--entries` entries spread over the
 * tree (on folders and documents: denials for other users, so every read walks them and none is refused). Reports
 * reads/s and latency of each round. Target: reads with 1,000 entries at most 10 % slower than with none.
 *
 *   node dist/bench/accessProbe.js [--documents 20000] [--entries 1000] [--clients 16] [--duration-ms 15000] [--rounds 2]
 */

const { values } = parseArgs({ options: { documents: { type: 'string' }, entries: { type: 'string' }, clients: { type: 'string' }, 'duration-ms': { type: 'string' }, rounds: { type: 'string' } } });
const documents = Number(values.documents ?? 20_000);
const entryCount = Number(values.entries ?? 1000);
const clients = Number(values.clients ?? 16);
const durationMs = Number(values['duration-ms'] ?? 15_000);
const rounds = Number(values.rounds ?? 2);
const folders = 100;
const editor = `Basic ${Buffer.from('reader-bench:reader-bench-password').toString('base64')}`;

const call = (url: string, method: string, body?: unknown, auth?: string) => callJson(url, method, body, { auth });

function must(answer: { status: number; json: Record<string, unknown> }, what: string): void {
  if (answer.status >= 300) throw new Error(`${what} answered ${answer.status}: ${JSON.stringify(answer.json)}`);
}

async function readRound(cluster: BenchCluster, label: string): Promise<{ label: string; readsPerSec: number; p50Ms: number; p99Ms: number }> {
  const latency = new LatencyHistogram();
  let n = 0;
  let errors = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      while (performance.now() - started < durationMs) {
        const i = n++;
        const node = cluster.names[(i + c) % cluster.names.length]!;
        const folder = i % folders;
        const kind = i % 3;
        const path =
          kind === 0
            ? `/api/v1/content/f${folder}/d${(i * 7919) % Math.floor(documents / folders)}`
            : kind === 1
              ? `/api/v1/content/f${folder}?children=true&limit=50`
              : `/api/v1/query?under=/f${folder}&limit=50`;
        const t0 = performance.now();
        const answer = await call(`${cluster.url(node)}${path}`, 'GET', undefined, editor);
        if (answer.status === 200) latency.record(performance.now() - t0);
        else errors++;
      }
    }),
  );
  if (errors > 0) throw new Error(`${errors} reads failed in round ${label}`);
  const s = latency.summary();
  return { label, readsPerSec: s.count / ((performance.now() - started) / 1000), p50Ms: s.p50Ms, p99Ms: s.p99Ms };
}

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'conclave-access-probe-'));
  const cluster = await BenchCluster.start({ size: 3, root, env: { CONCLAVE_CONTENT_BATCH_OPERATIONS_MAX: '1000', CONCLAVE_AUTH_USER_WRITES_PER_SECOND_MAX: '1000000' } });
  try {
    const master = await cluster.master();
    const at = (path: string) => `${cluster.url(master)}${path}`;
    must(await call(at('/api/v1/users/reader-bench'), 'PUT', { password: 'reader-bench-password', roles: ['editor'] }), 'the user');
    const perFolder = Math.floor(documents / folders);
    for (let f = 0; f < folders; f++) {
      const operations = [{ op: 'put', path: `/f${f}`, properties: {} }, ...Array.from({ length: perFolder }, (_, d) => ({ op: 'put', path: `/f${f}/d${d}`, properties: { title: `document ${d}`, n: d } }))];
      must(await call(at('/api/v1/batch'), 'POST', { operations }), 'a batch');
    }
    // Entries on every folder and on documents spread over all of them: denials for other users, so that every read
    // is decided by walking them and none of the reader's is refused.
    const entryPaths = Array.from({ length: entryCount }, (_, e) => (e < folders ? `/f${e}` : `/f${e % folders}/d${Math.floor(e / folders) % perFolder}`));
    const setEntries = async (on: boolean) => {
      for (const [e, path] of entryPaths.entries()) {
        const entries = on ? [{ principal: `user:other${e % 7}`, effect: 'deny', permissions: ['read', 'write'] }, { principal: 'role:reader', effect: 'deny', permissions: ['write'] }] : [];
        must(await call(at(`/api/v1/access${path}`), 'PUT', { entries }), 'an entry');
      }
    };
    // A first round warms every node up (its caches, the JIT); then rounds without and with the entries alternate.
    await readRound(cluster, 'warm-up');
    const without: Array<Awaited<ReturnType<typeof readRound>>> = [];
    const withEntries: Array<Awaited<ReturnType<typeof readRound>>> = [];
    for (let r = 0; r < rounds; r++) {
      without.push(await readRound(cluster, `no entries (${r + 1})`));
      await setEntries(true);
      withEntries.push(await readRound(cluster, `${entryCount} entries (${r + 1})`));
      await setEntries(false);
    }
    const results = [...without, ...withEntries];
    console.log(`${documents} nodes in ${folders} folders, ${clients} clients reading as an editor (a node, a page of 50 children, a query page of 50, in turn) on 3 nodes`);
    console.log('| round | reads/s | p50 ms | p99 ms |');
    console.log('|---|--:|--:|--:|');
    for (const r of results) console.log(`| ${r.label} | ${r.readsPerSec.toFixed(0)} | ${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} |`);
    const mean = (rs: typeof results) => rs.reduce((sum, r) => sum + r.readsPerSec, 0) / rs.length;
    const none = mean(without);
    const some = mean(withEntries);
    console.log(`reads/s with ${entryCount} entries against none: ${((100 * (some - none)) / none).toFixed(1)} %`);
  } finally {
    await cluster.stopAll();
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
