import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { BenchCluster } from './benchCluster.js';
import { runLoad } from './load.js';
import { processCpuSplitMs } from './processCpu.js';
import { DocumentPaths, requestOnce, writer } from './operations.js';

/**
 * Where a replicated write's time goes, counted rather than sampled (issue 17): a 3-node cluster, closed-loop writes
 * of 1 KB documents to the master at each client level, and each node's Ready transactions read from its own
 * metrics before and after — how many transactions (each one fsync) a write costs on each node, how long one
 * takes, and how much of the node's wall time its event loop spends blocked in them (better-sqlite3 commits on
 * the calling thread).
 *
 *   node dist/bench/writePathProbe.js [--clients 1,64] [--duration-ms 5000] [--warmup-ms 1000] [--cpu-prof DIR] [--via master|replica]
 *                                     [--documents N]   (writes cycle over N documents: after the first N, each replaces one)
 *
 * --via replica sends the writes to a replica, which forwards each one to the master as a command.
 * With --cpu-prof every node runs under node --cpu-prof and writes its profile under DIR/<node>/ when the probe
 * stops it (summarise with dist/bench/cpuProfileSummary.js); run one client level at a time to profile it alone.
 */

interface ReadyCounts {
  readonly transactions: number;
  readonly seconds: number;
  readonly appended: number;
  readonly applied: number;
}

const parentPath = '/probe';

function sampleOf(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function readyCounts(url: string): Promise<ReadyCounts> {
  const text = await requestOnce(url, 'GET', '/metrics', [200]);
  return {
    transactions: sampleOf(text, 'conclave_ready_persist_duration_seconds_count'),
    seconds: sampleOf(text, 'conclave_ready_persist_duration_seconds_sum'),
    appended: sampleOf(text, 'conclave_ready_entries_sum', '{kind="appended"}'),
    applied: sampleOf(text, 'conclave_ready_entries_sum', '{kind="applied"}'),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { clients: { type: 'string' }, 'duration-ms': { type: 'string' }, 'warmup-ms': { type: 'string' }, 'cpu-prof': { type: 'string' }, via: { type: 'string' }, documents: { type: 'string' } } });
  const levels = (values.clients ?? '1,64').split(',').map(Number);
  const timing = { durationMs: Number(values['duration-ms'] ?? 5000), warmupMs: Number(values['warmup-ms'] ?? 1000) };
  const root = mkdtempSync(join(tmpdir(), 'conclave-probe-'));
  const cluster = await BenchCluster.start({ size: 3, root, cpuProfDir: values['cpu-prof'] === undefined ? null : resolve(values['cpu-prof']) });
  try {
    const master = await cluster.master();
    const masterUrl = cluster.url(master);
    const targetUrl = values.via === 'replica' ? cluster.url(cluster.names.find((name) => name !== master)!) : masterUrl;
    await requestOnce(masterUrl, 'PUT', `/api/v1/content${parentPath}`, [201], { body: JSON.stringify({ properties: {} }), contentType: 'application/json' });
    for (const name of cluster.names) await requestOnce(cluster.url(name), 'GET', `/api/v1/content${parentPath}`, [200]);
    const write = writer(new DocumentPaths(parentPath, values.documents === undefined ? undefined : Number(values.documents)));
    console.log(
      '| clients | writes/s | p50 ms | node | transactions per write | entries appended per transaction | entries applied per transaction | ms per transaction | wall time in transactions | user CPU per write (ms) | system CPU per write (ms) |',
    );
    console.log('|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|');
    for (const clients of levels) {
      const before = await Promise.all(cluster.names.map((name) => readyCounts(cluster.url(name))));
      const cpuBefore = cluster.names.map((name) => processCpuSplitMs(cluster.pid(name)));
      const startedMs = performance.now();
      const result = await runLoad(`${clients} clients`, [targetUrl], clients, timing, write);
      const elapsedS = (performance.now() - startedMs) / 1000;
      const cpuAfter = cluster.names.map((name) => processCpuSplitMs(cluster.pid(name)));
      const after = await Promise.all(cluster.names.map((name) => readyCounts(cluster.url(name))));
      // Counted over warm-up and measurement alike: the writes of both, over the whole time.
      const writes = result.opsPerSec * elapsedS;
      cluster.names.forEach((name, i) => {
        const d = { transactions: after[i]!.transactions - before[i]!.transactions, seconds: after[i]!.seconds - before[i]!.seconds };
        const appended = after[i]!.appended - before[i]!.appended;
        const applied = after[i]!.applied - before[i]!.applied;
        const [cpu0, cpu1] = [cpuBefore[i], cpuAfter[i]];
        const cpu = cpu0 === null || cpu0 === undefined || cpu1 === null || cpu1 === undefined ? null : { user: (cpu1.userMs - cpu0.userMs) / writes, system: (cpu1.systemMs - cpu0.systemMs) / writes };
        console.log(
          `| ${clients} | ${result.opsPerSec.toFixed(0)} | ${result.p50Ms.toFixed(2)} | ${name}${name === master ? ' (master)' : ''} | ${(d.transactions / writes).toFixed(2)} | ` +
            `${(appended / Math.max(1, d.transactions)).toFixed(2)} | ${(applied / Math.max(1, d.transactions)).toFixed(2)} | ` +
            `${((d.seconds * 1000) / Math.max(1, d.transactions)).toFixed(2)} | ${((100 * d.seconds) / elapsedS).toFixed(0)} % | ` +
            `${cpu === null ? '-' : cpu.user.toFixed(3)} | ${cpu === null ? '-' : cpu.system.toFixed(3)} |`,
        );
      });
    }
  } finally {
    await cluster.stopAll();
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
