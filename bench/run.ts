import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import { BenchCluster } from './benchCluster.js';
import { journalClusterEnv, measureBinaryCatchUp, measureContentCatchUp, measureSnapshotInstall, type CatchUpResult, type WithCluster } from './catchUp.js';
import { benchEnvironment } from './environment.js';
import { measureFsync, measureSqliteInserts, type FsyncFloor, type SqliteFloor } from './floor.js';
import { runLoad, type LoadResult, type LoadTiming } from './load.js';
import type { StopOutcome } from './nodeProcess.js';
import { DocumentPaths, reader, requestOnce, writer, type ReadConsistency } from './operations.js';

/**
 * The bench: durable writes and reads over HTTP against clusters of 1, 3 and 5 real `conclave start` processes on
 * loopback, the catch-up of a replica that was away, and the disk's physical floor for context. It measures and
 * reports; it never asserts a speed.
 *
 *   npm run bench -- [--quick] [--duration-ms N] [--warmup-ms N] [--catch-up-mib N] [--catch-up-binary-mib N] [--out FILE] [--cpu-prof DIR] [--only PARTS]
 */

/** The parts of a run, each on its own fresh cluster; also the names of their directories. */
const allParts = ['floor', 'cluster-of-1', 'cluster-of-3', 'cluster-of-5', 'catch-up', 'snapshot'] as const;
type Part = (typeof allParts)[number];

const usage = `usage: node dist/bench/run.js [--quick] [--duration-ms N] [--warmup-ms N] [--catch-up-mib N] [--catch-up-binary-mib N] [--out FILE] [--cpu-prof DIR] [--only PARTS]
  --quick                  fewer client levels, shorter scenarios, less catch-up data: a run of under 2 minutes
  --duration-ms N          measured time per scenario (default 5000; 1000 with --quick)
  --warmup-ms N            unmeasured time before each scenario (default 1000; 250 with --quick)
  --catch-up-mib N         MiB of JSON documents written while a replica is away (default 32; 4 with --quick; may be a fraction)
  --catch-up-binary-mib N  MiB of binaries written while a replica is away, 1 MiB each (default 128; 16 with --quick)
  --out FILE               JSON results (default bench-results/bench.json)
  --cpu-prof DIR           run every node with node --cpu-prof; profiles go to DIR/<part>/<node>/ (slows the nodes)
  --only PARTS             comma-separated parts to run (default all): ${allParts.join(', ')}`;

const parentPath = '/bench';
const clusterSizes = [1, 3, 5] as const;
/** The cluster size whose writes are also spread over every node (forwarded), and whose reads are measured in each mode. */
const spreadClusterSize = 3;
const readModes: readonly ReadConsistency[] = ['stale', 'sequential', 'linearizable'];

interface Options extends LoadTiming {
  readonly quick: boolean;
  readonly writeClientLevels: readonly number[];
  /** Reads on a cluster of one (comparable with the earlier single-node figures). */
  readonly singleNodeReadClientLevels: readonly number[];
  /** Reads in each consistency mode on the 3-node cluster, spread over all nodes. */
  readonly readModeClients: number;
  readonly catchUpContentMib: number;
  readonly catchUpBinaryMib: number;
  readonly outFile: string;
  readonly cpuProfDir: string | null;
  readonly parts: ReadonlySet<Part>;
}

type SentTo = 'master' | 'all nodes';

interface ScenarioResult extends LoadResult {
  readonly name: string;
  readonly nodes: number;
  /** Which nodes the clients send to: the master only, or spread evenly over every node (writes then forwarded). */
  readonly sentTo: SentTo;
  /** The read mode asked for with ?consistency=; null: the node's default (sequential), or a write. */
  readonly consistency: ReadConsistency | null;
  /** The nodes sent to, in the order of opsByOrigin and errorsByOrigin, and which of them was the master. */
  readonly sentToNodes: readonly string[];
  readonly master: string;
}

interface ClusterRun {
  readonly label: string;
  readonly nodes: number;
  /** How every run of every node ended (a restarted node has two). */
  readonly stops: Record<string, StopOutcome[]>;
  /** What the nodes logged at level warn and above. */
  readonly output: string;
}

interface Floor {
  readonly fsync: FsyncFloor;
  readonly sqlite: SqliteFloor;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      'duration-ms': { type: 'string' },
      'warmup-ms': { type: 'string' },
      'catch-up-mib': { type: 'string' },
      'catch-up-binary-mib': { type: 'string' },
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      'cpu-prof': { type: 'string' },
      only: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  const quick = values.quick === true;
  return {
    quick,
    durationMs: wholeNumber(values['duration-ms'], '--duration-ms', 1) ?? (quick ? 1_000 : 5_000),
    warmupMs: wholeNumber(values['warmup-ms'], '--warmup-ms', 0) ?? (quick ? 250 : 1_000),
    writeClientLevels: quick ? [1, 64] : [1, 16, 64, 256],
    singleNodeReadClientLevels: quick ? [1, 64] : [1, 16, 64],
    readModeClients: 64,
    catchUpContentMib: positiveNumber(values['catch-up-mib'], '--catch-up-mib') ?? (quick ? 4 : 32),
    catchUpBinaryMib: positiveNumber(values['catch-up-binary-mib'], '--catch-up-binary-mib') ?? (quick ? 16 : 128),
    outFile: resolve(values.out ?? 'bench-results/bench.json'),
    cpuProfDir: values['cpu-prof'] === undefined ? null : resolve(values['cpu-prof']),
    parts: values.only === undefined ? new Set(allParts) : new Set(values.only.split(',').map((part) => partOf(part.trim()))),
  };
}

function wholeNumber(text: string | undefined, flag: string, min: number): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < min) throw new UsageError(`${flag} takes a whole number of at least ${min}, not "${text}"`);
  return Number(text);
}

function partOf(text: string): Part {
  const part = allParts.find((p) => p === text);
  if (part === undefined) throw new UsageError(`--only takes parts among ${allParts.join(', ')}, not "${text}"`);
  return part;
}

function positiveNumber(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+(\.\d+)?$/.test(text) || Number(text) <= 0) throw new UsageError(`${flag} takes a number above 0, not "${text}"`);
  return Number(text);
}

class UsageError extends Error {}

const runStartMs = performance.now();

/** A progress line on stderr, with the time since the run started. */
function progress(text: string): void {
  process.stderr.write(`bench [${((performance.now() - runStartMs) / 1000).toFixed(1)} s]: ${text}\n`);
}

/**
 * Writes (every client level, to the master; on 3 nodes also spread over all nodes) on one fresh cluster, then the
 * reads that cluster size measures, all on the documents the writes stored.
 */
async function measureCluster(cluster: BenchCluster, size: number, options: Options): Promise<ScenarioResult[]> {
  const results: ScenarioResult[] = [];
  const master = await cluster.master();
  const masterUrl = cluster.url(master);
  // Replicas first: client i goes to node i mod n, so a single client "over all nodes" is always forwarded.
  const everyNode = [...cluster.names.filter((name) => name !== master), master];
  const everyUrl = everyNode.map((name) => cluster.url(name));
  const labels = { master, sentToNodes: [master] };
  const spread = { master, sentToNodes: everyNode };
  await requestOnce(masterUrl, 'PUT', `/api/v1/content${parentPath}`, [201], { body: JSON.stringify({ properties: {} }), contentType: 'application/json' });
  // Each node verifies the Basic credentials once (scrypt) and caches them; pay that before any measurement.
  for (const url of everyUrl) await requestOnce(url, 'GET', `/api/v1/content${parentPath}`, [200]);

  const paths = new DocumentPaths(parentPath);
  const write = writer(paths);
  const variants: Array<[SentTo, string[], typeof labels]> = [['master', [masterUrl], labels]];
  if (size === spreadClusterSize) variants.push(['all nodes', everyUrl, spread]);
  for (const [sentTo, origins, nodes] of variants) {
    for (const clients of options.writeClientLevels) {
      const name = 'durable write (PUT 1 KB)';
      progress(`${size} node(s), ${name}, ${clients} client(s) to ${sentTo}`);
      const result = await runLoad(`${name} on ${size} node(s) to ${sentTo}`, origins, clients, options, write);
      results.push({ name, nodes: size, sentTo, consistency: null, ...nodes, ...result });
    }
  }

  if (size === 1) {
    const read = reader(paths);
    for (const clients of options.singleNodeReadClientLevels) {
      const name = 'read (GET 1 KB)';
      progress(`1 node, ${name}, ${clients} client(s)`);
      results.push({ name, nodes: 1, sentTo: 'master', consistency: null, ...labels, ...(await runLoad(name, [masterUrl], clients, options, read)) });
    }
  }
  if (size === spreadClusterSize) {
    for (const mode of readModes) {
      const name = `read (GET 1 KB), ${mode}`;
      progress(`${size} nodes, ${name}, ${options.readModeClients} clients over all nodes`);
      const result = await runLoad(name, everyUrl, options.readModeClients, options, reader(paths, mode));
      results.push({ name, nodes: size, sentTo: 'all nodes', consistency: mode, ...spread, ...result });
    }
  }
  return results;
}

function scenarioTable(results: readonly ScenarioResult[]): string {
  const ms = (value: number) => value.toFixed(2);
  const lines = [
    '| scenario | nodes | sent to | clients | ops/s | p50 ms | p99 ms | max ms | errors | ops | ops by node (errors) |',
    '|---|--:|---|--:|--:|--:|--:|--:|--:|--:|---|',
    ...results.map(
      (r) =>
        `| ${r.name} | ${r.nodes} | ${r.sentTo} | ${r.clients} | ${Math.round(r.opsPerSec)} | ${ms(r.p50Ms)} | ${ms(r.p99Ms)} | ${ms(r.maxMs)} | ` +
        `${r.errors + r.warmupErrors === 0 ? 0 : `${r.errors} (+${r.warmupErrors} in warm-up)`} | ${r.ops} | ${byNode(r)} |`,
    ),
  ];
  return lines.join('\n');
}

/**
 * Measured ops by node (the master starred), with the errors (warm-up included) in brackets where there were any;
 * '-' when the clients sent to one node.
 */
function byNode(r: ScenarioResult): string {
  if (r.opsByOrigin.length < 2) return '-';
  return r.opsByOrigin
    .map((ops, i) => {
      const name = r.sentToNodes[i]!;
      const errors = r.errorsByOrigin[i]!;
      return `${name}${name === r.master ? '*' : ''} ${ops}${errors === 0 ? '' : ` (${errors})`}`;
    })
    .join(', ');
}

function catchUpTable(results: readonly CatchUpResult[]): string {
  const MiB = 1024 * 1024;
  const ms = (value: number | null) => (value === null ? '-' : String(Math.round(value)));
  const lines = [
    'Times from the restarted replica\'s HTTP server answering: the master reaches it (contact), its applied index at the master\'s (applied), ' +
      'in the in-sync set and ready (caught up), every blob on its disk (binaries). MiB/s: over the whole catch-up (to caught up and every blob), ' +
      'and over the transfer alone (contact to applied and every blob).',
    '',
    '| catch-up of a 3-node cluster\'s replica | MiB written | writes | entries | writes took ms | replica start ms | contact ms | applied ms | caught up ms | every blob on disk ms | MiB/s | transfer MiB/s |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const r of results) {
    if (r.skipped !== null) {
      lines.push(`| ${r.name} | skipped: ${r.skipped} | | | | | | | | | | |`);
      continue;
    }
    const snapshot = r.snapshotBytes === null ? '' : ` (snapshot of ${(r.snapshotBytes / MiB).toFixed(1)} MiB)`;
    lines.push(
      `| ${r.name}${snapshot} | ${(r.bytes / MiB).toFixed(1)} | ${r.writes} | ${r.entries} | ${ms(r.writeMs)} | ${ms(r.startMs)} | ${ms(r.contactMs)} | ${ms(r.appliedMs)} | ` +
        `${ms(r.catchUpMs)} | ${ms(r.blobsPresentMs)} | ${r.mibPerSec.toFixed(1)} | ${r.transferMibPerSec.toFixed(1)} |`,
    );
  }
  return lines.join('\n');
}

function floorText(floor: Floor): string {
  const { fsync, sqlite } = floor;
  return [
    'Physical floor (same disk as the data directories):',
    `- fsync: ${fsync.writes} x (write ${fsync.writeBytes} B + fsync): p50 ${fsync.p50Ms.toFixed(2)} ms, p99 ${fsync.p99Ms.toFixed(2)} ms, ` +
      `max ${fsync.maxMs.toFixed(2)} ms`,
    `- better-sqlite3 (WAL, synchronous=FULL), ${sqlite.rowsPerTransaction} rows of ${sqlite.rowBytes} B per fsynced transaction: ` +
      `${Math.round(sqlite.rowsPerSec)} rows/s (${Math.round(sqlite.transactionsPerSec)} transactions/s; ` +
      `transaction p50 ${sqlite.transactionP50Ms.toFixed(2)} ms, p99 ${sqlite.transactionP99Ms.toFixed(2)} ms)`,
  ].join('\n');
}

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n${usage}\n`);
    return 2;
  }

  const loadAtStart = loadavg();
  const tempRoot = mkdtempSync(join(tmpdir(), 'conclave-bench-'));
  const live = new Set<BenchCluster>();
  const clusterRuns: ClusterRun[] = [];
  const cleanup = async () => {
    try {
      await Promise.allSettled([...live].map((cluster) => cluster.stopAll()));
    } finally {
      rmSync(tempRoot, { recursive: true, force: true });
    }
  };
  // Ctrl-C must not leave a node running or a temp dir behind; finally blocks do not run on a signal.
  const onSignal = (signal: NodeJS.Signals) => {
    progress(`${signal}: stopping the nodes and removing ${tempRoot}`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  /** Starts a fresh cluster, runs `measure` on it, stops it (gracefully) and removes its data. */
  const withCluster = async <T>(size: number, label: string, env: Record<string, string>, measure: (cluster: BenchCluster) => Promise<T>): Promise<T> => {
    progress(`starting ${label}: ${size} node(s)`);
    const root = join(tempRoot, label);
    const cluster = await BenchCluster.start({ size, root, env, cpuProfDir: options.cpuProfDir === null ? null : join(options.cpuProfDir, label) });
    live.add(cluster);
    try {
      return await measure(cluster);
    } finally {
      const stops = await cluster.stopAll();
      live.delete(cluster);
      clusterRuns.push({ label, nodes: size, stops, output: cluster.output() });
      rmSync(root, { recursive: true, force: true });
    }
  };

  const scenarios: ScenarioResult[] = [];
  const catchUps: CatchUpResult[] = [];
  let floor: Floor | null = null;
  try {
    if (options.parts.has('floor')) {
      // The floor runs first and alone, so no node competes with it for the disk.
      const floorDir = join(tempRoot, 'floor');
      progress(`measuring the disk floor in ${tempRoot}`);
      floor = { fsync: measureFsync(floorDir), sqlite: measureSqliteInserts(floorDir, options.durationMs) };
      rmSync(floorDir, { recursive: true, force: true });
    }
    for (const size of clusterSizes) {
      const part = `cluster-of-${size}` as const;
      if (options.parts.has(part)) scenarios.push(...(await withCluster(size, part, {}, (cluster) => measureCluster(cluster, size, options))));
    }
    if (options.parts.has('catch-up')) {
      await withCluster(3, 'catch-up', journalClusterEnv(), async (cluster) => {
        progress(`catch-up of ${options.catchUpContentMib} MiB of JSON documents`);
        catchUps.push(await measureContentCatchUp(cluster, { mib: options.catchUpContentMib, progress }));
        progress(`catch-up of ${options.catchUpBinaryMib} MiB of binaries`);
        catchUps.push(await measureBinaryCatchUp(cluster, { mib: options.catchUpBinaryMib, progress }));
      });
    }
    if (options.parts.has('snapshot')) {
      const snapshotCluster: WithCluster = (env, measure) => withCluster(3, 'snapshot', env, measure);
      const snapshot = await measureSnapshotInstall(snapshotCluster, { mib: options.catchUpContentMib, progress });
      if (snapshot.skipped !== null) progress(`${snapshot.name} skipped: ${snapshot.skipped}`);
      catchUps.push(snapshot);
    }
  } catch (err) {
    progress(`failed: ${(err as Error).stack ?? String(err)}`);
    for (const cluster of live) {
      const output = cluster.output();
      if (output !== '') process.stderr.write(`--- node output ---\n${output}\n`);
    }
    await cleanup();
    return 1;
  }
  await cleanup();

  const report = {
    ...benchEnvironment(),
    // Other work on the machine takes cores from the bench and its nodes: this says how much there was.
    loadAverage: { start: loadAtStart, end: loadavg() },
    quick: options.quick,
    durationMs: options.durationMs,
    warmupMs: options.warmupMs,
    floor,
    scenarios,
    catchUp: catchUps,
    clusters: clusterRuns,
  };
  mkdirSync(dirname(options.outFile), { recursive: true });
  writeFileSync(options.outFile, `${JSON.stringify(report, null, 2)}\n`);

  process.stdout.write(
    `\nConclave on loopback, ${report.commit ?? 'unknown commit'}, Node ${report.node}, ${report.cpus} CPU(s) shared by the bench and every node ` +
      `of a cluster, ${options.durationMs} ms per scenario after ${options.warmupMs} ms warm-up; load average ${loadAtStart[0]!.toFixed(1)} ` +
      `at the start, ${report.loadAverage.end[0]!.toFixed(1)} at the end\n\n` +
      [scenarios.length > 0 ? scenarioTable(scenarios) : null, catchUps.length > 0 ? catchUpTable(catchUps) : null, floor === null ? null : floorText(floor), `JSON: ${options.outFile}`]
        .filter((text) => text !== null)
        .join('\n\n') + '\n',
  );
  for (const run of clusterRuns) {
    const unclean = Object.entries(run.stops).flatMap(([name, stops]) => stops.filter((s) => s.exit !== 0 || s.killed).map((s) => `${name} (exit ${s.exit}, killed: ${s.killed})`));
    if (unclean.length > 0) progress(`${run.label}: did not stop cleanly on SIGTERM: ${unclean.join(', ')}`);
    if (run.output.trim() !== '') progress(`${run.label}: the nodes logged (level warn and above):\n${run.output}`);
  }
  return 0;
}

process.exitCode = await main();
