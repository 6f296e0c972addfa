import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';

import type { CoordinatorBug } from '../../src/core/clusterCoordinator.js';
import { processAuth } from '../helpers/process.js';
import { waitFor } from '../helpers/tmp.js';
import { SimRandom } from '../sim/simRandom.js';
import { ChaosClient, chaosParent, keyName, ledgerParent } from './chaosClient.js';
import { ChaosCluster, type MasterSighting } from './chaosCluster.js';
import { checkFeed, checkLinearizable, checkNothingLost, checkOneMasterPerTerm, checkSequential, checkStale, type CheckVerdict, type FeedEvent } from './checks.js';
import { HistoryRecorder, JsonLinesFile } from './history.js';
import { Nemesis, type FaultKind } from './nemesis.js';

/**
 * One chaos run: real nodes in namespaces (chaosCluster.ts), concurrent clients recording a history
 * (chaosClient.ts), the nemesis injecting faults (nemesis.ts), then healing, a bounded wait for every node to
 * converge, and the checkers (checks.ts). Everything the run saw stays in `outDir`: history.jsonl, faults.jsonl,
 * one log per node, summary.json.
 */
export interface ChaosOptions {
  readonly nodes: number;
  readonly timeMs: number;
  readonly faults: readonly FaultKind[];
  readonly seed: number;
  readonly clients: number;
  readonly keys: number;
  readonly outDir: string;
  readonly opTimeoutMs: number;
  /** After the faults stop and everything is healed: how long every node has to reach one digest and applied index. */
  readonly convergeTimeoutMs: number;
  readonly diskMib: number;
  readonly searchStepsMax: number;
  /** Test-only: every node built with this coordination bug (the harness must then fail). */
  readonly injectedBug?: CoordinatorBug;
}

export interface ChaosSummary {
  readonly ok: boolean;
  readonly seed: number;
  readonly nodes: number;
  readonly timeMs: number;
  readonly faultsEnabled: readonly FaultKind[];
  readonly clients: number;
  readonly keys: number;
  readonly injectedBug: CoordinatorBug | null;
  readonly operations: Record<string, Record<string, number>>;
  readonly faults: { readonly total: number; readonly byKind: Record<string, number>; readonly failedToInject: number };
  readonly convergence: { readonly ok: boolean; readonly ms: number | null; readonly timeoutMs: number; readonly appliedIndex: number | null; readonly digest: string | null; readonly problem?: string };
  readonly checks: Record<string, CheckVerdict>;
  readonly unexpectedExits: readonly { node: string; code: number | string }[];
  readonly outDir: string;
  readonly replay: string;
}

export async function runChaos(options: ChaosOptions, say: (line: string) => void = () => undefined): Promise<ChaosSummary> {
  mkdirSync(options.outDir, { recursive: true });
  const names = Array.from({ length: options.nodes }, (_, i) => `n${i + 1}`);
  const random = new SimRandom(options.seed);
  const history = new HistoryRecorder(join(options.outDir, 'history.jsonl'));
  const faultLog = new JsonLinesFile(join(options.outDir, 'faults.jsonl'));
  const env: Record<string, string> = options.injectedBug !== undefined ? { CONCLAVE_TEST_INJECTED_BUG: options.injectedBug } : {};
  const cluster = ChaosCluster.create(names, join(tmpdir(), `conclave-chaos-${process.pid}-${options.seed}`), { diskMib: options.diskMib, env });
  const sightings: MasterSighting[] = [];
  let polling = true;
  try {
    say(`chaos: seed ${options.seed}, ${options.nodes} nodes, ${options.timeMs / 1000} s, faults ${options.faults.join(',')}, ${options.clients} clients on ${options.keys} keys; output in ${options.outDir}`);
    await Promise.all(names.map((n) => cluster.start(n)));
    await waitForHealthy(cluster, 90_000);
    await createParents(cluster);
    say('chaos: cluster up; clients and faults start');

    const poller = pollMasters(cluster, sightings, () => polling);
    const deadline = Date.now() + options.timeMs;
    const until = () => Date.now() >= deadline;
    const nodes = names.map((name) => ({ name, url: cluster.node(name).url }));
    const clients = Array.from({ length: options.clients }, (_, id) => new ChaosClient({ id, nodes, keys: options.keys, opTimeoutMs: options.opTimeoutMs, random: random.fork(), history, dispatcher: cluster.agent }));
    const nemesis = new Nemesis(cluster, random.fork(), {
      faults: options.faults,
      lanes: options.nodes >= 5 ? 2 : 1,
      holdMs: [2_000, 10_000],
      quietMs: [2_000, 6_000],
      slowRateKbit: 256,
    }, faultLog, () => history.now());
    const progress = setInterval(() => say(`chaos: ${Math.round((deadline - Date.now()) / 1000)} s left, ${history.events.length} events, ${nemesis.faults.length} faults`), 30_000);
    await Promise.all([...clients.map((c) => c.run(until)), options.faults.length > 0 ? nemesis.run(until) : Promise.resolve()]);
    clearInterval(progress);

    say('chaos: faults stop; healing');
    const healedAt = Date.now();
    cluster.network.heal();
    for (const name of names) {
      cluster.freeDisk(name);
      if (cluster.node(name).paused) await cluster.resume(name);
      if (cluster.node(name).child === null) await cluster.start(name).catch((err: Error) => say(`chaos: ${name} did not start again: ${err.message}`));
    }
    const convergence = await converge(cluster, options.convergeTimeoutMs, healedAt);
    say(`chaos: convergence ${convergence.ok ? `after ${convergence.ms} ms at index ${convergence.appliedIndex}` : `FAILED: ${convergence.problem}`}`);
    polling = false;
    await poller;

    const finalVersions = convergence.ok ? await finalReads(cluster, history, options.keys) : new Map<string, number>();
    const ledgers = convergence.ok ? await ledgerByNode(cluster) : new Map<string, Set<string>>();
    const feeds = convergence.ok ? await feedByNode(cluster) : new Map<string, { oldest: number; events: FeedEvent[] }>();
    history.close();
    faultLog.close();

    const checks: ChaosSummary['checks'] = {
      linearizable: checkLinearizable(history.events, options.searchStepsMax),
      sequential: checkSequential(history.events),
      stale: checkStale(history.events),
      nothingLost: convergence.ok ? checkNothingLost(history.events, ledgers, finalVersions) : { ok: false, checked: 0, problems: ['not checked: the cluster did not converge'] },
      oneMasterPerTerm: checkOneMasterPerTerm([...sightings, ...cluster.mastersFromLogs()]),
      feed: convergence.ok ? checkFeed(history.events, feeds, (key) => `${chaosParent}/${key}`) : { ok: false, checked: 0, problems: ['not checked: the cluster did not converge'] },
    };
    const operations: Record<string, Record<string, number>> = {};
    for (const e of history.events) {
      if (e.process === 'final') continue;
      const f = e.f === 'read' ? `read-${e.mode}` : e.key.toString().startsWith('log/') ? 'ledger-write' : e.f;
      operations[f] ??= {};
      operations[f][e.type] = (operations[f][e.type] ?? 0) + 1;
    }
    const byKind: Record<string, number> = {};
    for (const f of nemesis.faults) byKind[f.kind] = (byKind[f.kind] ?? 0) + 1;
    const unexpectedExits = cluster.unexpectedExits.map((x) => ({ node: x.node, code: x.code }));
    const ok = Object.values(checks).every((c) => c.ok) && convergence.ok && unexpectedExits.length === 0;
    const summary: ChaosSummary = {
      ok,
      seed: options.seed,
      nodes: options.nodes,
      timeMs: options.timeMs,
      faultsEnabled: options.faults,
      clients: options.clients,
      keys: options.keys,
      injectedBug: options.injectedBug ?? null,
      operations,
      faults: { total: nemesis.faults.length, byKind, failedToInject: nemesis.faults.filter((f) => f.error !== undefined).length },
      convergence,
      checks,
      unexpectedExits,
      outDir: options.outDir,
      replay: `npm run chaos -- --seed ${options.seed} --nodes ${options.nodes} --time ${options.timeMs / 1000} --faults ${options.faults.join(',')} --clients ${options.clients} --keys ${options.keys}${options.injectedBug !== undefined ? ` --bug ${options.injectedBug}` : ''}`,
    };
    writeFileSync(join(options.outDir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
    for (const x of cluster.unexpectedExits) say(`chaos: ${x.node} exited unexpectedly (${x.code}):\n${x.outputTail}`);
    return summary;
  } finally {
    polling = false;
    for (const node of cluster.nodes.values()) writeFileSync(join(options.outDir, `${node.name}.log`), node.output);
    await cluster.destroy();
  }
}

/** Every node up, in sync and caught up, by the master's word. */
async function waitForHealthy(cluster: ChaosCluster, timeoutMs: number): Promise<void> {
  await waitFor(
    'every node to be in sync with a master',
    async () => {
      const master = await cluster.master();
      if (master === undefined) return undefined;
      const status = await cluster.status(master);
      const own = status.nodes.find((n) => n.name === master);
      const all = [...cluster.nodes.keys()].every((name) => {
        const n = status.nodes.find((s) => s.name === name);
        return n !== undefined && n.status === 'up' && n.inSync && n.appliedIndex === own?.appliedIndex;
      });
      return all ? true : undefined;
    },
    timeoutMs,
  );
}

async function createParents(cluster: ChaosCluster): Promise<void> {
  for (const path of [chaosParent, ledgerParent]) {
    await waitFor(
      `${path} to be created`,
      async () => {
        const master = await cluster.master();
        if (master === undefined) return undefined;
        const res = await request(`${cluster.node(master).url}/api/v1/content${path}`, {
          method: 'PUT',
          headers: { authorization: processAuth, 'content-type': 'application/json' },
          body: JSON.stringify({ properties: {} }),
          dispatcher: cluster.agent,
          signal: AbortSignal.timeout(5_000),
        });
        await res.body.dump();
        return res.statusCode < 300 ? true : undefined;
      },
      30_000,
    );
  }
}

/** Every 500 ms, each running node's own claim to be master, with its term. */
async function pollMasters(cluster: ChaosCluster, sightings: MasterSighting[], going: () => boolean): Promise<void> {
  while (going()) {
    await Promise.all(
      cluster.running().filter((n) => !n.paused).map(async (node) => {
        const status = await cluster.status(node.name).catch(() => null);
        if (status?.master?.name === node.name) sightings.push({ term: status.term, master: node.name, seenBy: node.name, source: 'status' });
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

async function converge(cluster: ChaosCluster, timeoutMs: number, healedAt: number): Promise<ChaosSummary['convergence']> {
  try {
    const result = await waitFor(
      'every node to report one applied index and one digest',
      async () => {
        await waitForHealthy(cluster, 5_000);
        const answers = await Promise.all([...cluster.nodes.keys()].map((n) => cluster.digest(n)));
        const indexes = new Set(answers.map((a) => a.appliedIndex));
        const digests = new Set(answers.map((a) => a.digest));
        if (indexes.size !== 1 || answers.some((a) => a.blobsMissing > 0)) return undefined;
        // One applied index and two digests is a divergence, not a wait: say so at once.
        if (digests.size !== 1) return { ok: false, ms: Date.now() - healedAt, timeoutMs, appliedIndex: answers[0]!.appliedIndex, digest: null, problem: `digests differ at index ${answers[0]!.appliedIndex}: ${answers.map((a) => `${a.node} ${a.digest}`).join(', ')}` };
        return { ok: true, ms: Date.now() - healedAt, timeoutMs, appliedIndex: answers[0]!.appliedIndex, digest: answers[0]!.digest };
      },
      timeoutMs,
    );
    return result;
  } catch (err) {
    return { ok: false, ms: null, timeoutMs, appliedIndex: null, digest: null, problem: (err as Error).message };
  }
}

/** A linearizable read of every key through the master, recorded as process "final": it joins the checks. */
async function finalReads(cluster: ChaosCluster, history: HistoryRecorder, keys: number): Promise<Map<string, number>> {
  const versions = new Map<string, number>();
  const master = await waitFor('a master', () => cluster.master(), 30_000);
  for (let k = 0; k < keys; k++) {
    const key = keyName(k);
    history.record({ process: 'final', type: 'invoke', f: 'read', key, node: master, mode: 'linearizable' });
    const res = await cluster.getJson<{ properties?: { value?: string }; version?: number }>(master, `/api/v1/content${chaosParent}/${key}?consistency=linearizable`, 10_000);
    const value = res.status === 200 ? (res.body.properties?.value ?? null) : null;
    const version = res.status === 200 ? (res.body.version ?? 0) : 0;
    if (res.status !== 200 && res.status !== 404) throw new Error(`final read of ${key}: ${res.status}`);
    history.record({ process: 'final', type: 'ok', f: 'read', key, value, node: master, mode: 'linearizable', version });
    versions.set(key, version);
  }
  return versions;
}

/** The ledger entries each node holds (its own state: the cluster has converged). */
async function ledgerByNode(cluster: ChaosCluster): Promise<Map<string, Set<string>>> {
  const result = new Map<string, Set<string>>();
  for (const name of cluster.nodes.keys()) {
    const names = new Set<string>();
    let cursor: string | null = null;
    do {
      const query: string = `children=true&limit=1000&consistency=stale${cursor !== null ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const res: { status: number; body: { children: { items: { name: string }[]; nextCursor: string | null } } } = await cluster.getJson(name, `/api/v1/content${ledgerParent}?${query}`, 30_000);
      if (res.status !== 200) throw new Error(`ledger listing on ${name}: ${res.status}`);
      for (const item of res.body.children.items) names.add(item.name);
      cursor = res.body.children.nextCursor;
    } while (cursor !== null);
    result.set(name, names);
  }
  return result;
}

/** Each node's change feed from the oldest position it keeps (its own state: the cluster has converged). */
async function feedByNode(cluster: ChaosCluster): Promise<Map<string, { oldest: number; events: FeedEvent[] }>> {
  const result = new Map<string, { oldest: number; events: FeedEvent[] }>();
  for (const name of cluster.nodes.keys()) {
    const events: FeedEvent[] = [];
    let since: string | null = null;
    let oldest = 0;
    for (;;) {
      const query: string = `limit=1000&consistency=stale${since !== null ? `&since=${since}` : ''}`;
      const res: { status: number; body: { events: FeedEvent[]; next: string; oldest: number } } = await cluster.getJson(name, `/api/v1/changes?${query}`, 30_000);
      if (res.status !== 200) throw new Error(`the change feed of ${name}: ${res.status}`);
      oldest = res.body.oldest;
      events.push(...res.body.events.map((e) => ({ position: e.position, index: e.index, op: e.op, path: e.path })));
      if (res.body.next === since) break;
      since = res.body.next;
    }
    result.set(name, { oldest, events });
  }
  return result;
}
