import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Etcd3 } from 'etcd3';

import { EtcdCluster, etcdClient } from './etcdCluster.js';
import { IntervalLoop } from './intervalLoop.js';
import { failoverGiveUpMs, type Kind } from './failover.js';

/**
 * etcd's side of the failover comparison, run as bench/failover.ts runs Conclave's: a fresh 3-member cluster per
 * trial, a put through every member every intervalMs (each given up after timeoutMs, never retried) for a warm-up,
 * then kill -9 or SIGSTOP of the leader (found with the maintenance status API). The failover time is the signal to
 * the first successful put through a surviving member that was sent after the signal: a put sent earlier could have
 * been committed by the old leader, which says nothing about the new one. A put to a follower is forwarded to the
 * leader inside etcd, so "through a surviving member" is what an etcd client sees.
 */

export interface EtcdFailoverOptions {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly warmupMs: number;
}

export interface EtcdTrialResult {
  readonly kind: Kind;
  readonly trial: number;
  readonly oldLeader: string;
  /** Signal to the first successful put sent after it through another member; null when none came within failoverGiveUpMs. */
  readonly failoverMs: number | null;
  /** The member that answered it, and the leader afterwards. */
  readonly firstVia: string | null;
  readonly newLeader: string | null;
  readonly puts: { readonly sent: number; readonly acknowledged: number };
}

const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
const afterFirstMs = 500;
const inflightPerMemberMax = 256;

interface PutRecord {
  readonly member: string;
  readonly sentAt: number;
  answeredAt: number;
  ok: boolean;
}

/** Puts to every member every intervalMs without waiting for answers, as bench/failover.ts's WriteLoop does over HTTP. */
class PutLoop extends IntervalLoop<PutRecord> {
  private readonly clients = new Map<string, Etcd3>();

  constructor(urls: ReadonlyMap<string, string>, intervalMs: number, timeoutMs: number) {
    super(urls.keys(), intervalMs, inflightPerMemberMax);
    for (const [name, url] of urls) this.clients.set(name, etcdClient(url, timeoutMs));
  }

  /** The first round after one interval, as the loop has always done. */
  override start(): void {
    super.start(false);
  }

  async stop(): Promise<void> {
    await this.stopSending();
    for (const client of this.clients.values()) client.close();
  }

  protected send(member: string, seq: number): { record: PutRecord; answered: Promise<void> } {
    const record: PutRecord = { member, sentAt: now(), answeredAt: 0, ok: false };
    const answered = this.clients
      .get(member)!
      .put(`/failover/${member}-${String(seq).padStart(7, '0')}`)
      .value(JSON.stringify({ member, seq }))
      .then(
        () => {
          record.ok = true;
        },
        () => undefined,
      )
      .finally(() => {
        record.answeredAt = now();
      });
    return { record, answered };
  }
}

function within<T>(promise: Promise<T>, timeoutMs: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** One trial on a fresh cluster under `root`; the cluster and its data are gone when it returns. */
export async function runEtcdFailoverTrial(kind: Kind, trial: number, root: string, options: EtcdFailoverOptions, live: Set<EtcdCluster>): Promise<EtcdTrialResult> {
  const dir = join(root, `${kind}-${trial}`);
  const cluster = await EtcdCluster.start(3, dir);
  live.add(cluster);
  let loop: PutLoop | undefined;
  try {
    loop = new PutLoop(new Map(cluster.names.map((n) => [n, cluster.url(n)])), options.intervalMs, options.timeoutMs);
    loop.start();
    await sleep(options.warmupMs);
    const oldLeader = await cluster.leader(5_000);
    let signalAt = Number.POSITIVE_INFINITY;
    const firstOther = loop.first((r) => r.member !== oldLeader && r.ok && r.sentAt >= signalAt);
    signalAt = now();
    if (kind === 'kill') await cluster.kill(oldLeader);
    else cluster.signal(oldLeader, 'SIGSTOP');
    const first = await within(firstOther, failoverGiveUpMs);
    const failoverMs = first === undefined ? null : first.answeredAt - signalAt;
    process.stderr.write(`  etcd ${kind === 'kill' ? 'kill -9' : 'SIGSTOP'} #${trial}: leader ${oldLeader}, first put through ${first?.member ?? 'none'} in ${failoverMs === null ? `>${failoverGiveUpMs}` : failoverMs.toFixed(0)} ms\n`);
    await sleep(afterFirstMs);
    await loop.stop();
    const newLeader = first === undefined ? null : await cluster.leader(2_000).catch(() => null);
    return {
      kind,
      trial,
      oldLeader,
      failoverMs,
      firstVia: first?.member ?? null,
      newLeader,
      puts: { sent: loop.records.length, acknowledged: loop.records.filter((r) => r.ok).length },
    };
  } finally {
    await loop?.stop();
    // Its data is thrown away: no need for a graceful stop (etcd's takes seconds without a leader).
    await cluster.killAll();
    live.delete(cluster);
    rmSync(dir, { recursive: true, force: true });
  }
}
