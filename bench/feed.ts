import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';

import type { BenchCluster } from './benchCluster.js';
import { LatencyHistogram } from './histogram.js';
import { Pool } from 'undici';

import { runLoad, type LoadResult, type LoadTiming } from './load.js';
import { authorization, DocumentPaths, writer } from './operations.js';
import { SubscriberProcess, type SubscribersStatus } from './feedSubscribers.js';
import { withServerCpu } from './processCpu.js';

/**
 * The change feed's cost and delay (issue 15): the same closed-loop write load over all three nodes, with no
 * subscriber and with `subscribers` Server-Sent Events streams spread over the nodes, in four phases of half the
 * duration each: alone, with, with, alone. The order cancels the drift of a run (a growing database, the machine's
 * other work), which otherwise lands on the second of two phases as cost. Cost: how much write throughput the
 * streams take. Delay: from the moment a writer has its acknowledgement to the moment a subscriber
 * on each node has the event, for every acknowledged write. Some subscribers (`measuringPerNode` on each node)
 * parse every event to time it; the others only count events, so that the bench process, which shares the cores
 * with the nodes, spends little on them. A webhook to a receiver in this process is timed the same way.
 */

export interface FeedBenchOptions extends LoadTiming {
  readonly clients: number;
  readonly subscribers: number;
  readonly measuringPerNode: number;
  readonly progress: (text: string) => void;
}

export interface FeedNodeDelay {
  readonly node: string;
  readonly master: boolean;
  readonly subscribers: number;
  /** Acknowledged writes a measuring subscriber of this node never got (should be 0). */
  readonly missing: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** What a webhook receiver on loopback saw of the same writes (delivered by the master). */
export interface WebhookDelay {
  readonly received: number;
  /** Acknowledged writes the receiver never got (should be 0). */
  readonly missing: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

type PhaseResult = LoadResult & { serverCpuCores: number | null };

export interface FeedBenchResult {
  readonly clients: number;
  readonly subscribers: number;
  /** The four phases in the order run: alone, with, with, alone. */
  readonly phases: readonly (PhaseResult & { subscribed: boolean })[];
  /** The two phases of each kind together: throughput and CPU averaged, p50 averaged, p99 and max the worse. */
  readonly alone: PhaseResult;
  readonly withSubscribers: PhaseResult;
  /** Socket reads per subscriber per second while subscribed (how many events each write to a stream carried: events/s over this). */
  readonly chunksPerSubscriberPerSec: number;
  /** CPU of the subscribers' process while subscribed, in cores (taken from the servers on this machine). */
  readonly subscriberCpuCores: number;
  /**
   * The servers' own cost of the subscribers at a fixed write rate (a third of the throughput alone), where no closed loop
   * turns lost throughput into smaller group commits: server CPU without and with them, and the difference per event
   * delivered to a stream, in microseconds (may be negative within the noise).
   */
  readonly fixedRate: {
    readonly perSec: number;
    /** The fewest writes acknowledged per second in any of the four fixed-rate phases (should be perSec). */
    readonly acknowledgedPerSec: number;
    readonly aloneServerCpuCores: number | null;
    readonly withServerCpuCores: number | null;
    readonly serverCpuPerDeliveryUs: number | null;
  };
  /** How much lower the write throughput was with the subscribers, in percent of it without them. */
  readonly throughputCostPercent: number;
  /** Events every counting subscriber got, at least and at most (each should have one per write). */
  readonly eventsPerCountingSubscriber: { readonly min: number; readonly max: number };
  readonly delays: readonly FeedNodeDelay[];
  readonly webhook: WebhookDelay;
}

const parentPath = '/feed-bench';

export async function measureFeed(cluster: BenchCluster, options: FeedBenchOptions): Promise<FeedBenchResult> {
  const master = await cluster.master();
  const nodes = [...cluster.names.filter((n) => n !== master), master];
  const urls = nodes.map((n) => cluster.url(n));
  const pids = cluster.names.map((n) => cluster.pid(n));
  const put = await fetch(`${cluster.url(master)}/api/v1/content${parentPath}`, {
    method: 'PUT',
    headers: { authorization, 'content-type': 'application/json' },
    body: JSON.stringify({ properties: {} }),
  });
  if (put.status !== 201) throw new Error(`creating ${parentPath} answered ${put.status}`);
  // Each node checks the Basic credentials once (scrypt) and caches them: paid before any measurement.
  for (const url of urls) await (await fetch(`${url}/api/v1/changes?limit=1`, { headers: { authorization } })).text();

  const load = async (label: string, acknowledgedAt: Map<string, number>, timing: LoadTiming): Promise<PhaseResult> => {
    const paths = new DocumentPaths(`${parentPath}/${label}`);
    await fetch(`${cluster.url(master)}/api/v1/content${paths.parentPath}`, { method: 'PUT', headers: { authorization, 'content-type': 'application/json' }, body: '{"properties":{}}' });
    const { result, serverCpuCores } = await withServerCpu(pids, () => runLoad(`writes ${label}`, urls, options.clients, timing, writer(paths, (path) => acknowledgedAt.set(path, performance.now()))));
    return { ...result, serverCpuCores };
  };

  const phaseOptions = { ...options, durationMs: Math.max(1, Math.round(options.durationMs / 2)) };
  const phase = async (label: string, acknowledgedAt: Map<string, number>) => {
    options.progress(`feed: ${options.clients} writers over all nodes, ${label}`);
    return load(label, acknowledgedAt, phaseOptions);
  };
  const alone1 = await phase('alone-1', new Map());
  // The servers' own share, without the closed loop's amplification: writes at a fixed rate the cluster sustains
  // easily (a third of what it did alone), server CPU with and without the subscribers, in the same ABBA order.
  const fixedPerSec = Math.max(50, Math.round(alone1.opsPerSec / 3));
  const fixedMs = Math.max(1, Math.round(options.durationMs / 4));
  const fixed = async (label: string) => {
    options.progress(`feed: ${fixedPerSec} writes/s at a fixed rate over all nodes, ${label}`);
    const paths = new DocumentPaths(`${parentPath}/${label}`);
    await fetch(`${cluster.url(master)}/api/v1/content${paths.parentPath}`, { method: 'PUT', headers: { authorization, 'content-type': 'application/json' }, body: '{"properties":{}}' });
    return withServerCpu(pids, () => writeAtRate(urls, fixedPerSec, fixedMs, paths));
  };
  const fixedAlone1 = await fixed('fixed-alone-1');

  const specs = Array.from({ length: options.subscribers }, (_, i) => {
    const node = nodes[i % nodes.length]!;
    return { node, url: cluster.url(node), measuring: Math.floor(i / nodes.length) < options.measuringPerNode };
  });
  const subscribers = new SubscriberProcess();
  const acknowledgedAt = new Map<string, number>();
  // A webhook receiver in this process: when each path's event arrived.
  const hookArrivedAt = new Map<string, number>();
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const now = performance.now();
      for (const e of (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { events: Array<{ path: string }> }).events) if (!hookArrivedAt.has(e.path)) hookArrivedAt.set(e.path, now);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const hook = await fetch(`${cluster.url(master)}/api/v1/webhooks`, {
    method: 'POST',
    headers: { authorization, 'content-type': 'application/json' },
    body: JSON.stringify({ url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`, under: parentPath }),
  });
  if (hook.status !== 201) throw new Error(`registering the webhook answered ${hook.status}: ${await hook.text()}`);
  const hookId = ((await hook.json()) as { id: string }).id;
  let with1;
  let with2;
  let chunksAtStart = 0;
  let chunksAtEnd = 0;
  let subscriberCpuCores = 0;
  let fixedWith1;
  let fixedWith2;
  let arrivals: { node: string; at: (number | null)[] }[] = [];
  let final: SubscribersStatus;
  const ackPaths = () => [...acknowledgedAt.keys()];
  try {
    await subscribers.start(parentPath, specs);
    // Streams answer their headers at once; give them a moment to be open before the load starts.
    const deadline = performance.now() + 10_000;
    let status = await subscribers.status();
    while (status.failures.length === 0 && status.events.some((n) => n === 0) && performance.now() < deadline) {
      await fetch(`${cluster.url(master)}/api/v1/content${parentPath}/probe`, { method: 'PUT', headers: { authorization, 'content-type': 'application/json' }, body: '{"properties":{}}' });
      await new Promise((resolve) => setTimeout(resolve, 50));
      status = await subscribers.status();
    }
    if (status.failures.length > 0) throw new Error(status.failures[0]);
    const silent = status.events.findIndex((n) => n === 0);
    if (silent >= 0) throw new Error(`a feed subscriber on ${specs[silent]!.node} got no event in 10 s`);
    chunksAtStart = status.chunks;
    fixedWith1 = await fixed('fixed-with-subscribers-1');
    const cpuAtStart = (await subscribers.status()).cpuMs;
    const startedMs = performance.now();
    with1 = await phase('with-subscribers-1', acknowledgedAt);
    with2 = await phase('with-subscribers-2', acknowledgedAt);
    const atEnd = await subscribers.status();
    fixedWith2 = await fixed('fixed-with-subscribers-2');
    chunksAtEnd = atEnd.chunks;
    subscriberCpuCores = (atEnd.cpuMs - cpuAtStart) / (performance.now() - startedMs);
    // The last events are on their way: wait until every measuring subscriber has every acknowledged write, or 10 s.
    const settle = performance.now() + 10_000;
    for (;;) {
      const paths = ackPaths();
      arrivals = await subscribers.arrivals(paths);
      const complete = paths.every((p) => hookArrivedAt.has(p)) && arrivals.every((a) => a.at.every((t) => t !== null));
      if (complete || performance.now() >= settle) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    final = await subscribers.status();
  } finally {
    await subscribers.close().catch(() => undefined);
    receiver.closeAllConnections();
    receiver.close();
  }
  const removed = await fetch(`${cluster.url(master)}/api/v1/webhooks/${hookId}`, { method: 'DELETE', headers: { authorization } });
  if (removed.status !== 204) throw new Error(`removing the webhook answered ${removed.status}`);
  const fixedAlone2 = await fixed('fixed-alone-2');
  const alone2 = await phase('alone-2', new Map());
  const meanCores = (a: { serverCpuCores: number | null }, b: { serverCpuCores: number | null }) =>
    a.serverCpuCores === null || b.serverCpuCores === null ? null : (a.serverCpuCores + b.serverCpuCores) / 2;
  const fixedAloneCores = meanCores(fixedAlone1, fixedAlone2);
  const fixedWithCores = meanCores(fixedWith1!, fixedWith2!);
  const fixedAcknowledged = [fixedAlone1, fixedWith1!, fixedWith2!, fixedAlone2].map((f) => f.result);

  const hookHistogram = new LatencyHistogram();
  let hookMissing = 0;
  for (const [path, ackMs] of acknowledgedAt) {
    const arrived = hookArrivedAt.get(path);
    if (arrived === undefined) hookMissing++;
    else hookHistogram.record(Math.max(0, arrived - ackMs));
  }
  const hookSummary = hookHistogram.summary();

  const delays = nodes.map((node) => {
    const histogram = new LatencyHistogram();
    let missing = 0;
    const paths = ackPaths();
    for (const s of arrivals.filter((a) => a.node === node)) {
      for (const [i, path] of paths.entries()) {
        const arrived = s.at[i] ?? null;
        // Acknowledgements were noted on this process's clock, arrivals as absolute times.
        const ackMs = performance.timeOrigin + acknowledgedAt.get(path)!;
        if (arrived === null) missing++;
        // An event may come before the writer has read its own answer: that is no delay.
        else histogram.record(Math.max(0, arrived - ackMs));
      }
    }
    const summary = histogram.summary();
    return { node, master: node === master, subscribers: specs.filter((s) => s.node === node).length, missing, p50Ms: summary.p50Ms, p99Ms: summary.p99Ms, maxMs: summary.maxMs };
  });
  const counting = final!.events.filter((_, i) => !specs[i]!.measuring);
  const alone = combined(alone1, alone2);
  const withSubscribers = combined(with1!, with2!);
  return {
    clients: options.clients,
    subscribers: options.subscribers,
    phases: [
      { ...alone1, subscribed: false },
      { ...with1!, subscribed: true },
      { ...with2!, subscribed: true },
      { ...alone2, subscribed: false },
    ],
    alone,
    withSubscribers,
    chunksPerSubscriberPerSec: (chunksAtEnd - chunksAtStart) / specs.length / ((2 * phaseOptions.durationMs + 2 * phaseOptions.warmupMs) / 1000),
    subscriberCpuCores,
    fixedRate: {
      perSec: fixedPerSec,
      acknowledgedPerSec: Math.min(...fixedAcknowledged) / (fixedMs / 1000),
      aloneServerCpuCores: fixedAloneCores,
      withServerCpuCores: fixedWithCores,
      serverCpuPerDeliveryUs:
        fixedAloneCores === null || fixedWithCores === null ? null : ((fixedWithCores - fixedAloneCores) * 1e6) / (fixedPerSec * options.subscribers),
    },
    throughputCostPercent: (1 - withSubscribers.opsPerSec / alone.opsPerSec) * 100,
    eventsPerCountingSubscriber: { min: Math.min(...counting), max: Math.max(...counting) },
    delays,
    webhook: { received: hookArrivedAt.size, missing: hookMissing, p50Ms: hookSummary.p50Ms, p99Ms: hookSummary.p99Ms, maxMs: hookSummary.maxMs },
  };
}

/**
 * Writes at `perSec` a second for `ms` over `urls` in turn, without waiting for answers (an open loop, at most
 * `inflightMax` unanswered, beyond which writes due are skipped): answers how many were acknowledged.
 */
async function writeAtRate(urls: readonly string[], perSec: number, ms: number, paths: DocumentPaths): Promise<number> {
  const inflightMax = 256;
  const pools = urls.map((url) => new Pool(url, { connections: 32, pipelining: 1, keepAliveTimeout: 60_000 }));
  const write = writer(paths);
  const running = new Set<Promise<void>>();
  let started = 0;
  let acknowledged = 0;
  const startMs = performance.now();
  try {
    for (let elapsed = 0; elapsed < ms; elapsed = performance.now() - startMs) {
      const due = Math.floor((elapsed / 1000) * perSec);
      while (started < due) {
        started++;
        if (running.size >= inflightMax) continue;
        const request = write(pools[started % pools.length]!).then(
          () => void acknowledged++,
          () => undefined,
        );
        running.add(request);
        void request.finally(() => running.delete(request));
      }
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    await Promise.all(running);
  } finally {
    await Promise.all(pools.map((pool) => pool.close()));
  }
  return acknowledged;
}

/** Two phases of the same kind and length as one: rates and CPU averaged, p50 averaged, p99 and max the worse. */
function combined(a: PhaseResult, b: PhaseResult): PhaseResult {
  const mean = (x: number, y: number) => (x + y) / 2;
  return {
    ...a,
    opsPerSec: mean(a.opsPerSec, b.opsPerSec),
    p50Ms: mean(a.p50Ms, b.p50Ms),
    p99Ms: Math.max(a.p99Ms, b.p99Ms),
    maxMs: Math.max(a.maxMs, b.maxMs),
    errors: a.errors + b.errors,
    warmupErrors: a.warmupErrors + b.warmupErrors,
    ops: a.ops + b.ops,
    opsByOrigin: a.opsByOrigin.map((n, i) => n + (b.opsByOrigin[i] ?? 0)),
    errorsByOrigin: a.errorsByOrigin.map((n, i) => n + (b.errorsByOrigin[i] ?? 0)),
    clientCpuCores: mean(a.clientCpuCores, b.clientCpuCores),
    serverCpuCores: a.serverCpuCores === null || b.serverCpuCores === null ? null : mean(a.serverCpuCores, b.serverCpuCores),
  };
}

export function feedTable(r: FeedBenchResult): string {
  const ms = (v: number) => v.toFixed(1);
  return [
    `Change feed: ${r.clients} writers (PUT 1 KB) over all 3 nodes, without and with ${r.subscribers} SSE subscribers spread over the nodes, ` +
      `in four phases (alone, with, with, alone) so that a run's drift cancels. ` +
      `Delay: from a writer's acknowledgement to the event at a subscriber, for every acknowledged write.`,
    '',
    '| phase | ops/s | p50 ms | p99 ms | errors | server CPU (cores) | server CPU per write (ms) | bench CPU (cores) |',
    '|---|--:|--:|--:|--:|--:|--:|--:|',
    ...r.phases.map(
      (p, i) =>
        `| ${i + 1}. ${p.subscribed ? `${r.subscribers} subscribers` : 'no subscriber'} | ${Math.round(p.opsPerSec)} | ${ms(p.p50Ms)} | ${ms(p.p99Ms)} | ${p.errors} | ` +
        `${p.serverCpuCores?.toFixed(2) ?? '-'} | ${p.serverCpuCores === null ? '-' : ((p.serverCpuCores / p.opsPerSec) * 1000).toFixed(2)} | ${p.clientCpuCores.toFixed(2)} |`,
    ),
    '',
    `Throughput cost of the subscribers: ${r.throughputCostPercent.toFixed(1)}% (${Math.round(r.alone.opsPerSec)} writes/s alone, ${Math.round(r.withSubscribers.opsPerSec)} with). ` +
      `Events per counting subscriber: ${r.eventsPerCountingSubscriber.min} to ${r.eventsPerCountingSubscriber.max}; ` +
      `socket reads per subscriber: ${r.chunksPerSubscriberPerSec.toFixed(0)} per second; the subscribers' process used ${r.subscriberCpuCores.toFixed(2)} cores.`,
    '',
    `At a fixed ${r.fixedRate.perSec} writes/s (at least ${Math.round(r.fixedRate.acknowledgedPerSec)} acknowledged per second in every phase), the servers used ` +
      `${r.fixedRate.aloneServerCpuCores?.toFixed(3) ?? '-'} cores without subscribers and ${r.fixedRate.withServerCpuCores?.toFixed(3) ?? '-'} with them: ` +
      `${r.fixedRate.serverCpuPerDeliveryUs?.toFixed(2) ?? '-'} µs per event delivered to a stream.`,
    '',
    '| node | subscribers | delay p50 ms | delay p99 ms | max ms | missing |',
    '|---|--:|--:|--:|--:|--:|',
    ...r.delays.map((d) => `| ${d.node}${d.master ? '*' : ''} | ${d.subscribers} | ${ms(d.p50Ms)} | ${ms(d.p99Ms)} | ${ms(d.maxMs)} | ${d.missing} |`),
    `| webhook receiver | - | ${ms(r.webhook.p50Ms)} | ${ms(r.webhook.p99Ms)} | ${ms(r.webhook.maxMs)} | ${r.webhook.missing} |`,
  ].join('\n');
}
