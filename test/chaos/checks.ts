import { checkHistory, type HistoryEvent } from '../sim/linearizability.js';
import type { MasterSighting } from './chaosCluster.js';
import type { ChaosEvent } from './history.js';

/**
 * The chaos harness's checkers. Each takes what the run recorded and returns a verdict with enough detail to find
 * the offending operations in the history file. None of them needs timing luck: they compare orders and versions.
 */
export interface CheckVerdict {
  readonly ok: boolean;
  /** What was checked (counts), for the summary. */
  readonly checked: number;
  /** Violations, most telling first; empty when ok. At most `problemsMax`. */
  readonly problems: string[];
  readonly note?: string;
}

const problemsMax = 20;

const isRegisterKey = (key: ChaosEvent['key']) => typeof key === 'string' && !key.startsWith('log/');

/**
 * Linearizability of everything that promises it: every write and compare-and-set, and the reads asked for in
 * `linearizable` mode (plus the final reads taken after the cluster healed, which is how a lost acknowledged
 * write shows). The checker is the simulator's (Wing & Gong with Lowe's improvements), per key.
 */
export function checkLinearizable(events: readonly ChaosEvent[], searchStepsMax: number): CheckVerdict & { verdict: string } {
  const subset: HistoryEvent[] = events
    .filter((e) => isRegisterKey(e.key) && (e.f !== 'read' || e.mode === 'linearizable'))
    .map((e) => ({ process: e.process, type: e.type, f: e.f, key: e.key, ...(e.value !== undefined ? { value: e.value } : {}), time: e.time }));
  const result = checkHistory(subset, { searchStepsMax });
  const operations = [...result.perKey.values()].reduce((sum, k) => sum + k.operationCount, 0);
  const problems: string[] = [];
  if (result.failure !== undefined) problems.push(`key ${String(result.failure.key)}: ${result.failure.verdict}: ${result.failure.explanation.message}`);
  // Unknown (the search gave up) is not a pass: the harness reports it as a failure to decide.
  return { ok: result.ok, verdict: result.verdict, checked: operations, problems };
}

/**
 * `sequential` reads (docs/http-api.md): a read sees every write acknowledged before it began, on any node — so its
 * version is at least that of every write to its key acknowledged before its invoke; through the client's session
 * index (X-Conclave-Min-Index) it also reads its own writes and never goes back (monotonic reads). A read the
 * node marked stale (it knew no master) promises nothing and is only counted.
 */
export function checkSequential(events: readonly ChaosEvent[]): CheckVerdict & { staleMarked: number } {
  const invokes = new Map<ChaosEvent['process'], ChaosEvent>();
  /** Per key, the highest version acknowledged so far (in history order). */
  const acknowledged = new Map<string, { version: number; value: unknown }>();
  /** Per key at each read's invoke: what had been acknowledged then. */
  const ackedAtInvoke = new Map<ChaosEvent, { version: number; value: unknown } | undefined>();
  /** Per client and key, the highest version its sequential reads or its own acknowledged writes showed. */
  const session = new Map<string, number>();
  const problems: string[] = [];
  let checked = 0;
  let staleMarked = 0;
  for (const e of events) {
    if (!isRegisterKey(e.key)) continue;
    const key = e.key as string;
    if (e.type === 'invoke') {
      invokes.set(e.process, e);
      if (e.f === 'read' && e.mode === 'sequential') ackedAtInvoke.set(e, acknowledged.get(key));
      continue;
    }
    const invoke = invokes.get(e.process);
    invokes.delete(e.process);
    if (e.type !== 'ok') continue;
    const sessionKey = `${String(e.process)}/${key}`;
    if (e.f !== 'read') {
      const version = e.version ?? 0;
      if (version > (acknowledged.get(key)?.version ?? 0)) acknowledged.set(key, { version, value: e.f === 'cas' ? (e.value as unknown[])[1] : e.value });
      session.set(sessionKey, Math.max(session.get(sessionKey) ?? 0, version));
      continue;
    }
    if (e.mode !== 'sequential' || invoke === undefined) continue;
    if (e.stale === true) {
      staleMarked++;
      continue;
    }
    checked++;
    const version = e.version ?? 0;
    const before = ackedAtInvoke.get(invoke);
    if (before !== undefined && version < before.version && problems.length < problemsMax) {
      problems.push(`t=${e.time} process ${String(e.process)} read ${key}=${JSON.stringify(e.value)} (version ${version}) on ${e.node}, but ${JSON.stringify(before.value)} (version ${before.version}) was acknowledged before the read began`);
    }
    const own = session.get(sessionKey) ?? 0;
    if (version < own && problems.length < problemsMax) {
      problems.push(`t=${e.time} process ${String(e.process)} read ${key} at version ${version} on ${e.node}, older than version ${own} its session had already seen (read-your-writes / monotonic reads)`);
    }
    session.set(sessionKey, Math.max(own, version));
  }
  return { ok: problems.length === 0, checked, problems, staleMarked };
}

/**
 * `stale` reads promise only what X-Conclave-Index says; still, every value read must be one some client wrote
 * (invoked before the read completed) — nothing invented, nothing from a write that never existed.
 */
export function checkStale(events: readonly ChaosEvent[]): CheckVerdict {
  const invoked = new Set<unknown>([null]);
  const problems: string[] = [];
  let checked = 0;
  for (const e of events) {
    if (e.type === 'invoke' && e.f === 'write') invoked.add(e.value);
    if (e.type === 'invoke' && e.f === 'cas') invoked.add((e.value as unknown[])[1]);
    if (e.type === 'ok' && e.f === 'read' && e.mode === 'stale') {
      checked++;
      if (!invoked.has(e.value) && problems.length < problemsMax) problems.push(`t=${e.time} read ${String(e.key)}=${JSON.stringify(e.value)} on ${e.node}: no client ever wrote that value`);
    }
  }
  return { ok: problems.length === 0, checked, problems };
}

/**
 * No acknowledged write lost: every acknowledged ledger entry exists on every node at the end, and every key's final
 * version (read after healing) is at least the highest version any acknowledged write of it got.
 */
export function checkNothingLost(
  events: readonly ChaosEvent[],
  ledgerByNode: ReadonlyMap<string, ReadonlySet<string>>,
  finalVersions: ReadonlyMap<string, number>,
): CheckVerdict {
  const problems: string[] = [];
  const acked: string[] = [];
  const invoked = new Set<string>();
  const highest = new Map<string, { version: number; event: ChaosEvent }>();
  for (const e of events) {
    if (typeof e.key !== 'string') continue;
    if (e.key.startsWith('log/')) {
      if (e.type === 'invoke') invoked.add(e.key.slice(4));
      if (e.type === 'ok') acked.push(e.key.slice(4));
    } else if (e.type === 'ok' && e.f !== 'read' && e.process !== 'final') {
      if ((e.version ?? 0) > (highest.get(e.key)?.version ?? 0)) highest.set(e.key, { version: e.version ?? 0, event: e });
    }
  }
  for (const [node, ledger] of ledgerByNode) {
    const missing = acked.filter((name) => !ledger.has(name));
    if (missing.length > 0) problems.push(`${node} lacks ${missing.length} acknowledged ledger entries: ${missing.slice(0, 10).join(', ')}`);
    const invented = [...ledger].filter((name) => !invoked.has(name));
    if (invented.length > 0) problems.push(`${node} holds ${invented.length} ledger entries no client wrote: ${invented.slice(0, 10).join(', ')}`);
  }
  for (const [key, { version, event }] of highest) {
    const final = finalVersions.get(key) ?? 0;
    if (final < version) problems.push(`${key}: acknowledged ${JSON.stringify(event.value)} at version ${version} (t=${event.time}), but the healed cluster holds version ${final}`);
  }
  return { ok: problems.length === 0, checked: acked.length + highest.size, problems: problems.slice(0, problemsMax) };
}

/** Never two masters in one term, from every node's own word (its log, and its status when it named itself). */
export function checkOneMasterPerTerm(sightings: readonly MasterSighting[]): CheckVerdict & { terms: number } {
  const byTerm = new Map<number, Set<string>>();
  for (const s of sightings) {
    const masters = byTerm.get(s.term) ?? new Set<string>();
    masters.add(s.master);
    byTerm.set(s.term, masters);
  }
  const problems = [...byTerm]
    .filter(([, masters]) => masters.size > 1)
    .map(([term, masters]) => `term ${term} had masters ${[...masters].join(', ')}`);
  return { ok: problems.length === 0, checked: sightings.length, problems: problems.slice(0, problemsMax), terms: byTerm.size };
}

/** An event of the change feed as the chaos run reads it back. */
export interface FeedEvent {
  readonly position: string;
  readonly index: number;
  readonly op: string;
  readonly path: string;
}

/**
 * The change feed after healing: every node's feed, read from the oldest position it keeps, is one sequence, in
 * index order; it holds an event for every acknowledged write at the write's own index (where that is still kept);
 * and no key has more change events than writes that were not refused (acknowledged, or of unknown outcome): a
 * refused write never shows up in the feed. `contentPathOf` maps a history key to its content path.
 */
export function checkFeed(
  events: readonly ChaosEvent[],
  feedByNode: ReadonlyMap<string, { readonly oldest: number; readonly events: readonly FeedEvent[] }>,
  contentPathOf: (key: string) => string,
): CheckVerdict {
  const problems: string[] = [];
  const feeds = [...feedByNode];
  if (feeds.length === 0) return { ok: false, checked: 0, problems: ['no feed was read'] };
  const [firstNode, first] = feeds[0]!;
  for (const [node, feed] of feeds.slice(1)) {
    // Nodes may keep different depths only if pruning reached one and not yet another; compare what both keep.
    const from = Math.max(first.oldest, feed.oldest);
    const a = first.events.filter((e) => e.index > from);
    const b = feed.events.filter((e) => e.index > from);
    const at = a.findIndex((e, i) => JSON.stringify(e) !== JSON.stringify(b[i]));
    if (at >= 0 || a.length !== b.length) {
      const i = at >= 0 ? at : Math.min(a.length, b.length);
      problems.push(`the feeds of ${firstNode} and ${node} differ at event ${i} after ${from}: ${JSON.stringify(a[i] ?? null)} against ${JSON.stringify(b[i] ?? null)}`);
    }
  }
  const feed = first.events;
  for (let i = 1; i < feed.length; i++) {
    if (feed[i]!.index < feed[i - 1]!.index) problems.push(`${firstNode}'s feed goes back from index ${feed[i - 1]!.index} to ${feed[i]!.index}`);
  }
  if (new Set(feed.map((e) => e.position)).size !== feed.length) problems.push(`${firstNode}'s feed repeats a position`);
  const byIndexPath = new Set(feed.map((e) => `${e.index} ${e.path}`));
  const eventsPerPath = new Map<string, number>();
  for (const e of feed) if (e.op === 'created' || e.op === 'updated') eventsPerPath.set(e.path, (eventsPerPath.get(e.path) ?? 0) + 1);
  const notRefused = new Map<string, number>();
  let checked = 0;
  for (const e of events) {
    if (e.f === 'read' || e.process === 'final' || typeof e.key !== 'string') continue;
    const path = contentPathOf(e.key);
    if (e.type === 'ok' || e.type === 'info') notRefused.set(path, (notRefused.get(path) ?? 0) + 1);
    else if (e.type === 'invoke') notRefused.set(path, notRefused.get(path) ?? 0);
    if (e.type !== 'ok' || e.index === undefined || e.index <= first.oldest) continue;
    checked++;
    if (!byIndexPath.has(`${e.index} ${path}`) && problems.length < problemsMax) {
      problems.push(`acknowledged ${e.f} of ${path} at index ${e.index} (t=${e.time}) has no event in the feed`);
    }
  }
  // Only what the run wrote after the oldest kept position counts: earlier events of a path may have been pruned.
  if (first.oldest === 0) {
    for (const [path, count] of eventsPerPath) {
      // Paths no client wrote (the parents the run created first) are not the clients' to account for.
      const allowed = notRefused.get(path);
      if (allowed !== undefined && count > allowed && problems.length < problemsMax) {
        problems.push(`${path} has ${count} change events but only ${allowed} writes that were not refused`);
      }
    }
  }
  return { ok: problems.length === 0, checked, problems: problems.slice(0, problemsMax) };
}
