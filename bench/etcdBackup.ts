import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Etcd3 } from 'etcd3';

import { besideClients, besideTiming, directoryBytes, writesBeside, type ArchiveWritten, type BackupMeasureOptions, type BackupPartResult, type RestoreRun } from './backup.js';
import { backupDocumentBody, type BackupMix } from './backupMix.js';
import { etcdClient, etcdctlPath, type EtcdCluster } from './etcdCluster.js';
import { etcdClients, etcdWriter } from './etcdLoad.js';
import { runLoad } from './load.js';
import { sleep } from './nodeProcess.js';
import { processCpuMs } from './processCpu.js';
import { sampleRss, type RssSample } from './processMemory.js';
import { runTimed } from './timedCommand.js';
import { DocumentPaths } from './operations.js';

/**
 * etcd's side of the backup part (backup.ts measures Conclave's the same way): a 3-member cluster holding the same
 * bytes — each JSON document as one value, each binary cut into values of at most 1 MiB (etcd takes requests of at
 * most 1.5 MiB by default, --max-request-bytes) — then `etcdctl snapshot save` from a follower (etcdctl fsyncs the
 * file before renaming it into place), the same writes beside snapshots taken back to back, and `etcdctl snapshot
 * restore` into a new member's data directory after the cluster stopped.
 */

const MB = 1_000_000;
const MiB = 1024 * 1024;
/** The largest value: under etcd's default request limit of 1.5 MiB with its key and framing. */
export const etcdValueBytesMax = 1 * MiB;
/**
 * etcd refuses writes once its database passes --quota-backend-bytes (2 GiB by default); the bench raises it to
 * etcd's documented maximum so a large mix is never refused. A limit, not a tuning: it changes no speed.
 */
export const etcdBackupArgs = ['--quota-backend-bytes', String(8 * 1024 * MiB)];
const fillConcurrency = 16;
const chunkFillConcurrency = 4;
const commandTimeoutMs = 3_600_000;
const settleTimeoutMs = 600_000;
const etcdctlEnv = { ETCDCTL_API: '3' };

export type WithEtcd = <T>(measure: (cluster: EtcdCluster) => Promise<T>) => Promise<T>;

export async function measureEtcdBackup(withEtcd: WithEtcd, options: BackupMeasureOptions): Promise<BackupPartResult> {
  const { mix, progress } = options;
  const snapshot = join(options.root, 'etcd-snapshot.db');
  const besideSnapshot = join(options.root, 'etcd-snapshot-beside.db');
  const chunks = mix.binarySizes.reduce((sum, size) => sum + Math.ceil(size / etcdValueBytesMax), 0);
  mkdirSync(options.root, { recursive: true });
  try {
    const measured = await withEtcd(async (cluster) => {
      const leader = await cluster.leader();
      const follower = cluster.names.find((n) => n !== leader)!;
      progress(`etcd backup: storing ${mix.documents} values of ${mix.documentBytes} B and ${chunks} values of at most 1 MiB (the binaries of mix ${mix.name}) through ${leader}`);
      const fillStartMs = performance.now();
      await fill(cluster.url(leader), mix);
      const fillMs = performance.now() - fillStartMs;
      const revision = Number((await cluster.status(leader)).header.revision);
      await waitForRevision(cluster, follower, revision);

      progress(`etcd backup: etcdctl snapshot save from ${follower}`);
      const pid = cluster.pid(follower);
      const cpuBeforeMs = processCpuMs(pid);
      const rss = sampleRss(pid);
      let memory: RssSample;
      let written: ArchiveWritten;
      try {
        written = await snapshotSave(cluster.url(follower), snapshot);
      } finally {
        memory = rss.stop();
      }
      const cpuAfterMs = processCpuMs(pid);
      progress(`etcd backup: ${(written.bytes / MB).toFixed(0)} MB in ${(written.totalMs / 1000).toFixed(1)} s (${written.mbPerSec.toFixed(0)} MB/s), ${follower} +${((memory.extraBytes ?? 0) / MB).toFixed(0)} MB RSS`);

      const members = [...cluster.names.filter((n) => n !== leader), leader];
      const urls = members.map((n) => cluster.url(n));
      const writes = await writesBeside(
        async () => {
          const paths = new DocumentPaths('/backup-load');
          return (label: string) => runLoad(`etcd ${label}`, urls, besideClients, besideTiming(options, written), etcdWriter(paths), etcdClients);
        },
        () => snapshotSave(cluster.url(follower), besideSnapshot),
        (text) => progress(`etcd ${text}`),
      );
      return {
        fillMs,
        source: follower,
        master: leader,
        backup: { ...written, memory, sourceCpuMs: cpuBeforeMs === null || cpuAfterMs === null ? null : cpuAfterMs - cpuBeforeMs },
        archive: { revision },
        writes,
      };
    });
    rmSync(besideSnapshot, { force: true });

    progress('etcd backup: etcdctl snapshot restore (the cluster stopped)');
    const restoreDir = join(options.root, 'etcd-restored');
    const peerUrl = 'http://127.0.0.1:2380';
    const run = await runTimed(
      etcdctlPath,
      ['snapshot', 'restore', snapshot, '--data-dir', restoreDir, '--name', 'r1', '--initial-cluster', `r1=${peerUrl}`, '--initial-advertise-peer-urls', peerUrl, '--initial-cluster-token', 'restored'],
      etcdctlEnv,
      commandTimeoutMs,
    );
    if (run.exit !== 0) throw new Error(`etcdctl snapshot restore exited ${run.exit}:\n${run.output}`);
    const restore: RestoreRun = {
      command: 'etcdctl snapshot restore FILE --data-dir DIR (a new member)',
      wallMs: run.wallMs,
      mbPerSec: measured.backup.bytes / MB / (run.wallMs / 1000),
      peakRssBytes: run.peakRssBytes,
      dataDirBytes: directoryBytes(restoreDir),
    };
    progress(`etcd backup: restored in ${(run.wallMs / 1000).toFixed(1)} s (${restore.mbPerSec.toFixed(0)} MB/s)`);
    return {
      system: 'etcd',
      mix: mix.name,
      storedBytes: mix.bytes,
      stored: `${mix.documents} values of ${mix.documentBytes} B (the same JSON bodies), ${chunks} values of at most 1 MiB of random bytes (the binaries, cut under etcd's 1.5 MiB request limit)`,
      ...measured,
      restore,
      restoreSkipped: null,
    };
  } finally {
    rmSync(options.root, { recursive: true, force: true });
  }
}

async function fill(url: string, mix: BackupMix): Promise<void> {
  const client = etcdClient(url);
  try {
    await concurrently(mix.documents, fillConcurrency, (i) => client.put(`/backup/docs/d${String(i).padStart(9, '0')}`).value(backupDocumentBody(i)).exec());
    const puts: Array<(client: Etcd3) => Promise<unknown>> = [];
    mix.binarySizes.forEach((size, b) => {
      for (let offset = 0, c = 0; offset < size; offset += etcdValueBytesMax, c++) {
        const bytes = Math.min(etcdValueBytesMax, size - offset);
        puts.push((etcd) => etcd.put(`/backup/bins/b${String(b).padStart(6, '0')}/c${String(c).padStart(3, '0')}`).value(randomBytes(bytes)).exec());
      }
    });
    await concurrently(puts.length, chunkFillConcurrency, (i) => puts[i]!(client));
  } finally {
    client.close();
  }
}

async function concurrently(count: number, concurrency: number, put: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await put(next++);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

async function waitForRevision(cluster: EtcdCluster, member: string, revision: number): Promise<void> {
  const deadline = performance.now() + settleTimeoutMs;
  while (performance.now() < deadline) {
    const status = await cluster.status(member).catch(() => null);
    if (status !== null && Number(status.header.revision) >= revision) return;
    await sleep(20);
  }
  throw new Error(`etcd ${member} did not reach revision ${revision} within ${settleTimeoutMs} ms`);
}

/** `etcdctl snapshot save` from one member: it streams the member's database, fsyncs the file and renames it. */
async function snapshotSave(url: string, file: string): Promise<ArchiveWritten> {
  rmSync(file, { force: true });
  const run = await runTimed(etcdctlPath, ['--endpoints', url, '--dial-timeout', '10s', '--command-timeout', `${commandTimeoutMs / 1000}s`, 'snapshot', 'save', file], etcdctlEnv, commandTimeoutMs);
  if (run.exit !== 0) throw new Error(`etcdctl snapshot save from ${url} exited ${run.exit}:\n${run.output}`);
  const bytes = statSync(file).size;
  return { bytes, headersMs: null, totalMs: run.wallMs, mbPerSec: bytes / MB / (run.wallMs / 1000) };
}
