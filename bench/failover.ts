import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';

import { benchEnvironment } from './environment.js';
import { IntervalLoop } from './intervalLoop.js';
import { ProcessCluster, type ClusterStatusBody } from '../test/helpers/cluster.js';
import { processAuth } from '../test/helpers/process.js';
import { waitFor } from '../test/helpers/tmp.js';

/**
 * Failover bench (issue 4): how long a 3-node cluster of real `conclave start` processes on loopback takes to accept
 * writes again after its master dies (kill -9) or freezes (SIGSTOP), and whether a frozen master that resumes
 * acknowledges any write after the new master's first. It measures and reports; it never fails for slowness. It
 * exits 1 only when a correctness check fails.
 *
 *   npm run bench:failover -- [--trials N] [--stop-trials N] [--interval-ms N] [--timeout-ms N] [--warmup-ms N] [--out FILE] [--dump-dir DIR]
 *
 * Every trial starts a fresh cluster with ProcessCluster from test/helpers: the same real processes as the process
 * tests. (bench/run.ts keeps its own node launcher to stay free of test code; here the cluster helper is the point.) A reused cluster would save about a second per trial, but every trial would
 * then start from a different state: a longer journal, a node that has just caught up, a master that may not be the
 * node that has run longest, and election timers and connections left over from the previous failover. Fresh
 * clusters keep the trials independent, which matters more than a minute of wall time.
 *
 * Times are wall-clock milliseconds (performance.timeOrigin + performance.now()), so they line up with the "time"
 * of the nodes' JSON log lines, which give the profile columns (detection, pre-vote, vote, first write).
 */

const usage = `usage: node dist/bench/failover.js [--trials N] [--stop-trials N] [--interval-ms N] [--timeout-ms N] [--warmup-ms N] [--out FILE] [--dump-dir DIR]
  --trials N       kill -9 trials (default 10)
  --stop-trials N  SIGSTOP trials (default 5; 0 skips them)
  --interval-ms N  a PUT to every node this often (default 5)
  --timeout-ms N   client timeout of each PUT (default 500)
  --warmup-ms N    write loop running before the master is killed or stopped (default 2000)
  --out FILE       JSON results (default bench-results/failover.json)
  --dump-dir DIR   also write every trial's PUTs and node logs there (DIR/kill-1.json, DIR/stop-1.json, ...)`;

const names = ['n1', 'n2', 'n3'] as const;
const parentPath = '/failover';
/** Targets of issue 4; printed against, never enforced. */
const killTargetMedianMs = 1_000;
const stopTargetMs = 3_000;
/** A failover slower than this is recorded as "none" and the trial moves on (still not a failure of the bench). */
export const failoverGiveUpMs = 30_000;
/** Writes keep going this long after the new master's first write (kill -9) or after SIGCONT (SIGSTOP). */
const afterKillMs = 500;
const afterResumeMs = 2_000;
/** How long the resumed old master may take to show itself a replica of the new master before the check fails. */
const replicaWaitMs = 10_000;
/** In-flight PUTs per node at most; with a 500 ms timeout and one PUT per 5 ms, about 100 are in flight to a frozen node. */
const inflightPerNodeMax = 256;
const setupAttemptsMax = 3;

export interface Options {
  readonly killTrials: number;
  readonly stopTrials: number;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly warmupMs: number;
  readonly outFile: string;
  readonly dumpDir: string | null;
}

export type Kind = 'kill' | 'stop';

/** One PUT of the write loop. status 0: no answer (timeout, refused connection, reset). */
interface WriteRecord {
  readonly node: string;
  readonly path: string;
  readonly seq: number;
  readonly sentAt: number;
  answeredAt: number;
  status: number;
  index: number | null;
  error: string | null;
}

/** A role change a node logged ('elected master' or 'following'). */
interface RoleEvent {
  readonly time: number;
  readonly node: string;
  readonly role: string;
  readonly master: string | null;
  readonly term: number;
}

/** Where the failover time went, from the survivors' logs (log times are whole milliseconds). */
interface Profile {
  /** Signal to the first survivor campaigning (pre-candidate): heartbeat phase plus the randomised election timeout. */
  readonly detectMs: number | null;
  /**
   * First pre-candidacy to the new master's (last) pre-candidacy: 0 when the first to campaign won; otherwise the time
   * lost because its pre-vote was refused (the other survivor still counted the master live, or held a longer log)
   * and nobody campaigned until the next timeout.
   */
  readonly refusedPreVoteMs: number | null;
  /** The new master's last pre-vote round to its candidacy: one round trip plus a hard-state fsync. */
  readonly preVoteMs: number | null;
  /** Candidacy to 'elected master': one round trip plus fsyncs of the vote. */
  readonly voteMs: number | null;
  /** 'elected master' to the first 2xx write it answered: the no-op and the write committed, plus HTTP. */
  readonly firstWriteMs: number | null;
  /** Pre-candidate transitions logged by the survivors (more than one: a pre-vote round failed or both campaigned). */
  readonly preCandidacies: number;
  /** Candidacies logged by the survivors (more than one: a split vote). */
  readonly candidacies: number;
}

interface StopChecks {
  /** 2xx answers by the old master that arrived after the new master's first 2xx: must be 0. */
  readonly oldMasterAcksAfterNewFirst: number;
  readonly violations: ReadonlyArray<{ path: string; sentAfterStopMs: number; answeredAfterNewFirstMs: number; index: number | null }>;
  /** What the old master answered to PUTs after SIGCONT, by status (0: no answer in time). */
  readonly oldMasterAnswersAfterResume: Record<string, number>;
  /** SIGCONT to the old master logging that it follows the new master (from its log). */
  readonly stepDownAfterResumeMs: number | null;
  /** Whether its cluster status ended with the new master as master and itself a REPLICA (null: no new master to follow). */
  readonly endedAsReplica: boolean | null;
  readonly endStatus: string;
  /** How long the old master was frozen. */
  readonly stoppedMs: number;
}

export interface TrialResult {
  readonly kind: Kind;
  readonly trial: number;
  readonly oldMaster: string;
  readonly oldTerm: number;
  /** Signal to the first 2xx PUT answered by another node; null when none came within failoverGiveUpMs. */
  readonly failoverMs: number | null;
  readonly newMaster: string | null;
  readonly newTerm: number | null;
  /** The index (X-Conclave-Index) of the new master's first 2xx write. */
  readonly newFirstIndex: number | null;
  readonly profile: Profile;
  /**
   * PUTs sent and acknowledged; the mean interval between two PUTs to one node actually achieved; and, for context,
   * the old master's PUTs of the warm-up's second half whose answer was due before the signal: the median
   * time to a 2xx and how many had no answer within the client timeout.
   */
  readonly writes: { readonly sent: number; readonly acknowledged: number; readonly meanIntervalMs: number; readonly warmP50Ms: number | null; readonly warmTimeouts: string };
  /** Acknowledged (2xx) writes the new master could not read back: must be 0. */
  readonly lostAcknowledged: number;
  readonly stop: StopChecks | null;
}

// ------------------------------------------------------------------------------------------------ write loop

const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

/**
 * Sends a PUT of a new document to every node every `intervalMs`, without waiting for the previous answers: a frozen
 * node gets a request every interval too, each given up after `timeoutMs`. Records every request's node, times,
 * status and X-Conclave-Index.
 */
class WriteLoop extends IntervalLoop<WriteRecord> {
  private readonly pools = new Map<string, Pool>();

  constructor(
    urls: ReadonlyMap<string, string>,
    intervalMs: number,
    private readonly timeoutMs: number,
  ) {
    super(urls.keys(), intervalMs, inflightPerNodeMax);
    // A connection for every PUT that can be in flight: none waits in the client's queue, so a PUT's time is the
    // node's (and the network's), also when the node is slow or frozen.
    const connections = Math.min(inflightPerNodeMax, Math.ceil(timeoutMs / intervalMs) + 16);
    for (const [name, url] of urls) {
      this.pools.set(name, new Pool(url, { connections, pipelining: 1, keepAliveTimeout: 10_000, connect: { timeout: timeoutMs } }));
    }
  }

  /** The mean time between two PUTs to one node: the interval asked for, unless the bench's own loop was starved. */
  meanIntervalMs(): number {
    const ofNode = this.records.filter((r) => r.node === this.records[0]?.node);
    return ofNode.length < 2 ? 0 : (ofNode[ofNode.length - 1]!.sentAt - ofNode[0]!.sentAt) / (ofNode.length - 1);
  }

  /** Stops sending and waits for every request in flight to be answered or given up. */
  async stop(): Promise<void> {
    await this.stopSending();
    await this.abort();
  }

  /** Stops sending and drops every request in flight at once. */
  async abort(): Promise<void> {
    this.halt();
    await Promise.allSettled([...this.pools.values()].map((pool) => pool.destroy()));
  }

  protected send(node: string, seq: number): { record: WriteRecord; answered: Promise<void> } {
    const path = `${parentPath}/${node}-${String(seq).padStart(7, '0')}`;
    const record: WriteRecord = { node, path, seq, sentAt: now(), answeredAt: 0, status: 0, index: null, error: null };
    const answered = this.pools
      .get(node)!
      .request({
        path: `/api/v1/content${path}`,
        method: 'PUT',
        // Direct: only the master takes a write. Forwarded, a replica would answer with the old master's
        // acknowledgement of a write sent before the kill, and a resumed old master would pass writes on to the new
        // one: neither says when a new master takes writes, nor whether the old one still does.
        headers: { authorization: processAuth, 'content-type': 'application/json', 'x-conclave-direct': 'true' },
        body: JSON.stringify({ properties: { node, seq } }),
        signal: AbortSignal.timeout(this.timeoutMs),
      })
      .then(
        async (response) => {
          record.answeredAt = now();
          record.status = response.statusCode;
          const index = response.headers['x-conclave-index'];
          record.index = typeof index === 'string' && /^\d+$/.test(index) ? Number(index) : null;
          await response.body.text().catch(() => '');
        },
        (err: Error & { code?: string }) => {
          record.answeredAt = now();
          record.error = typeof err.code === 'string' ? err.code : err.name;
        },
      );
    return { record, answered };
  }
}

const is2xx = (status: number): boolean => status >= 200 && status <= 299;

/** The promise's value, or undefined after `timeoutMs` (the timer is cleared either way). */
function within<T>(promise: Promise<T>, timeoutMs: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ------------------------------------------------------------------------------------------------ one trial

/** Clusters and loops alive now, so that Ctrl-C and failures stop every process. */
const live = { clusters: new Set<ProcessCluster>(), loops: new Set<WriteLoop>() };

export async function cleanupAll(): Promise<void> {
  await Promise.allSettled([...live.loops].map((loop) => loop.abort()));
  // SIGKILL ends a stopped process too, so a frozen master is never left behind.
  await Promise.allSettled([...live.clusters].map((cluster) => cluster.stopAll()));
  live.loops.clear();
  live.clusters.clear();
}

const byNames = (list: readonly string[]) => (_name: string, seeds: string[]) => [...seeds.flatMap((s) => ['--seed', s]), '--initial-master-nodes', list.join(',')];

async function runTrial(kind: Kind, trial: number, options: Options): Promise<TrialResult> {
  const cluster = await ProcessCluster.create(names, byNames(names));
  live.clusters.add(cluster);
  let loop: WriteLoop | undefined;
  try {
    const setup = <T>(step: Promise<T>): Promise<T> => step.catch((err: Error) => Promise.reject(new SetupError(err.message.split('\n')[0])));
    await setup(cluster.start(...names));
    const oldMaster = await setup(cluster.write(parentPath, {}, 30_000));
    const before = await setup(waitFor(
      'all three nodes voting, up and in sync',
      async () => {
        const s = await cluster.status(oldMaster);
        const ready = s.master?.name === oldMaster && s.votingConfiguration.length === 3 && s.nodes.length === 3 && s.nodes.every((n) => n.status === 'up' && n.inSync);
        return ready ? s : undefined;
      },
      30_000,
    ));
    const idToName = new Map(before.nodes.map((n) => [n.id, n.name]));
    // Each node verifies the Basic credentials once (scrypt) and caches them; do it before the measured traffic.
    for (const name of names) {
      const res = await fetch(`${cluster.url(name)}/api/v1/content${parentPath}`, { headers: { authorization: processAuth } });
      await res.arrayBuffer();
    }

    loop = new WriteLoop(new Map(names.map((n) => [n, cluster.url(n)])), options.intervalMs, options.timeoutMs);
    live.loops.add(loop);
    const loopStartAt = now();
    loop.start();
    await sleep(options.warmupMs);
    const masterNow = await setup(cluster.master(5_000));
    if (masterNow !== oldMaster) throw new SetupError(`the master changed during the warm-up (${oldMaster} → ${masterNow})`);

    const child = cluster.node(oldMaster).process!.child;
    const pid = child.pid!;
    let signalAt = Number.POSITIVE_INFINITY;
    const firstOther = loop.first((r) => r.node !== oldMaster && is2xx(r.status) && r.answeredAt >= signalAt);
    signalAt = now();
    if (kind === 'kill') await cluster.kill(oldMaster);
    else process.kill(pid, 'SIGSTOP');

    const first = await within(firstOther, failoverGiveUpMs);
    const failoverMs = first === undefined ? null : first.answeredAt - signalAt;
    const newMaster = first?.node ?? null;
    process.stderr.write(
      `  ${kind === 'kill' ? 'kill -9' : 'SIGSTOP'} #${trial}: ${oldMaster} → ${newMaster ?? 'none'} in ${failoverMs === null ? `>${failoverGiveUpMs}` : failoverMs.toFixed(0)} ms\n`,
    );

    let resumeAt: number | null = null;
    if (kind === 'stop') {
      // Keep it frozen until the client has given up every PUT sent to it before SIGSTOP. A PUT it had taken and
      // replicated before freezing may be committed by the new master (as an entry of the old term: Raft keeps it),
      // and the old master, resumed, would then rightly answer 2xx after the new master's first write. Once those
      // requests are abandoned, every 2xx the client can still see from the old master is for a write taken while it
      // was frozen or after, which no quorum can commit: any such 2xx is a real violation.
      await sleep(signalAt + options.timeoutMs + 100 - now());
      resumeAt = now();
      process.kill(pid, 'SIGCONT');
      await sleep(afterResumeMs);
    } else {
      await sleep(afterKillMs);
    }
    await loop.stop();
    live.loops.delete(loop);
    if (options.dumpDir !== null) {
      // Everything needed to look closer: every PUT and every running node's log (the killed node's log is gone).
      const logs = Object.fromEntries(names.map((n) => [n, cluster.output(n)]));
      writeFileSync(join(options.dumpDir, `${kind}-${trial}.json`), JSON.stringify({ kind, trial, signalAt, resumeAt, oldMaster, first: first ?? null, records: loop.records, logs }));
    }

    let after: ClusterStatusBody | null = null;
    if (newMaster !== null) after = await cluster.status(newMaster).catch(() => null);

    let stop: StopChecks | null = null;
    if (kind === 'stop') {
      const replica = newMaster === null ? null : await waitFor(
        `${oldMaster} to follow ${newMaster ?? 'a new master'}`,
        async () => {
          const s = await cluster.status(oldMaster);
          const self = s.nodes.find((n) => n.name === oldMaster);
          return s.master !== null && s.master.name === newMaster && self?.role === 'REPLICA' ? s : undefined;
        },
        replicaWaitMs,
      ).catch(() => null);
      const last = replica ?? (await cluster.status(oldMaster).catch(() => null));
      const endStatus = last === null ? 'no status' : `master ${last.master?.name ?? 'none'}, term ${last.term}, itself ${last.nodes.find((n) => n.name === oldMaster)?.role ?? '?'}`;
      const newFirstAt = first?.answeredAt ?? Number.POSITIVE_INFINITY;
      const oldAcks = loop.records.filter((r) => r.node === oldMaster && is2xx(r.status) && r.answeredAt > newFirstAt);
      const answers: Record<string, number> = {};
      for (const r of loop.records) {
        if (r.node !== oldMaster || r.sentAt < resumeAt!) continue;
        const key = r.status === 0 ? `no answer (${r.error ?? '?'})` : String(r.status);
        answers[key] = (answers[key] ?? 0) + 1;
      }
      const oldEvents = roleEvents(cluster.output(oldMaster), oldMaster).filter((e) => e.time >= Math.floor(resumeAt!));
      const newMasterId = [...idToName].find(([, name]) => name === newMaster)?.[0];
      const followed = oldEvents.find((e) => e.role === 'follower' && e.master === newMasterId);
      stop = {
        oldMasterAcksAfterNewFirst: oldAcks.length,
        violations: oldAcks.slice(0, 10).map((r) => ({ path: r.path, sentAfterStopMs: r.sentAt - signalAt, answeredAfterNewFirstMs: r.answeredAt - newFirstAt, index: r.index })),
        oldMasterAnswersAfterResume: answers,
        stepDownAfterResumeMs: followed === undefined ? null : followed.time - resumeAt!,
        endedAsReplica: newMaster === null ? null : replica !== null,
        endStatus,
        stoppedMs: resumeAt! - signalAt,
      };
    }

    const survivors = names.filter((n) => n !== oldMaster);
    const events = survivors.flatMap((n) => roleEvents(cluster.output(n), n)).filter((e) => e.time >= Math.floor(signalAt));
    const profile = profileOf(events, signalAt, newMaster, first?.answeredAt ?? null);
    const lostAcknowledged = newMaster === null ? 0 : await countUnreadable(cluster.url(newMaster), loop.records.filter((r) => is2xx(r.status)));

    return {
      kind,
      trial,
      oldMaster,
      oldTerm: before.term,
      failoverMs,
      newMaster,
      newTerm: after?.term ?? null,
      newFirstIndex: first?.index ?? null,
      profile,
      writes: {
        sent: loop.records.length,
        acknowledged: loop.records.filter((r) => is2xx(r.status)).length,
        meanIntervalMs: loop.meanIntervalMs(),
        ...warmWrites(loop.records, oldMaster, Math.max(loopStartAt, signalAt - options.warmupMs / 2 - options.timeoutMs), signalAt - options.timeoutMs),
      },
      lostAcknowledged,
      stop,
    };
  } finally {
    if (loop !== undefined) {
      await loop.stop();
      live.loops.delete(loop);
    }
    await cluster.stopAll();
    live.clusters.delete(cluster);
  }
}

/** The old master's PUTs sent in [from, to): median time to a 2xx, and how many went unanswered. */
function warmWrites(records: readonly WriteRecord[], node: string, from: number, to: number): { warmP50Ms: number | null; warmTimeouts: string } {
  const sent = records.filter((r) => r.node === node && r.sentAt >= from && r.sentAt < to);
  const ok = sent.filter((r) => is2xx(r.status)).map((r) => r.answeredAt - r.sentAt).sort((a, b) => a - b);
  const unanswered = sent.filter((r) => r.status === 0).length;
  return { warmP50Ms: ok.length === 0 ? null : ok[Math.ceil(ok.length / 2) - 1]!, warmTimeouts: `${unanswered}/${sent.length}` };
}

/**
 * A trial whose cluster did not form, or whose master changed before the signal, measured nothing: run it again on
 * a fresh cluster, a few times at most. Errors after the signal are not retried away either: they end the run.
 */
export async function withRetries(kind: Kind, trial: number, options: Options): Promise<TrialResult> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await runTrial(kind, trial, options);
    } catch (err) {
      if (!(err instanceof SetupError) || attempt >= setupAttemptsMax) throw err;
      process.stderr.write(`  ${kind} #${trial}: ${err.message}; again on a fresh cluster\n`);
    }
  }
}

class SetupError extends Error {}

/** The role changes a node logged (JSON lines: msg 'elected master' or 'following', with role, master id and term). */
function roleEvents(output: string, node: string): RoleEvent[] {
  const events: RoleEvent[] = [];
  for (const line of output.split('\n')) {
    if (!line.includes('"msg":"elected master"') && !line.includes('"msg":"following"')) continue;
    try {
      const entry = JSON.parse(line) as { time: number; role: string; master: string | null; term: number };
      events.push({ time: entry.time, node, role: entry.role, master: entry.master, term: entry.term });
    } catch {
      // a line cut by the kill: not an event
    }
  }
  return events;
}

function profileOf(events: RoleEvent[], signalAt: number, newMaster: string | null, firstAt: number | null): Profile {
  const sorted = [...events].sort((a, b) => a.time - b.time);
  const preCandidates = sorted.filter((e) => e.role === 'preCandidate');
  const candidates = sorted.filter((e) => e.role === 'candidate');
  const elected = sorted.find((e) => e.node === newMaster && e.role === 'master');
  const candidacy = elected === undefined ? undefined : [...candidates].reverse().find((e) => e.node === newMaster && e.time <= elected.time);
  const preCandidacy = candidacy === undefined ? undefined : [...preCandidates].reverse().find((e) => e.node === newMaster && e.time <= candidacy.time);
  return {
    detectMs: preCandidates[0] === undefined ? null : preCandidates[0].time - signalAt,
    refusedPreVoteMs: preCandidates[0] === undefined || preCandidacy === undefined ? null : preCandidacy.time - preCandidates[0].time,
    preVoteMs: preCandidacy === undefined || candidacy === undefined ? null : candidacy.time - preCandidacy.time,
    voteMs: candidacy === undefined || elected === undefined ? null : elected.time - candidacy.time,
    firstWriteMs: elected === undefined || firstAt === null ? null : firstAt - elected.time,
    preCandidacies: preCandidates.length,
    candidacies: candidates.length,
  };
}

/** How many acknowledged writes the node cannot read back (GET on the master reads what it committed). */
async function countUnreadable(url: string, acknowledged: readonly WriteRecord[]): Promise<number> {
  const pool = new Pool(url, { connections: 8 });
  let missing = 0;
  let next = 0;
  const reader = async () => {
    while (next < acknowledged.length) {
      const record = acknowledged[next++]!;
      try {
        const response = await pool.request({ path: `/api/v1/content${record.path}`, method: 'GET', headers: { authorization: processAuth }, signal: AbortSignal.timeout(10_000) });
        const body = (await response.body.json().catch(() => null)) as { properties?: { seq?: number } } | null;
        if (response.statusCode !== 200 || body?.properties?.seq !== record.seq) missing++;
      } catch {
        missing++;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: 8 }, reader));
  } finally {
    await pool.destroy();
  }
  return missing;
}

// ------------------------------------------------------------------------------------------------ report

export interface Summary {
  readonly trials: number;
  readonly failedOver: number;
  readonly minMs: number | null;
  readonly medianMs: number | null;
  readonly p90Ms: number | null;
  readonly maxMs: number | null;
}

/** Median: the mean of the two middle values for an even count. p90: nearest rank. Trials without a failover are left out. */
export function summarize(results: ReadonlyArray<{ readonly failoverMs: number | null }>): Summary {
  const values = results.map((r) => r.failoverMs).filter((v): v is number => v !== null).sort((a, b) => a - b);
  const n = values.length;
  if (n === 0) return { trials: results.length, failedOver: 0, minMs: null, medianMs: null, p90Ms: null, maxMs: null };
  const median = n % 2 === 1 ? values[(n - 1) / 2]! : (values[n / 2 - 1]! + values[n / 2]!) / 2;
  return { trials: results.length, failedOver: n, minMs: values[0]!, medianMs: median, p90Ms: values[Math.max(1, Math.ceil(0.9 * n)) - 1]!, maxMs: values[n - 1]! };
}

const ms = (value: number | null): string => (value === null ? '-' : value.toFixed(0));

function trialTable(results: readonly TrialResult[], kind: Kind): string {
  const rows = results.filter((r) => r.kind === kind);
  const stopHeader = kind === 'stop' ? ' old master 2xx after new first | old master answers after SIGCONT | follows new master after SIGCONT ms | ends as replica |' : '';
  const stopRule = kind === 'stop' ? '--:|---|--:|---|' : '';
  const lines = [
    `| # | failover ms | old → new master | term | detect ms | refused pre-vote ms | pre-vote ms | vote ms | elected → 1st write ms | pre-candidacies / candidacies | warm-up PUT p50 ms (no answer) | PUTs acked / sent (mean interval ms) | acked lost |${stopHeader}`,
    `|--:|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|${stopRule}`,
  ];
  for (const r of rows) {
    const p = r.profile;
    let line =
      `| ${r.trial} | ${ms(r.failoverMs)} | ${r.oldMaster} → ${r.newMaster ?? 'none'} | ${r.oldTerm} → ${r.newTerm ?? '?'} | ${ms(p.detectMs)} | ${ms(p.refusedPreVoteMs)} | ` +
      `${ms(p.preVoteMs)} | ${ms(p.voteMs)} | ${ms(p.firstWriteMs)} | ${p.preCandidacies} / ${p.candidacies} | ${ms(r.writes.warmP50Ms)} (${r.writes.warmTimeouts}) | ${r.writes.acknowledged} / ${r.writes.sent} (${r.writes.meanIntervalMs.toFixed(1)}) | ${r.lostAcknowledged} |`;
    if (r.stop !== null) {
      const answers = Object.entries(r.stop.oldMasterAnswersAfterResume).map(([status, count]) => `${status}: ${count}`).join(', ') || 'none';
      line += ` ${r.stop.oldMasterAcksAfterNewFirst} | ${answers} | ${ms(r.stop.stepDownAfterResumeMs)} | ${r.stop.endedAsReplica === null ? 'n/a (no new master)' : r.stop.endedAsReplica ? 'yes' : `NO (${r.stop.endStatus})`} |`;
    }
    lines.push(line);
  }
  return lines.join('\n');
}

function summaryLine(label: string, s: Summary): string {
  const none = s.trials - s.failedOver;
  return (
    `${label}: ${s.trials} trial(s): min ${ms(s.minMs)} / median ${ms(s.medianMs)} / p90 ${ms(s.p90Ms)} / max ${ms(s.maxMs)} ms` +
    (none > 0 ? ` (${none} without a failover within ${failoverGiveUpMs} ms, left out)` : '')
  );
}


// ------------------------------------------------------------------------------------------------ main

class UsageError extends Error {}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      trials: { type: 'string' },
      'stop-trials': { type: 'string' },
      'interval-ms': { type: 'string' },
      'timeout-ms': { type: 'string' },
      'warmup-ms': { type: 'string' },
      out: { type: 'string' },
      'dump-dir': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  const count = (text: string | undefined, flag: string, fallback: number, min: number): number => {
    if (text === undefined) return fallback;
    if (!/^\d+$/.test(text) || Number(text) < min) throw new UsageError(`${flag} takes a whole number of at least ${min}, not "${text}"`);
    return Number(text);
  };
  const options = {
    killTrials: count(values.trials, '--trials', 10, 0),
    stopTrials: count(values['stop-trials'], '--stop-trials', 5, 0),
    intervalMs: count(values['interval-ms'], '--interval-ms', 5, 1),
    timeoutMs: count(values['timeout-ms'], '--timeout-ms', 500, 50),
    warmupMs: count(values['warmup-ms'], '--warmup-ms', 2_000, 0),
    outFile: resolve(values.out ?? 'bench-results/failover.json'),
    dumpDir: values['dump-dir'] === undefined ? null : resolve(values['dump-dir']),
  };
  if (options.killTrials + options.stopTrials === 0) throw new UsageError('nothing to run: --trials and --stop-trials are both 0');
  return options;
}

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench:failover: ${(err as Error).message}\n${usage}\n`);
    return 2;
  }
  // Ctrl-C must not leave nodes running (a SIGSTOPped one least of all); finally blocks do not run on a signal.
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`bench:failover: ${signal}: stopping every node\n`);
    void cleanupAll().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const results: TrialResult[] = [];
  if (options.dumpDir !== null) mkdirSync(options.dumpDir, { recursive: true });
  try {
    process.stderr.write(`bench:failover: ${options.killTrials} kill -9 trial(s), then ${options.stopTrials} SIGSTOP trial(s), a fresh 3-node cluster each\n`);
    for (let i = 1; i <= options.killTrials; i++) results.push(await withRetries('kill', i, options));
    for (let i = 1; i <= options.stopTrials; i++) results.push(await withRetries('stop', i, options));
  } catch (err) {
    process.stderr.write(`bench:failover: failed: ${(err as Error).stack ?? String(err)}\n`);
    await cleanupAll();
    return 3;
  }

  const kill = summarize(results.filter((r) => r.kind === 'kill'));
  const stop = summarize(results.filter((r) => r.kind === 'stop'));
  const stopResults = results.filter((r) => r.kind === 'stop');
  const safetyHeld = stopResults.every((r) => r.stop !== null && r.stop.oldMasterAcksAfterNewFirst === 0);
  const replicaHeld = stopResults.every((r) => r.stop !== null && r.stop.endedAsReplica !== false);
  const lost = results.reduce((sum, r) => sum + r.lostAcknowledged, 0);
  const noFailover = results.filter((r) => r.failoverMs === null).length;
  const correct = safetyHeld && replicaHeld && lost === 0;

  const report = {
    ...benchEnvironment(),
    options: { ...options, outFile: undefined },
    targets: { killMedianMs: killTargetMedianMs, stopMs: stopTargetMs },
    summary: { kill, stop },
    checks: { stopSafetyHeld: safetyHeld, oldMasterEndedAsReplica: replicaHeld, acknowledgedWritesLost: lost },
    trials: results,
  };
  mkdirSync(dirname(options.outFile), { recursive: true });
  writeFileSync(options.outFile, `${JSON.stringify(report, null, 2)}\n`);

  const out: string[] = [
    '',
    `Conclave failover, 3 processes on loopback, ${report.commit ?? 'unknown commit'}, Node ${report.node}, ${report.cpus} CPU(s) shared by the bench and the nodes;`,
    `a PUT to every node every ${options.intervalMs} ms (client timeout ${options.timeoutMs} ms); failover = signal to the first 2xx PUT answered by another node.`,
    'Profile from the survivors\' logs (the columns add up to the failover): detect = signal → first pre-candidate; refused pre-vote = that → the',
    'new master\'s pre-candidacy (0 when the first to campaign won); pre-vote = → its candidacy (a node\'s repeated rounds are not logged and count',
    'here); vote = → elected; elected → 1st write = → the first 2xx at the client. Warm-up PUT p50: the old master\'s write latency before the',
    'signal (no answer: given up at the client timeout).',
    '',
  ];
  if (options.killTrials > 0) out.push('kill -9 of the master', '', trialTable(results, 'kill'), '');
  if (options.stopTrials > 0) out.push('SIGSTOP of the master (SIGCONT once the new master has written and the client has given up every earlier PUT)', '', trialTable(results, 'stop'), '');
  if (options.killTrials > 0) {
    out.push(`${summaryLine('kill -9', kill)}; target median ≤ ${killTargetMedianMs} ms: ${kill.medianMs !== null && kill.medianMs <= killTargetMedianMs ? 'met' : 'MISSED'}`);
  }
  if (options.stopTrials > 0) {
    out.push(`${summaryLine('SIGSTOP', stop)}; target ≤ ${stopTargetMs} ms in every trial: ${stop.failedOver === stop.trials && stop.maxMs !== null && stop.maxMs <= stopTargetMs ? 'met' : 'MISSED'}`);
    out.push(
      `SIGSTOP safety, old master acknowledged 0 writes after the new master's first: ${safetyHeld ? `held in every trial (${stopResults.length}/${stopResults.length})` : 'FAILED'}`,
    );
    const checked = stopResults.filter((r) => r.stop !== null && r.stop.endedAsReplica !== null);
    out.push(`old master ended as a REPLICA following the new master: ${checked.filter((r) => r.stop!.endedAsReplica === true).length}/${checked.length}`);
  }
  out.push(`acknowledged writes the new master could not read back: ${lost}`);
  if (noFailover > 0) out.push(`trials without a failover within ${failoverGiveUpMs} ms: ${noFailover} (a figure, not a failure)`);
  out.push(`JSON: ${options.outFile}`, '');
  process.stdout.write(out.join('\n'));

  for (const r of stopResults) {
    for (const v of r.stop?.violations ?? []) {
      process.stderr.write(`bench:failover: SIGSTOP #${r.trial}: ${r.oldMaster} acknowledged ${v.path} (index ${v.index ?? '?'}) ${v.answeredAfterNewFirstMs.toFixed(0)} ms after the new master's first write\n`);
    }
  }
  if (!correct) process.stderr.write('bench:failover: a correctness check failed (exit 1); timings never fail the bench\n');
  return correct ? 0 : 1;
}

// bench/run.ts imports the trials for its comparison with etcd; only `node dist/bench/failover.js` runs main.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) process.exitCode = await main();
