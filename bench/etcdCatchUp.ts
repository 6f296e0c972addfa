import { performance } from 'node:perf_hooks';

import { etcdClient, type EtcdCluster } from './etcdCluster.js';
import { sleep } from './nodeProcess.js';
import { documentBody, documentText } from './operations.js';

/**
 * etcd's side of the catch-up comparison, as bench/catchUp.ts measures Conclave's: on a 3-member cluster, stop a
 * follower (SIGTERM), put the given volume through the leader, start the follower again and time from its spawn
 * until its own status (maintenance API) shows the leader's revision as of the end of the writes (every write
 * applied to its store) and a raft applied index at least the leader's commit index then. The values are the very
 * bytes of Conclave's JSON document bodies of the same size.
 */

const MiB = 1024 * 1024;
/** Puts in flight while loading (the load itself is not what is measured), as for Conclave. */
const loadConcurrency = 16;
const pollIntervalMs = 10;
const catchUpTimeoutMs = 300_000;

export interface EtcdCatchUpResult {
  readonly name: string;
  readonly bytes: number;
  readonly writes: number;
  readonly valueBytes: number;
  /** Raft entries the follower had to catch up (the leader's commit index after the writes minus the follower's at its stop). */
  readonly entries: number;
  readonly writeMs: number;
  /** Spawn to the follower's first status answer (process start, WAL replay). */
  readonly answeringMs: number;
  /** Spawn to in sync: the leader's revision and commit index applied. */
  readonly catchUpMs: number;
  /** bytes over catchUpMs, in MiB/s. */
  readonly mibPerSec: number;
}

export async function measureEtcdCatchUp(cluster: EtcdCluster, options: { mib: number; valueChars: number; progress: (text: string) => void }): Promise<EtcdCatchUpResult> {
  const text = documentText(options.valueChars);
  const valueBytes = Buffer.byteLength(documentBody(0, text));
  const count = Math.max(1, Math.round((options.mib * MiB) / valueBytes));
  const name = `catch-up: ${count} values of ${valueBytes} B`;
  const leader = await cluster.leader();
  const follower = cluster.names.find((n) => n !== leader)!;
  const indexAtStop = Number((await cluster.status(follower)).raftIndex);
  options.progress(`etcd ${name}: stopping ${follower} (the leader is ${leader})`);
  await cluster.stop(follower);

  options.progress(`etcd ${name}: writing`);
  const client = etcdClient(cluster.url(leader));
  let bytes = 0;
  const writeStartMs = performance.now();
  try {
    let next = 0;
    const worker = async () => {
      while (next < count) {
        const i = next++;
        const value = documentBody(i, text);
        bytes += Buffer.byteLength(value);
        await client.put(`/catchup/d${String(i).padStart(9, '0')}`).value(value);
      }
    };
    await Promise.all(Array.from({ length: loadConcurrency }, worker));
  } finally {
    client.close();
  }
  const writeMs = performance.now() - writeStartMs;
  const target = await cluster.status(leader);
  const targetRevision = Number(target.header.revision);
  const targetIndex = Number(target.raftIndex);

  options.progress(`etcd ${name}: starting ${follower} again`);
  const spawnMs = performance.now();
  cluster.restart(follower);
  let answeringMs: number | null = null;
  const deadline = spawnMs + catchUpTimeoutMs;
  while (true) {
    const status = await cluster.status(follower, 1_000).catch(() => null);
    const nowMs = performance.now();
    if (status !== null) {
      answeringMs ??= nowMs - spawnMs;
      if (Number(status.header.revision) >= targetRevision && Number(status.raftAppliedIndex) >= targetIndex) {
        const catchUpMs = nowMs - spawnMs;
        return { name, bytes, writes: count, valueBytes, entries: targetIndex - indexAtStop, writeMs, answeringMs, catchUpMs, mibPerSec: bytes / MiB / (catchUpMs / 1000) };
      }
    }
    if (nowMs > deadline) throw new Error(`etcd ${follower} did not catch up within ${catchUpTimeoutMs} ms (revision ${status?.header.revision ?? '?'} of ${targetRevision})`);
    await sleep(pollIntervalMs);
  }
}
