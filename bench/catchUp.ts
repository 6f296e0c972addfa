import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';

import { settingSpecs } from '../src/config/settings.js';
import type { ClusterStatus } from '../src/node/clusterStatus.js';
import type { BenchCluster } from './benchCluster.js';
import { sleep } from './nodeProcess.js';
import { processCpuMs } from './processCpu.js';
import { authorization, documentBody, documentText, documentTextChars, requestOnce } from './operations.js';

/**
 * Catch-up of a replica that was away: on a 3-node cluster, stop one replica (SIGTERM), write a given volume through
 * the master, start the replica again and time until it is back: the master's status lists it in the in-sync set
 * with the master's applied index (as of the end of the writes), and its own /health/ready answers 200. For
 * binaries, also until every blob file is on its disk (the blob fetcher gets them after the entries are applied).
 */

const MiB = 1024 * 1024;
/** Writes in flight while loading the cluster (the load itself is not what is measured). */
const loadConcurrency = 16;
const binaryBytes = 1 * MiB;
const pollIntervalMs = 10;
const catchUpTimeoutMs = 300_000;
/** The master takes a silent node out of the in-sync set after replication.inSyncTimeoutMs (3 s by default). */
const outOfSyncTimeoutMs = 30_000;

export type CatchUpKind = 'content' | 'binaries' | 'snapshot';

export interface CatchUpResult {
  readonly name: string;
  readonly kind: CatchUpKind;
  /** Set when the measurement did not run; says why. */
  readonly skipped: string | null;
  /** Request bytes written while the replica was away: JSON bodies, or binaries' bytes. */
  readonly bytes: number;
  readonly writes: number;
  /** Journal entries the replica had to catch up (the master's applied index after the writes minus the replica's at its stop). */
  readonly entries: number;
  /** How long the writes took with the replica away (context: the cluster's write speed without it). */
  readonly writeMs: number;
  /** Process spawn to the replica's HTTP server answering (process start, database open). */
  readonly startMs: number;
  /**
   * HTTP answering to the master's status showing the replica up again: the master reaches it (it sends on the
   * connection it dials itself, after its reconnection back-off).
   */
  readonly contactMs: number;
  /** HTTP answering to the master's status showing the replica's applied index at the master's (the entries are there). */
  readonly appliedMs: number;
  /** HTTP answering to in sync with the master's applied index and ready (the transport starts a moment earlier). */
  readonly catchUpMs: number;
  /** Binaries only: HTTP answering to every blob file on the replica's disk (blobs are fetched once their entries are applied). */
  readonly blobsPresentMs: number | null;
  /** bytes over the whole return, reconnection included: to caught up and, for binaries, every blob on disk; MiB/s. */
  readonly mibPerSec: number;
  /** bytes over the transfer alone, from contact to the entries applied and, for binaries, every blob on disk; MiB/s. */
  readonly transferMibPerSec: number;
  /** Snapshot only: the size of the snapshot file the replica installed, from its log. */
  readonly snapshotBytes: number | null;
  /**
   * CPU the returning replica used from its spawn until caught up, and the master over the same time, in ms (null
   * where /proc cannot be read): on a machine shared with other work these vary less than the times.
   */
  readonly replicaCpuMs: number | null;
  readonly masterCpuMs: number | null;
}

export interface CatchUpOptions {
  /** What to write while the replica is away, in MiB. */
  readonly mib: number;
  /** Length of each JSON document's text property (content catch-up only; default documentTextChars, a 1 KB document). */
  readonly valueChars?: number;
  /** Says what the measurement is doing (the waits can be long). */
  readonly progress?: (text: string) => void;
}

/** JSON documents (PUT of fresh paths; 1 KB unless options.valueChars says otherwise) while the replica is away. */
export async function measureContentCatchUp(cluster: BenchCluster, options: CatchUpOptions): Promise<CatchUpResult> {
  const { count, bodyBytes, load } = documentLoad(cluster, options.mib, '/catchup-content', options.valueChars);
  return catchUp(cluster, 'content', `catch-up: ${count} JSON documents of ${bodyBytes} B`, load, options.progress);
}

/** Binaries of 1 MiB of random bytes (one document and one binary PUT each) while the replica is away. */
export async function measureBinaryCatchUp(cluster: BenchCluster, options: CatchUpOptions): Promise<CatchUpResult> {
  const count = Math.max(1, Math.round((options.mib * MiB) / binaryBytes));
  const blobs: string[] = [];
  return catchUp(cluster, 'binaries', `catch-up: ${count} binaries of 1 MiB`, async (master) => {
    await requestOnce(cluster.url(master), 'PUT', '/api/v1/content/catchup-binaries', [200, 201], { body: JSON.stringify({ properties: {} }), contentType: 'application/json' });
    await writeConcurrently(cluster.url(master), count, async (pool, i) => {
      const path = `catchup-binaries/b${String(i).padStart(6, '0')}`;
      await put(pool, `/api/v1/content/${path}`, JSON.stringify({ properties: {} }), 'application/json');
      const bytes = randomBytes(binaryBytes);
      blobs.push(createHash('sha256').update(bytes).digest('hex'));
      await put(pool, `/api/v1/binaries/${path}?property=file`, bytes, 'application/octet-stream');
    });
    return { bytes: count * binaryBytes, writes: 2 * count + 1, blobs };
  }, options.progress);
}

/** The setting journal compaction and snapshot transfer bring; a build without it has no snapshots to measure. */
export const compactionSetting = 'storage.compactionEntriesMin';

export function hasCompaction(): boolean {
  return settingSpecs.some((spec) => spec.key === compactionSetting);
}

/**
 * Settings of the cluster the journal catch-ups run on: no compaction during the measurement (a build with it would
 * otherwise compact after its default number of entries, and the replica would get a snapshot instead of entries).
 */
export function journalClusterEnv(): Record<string, string> {
  if (!hasCompaction()) return {};
  return { CONCLAVE_STORAGE_COMPACTION_ENTRIES_MIN: '100000000' };
}

/**
 * Settings of the cluster measureSnapshotInstall starts: every node writes a snapshot after a few hundred applied
 * entries (fewer when fewer documents are written) and keeps no journal below it, so a replica that was away needs entries the master no longer has. Empty
 * on a build without compaction.
 */
export function snapshotClusterEnv(documents: number): Record<string, string> {
  if (!hasCompaction()) return {};
  // Below the documents written, or the master never compacts past the replica (the quick bench writes 100).
  const threshold = Math.max(10, Math.min(500, Math.floor(documents / 4)));
  return { CONCLAVE_STORAGE_COMPACTION_ENTRIES_MIN: String(threshold), CONCLAVE_STORAGE_JOURNAL_RETAIN_ENTRIES: '0' };
}

/**
 * Snapshot install: like the content catch-up, on a cluster started with snapshotClusterEnv(), so the returning
 * replica must install a snapshot before it can catch up from the journal. Skipped, with a message, on a build
 * without storage.compactionEntriesMin (journal compaction and snapshot transfer are being added on another branch).
 * The measurement was written against that branch's docs/operations.md ("Compaction and snapshots": the status's
 * snapshot.index, the log line "installed a snapshot") and runs by itself once the setting exists; a catch-up that
 * installed no snapshot is reported as skipped, never as a snapshot figure.
 */
export async function measureSnapshotInstall(withCluster: WithCluster, options: CatchUpOptions): Promise<CatchUpResult> {
  const name = 'catch-up by snapshot install';
  if (!hasCompaction()) {
    return skippedResult(name, `${compactionSetting} does not exist in this build (journal compaction and snapshot transfer are not merged yet); snapshot install not measured`);
  }
  const documents = Math.max(1, Math.round((options.mib * MiB) / Buffer.byteLength(documentBody(0, documentText(documentTextChars)))));
  return withCluster(snapshotClusterEnv(documents), async (cluster) => {
    const { count, load } = documentLoad(cluster, options.mib, '/catchup-snapshot');
    const result = await catchUp(cluster, 'snapshot', `${name} (${count} JSON documents of 1 KB)`, load, options.progress);
    if (result.snapshotBytes === null) {
      return skippedResult(name, 'the replica caught up without installing a snapshot (its log has no "installed a snapshot"); check snapshotClusterEnv() against the compaction settings');
    }
    return { ...result, mibPerSec: result.snapshotBytes / MiB / (result.catchUpMs / 1000) };
  });
}

/** Runs `measure` on a fresh 3-node cluster whose nodes get `env`, and stops that cluster afterwards. */
export type WithCluster = <T>(env: Record<string, string>, measure: (cluster: BenchCluster) => Promise<T>) => Promise<T>;

function documentLoad(cluster: BenchCluster, mib: number, parent: string, valueChars = documentTextChars): { count: number; bodyBytes: number; load: (master: string) => Promise<Loaded> } {
  const text = documentText(valueChars);
  const bodyBytes = Buffer.byteLength(documentBody(0, text));
  const count = Math.max(1, Math.round((mib * MiB) / bodyBytes));
  const load = async (master: string): Promise<Loaded> => {
    await requestOnce(cluster.url(master), 'PUT', `/api/v1/content${parent}`, [200, 201], { body: JSON.stringify({ properties: {} }), contentType: 'application/json' });
    let bytes = 0;
    await writeConcurrently(cluster.url(master), count, (pool, i) => {
      const body = documentBody(i, text);
      bytes += Buffer.byteLength(body);
      return put(pool, `/api/v1/content${parent}/d${String(i).padStart(9, '0')}`, body, 'application/json');
    });
    return { bytes, writes: count + 1, blobs: [] };
  };
  return { count, bodyBytes, load };
}

/** The replica's log line when it installed a snapshot carries the file's size. */
function snapshotInstalledBytes(output: string): number | null {
  for (const line of output.split('\n')) {
    if (!line.includes('"msg":"installed a snapshot"')) continue;
    try {
      const bytes = (JSON.parse(line) as { bytes?: unknown }).bytes;
      return typeof bytes === 'number' ? bytes : 0;
    } catch {
      return 0;
    }
  }
  return null;
}

function skippedResult(name: string, skipped: string): CatchUpResult {
  return {
    name,
    kind: 'snapshot',
    skipped,
    bytes: 0,
    writes: 0,
    entries: 0,
    writeMs: 0,
    startMs: 0,
    contactMs: 0,
    appliedMs: 0,
    catchUpMs: 0,
    blobsPresentMs: null,
    mibPerSec: 0,
    transferMibPerSec: 0,
    snapshotBytes: null,
    replicaCpuMs: null,
    masterCpuMs: null,
  };
}

interface Loaded {
  readonly bytes: number;
  readonly writes: number;
  /** SHA-256 of every blob uploaded: the replica holds them all when it has caught up on binaries too. */
  readonly blobs: readonly string[];
}

async function catchUp(
  cluster: BenchCluster,
  kind: CatchUpKind,
  name: string,
  load: (master: string) => Promise<Loaded>,
  progress: (text: string) => void = () => undefined,
): Promise<CatchUpResult> {
  const master = await cluster.master();
  const replica = cluster.names.find((n) => n !== master);
  if (replica === undefined) throw new Error('a catch-up needs a cluster of at least two nodes');
  const snapshotMode = kind === 'snapshot';

  // Everything written so far is on the replica: it starts from a known index.
  await waitUntil(`${replica} in sync before its stop`, async () => {
    const s = await cluster.status(master);
    const node = nodeOf(s, replica);
    return node.inSync && node.appliedIndex !== null && node.appliedIndex >= appliedOf(s, master) ? true : undefined;
  }, outOfSyncTimeoutMs);
  const indexAtStop = appliedOf(await cluster.status(replica), replica);
  progress(`${name}: stopping ${replica} (the master is ${master})`);
  const stop = await cluster.stop(replica);
  if (stop.exit !== 0 || stop.killed) throw new Error(`${replica} did not stop cleanly on SIGTERM (exit ${stop.exit}, killed: ${stop.killed})`);
  // Until the master has taken it out of the in-sync set, every write waits for it: let that pass before loading.
  await waitUntil(`${replica} out of the in-sync set`, async () => (nodeOf(await cluster.status(master), replica).inSync ? undefined : true), outOfSyncTimeoutMs);

  progress(`${name}: writing`);
  const writeStartMs = performance.now();
  const loaded = await load(master);
  const writeMs = performance.now() - writeStartMs;
  const target = appliedOf(await cluster.status(master), master);
  if (snapshotMode) {
    progress(`${name}: waiting for the master to compact its journal`);
    await waitUntil('the master to compact its journal past the stopped replica', async () => {
      const index = (await cluster.status(master) as ClusterStatus & { snapshot?: { index?: number } }).snapshot?.index ?? 0;
      return index > indexAtStop ? true : undefined;
    }, catchUpTimeoutMs);
  }

  progress(`${name}: starting ${replica} again`);
  const spawnMs = performance.now();
  const masterCpuAtSpawnMs = processCpuMs(cluster.pid(master));
  // At level info the replica logs "installed a snapshot", which is how the bench knows the install happened.
  await cluster.restart(replica, snapshotMode ? { CONCLAVE_LOG_LEVEL: 'info' } : undefined);
  const liveMs = performance.now();
  const blobPaths = loaded.blobs.map((sha256) => join(cluster.dataDir(replica), 'blobs', sha256.slice(0, 2), sha256.slice(2, 4), sha256));
  let contactAtMs: number | null = null;
  let appliedAtMs: number | null = null;
  let caughtUpMs: number | null = null;
  let blobsMs: number | null = null;
  let replicaCpuMs: number | null = null;
  let masterCpuMs: number | null = null;
  await waitUntil(`${replica} to catch up`, async () => {
    if (caughtUpMs === null) {
      const node = nodeOf(await cluster.status(master), replica);
      const nowMs = performance.now();
      if (contactAtMs === null && node.status === 'up') contactAtMs = nowMs;
      const applied = node.appliedIndex !== null && node.appliedIndex >= target;
      if (appliedAtMs === null && applied) appliedAtMs = nowMs;
      if (node.inSync && applied && (await isReady(cluster.url(replica)))) {
        caughtUpMs = performance.now();
        replicaCpuMs = processCpuMs(cluster.pid(replica));
        const masterCpuNowMs = processCpuMs(cluster.pid(master));
        masterCpuMs = masterCpuNowMs === null || masterCpuAtSpawnMs === null ? null : masterCpuNowMs - masterCpuAtSpawnMs;
      }
    }
    if (blobsMs === null && blobPaths.every((path) => existsSync(path))) blobsMs = performance.now();
    return caughtUpMs !== null && blobsMs !== null ? true : undefined;
  }, catchUpTimeoutMs);

  const catchUpMs = caughtUpMs! - liveMs;
  // The same poll can see both when the first contact brought everything.
  const contactMs = Math.min(contactAtMs ?? appliedAtMs!, appliedAtMs!) - liveMs;
  const appliedMs = appliedAtMs! - liveMs;
  const blobsPresentMs = loaded.blobs.length === 0 ? null : Math.max(0, blobsMs! - liveMs);
  const doneMs = Math.max(catchUpMs, blobsPresentMs ?? 0);
  const transferredMs = Math.max(appliedMs, blobsPresentMs ?? 0) - contactMs;
  return {
    name,
    kind,
    skipped: null,
    bytes: loaded.bytes,
    writes: loaded.writes,
    entries: target - indexAtStop,
    writeMs,
    startMs: liveMs - spawnMs,
    contactMs,
    appliedMs,
    catchUpMs,
    blobsPresentMs,
    mibPerSec: loaded.bytes / MiB / (doneMs / 1000),
    // Never below one poll: a transfer seen whole in one poll took up to that long.
    transferMibPerSec: loaded.bytes / MiB / (Math.max(transferredMs, pollIntervalMs) / 1000),
    snapshotBytes: snapshotMode ? snapshotInstalledBytes(cluster.currentOutput(replica)) : null,
    replicaCpuMs,
    masterCpuMs,
  };
}

/** Runs `count` writes, `concurrency` at a time (loadConcurrency by default), on one keep-alive pool; any failure ends the measurement. */
export async function writeConcurrently(origin: string, count: number, write: (pool: Pool, i: number) => Promise<void>, concurrency = loadConcurrency): Promise<void> {
  const pool = new Pool(origin, { connections: concurrency, pipelining: 1, keepAliveTimeout: 60_000 });
  let next = 0;
  const worker = async () => {
    while (next < count) await write(pool, next++);
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    await pool.close();
  }
}

export async function put(pool: Pool, path: string, body: string | Buffer, contentType: string): Promise<void> {
  const response = await pool.request({ path, method: 'PUT', headers: { authorization, 'content-type': contentType }, body, headersTimeout: 120_000, bodyTimeout: 120_000 });
  const text = await response.body.text();
  if (response.statusCode < 200 || response.statusCode > 299) throw new Error(`PUT ${path} answered ${response.statusCode}: ${text}`);
}

export function nodeOf(status: ClusterStatus, name: string): ClusterStatus['nodes'][number] {
  const node = status.nodes.find((n) => n.name === name);
  if (node === undefined) throw new Error(`${status.answeredBy.name}'s cluster status does not list ${name}`);
  return node;
}

export function appliedOf(status: ClusterStatus, name: string): number {
  const applied = nodeOf(status, name).appliedIndex;
  if (applied === null) throw new Error(`${status.answeredBy.name}'s cluster status gives no applied index for ${name}`);
  return applied;
}

async function isReady(url: string): Promise<boolean> {
  const response = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(2_000) }).catch(() => null);
  if (response === null) return false;
  await response.arrayBuffer();
  return response.status === 200;
}

/** Polls `check` every pollIntervalMs until it returns a value; a thrown error counts as "not yet" until the deadline. */
export async function waitUntil<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown;
  while (performance.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    await sleep(pollIntervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError === undefined ? '' : `: ${String(lastError)}`}`);
}
