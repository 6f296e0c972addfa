import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import { backupTable, measureConclaveBackup, type BackupPartResult } from './backup.js';
import { defaultBackupMix, parseBackupMix, quickBackupMix, type BackupMix } from './backupMix.js';
import { BenchCluster } from './benchCluster.js';
import { journalClusterEnv, measureBinaryCatchUp, measureContentCatchUp, measureSnapshotInstall, type CatchUpResult, type WithCluster } from './catchUp.js';
import { compare, comparisonChart, comparisonTable, type BackupFigures, type ComparedScenario, type ComparisonRow } from './comparison.js';
import { feedTable, measureFeed, type FeedBenchResult } from './feed.js';
import { measureMigration, migrationBenchEnv, migrationTable, type MigrationBenchResult } from './migration.js';
import { benchEnvironment } from './environment.js';
import { measureEtcdCatchUp, type EtcdCatchUpResult } from './etcdCatchUp.js';
import { etcdBackupArgs, measureEtcdBackup } from './etcdBackup.js';
import { EtcdCluster, ensureEtcd, ensureEtcdctl } from './etcdCluster.js';
import { runEtcdFailoverTrial, type EtcdTrialResult } from './etcdFailover.js';
import { etcdScenarioSteps, type EtcdScenarioResult } from './etcdLoad.js';
import { cleanupAll as cleanupConclaveFailover, summarize, withRetries, type Kind, type Summary, type TrialResult } from './failover.js';
import { measureFsync, measureSqliteInserts, type FsyncFloor, type SqliteFloor } from './floor.js';
import { runLoad, type LoadResult, type LoadTiming, type Operation } from './load.js';
import { withServerCpu } from './processCpu.js';
import type { StopOutcome } from './nodeProcess.js';
import { DocumentPaths, documentBody, documentText, reader, requestOnce, writer, type ReadConsistency } from './operations.js';

/**
 * The bench: Conclave beside a real etcd 3.4 cluster on the same machine, in the same run, under the same client
 * load, with ratios; and Conclave's own figures around them (clusters of 1 and 5, binaries' catch-up, snapshot
 * install) and the disk's physical floor. It measures and reports; it never asserts a speed.
 *
 *   npm run bench -- [--quick] [--duration-ms N] [--warmup-ms N] [--catch-up-mib N] [--catch-up-binary-mib N]
 *     [--snapshot-mib N] [--failover-trials N] [--backup-mix C+B] [--out-dir DIR] [--cpu-prof DIR] [--only PARTS]
 */

/**
 * The parts of a run, each on its own fresh cluster(s); also the names of their directories. A Conclave part and its
 * etcd counterpart run one after the other, so a change in the machine's other load touches both alike.
 */
const allParts = ['floor', 'cluster-of-3', 'etcd', 'catch-up', 'etcd-catch-up', 'failover', 'etcd-failover', 'cluster-of-1', 'cluster-of-5', 'snapshot', 'backup', 'etcd-backup', 'feed', 'migration'] as const;
type Part = (typeof allParts)[number];
const etcdParts: ReadonlySet<Part> = new Set(['etcd', 'etcd-catch-up', 'etcd-failover', 'etcd-backup']);

const usage = `usage: node dist/bench/run.js [--quick] [--duration-ms N] [--warmup-ms N] [--catch-up-mib N] [--catch-up-binary-mib N] [--snapshot-mib N] [--failover-trials N] [--backup-mix C+B] [--out-dir DIR] [--cpu-prof DIR] [--only PARTS]
  --quick                  fewer client levels, shorter scenarios, less catch-up data, one failover trial of each kind: under 2 minutes
  --duration-ms N          measured time per load scenario (default 5000; 1000 with --quick)
  --warmup-ms N            unmeasured time before each load scenario (default 1000; 250 with --quick)
  --catch-up-mib N         MiB written while a member is away, in values of about 16 KiB, for both systems (default 100; 4 with --quick; may be a fraction)
  --catch-up-binary-mib N  MiB of binaries written while a Conclave replica is away, 1 MiB each (default 128; 16 with --quick)
  --snapshot-mib N         MiB of 1 KB documents written before a Conclave replica installs a snapshot (default 32; 4 with --quick)
  --failover-trials N      kill -9 trials and SIGSTOP trials, each, for each system (default 10; 1 with --quick)
  --backup-mix C+B         what the backup part stores before it backs up and restores, for both systems: C MiB of JSON
                           documents of about 4 KB and B MiB of binaries of 1-8 MiB (default ${defaultBackupMix}; ${quickBackupMix} with --quick)
  --out-dir DIR            results.json, results.md and chart.svg go there (default bench-results)
  --cpu-prof DIR           run every Conclave node with node --cpu-prof; profiles go to DIR/<part>/<node>/ (slows the nodes)
  --only PARTS             comma-separated parts to run (default all): ${allParts.join(', ')}`;

const parentPath = '/bench';
/** The cluster size whose writes are also spread over every node (forwarded), and whose reads are measured in each mode. */
const spreadClusterSize = 3;
/** The change feed part (issue 15): writers as the write comparison's largest level, and 100 subscribers. */
const feedWriteClients = 64;
const feedSubscribers = 100;
const feedMeasuringSubscribersPerNode = 2;
const readModes: readonly ReadConsistency[] = ['stale', 'sequential', 'linearizable'];
/**
 * Text of each document (Conclave) and value (etcd) of the compared catch-up: about 16 KiB, so 100 MiB is some 6 400
 * writes, a load both systems finish in well under a minute, and far below either's request limit (2 MiB, 1.5 MiB).
 */
const catchUpValueChars = 16 * 1024 - 64;
function catchUpValueBytes(): number {
  return Buffer.byteLength(documentBody(0, documentText(catchUpValueChars)));
}
/** Failover as bench/failover.ts measures it: a PUT (put) to every node (member) every 5 ms, each given up after 500 ms. */
const failoverIntervalMs = 5;
const failoverTimeoutMs = 500;

interface Options extends LoadTiming {
  readonly quick: boolean;
  readonly writeClientLevels: readonly number[];
  /** Reads on a cluster of one (comparable with the earlier single-node figures). */
  readonly singleNodeReadClientLevels: readonly number[];
  /** Reads in each consistency mode on the 3-node cluster (and etcd's), spread over all nodes. */
  readonly readModeClients: number;
  readonly catchUpContentMib: number;
  readonly catchUpBinaryMib: number;
  readonly snapshotMib: number;
  readonly failoverTrials: number;
  readonly failoverWarmupMs: number;
  readonly backupMix: BackupMix;
  readonly outDir: string;
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
  /** CPU every node used over the scenario, in cores (null: not readable here). */
  readonly serverCpuCores: number | null;
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
      'snapshot-mib': { type: 'string' },
      'failover-trials': { type: 'string' },
      'backup-mix': { type: 'string' },
      quick: { type: 'boolean', default: false },
      'out-dir': { type: 'string' },
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
    catchUpContentMib: positiveNumber(values['catch-up-mib'], '--catch-up-mib') ?? (quick ? 4 : 100),
    catchUpBinaryMib: positiveNumber(values['catch-up-binary-mib'], '--catch-up-binary-mib') ?? (quick ? 16 : 128),
    snapshotMib: positiveNumber(values['snapshot-mib'], '--snapshot-mib') ?? (quick ? 4 : 32),
    failoverTrials: wholeNumber(values['failover-trials'], '--failover-trials', 1) ?? (quick ? 1 : 10),
    // bench/failover.ts's default warm-up; shorter in a quick run, where only the machinery is checked.
    failoverWarmupMs: quick ? 500 : 2_000,
    backupMix: backupMixOf(values['backup-mix'] ?? (quick ? quickBackupMix : defaultBackupMix)),
    outDir: resolve(values['out-dir'] ?? 'bench-results'),
    cpuProfDir: values['cpu-prof'] === undefined ? null : resolve(values['cpu-prof']),
    parts: values.only === undefined ? new Set(allParts) : new Set(values.only.split(',').map((part) => partOf(part.trim()))),
  };
}

function wholeNumber(text: string | undefined, flag: string, min: number): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < min) throw new UsageError(`${flag} takes a whole number of at least ${min}, not "${text}"`);
  return Number(text);
}

function backupMixOf(text: string): BackupMix {
  try {
    return parseBackupMix(text);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
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
  for await (const result of clusterScenarios(cluster, size, options)) results.push(result);
  return results;
}

/**
 * The scenarios of measureCluster one at a time, so that the 3-node ones can take turns with etcd's. On 3 nodes the
 * writes spread over all nodes (compared with etcd's) come first, then those to the master, then the reads.
 */
async function* clusterScenarios(cluster: BenchCluster, size: number, options: Options): AsyncGenerator<ScenarioResult> {
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
  const pids = cluster.names.map((name) => cluster.pid(name));
  const load = async (label: string, origins: readonly string[], clients: number, operation: Operation) => {
    const { result, serverCpuCores } = await withServerCpu(pids, () => runLoad(label, origins, clients, options, operation));
    return { ...result, serverCpuCores };
  };
  const variants: Array<[SentTo, string[], typeof labels]> = [['master', [masterUrl], labels]];
  if (size === spreadClusterSize) variants.unshift(['all nodes', everyUrl, spread]);
  for (const [sentTo, origins, nodes] of variants) {
    for (const clients of options.writeClientLevels) {
      const name = 'durable write (PUT 1 KB)';
      progress(`${size} node(s), ${name}, ${clients} client(s) to ${sentTo}`);
      const result = await load(`${name} on ${size} node(s) to ${sentTo}`, origins, clients, write);
      yield { name, nodes: size, sentTo, consistency: null, ...nodes, ...result };
    }
  }

  if (size === 1) {
    const read = reader(paths);
    for (const clients of options.singleNodeReadClientLevels) {
      const name = 'read (GET 1 KB)';
      progress(`1 node, ${name}, ${clients} client(s)`);
      yield { name, nodes: 1, sentTo: 'master', consistency: null, ...labels, ...(await load(name, [masterUrl], clients, read)) };
    }
  }
  if (size === spreadClusterSize) {
    for (const mode of readModes) {
      const name = `read (GET 1 KB), ${mode}`;
      progress(`${size} nodes, ${name}, ${options.readModeClients} clients over all nodes`);
      const result = await load(name, everyUrl, options.readModeClients, reader(paths, mode));
      yield { name, nodes: size, sentTo: 'all nodes', consistency: mode, ...spread, ...result };
    }
  }
}

/**
 * Whose scenario runs next when Conclave's 3 nodes and etcd's 3 members take turns: each compared pair back to back
 * (writes at each level; sequential beside serializable reads, linearizable beside linearizable), so a change in
 * the machine's other load between pairs touches both systems alike. Conclave's writes to the master and its stale
 * reads have no counterpart.
 */
function turns(writeLevels: number): Array<'conclave' | 'etcd'> {
  return [
    ...Array.from({ length: writeLevels }, () => ['conclave', 'etcd'] as const).flat(),
    ...Array.from({ length: writeLevels }, () => 'conclave' as const),
    'conclave', // stale
    'conclave', 'etcd', // sequential, serializable
    'conclave', 'etcd', // linearizable
  ];
}

function scenarioTable(results: readonly ScenarioResult[]): string {
  const ms = (value: number) => value.toFixed(2);
  const lines = [
    '| scenario | nodes | sent to | clients | ops/s | p50 ms | p99 ms | max ms | errors | ops | ops by node (errors) | client CPU (cores) | server CPU (cores) | server CPU per op (ms) |',
    '|---|--:|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|',
    ...results.map(
      (r) =>
        `| ${r.name} | ${r.nodes} | ${r.sentTo} | ${r.clients} | ${Math.round(r.opsPerSec)} | ${ms(r.p50Ms)} | ${ms(r.p99Ms)} | ${ms(r.maxMs)} | ` +
        `${r.errors + r.warmupErrors === 0 ? 0 : `${r.errors} (+${r.warmupErrors} in warm-up)`} | ${r.ops} | ${byNode(r)} | ${r.clientCpuCores.toFixed(2)} | ${cpuCells(r)} |`,
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
      'and over the transfer alone (contact to applied and every blob). CPU: the replica\'s from its spawn to caught up, the master\'s over the same time.',
    '',
    '| catch-up of a 3-node cluster\'s replica | MiB written | writes | entries | writes took ms | replica start ms | contact ms | applied ms | caught up ms | every blob on disk ms | MiB/s | transfer MiB/s | replica CPU ms | master CPU ms |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const r of results) {
    if (r.skipped !== null) {
      lines.push(`| ${r.name} | skipped: ${r.skipped} | | | | | | | | | | | | |`);
      continue;
    }
    const snapshot = r.snapshotBytes === null ? '' : ` (snapshot of ${(r.snapshotBytes / MiB).toFixed(1)} MiB)`;
    lines.push(
      `| ${r.name}${snapshot} | ${(r.bytes / MiB).toFixed(1)} | ${r.writes} | ${r.entries} | ${ms(r.writeMs)} | ${ms(r.startMs)} | ${ms(r.contactMs)} | ${ms(r.appliedMs)} | ` +
        `${ms(r.catchUpMs)} | ${ms(r.blobsPresentMs)} | ${r.mibPerSec.toFixed(1)} | ${r.transferMibPerSec.toFixed(1)} | ${ms(r.replicaCpuMs)} | ${ms(r.masterCpuMs)} |`,
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

/** Servers' CPU in cores, and per operation (its rate over the scenario, warm-up included, taken as the measured one). */
function cpuCells(r: LoadResult & { serverCpuCores: number | null }): string {
  if (r.serverCpuCores === null) return '- | -';
  return `${r.serverCpuCores.toFixed(2)} | ${r.opsPerSec === 0 ? '-' : ((r.serverCpuCores * 1000) / r.opsPerSec).toFixed(3)}`;
}

function etcdScenarioTable(results: readonly EtcdScenarioResult[]): string {
  const ms = (value: number) => value.toFixed(2);
  return [
    '| etcd scenario | members | clients | ops/s | p50 ms | p99 ms | max ms | errors | ops | ops by member (errors) | client CPU (cores) | server CPU (cores) | server CPU per op (ms) |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|',
    ...results.map((r) => {
      const byMember = r.opsByOrigin
        .map((ops, i) => `${r.sentToMembers[i]}${r.sentToMembers[i] === r.leader ? '*' : ''} ${ops}${r.errorsByOrigin[i] === 0 ? '' : ` (${r.errorsByOrigin[i]})`}`)
        .join(', ');
      const errors = r.errors + r.warmupErrors === 0 ? 0 : `${r.errors} (+${r.warmupErrors} in warm-up)`;
      return `| ${r.name} | ${r.members} | ${r.clients} | ${Math.round(r.opsPerSec)} | ${ms(r.p50Ms)} | ${ms(r.p99Ms)} | ${ms(r.maxMs)} | ${errors} | ${r.ops} | ${byMember} | ${r.clientCpuCores.toFixed(2)} | ${cpuCells(r)} |`;
    }),
  ].join('\n');
}

function etcdCatchUpTable(r: EtcdCatchUpResult): string {
  const MiB = 1024 * 1024;
  return [
    'etcd: times from the stopped follower\'s spawn: its status answers (answering), its status shows the leader\'s revision and commit index as of the end of the writes (in sync).',
    '',
    '| catch-up of a 3-member etcd cluster\'s follower | MiB written | writes | raft entries | writes took ms | answering ms | in sync ms | MiB/s |',
    '|---|--:|--:|--:|--:|--:|--:|--:|',
    `| ${r.name} | ${(r.bytes / MiB).toFixed(1)} | ${r.writes} | ${r.entries} | ${Math.round(r.writeMs)} | ${Math.round(r.answeringMs)} | ${Math.round(r.catchUpMs)} | ${r.mibPerSec.toFixed(1)} |`,
  ].join('\n');
}

interface FailoverReport {
  readonly kill: Summary;
  readonly stop: Summary;
}

function failoverText(conclave: FailoverReport | null, conclaveTrials: readonly TrialResult[], etcd: FailoverReport | null, etcdTrials: readonly EtcdTrialResult[]): string {
  const ms = (value: number | null) => (value === null ? '-' : value.toFixed(0));
  const line = (label: string, s: Summary, times: Array<number | null>) =>
    `- ${label}: ${s.failedOver}/${s.trials} failed over; median ${ms(s.medianMs)} ms, max ${ms(s.maxMs)} ms (trials: ${times.map(ms).join(', ')})`;
  const lines = [
    `Failover, a fresh 3-node cluster per trial: a write to every node every ${failoverIntervalMs} ms, each given up after ${failoverTimeoutMs} ms; time from the signal to the leader ` +
      'until the first successful write through another node (Conclave: a direct PUT, which only a master takes; etcd: a put sent after the signal, forwarded to the leader by a follower).',
  ];
  for (const kind of ['kill', 'stop'] as const) {
    const label = kind === 'kill' ? 'kill -9' : 'SIGSTOP';
    if (conclave !== null) lines.push(line(`Conclave, ${label}`, conclave[kind], conclaveTrials.filter((t) => t.kind === kind).map((t) => t.failoverMs)));
    if (etcd !== null) lines.push(line(`etcd, ${label}`, etcd[kind], etcdTrials.filter((t) => t.kind === kind).map((t) => t.failoverMs)));
  }
  if (conclaveTrials.length > 0) {
    const lost = conclaveTrials.reduce((sum, t) => sum + t.lostAcknowledged, 0);
    const stale = conclaveTrials.reduce((sum, t) => sum + (t.stop?.oldMasterAcksAfterNewFirst ?? 0), 0);
    lines.push(`- Conclave checks: acknowledged writes lost ${lost}; writes a SIGSTOPped old master acknowledged after the new master's first ${stale} (both must be 0; \`npm run bench:failover\` fails on them)`);
  }
  return lines.join('\n');
}

function backupLabel(mix: BackupMix): string {
  return `${(mix.bytes / 1_000_000).toFixed(0)} MB (mix ${mix.name}: ${mix.documents} JSON documents of ${mix.documentBytes} B, ${mix.binarySizes.length} binaries of 1-8 MiB)`;
}

function backupFigures(results: readonly BackupPartResult[], system: BackupPartResult['system']): BackupFigures | null {
  const r = results.find((x) => x.system === system);
  if (r === undefined) return null;
  return {
    backupMbPerSec: r.backup.mbPerSec,
    extraRssMb: r.backup.memory.extraBytes === null ? null : r.backup.memory.extraBytes / 1_000_000,
    writesKeptPercent: r.writes.keptPercent,
    writeClients: r.writes.clients,
    restoreMbPerSec: r.restore?.mbPerSec ?? null,
    restoreSeconds: r.restore === null ? null : r.restore.wallMs / 1000,
  };
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
  // The commit measured: taken now, before anyone commits during the run.
  const environment = benchEnvironment();
  const tempRoot = mkdtempSync(join(tmpdir(), 'conclave-bench-'));
  const live = new Set<BenchCluster>();
  const liveEtcd = new Set<EtcdCluster>();
  const clusterRuns: ClusterRun[] = [];
  const cleanup = async () => {
    try {
      await Promise.allSettled([...live].map((cluster) => cluster.stopAll()));
      await Promise.allSettled([...liveEtcd].map((cluster) => cluster.killAll()));
      await cleanupConclaveFailover();
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
  const withEtcd = async <T>(label: string, measure: (cluster: EtcdCluster) => Promise<T>, extraArgs: readonly string[] = []): Promise<T> => {
    progress(`starting ${label}: 3 etcd members`);
    const root = join(tempRoot, label);
    const cluster = await EtcdCluster.start(3, root, extraArgs);
    liveEtcd.add(cluster);
    try {
      return await measure(cluster);
    } catch (err) {
      process.stderr.write(`--- etcd output ---\n${cluster.output()}\n`);
      throw err;
    } finally {
      await cluster.stopAll();
      liveEtcd.delete(cluster);
      rmSync(root, { recursive: true, force: true });
    }
  };

  const runs0 = (part: Part) => options.parts.has(part);
  const wantsEtcd = [...options.parts].some((part) => etcdParts.has(part));
  const etcd = wantsEtcd ? ensureEtcd(progress) : { available: false as const, reason: 'no etcd part was asked for (--only)' };
  if (wantsEtcd && !etcd.available) progress(`etcd figures will be missing: ${etcd.reason}`);
  const etcdctl = runs0('etcd-backup') && etcd.available ? ensureEtcdctl(progress) : null;
  if (etcdctl !== null && !etcdctl.available) progress(`etcd backup figures will be missing: ${etcdctl.reason}`);
  const runs = (part: Part) => options.parts.has(part) && (!etcdParts.has(part) || etcd.available) && (part !== 'etcd-backup' || etcdctl?.available === true);

  const scenarios: ScenarioResult[] = [];
  const etcdScenarios: EtcdScenarioResult[] = [];
  const catchUps: CatchUpResult[] = [];
  const backups: BackupPartResult[] = [];
  let etcdCatchUp = null as EtcdCatchUpResult | null;
  const conclaveTrials: TrialResult[] = [];
  const etcdTrials: EtcdTrialResult[] = [];
  let floor = null as Floor | null;
  const failoverOptions = { intervalMs: failoverIntervalMs, timeoutMs: failoverTimeoutMs, warmupMs: options.failoverWarmupMs };
  const kinds: readonly Kind[] = ['kill', 'stop'];
  /**
   * Runs one part; a part that fails (a cluster that did not form, a write refused under load) is reported and the
   * run goes on, so the other parts' figures are still written. The run then exits 1.
   */
  const failedParts: Array<{ part: string; error: string }> = [];
  const part = async (name: string, measure: () => Promise<void>) => {
    try {
      await measure();
    } catch (err) {
      progress(`${name} failed: ${(err as Error).stack ?? String(err)}`);
      failedParts.push({ part: name, error: (err as Error).message.split('\n')[0]! });
    }
  };
  if (runs('floor')) {
    await part('floor', async () => {
      // The floor runs first and alone, so no node competes with it for the disk.
      const floorDir = join(tempRoot, 'floor');
      progress(`measuring the disk floor in ${tempRoot}`);
      floor = { fsync: measureFsync(floorDir), sqlite: measureSqliteInserts(floorDir, options.durationMs) };
      rmSync(floorDir, { recursive: true, force: true });
    });
  }
  if (runs('cluster-of-3') || runs('etcd')) {
    // Both clusters run at once (the idle one only heartbeats) and take turns, scenario by scenario.
    const etcdLoad = { ...options, readClients: options.readModeClients, progress };
    const inTurn = async (conclaveCluster: BenchCluster | null, etcdCluster: EtcdCluster | null) => {
      const conclave = conclaveCluster === null ? null : clusterScenarios(conclaveCluster, 3, options);
      const etcd = etcdCluster === null ? null : etcdScenarioSteps(etcdCluster, etcdLoad);
      for (const turn of turns(options.writeClientLevels.length)) {
        if (turn === 'conclave' && conclave !== null) {
          const next = await conclave.next();
          if (next.done !== true) scenarios.push(next.value);
        }
        if (turn === 'etcd' && etcd !== null) {
          const next = await etcd.next();
          if (next.done !== true) etcdScenarios.push(next.value);
        }
      }
      if (conclave !== null) for await (const result of conclave) scenarios.push(result);
      if (etcd !== null) for await (const result of etcd) etcdScenarios.push(result);
    };
    const withEtcdIfRun = (conclaveCluster: BenchCluster | null) =>
      runs('etcd') ? withEtcd('etcd', (etcdCluster) => inTurn(conclaveCluster, etcdCluster)) : inTurn(conclaveCluster, null);
    await part('cluster-of-3 and etcd', () => (runs('cluster-of-3') ? withCluster(3, 'cluster-of-3', {}, withEtcdIfRun) : withEtcdIfRun(null)));
  }
  if (runs('catch-up')) {
    await part('catch-up', () =>
      withCluster(3, 'catch-up', journalClusterEnv(), async (cluster) => {
        progress(`catch-up of ${options.catchUpContentMib} MiB of JSON documents`);
        catchUps.push(await measureContentCatchUp(cluster, { mib: options.catchUpContentMib, valueChars: catchUpValueChars, progress }));
        progress(`catch-up of ${options.catchUpBinaryMib} MiB of binaries`);
        catchUps.push(await measureBinaryCatchUp(cluster, { mib: options.catchUpBinaryMib, progress }));
      }),
    );
  }
  if (runs('etcd-catch-up')) {
    await part('etcd-catch-up', async () => {
      etcdCatchUp = await withEtcd('etcd-catch-up', (cluster) => measureEtcdCatchUp(cluster, { mib: options.catchUpContentMib, valueChars: catchUpValueChars, progress }));
    });
  }
  if (runs('failover')) {
    progress(`Conclave failover: ${options.failoverTrials} kill -9 and ${options.failoverTrials} SIGSTOP trial(s), a fresh 3-node cluster each`);
    await part('failover', async () => {
      for (const kind of kinds) {
        for (let i = 1; i <= options.failoverTrials; i++) conclaveTrials.push(await withRetries(kind, i, { ...failoverOptions, killTrials: 0, stopTrials: 0, outFile: '', dumpDir: null }));
      }
    });
  }
  if (runs('etcd-failover')) {
    progress(`etcd failover: ${options.failoverTrials} kill -9 and ${options.failoverTrials} SIGSTOP trial(s), a fresh 3-member cluster each`);
    const root = join(tempRoot, 'etcd-failover');
    await part('etcd-failover', async () => {
      for (const kind of kinds) {
        for (let i = 1; i <= options.failoverTrials; i++) etcdTrials.push(await runEtcdFailoverTrial(kind, i, root, failoverOptions, liveEtcd));
      }
    });
  }
  for (const size of [1, 5] as const) {
    const name = `cluster-of-${size}` as const;
    if (runs(name)) await part(name, async () => void scenarios.push(...(await withCluster(size, name, {}, (cluster) => measureCluster(cluster, size, options)))));
  }
  if (runs('snapshot')) {
    await part('snapshot', async () => {
      const snapshotCluster: WithCluster = (env, measure) => withCluster(3, 'snapshot', env, measure);
      const snapshot = await measureSnapshotInstall(snapshotCluster, { mib: options.snapshotMib, progress });
      if (snapshot.skipped !== null) progress(`${snapshot.name} skipped: ${snapshot.skipped}`);
      catchUps.push(snapshot);
    });
  }
  // Conclave's backup and etcd's back to back, each on the same mix.
  const backupOptions = { ...options, mix: options.backupMix, progress };
  if (runs('backup')) {
    await part('backup', async () => {
      const withBackupCluster: WithCluster = (env, measure) => withCluster(3, 'backup', env, measure);
      backups.push(await measureConclaveBackup(withBackupCluster, { ...backupOptions, root: join(tempRoot, 'backup-files') }));
    });
  }
  if (runs('etcd-backup')) {
    await part('etcd-backup', async () => {
      backups.push(await measureEtcdBackup((measure) => withEtcd('etcd-backup', measure, etcdBackupArgs), { ...backupOptions, root: join(tempRoot, 'etcd-backup-files') }));
    });
  }
  let feed = null as FeedBenchResult | null;
  if (runs('feed')) {
    await part('feed', async () => {
      // Every subscriber of the bench is the admin: one user's share of the slots must hold them all.
      // The webhook receiver is in this process, on loopback: an address webhooks reach only when allowed.
      const env = { CONCLAVE_CHANGES_SUBSCRIBERS_PER_USER_MAX: String(feedSubscribers), CONCLAVE_WEBHOOKS_PRIVATE_ADDRESSES_ALLOWED: 'true' };
      feed = await withCluster(3, 'feed', env, (cluster) =>
        measureFeed(cluster, { ...options, clients: feedWriteClients, subscribers: feedSubscribers, measuringPerNode: feedMeasuringSubscribersPerNode, progress }),
      );
    });
  }
  const migrations: MigrationBenchResult[] = [];
  if (runs('migration')) {
    await part('migration', async () => {
      // Issue 18's target: at least 2,000 nodes/s on 3 nodes while 100 writes/s go on; two batch sizes show the trade
      // between the rate and how long a write may wait behind one batch.
      for (const batchNodesMax of [100, 500]) {
        migrations.push(await withCluster(3, `migration-${batchNodesMax}`, migrationBenchEnv(batchNodesMax), (cluster) =>
          measureMigration(cluster, batchNodesMax, { nodes: options.quick ? 5_000 : 20_000, writesPerSec: 100, progress }),
        ));
      }
    });
  }
  await cleanup();

  const conclaveFailover = conclaveTrials.length === 0 ? null : { kill: summarize(conclaveTrials.filter((t) => t.kind === 'kill')), stop: summarize(conclaveTrials.filter((t) => t.kind === 'stop')) };
  const etcdFailover = etcdTrials.length === 0 ? null : { kill: summarize(etcdTrials.filter((t) => t.kind === 'kill')), stop: summarize(etcdTrials.filter((t) => t.kind === 'stop')) };
  const spreadWrites = (list: readonly ComparedScenario[]) => new Map(list.map((s) => [s.clients, s]));
  const contentCatchUp = catchUps.find((c) => c.kind === 'content') ?? null;
  // From the spawn, as etcd's is timed: process start and reconnection count for both.
  const conclaveCatchUpMibPerSec = contentCatchUp === null ? null : contentCatchUp.bytes / (1024 * 1024) / ((contentCatchUp.startMs + contentCatchUp.catchUpMs) / 1000);
  const comparison: ComparisonRow[] = compare({
    conclaveWrites: spreadWrites(scenarios.filter((s) => s.nodes === spreadClusterSize && s.sentTo === 'all nodes' && s.consistency === null)),
    etcdWrites: spreadWrites(etcdScenarios.filter((s) => s.consistency === null)),
    conclaveReads: {
      sequential: scenarios.find((s) => s.nodes === spreadClusterSize && s.consistency === 'sequential'),
      linearizable: scenarios.find((s) => s.nodes === spreadClusterSize && s.consistency === 'linearizable'),
    },
    etcdReads: { serializable: etcdScenarios.find((s) => s.consistency === 'serializable'), linearizable: etcdScenarios.find((s) => s.consistency === 'linearizable') },
    conclaveFailover,
    etcdFailover,
    conclaveCatchUpMibPerSec,
    etcdCatchUpMibPerSec: etcdCatchUp?.mibPerSec ?? null,
    catchUpLabel: `${options.catchUpContentMib} MiB in values of ${catchUpValueBytes()} B`,
    ...(backups.length === 0 ? {} : { backup: { label: backupLabel(options.backupMix), conclave: backupFigures(backups, 'conclave'), etcd: backupFigures(backups, 'etcd') } }),
  });
  const runMs = performance.now() - runStartMs;
  const report = {
    ...environment,
    // Other work on the machine takes cores from the bench and its nodes: this says how much there was.
    loadAverage: { start: loadAtStart, end: loadavg() },
    runMs,
    quick: options.quick,
    durationMs: options.durationMs,
    warmupMs: options.warmupMs,
    etcd: etcd.available ? { available: true, version: etcd.version, path: '/usr/bin/etcd', client: 'etcd3 (npm)' } : { available: false, reason: etcd.reason },
    catchUpValueBytes: catchUpValueBytes(),
    // Parts that failed (their figures are missing): the run exits 1.
    failedParts,
    comparison,
    floor,
    scenarios,
    etcdScenarios,
    catchUp: catchUps,
    etcdCatchUp,
    backup: { mix: options.backupMix.name, storedBytes: options.backupMix.bytes, etcdctl: etcdctl?.available === true ? { version: etcdctl.version, path: '/usr/bin/etcdctl' } : null, results: backups },
    feed,
    migrations,
    failover: { conclave: conclaveFailover === null ? null : { ...conclaveFailover, trials: conclaveTrials }, etcd: etcdFailover === null ? null : { ...etcdFailover, trials: etcdTrials } },
    clusters: clusterRuns,
  };
  const title = `Conclave / etcd ${etcd.available ? etcd.version : '(missing)'}, 3 nodes on loopback, ${environment.commit ?? 'unknown commit'}, ${environment.cpus} CPU(s)`;
  const markdown =
    [
      `${title}, Node ${environment.node}; ${options.durationMs} ms per load scenario after ${options.warmupMs} ms warm-up; load average ${loadAtStart[0]!.toFixed(1)} ` +
        `at the start, ${report.loadAverage.end[0]!.toFixed(1)} at the end; the run took ${(runMs / 60_000).toFixed(1)} min${options.quick ? ' (--quick)' : ''}.` +
        (etcd.available ? '' : `\n\n**etcd figures missing**: ${etcd.reason}`) +
        failedParts.map((f) => `\n\n**${f.part} failed** (its figures are missing): ${f.error}`).join(''),
      comparison.some((r) => r.conclave !== null || r.etcd !== null) ? comparisonTable(comparison) : null,
      floor === null ? null : floorText(floor),
      scenarios.length > 0 ? `Conclave (client CPU: the bench process, in cores)\n\n${scenarioTable(scenarios)}` : null,
      etcdScenarios.length > 0 ? etcdScenarioTable(etcdScenarios) : null,
      catchUps.length > 0 ? catchUpTable(catchUps) : null,
      etcdCatchUp === null ? null : etcdCatchUpTable(etcdCatchUp),
      backups.length > 0 ? backupTable(backups) : null,
      feed === null ? null : feedTable(feed),
      migrations.length > 0 ? migrationTable(migrations) : null,
      conclaveFailover === null && etcdFailover === null ? null : failoverText(conclaveFailover, conclaveTrials, etcdFailover, etcdTrials),
    ]
      .filter((text) => text !== null)
      .join('\n\n') + '\n';
  mkdirSync(options.outDir, { recursive: true });
  const files = { json: join(options.outDir, 'results.json'), markdown: join(options.outDir, 'results.md'), chart: join(options.outDir, 'chart.svg') };
  writeFileSync(files.json, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(files.markdown, markdown);
  writeFileSync(files.chart, comparisonChart(comparison, title));

  process.stdout.write(`\n${markdown}\nJSON: ${files.json}\nMarkdown: ${files.markdown}\nChart: ${files.chart}\n`);
  for (const run of clusterRuns) {
    const unclean = Object.entries(run.stops).flatMap(([name, stops]) => stops.filter((s) => s.exit !== 0 || s.killed).map((s) => `${name} (exit ${s.exit}, killed: ${s.killed})`));
    if (unclean.length > 0) progress(`${run.label}: did not stop cleanly on SIGTERM: ${unclean.join(', ')}`);
    if (run.output.trim() !== '') progress(`${run.label}: the nodes logged (level warn and above):\n${run.output}`);
  }
  return failedParts.length === 0 ? 0 : 1;
}

process.exitCode = await main();
