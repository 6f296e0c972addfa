import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, readdirSync, readSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { request, type Pool } from 'undici';

import { parseManifest, type BackupManifest } from '../src/backup/manifest.js';
import { decodeTarHeader, tarBlockBytes } from '../src/backup/tarFormat.js';
import { generateClusterSecret } from '../src/config/clusterSecret.js';
import { settingSpecs } from '../src/config/settings.js';
import { SyncedFileWriter } from '../src/storage/fileWriter.js';
import type { BenchCluster } from './benchCluster.js';
import type { BackupMix } from './backupMix.js';
import { backupDocumentBody } from './backupMix.js';
import { appliedOf, nodeOf, put, waitUntil, writeConcurrently, type WithCluster } from './catchUp.js';
import { runLoad, type LoadResult, type LoadTiming } from './load.js';
import { processCpuMs } from './processCpu.js';
import { sampleRss, type RssSample } from './processMemory.js';
import { sleep } from './nodeProcess.js';
import { runTimed } from './timedCommand.js';
import { adminPassword, authorization, DocumentPaths, requestOnce, writer } from './operations.js';

/**
 * Backup and restore of a repository of a given mix (backupMix.ts) on a 3-node cluster, as an operator runs them:
 *
 * - backup: `GET /api/v1/admin/backup` from a replica (the master's disk and CPU stay free), the archive written to
 *   a file and fsynced, timed from the request to the fsync; the replica's extra memory meanwhile (its RSS, peak
 *   minus before);
 * - backup while serving: 1 KB writes from closed-loop clients over every node, without a backup, beside backups
 *   taken back to back from the replica, and without again; the share of the throughput kept beside a backup;
 * - restore: `conclave restore FILE --data DIR --as new-cluster`, after the cluster stopped, timed from spawn to exit.
 *
 * Throughputs are archive bytes over time, in MB/s (10^6 bytes, the unit of issue 14's targets). The files are on
 * the disk of the data directories; the repository was just written, so much of it is in the page cache (etcd's
 * side is measured the same way).
 */

const MB = 1_000_000;
/** Writers of the stored mix; binaries are fewer at a time, each up to 8 MiB in memory. */
const fillConcurrency = 16;
const binaryFillConcurrency = 4;
const fillAttemptsMax = 10;
const fillRetryDelayMs = 250;
/** The closed-loop load beside a backup: 16 clients over every node, the middle of the bench's client levels. */
export const besideClients = 16;
const transferTimeoutMs = 3_600_000;
const settleTimeoutMs = 600_000;
const binPath = fileURLToPath(new URL('../../bin/conclave.js', import.meta.url));

export interface ArchiveWritten {
  readonly bytes: number;
  /** From the request to the answer's headers (Conclave: the copy of the state, blobs checked); null for etcdctl. */
  readonly headersMs: number | null;
  /** From the request (the command's spawn) to the file fsynced. */
  readonly totalMs: number;
  readonly mbPerSec: number;
}

export interface RestoreRun {
  readonly command: string;
  readonly wallMs: number;
  /** Archive (snapshot) bytes over the wall time. */
  readonly mbPerSec: number;
  readonly peakRssBytes: number | null;
  /** Bytes of the data directory it built. */
  readonly dataDirBytes: number;
}

export interface WritesBesideBackup {
  readonly clients: number;
  /** Without a backup: before, and after the backups beside. */
  readonly without: readonly LoadResult[];
  readonly beside: LoadResult;
  /** beside's throughput over the mean of the two without, in percent. */
  readonly keptPercent: number;
  /** The backups taken back to back while `beside` ran (the last one may have outlasted it). */
  readonly backups: readonly ArchiveWritten[];
}

export interface BackupPartResult {
  readonly system: 'conclave' | 'etcd';
  readonly mix: string;
  /** What was stored: document bodies and binaries' bytes (etcd: the same bytes as values). */
  readonly storedBytes: number;
  /** How the mix was stored (etcd's values). */
  readonly stored: string;
  readonly fillMs: number;
  /** The node (member) the backups were taken from, and the master (leader). */
  readonly source: string;
  readonly master: string;
  readonly backup: ArchiveWritten & { readonly memory: RssSample; readonly sourceCpuMs: number | null };
  /** Conclave: the archive's index, state.db bytes and blob count; etcd: the revision. */
  readonly archive: Readonly<Record<string, number>>;
  readonly writes: WritesBesideBackup;
  readonly restore: RestoreRun | null;
  /** Why restore was not measured, when it was not. */
  readonly restoreSkipped: string | null;
}

export interface BackupMeasureOptions extends LoadTiming {
  readonly mix: BackupMix;
  /** Where archives and restored directories go (removed at the end). */
  readonly root: string;
  readonly progress: (text: string) => void;
}

export async function measureConclaveBackup(withCluster: WithCluster, options: BackupMeasureOptions): Promise<BackupPartResult> {
  const { mix, progress } = options;
  const archive = join(options.root, 'conclave-backup.tar');
  const besideArchive = join(options.root, 'conclave-backup-beside.tar');
  mkdirSync(options.root, { recursive: true });
  try {
    const measured = await withCluster({}, async (cluster) => {
      const filledThrough = await cluster.master();
      progress(`backup: storing ${mix.documents} JSON documents of ${mix.documentBytes} B and ${mix.binarySizes.length} binaries of 1-8 MiB (mix ${mix.name}) through ${filledThrough}`);
      const fillStartMs = performance.now();
      const blobs = await fill(cluster, filledThrough, mix);
      const fillMs = performance.now() - fillStartMs;
      // The master may have changed during the fill (a loaded machine); the backup comes from a replica of now.
      const master = await cluster.master();
      const replica = cluster.names.find((n) => n !== master)!;
      progress(`backup: stored ${(mix.bytes / MB).toFixed(0)} MB in ${(fillMs / 1000).toFixed(1)} s; waiting for ${replica} to hold all of it`);
      const blobPaths = blobs.map((sha256) => join(cluster.dataDir(replica), 'blobs', sha256.slice(0, 2), sha256.slice(2, 4), sha256));
      await waitUntil(`${replica} to apply every write and hold every blob`, async () => {
        const status = await cluster.status(master);
        const node = nodeOf(status, replica);
        return node.appliedIndex !== null && node.appliedIndex >= appliedOf(status, master) && blobPaths.every((path) => existsSync(path)) ? true : undefined;
      }, settleTimeoutMs);

      progress(`backup: GET /api/v1/admin/backup from ${replica}`);
      const pid = cluster.pid(replica);
      const cpuBeforeMs = processCpuMs(pid);
      const rss = sampleRss(pid);
      let memory: RssSample;
      let written: ArchiveWritten;
      try {
        written = await downloadBackup(cluster.url(replica), archive);
      } finally {
        memory = rss.stop();
      }
      const cpuAfterMs = processCpuMs(pid);
      const manifest = readArchiveManifest(archive);
      progress(`backup: ${(written.bytes / MB).toFixed(0)} MB in ${(written.totalMs / 1000).toFixed(1)} s (${written.mbPerSec.toFixed(0)} MB/s), ${replica} +${((memory.extraBytes ?? 0) / MB).toFixed(0)} MB RSS`);

      const everyNode = [...cluster.names.filter((n) => n !== master), master];
      const writes = await writesBeside(
        async () => {
          await requestOnce(cluster.url(master), 'PUT', '/api/v1/content/backup-load', [201], { body: JSON.stringify({ properties: {} }), contentType: 'application/json' });
          const paths = new DocumentPaths('/backup-load');
          return (label: string) => runLoad(label, everyNode.map((n) => cluster.url(n)), besideClients, besideTiming(options, written, defaultBackupPaceBytesPerSecond()), writer(paths));
        },
        // In a process of its own, as etcd's are taken with etcdctl: the bench's own event loop runs the writers.
        () => backupWithCli(cluster.url(replica), besideArchive),
        progress,
      );
      return {
        fillMs,
        source: replica,
        master,
        backup: { ...written, memory, sourceCpuMs: cpuBeforeMs === null || cpuAfterMs === null ? null : cpuAfterMs - cpuBeforeMs },
        archive: {
          index: manifest.index,
          stateBytes: manifest.parts.find((p) => p.name === 'state.db')?.bytes ?? 0,
          blobs: manifest.parts.filter((p) => p.name.startsWith('blobs/')).length,
        },
        writes,
      };
    });
    rmSync(besideArchive, { force: true });

    progress('backup: conclave restore --as new-cluster (the cluster stopped)');
    const restoreDir = join(options.root, 'conclave-restored');
    const command = `conclave restore FILE --data DIR --as new-cluster`;
    const run = await runTimed(process.execPath, [binPath, 'restore', archive, '--data', restoreDir, '--as', 'new-cluster'], { CONCLAVE_CLUSTER_SECRET: generateClusterSecret() }, transferTimeoutMs);
    let restore: RestoreRun | null = null;
    let restoreSkipped: string | null = null;
    if (run.exit === 0) {
      restore = { command, wallMs: run.wallMs, mbPerSec: measured.backup.bytes / MB / (run.wallMs / 1000), peakRssBytes: run.peakRssBytes, dataDirBytes: directoryBytes(restoreDir) };
      progress(`backup: restored in ${(run.wallMs / 1000).toFixed(1)} s (${restore.mbPerSec.toFixed(0)} MB/s)`);
    } else if (/unknown command 'restore'/.test(run.output)) {
      restoreSkipped = 'this build has no `conclave restore` command (it is being built on another branch)';
      progress(`backup: restore skipped: ${restoreSkipped}`);
    } else {
      throw new Error(`${command} exited ${run.exit}:\n${run.output}`);
    }
    return {
      system: 'conclave',
      mix: mix.name,
      storedBytes: mix.bytes,
      stored: `${mix.documents} JSON documents of ${mix.documentBytes} B (PUT), ${mix.binarySizes.length} binaries of 1-8 MiB of random bytes (a document and a binary PUT each)`,
      ...measured,
      restore,
      restoreSkipped,
    };
  } finally {
    rmSync(options.root, { recursive: true, force: true });
  }
}

/**
 * The windows of the writes with and without a backup: at least one whole backup long, so the one beside covers
 * both of a backup's phases (Conclave: the copy of the state, then the stream of the blobs), not only the first.
 * A backup that a node paces while the cluster writes (`pacedBytesPerSecond`: Conclave's
 * backup.busyBytesPerSecondMax) lasts longer beside the writes than alone: the window is then as long as its stream
 * at that rate after its first byte, or the window would hold mostly its first phase.
 */
export function besideTiming(timing: LoadTiming, alone: ArchiveWritten, pacedBytesPerSecond?: number): LoadTiming {
  const pacedMs = pacedBytesPerSecond === undefined ? 0 : (alone.headersMs ?? 0) + (alone.bytes / pacedBytesPerSecond) * 1000;
  return { warmupMs: timing.warmupMs, durationMs: Math.ceil(Math.max(timing.durationMs, alone.totalMs, pacedMs)) };
}

/** The pace of a backup beside writes on a node of default settings (backup.busyBytesPerSecondMax). */
function defaultBackupPaceBytesPerSecond(): number | undefined {
  const spec = settingSpecs.find((s) => s.key === 'backup.busyBytesPerSecondMax');
  const value = spec?.schema.parse(undefined) as number | undefined;
  return value === undefined || value === 0 ? undefined : value;
}

/**
 * Writes without a backup, beside backups taken back to back (`backup` until the load's window has passed; the one
 * running then is let finish, so the node never logs a cut transfer), and without again.
 */
export async function writesBeside(
  prepare: () => Promise<(label: string) => Promise<LoadResult>>,
  backup: () => Promise<ArchiveWritten>,
  progress: (text: string) => void,
): Promise<WritesBesideBackup> {
  const load = await prepare();
  progress(`backup: ${besideClients} clients writing 1 KB over every node, without a backup`);
  const before = await load('writes without a backup');
  progress(`backup: the same writes beside backups taken back to back`);
  let stop = false;
  const backups: ArchiveWritten[] = [];
  const taking = (async () => {
    while (!stop) backups.push(await backup());
  })();
  // The loop's failure is reported after the load, not as an unhandled rejection while it runs.
  taking.catch(() => undefined);
  let beside: LoadResult;
  try {
    beside = await load('writes beside a backup');
  } finally {
    stop = true;
  }
  await taking;
  progress(`backup: the same writes without a backup, again`);
  const after = await load('writes without a backup, again');
  const withoutMean = (before.opsPerSec + after.opsPerSec) / 2;
  return { clients: besideClients, without: [before, after], beside, keptPercent: withoutMean === 0 ? 0 : (beside.opsPerSec / withoutMean) * 100, backups };
}

/** Stores the mix through the master; returns the SHA-256 of every binary. */
async function fill(cluster: BenchCluster, master: string, mix: BackupMix): Promise<string[]> {
  const url = cluster.url(master);
  for (const path of ['/backup', '/backup/docs', '/backup/bins']) {
    await requestOnce(url, 'PUT', `/api/v1/content${path}`, [201], { body: JSON.stringify({ properties: {} }), contentType: 'application/json' });
  }
  await writeConcurrently(url, mix.documents, (pool, i) => putSettled(pool, `/api/v1/content/backup/docs/d${String(i).padStart(9, '0')}`, backupDocumentBody(i), 'application/json'), fillConcurrency);
  const blobs: string[] = [];
  await writeConcurrently(
    url,
    mix.binarySizes.length,
    async (pool, i) => {
      const path = `backup/bins/b${String(i).padStart(6, '0')}`;
      await putSettled(pool, `/api/v1/content/${path}`, JSON.stringify({ properties: {} }), 'application/json');
      const bytes = randomBytes(mix.binarySizes[i]!);
      blobs.push(createHash('sha256').update(bytes).digest('hex'));
      await putSettled(pool, `/api/v1/binaries/${path}?property=file`, bytes, 'application/octet-stream');
    },
    binaryFillConcurrency,
  );
  return blobs;
}

/**
 * A PUT of the fill, which is not what is measured: on a loaded machine the master may change while a gigabyte is
 * written, so a write whose outcome is unknown (committed or not) is sent again — a PUT of the same path and body
 * stores the same thing — a few times before the fill gives up.
 */
async function putSettled(pool: Pool, path: string, body: string | Buffer, contentType: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await put(pool, path, body, contentType);
    } catch (err) {
      if (attempt >= fillAttemptsMax || !/ answered 5\d\d:/.test((err as Error).message)) throw err;
      await sleep(fillRetryDelayMs);
    }
  }
}

/** GET /api/v1/admin/backup into `file`, fsynced; the whole archive, or an error. */
async function downloadBackup(url: string, file: string): Promise<ArchiveWritten> {
  const startMs = performance.now();
  const response = await request(`${url}/api/v1/admin/backup`, { headers: { authorization }, headersTimeout: transferTimeoutMs, bodyTimeout: transferTimeoutMs });
  if (response.statusCode !== 200) throw new Error(`GET /api/v1/admin/backup on ${url} answered ${response.statusCode}: ${await response.body.text()}`);
  const headersMs = performance.now() - startMs;
  const expected = Number(response.headers['content-length']);
  // Written as `conclave backup --out` writes it: flushed as it grows, fsynced at the end.
  rmSync(file, { force: true });
  const out = await SyncedFileWriter.create(file, 0o600);
  try {
    for await (const chunk of response.body) await out.write(chunk as Buffer);
    await out.finish();
  } finally {
    await out.close();
  }
  const totalMs = performance.now() - startMs;
  const bytes = statSync(file).size;
  if (bytes !== expected) throw new Error(`the backup from ${url} has ${bytes} bytes; its Content-Length said ${expected}`);
  return { bytes, headersMs, totalMs, mbPerSec: bytes / MB / (totalMs / 1000) };
}

/** `conclave backup --url URL --out FILE`, the command an operator runs (it checks every part as it receives it). */
async function backupWithCli(url: string, file: string): Promise<ArchiveWritten> {
  rmSync(file, { force: true });
  const run = await runTimed(process.execPath, [binPath, 'backup', '--url', url, '--out', file], { CONCLAVE_PASSWORD: adminPassword }, transferTimeoutMs);
  if (run.exit !== 0) throw new Error(`conclave backup --url ${url} exited with ${run.exit}: ${run.output}`);
  const bytes = statSync(file).size;
  return { bytes, headersMs: null, totalMs: run.wallMs, mbPerSec: bytes / MB / (run.wallMs / 1000) };
}

/** The manifest, the archive's first entry. */
function readArchiveManifest(file: string): BackupManifest {
  const fd = openSync(file, 'r');
  try {
    const header = Buffer.alloc(tarBlockBytes);
    readSync(fd, header, 0, tarBlockBytes, 0);
    const entry = decodeTarHeader(header);
    if (entry === null) throw new Error(`${file} starts with no tar entry`);
    const body = Buffer.alloc(entry.size);
    readSync(fd, body, 0, entry.size, tarBlockBytes);
    return parseManifest(body);
  } finally {
    closeSync(fd);
  }
}

/** Bytes of every file under a directory (symbolic links not followed). */
export function directoryBytes(path: string): number {
  if (!existsSync(path)) return 0;
  const stat = lstatSync(path);
  if (!stat.isDirectory()) return stat.size;
  return readdirSync(path).reduce((sum, name) => sum + directoryBytes(join(path, name)), 0);
}

/** The backup part's figures for both systems, as a Markdown table. */
export function backupTable(results: readonly BackupPartResult[]): string {
  const mb = (bytes: number | null) => (bytes === null ? '-' : (bytes / MB).toFixed(1));
  const s = (ms: number) => (ms / 1000).toFixed(1);
  const lines = [
    `Backup and restore: a repository of ${results.map((r) => `${r.system} ${mb(r.storedBytes)} MB (${r.stored})`).join('; ')}. ` +
      `Backup from a replica (follower) to a file, fsynced; writes of 1 KB by ${besideClients} closed-loop clients over every node without a backup, beside backups taken back to back, and without again (windows at least one backup long); ` +
      'restore into a new cluster of one after the cluster stopped. MB = 10^6 bytes.',
    '',
    '| system | backup | archive MB | backup s | to headers s | MB/s | source RSS before MB | extra MB | source CPU s | writes/s without (before, after) | writes/s beside | kept | backups beside (MB/s) | restore | restore s | MB/s | restore peak RSS MB | restored dir MB |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|--:|--:|--:|--:|',
  ];
  for (const r of results) {
    const b = r.backup;
    const w = r.writes;
    const restore = r.restore;
    const how = r.system === 'conclave' ? 'GET /api/v1/admin/backup' : 'etcdctl snapshot save';
    lines.push(
      `| ${r.system} | ${how} from ${r.source} (master ${r.master}) | ${mb(b.bytes)} | ${s(b.totalMs)} | ${b.headersMs === null ? '-' : s(b.headersMs)} | ${b.mbPerSec.toFixed(1)} | ` +
        `${mb(b.memory.beforeBytes)} | ${mb(b.memory.extraBytes)} | ${b.sourceCpuMs === null ? '-' : s(b.sourceCpuMs)} | ` +
        `${w.without.map((l) => Math.round(l.opsPerSec)).join(', ')} | ${Math.round(w.beside.opsPerSec)} | ${w.keptPercent.toFixed(1)} % | ${w.backups.map((x) => x.mbPerSec.toFixed(0)).join(', ')} | ` +
        (restore === null
          ? `skipped: ${r.restoreSkipped ?? '?'} | - | - | - | - |`
          : `${restore.command} | ${s(restore.wallMs)} | ${restore.mbPerSec.toFixed(1)} | ${mb(restore.peakRssBytes)} | ${mb(restore.dataDirBytes)} |`),
    );
  }
  return lines.join('\n');
}
