import assert from 'node:assert/strict';
import { Agent, request, type Dispatcher } from 'undici';

import type { ClusterStatusBody, DigestAnswer } from '../helpers/cluster.js';
import { processAuth } from '../helpers/process.js';
import { waitFor } from '../helpers/tmp.js';
import type { ChaosCluster } from './chaosCluster.js';

/**
 * What the CRX scenarios (crxScenarios.test.ts) do to a ChaosCluster and check of it: single requests with their
 * outcome spelled out, a cluster restored to health between scenarios, the smoke test (a write through every node,
 * read back at once on every node, digests equal), a background writer whose acknowledged writes must all survive,
 * and a load generator. Every wait is bounded and every failure says what was expected and what was seen.
 */
export const crxParent = '/crx';
export const smokeParent = '/crx/smoke';
export const ledgerParent = '/crx/ledger';

/** An HTTP answer, or what went wrong on the way (timeout, refused, reset) as a string. */
export type Answer =
  | {
      readonly status: number;
      readonly code: string | undefined;
      readonly message: string | undefined;
      readonly body: unknown;
      /** X-Conclave-Stale: the node knew no master, so the answer may be stale. */
      readonly stale: boolean;
    }
  | string;

export function describeAnswer(answer: Answer): string {
  if (typeof answer === 'string') return answer;
  return `${answer.status}${answer.code !== undefined ? ` ${answer.code}` : ''}${answer.message !== undefined ? ` (${answer.message})` : ''}${answer.stale ? ' marked stale' : ''}`;
}

export const isOk = (answer: Answer) => typeof answer !== 'string' && answer.status >= 200 && answer.status < 300;

export async function send(
  cluster: ChaosCluster,
  node: string,
  method: 'GET' | 'PUT',
  path: string,
  options: { readonly body?: unknown; readonly headers?: Record<string, string>; readonly timeoutMs?: number; readonly dispatcher?: Dispatcher } = {},
): Promise<Answer> {
  try {
    const res = await request(`${cluster.node(node).url}${path}`, {
      method,
      headers: { authorization: processAuth, ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}), ...options.headers },
      ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
      dispatcher: options.dispatcher ?? cluster.agent,
      signal: AbortSignal.timeout(options.timeoutMs ?? 15_000),
    });
    const text = await res.body.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // Not JSON: kept as text.
    }
    const error = (body as { error?: { code?: string; message?: string } } | null)?.error;
    return { status: res.statusCode, code: error?.code, message: error?.message, body, stale: res.headers['x-conclave-stale'] === 'true' };
  } catch (err) {
    const e = err as { name?: string; code?: string; message?: string };
    return e.name === 'TimeoutError' || e.name === 'AbortError' ? 'timeout' : (e.code ?? e.message ?? String(err));
  }
}

/** PUT of a content node's properties through `node` (which forwards it to the master if it is not the master). */
export function putContent(cluster: ChaosCluster, node: string, path: string, properties: Record<string, unknown>, options: { headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<Answer> {
  return send(cluster, node, 'PUT', `/api/v1/content${path}`, { body: { properties }, ...options });
}

export function getContent(cluster: ChaosCluster, node: string, path: string, consistency?: 'sequential' | 'linearizable' | 'stale', timeoutMs?: number): Promise<Answer> {
  return send(cluster, node, 'GET', `/api/v1/content${path}`, { ...(consistency !== undefined ? { headers: { 'x-conclave-consistency': consistency } } : {}), ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
}

/**
 * waitFor, with what the check last saw in the message when it times out: `check` calls `saw(text)` as it looks.
 */
export async function waitSeeing<T>(what: string, check: (saw: (text: string) => void) => T | undefined | Promise<T | undefined>, timeoutMs: number): Promise<T> {
  let seen = 'nothing';
  return waitFor(what, () => check((text) => (seen = text)), timeoutMs).catch((err: Error) => {
    throw new Error(`${err.message}; last seen: ${seen}`);
  });
}

/** The running, unpaused nodes' names. */
export function runningNodes(cluster: ChaosCluster): string[] {
  return cluster.running().filter((n) => !n.paused).map((n) => n.name);
}

/**
 * The master by its own word (/health/master), waited for (bounded); `not` excludes a node (a failover); the nodes in
 * `unheard` need not know it yet.
 */
export async function waitForMaster(cluster: ChaosCluster, timeoutMs: number, not?: string, unheard: readonly string[] = []): Promise<string> {
  return waitSeeing(`a master${not !== undefined ? ` other than ${not}` : ''}, known to every running node`, async (saw) => {
    const master = await cluster.master();
    saw(`master ${master ?? 'none'}`);
    if (master === undefined || master === not) return undefined;
    // A node learns of a new master from its first append, a moment after the master knows itself: a write through
    // a node that has not heard yet is refused (CLUSTER_NO_MASTER, retry shortly), which is not what a scenario
    // waiting for the failover to finish means to test.
    for (const node of cluster.running()) {
      if (node.paused || unheard.includes(node.name)) continue;
      const view = await cluster.status(node.name).catch(() => null);
      if (view?.master?.name !== master) {
        saw(`master ${master}; ${node.name} sees ${view?.master?.name ?? 'none'}`);
        return undefined;
      }
    }
    return master;
  }, timeoutMs);
}

/**
 * Waits until the master lists `names` (default: every running node) as up, in sync, and at its own applied index;
 * returns the master and its status.
 */
export async function waitHealthy(cluster: ChaosCluster, timeoutMs: number, names: readonly string[] = runningNodes(cluster)): Promise<{ master: string; status: ClusterStatusBody }> {
  let last = 'no master answered';
  try {
    return await waitFor(`${names.join(', ')} to be up, in sync and caught up with the master`, async () => {
      const master = await cluster.master();
      if (master === undefined) return undefined;
      const status = await cluster.status(master);
      const own = status.nodes.find((n) => n.name === master);
      last = `master ${master}: ${status.nodes.map((n) => `${n.name} ${n.status}${n.inSync ? ' in-sync' : ''} applied ${n.appliedIndex}`).join('; ')}`;
      const ok = own !== undefined && names.every((name) => {
        const n = status.nodes.find((s) => s.name === name);
        return n !== undefined && n.status === 'up' && n.inSync && n.appliedIndex === own.appliedIndex;
      });
      return ok ? { master, status } : undefined;
    }, timeoutMs);
  } catch (err) {
    throw new Error(`${(err as Error).message}; last seen: ${last}`);
  }
}

/**
 * Digests of every running node taken at one applied index (waited for, bounded: writes in flight move the index),
 * asserted equal, with no blob missing. Returns the common answer.
 */
export async function assertDigestsEqual(cluster: ChaosCluster, context: string, timeoutMs = 30_000, names: readonly string[] = runningNodes(cluster)): Promise<DigestAnswer> {
  let last: DigestAnswer[] = [];
  const answers = await waitFor(`${names.join(', ')} to answer their digests at one applied index (${context})`, async () => {
    const { status } = await waitHealthy(cluster, 5_000, names);
    const applied = new Set(names.map((name) => status.nodes.find((n) => n.name === name)?.appliedIndex));
    if (applied.size !== 1) return undefined;
    last = await Promise.all(names.map((name) => cluster.digest(name)));
    return new Set(last.map((a) => a.appliedIndex)).size === 1 && last.every((a) => a.blobsMissing === 0) ? last : undefined;
  }, timeoutMs).catch((err: Error) => {
    throw new Error(`${context}: ${err.message}; last digests: ${last.map((a) => `${a.node} index ${a.appliedIndex} ${a.digest.slice(0, 12)} missing ${a.blobsMissing}`).join(', ') || 'none'}`);
  });
  const digests = new Set(answers.map((a) => a.digest));
  assert.equal(digests.size, 1, `${context}: expected one digest at index ${answers[0]!.appliedIndex} on every node, saw ${answers.map((a) => `${a.node} ${a.digest}`).join(', ')}`);
  return answers[0]!;
}

/**
 * The CRX smoke test: one write through every running node (each forwarded to the master where needed), then each
 * write read back at once — default (sequential) consistency, no waiting — on every node, which the product
 * promises once a write is acknowledged; then every node's digest equal. `nodes` narrows the writes, reads and
 * digests to the nodes that can be in sync (not one whose disk is full); `payloadBytes` makes every write that much
 * bigger (traffic for a slow link). Returns the written paths and the digest.
 */
export async function smokeTest(
  cluster: ChaosCluster,
  label: string,
  options: { readonly timeoutMs?: number; readonly nodes?: readonly string[]; readonly payloadBytes?: number; readonly retryMs?: number } = {},
): Promise<{ written: { path: string; via: string }[]; digest: DigestAnswer; retried: string[] }> {
  const names = options.nodes ?? runningNodes(cluster);
  const readers = names;
  const written: { path: string; via: string }[] = [];
  const retried: string[] = [];
  for (const via of names) {
    const path = `${smokeParent}/${label}-via-${via}`;
    const payload = options.payloadBytes !== undefined ? { text: 'p'.repeat(options.payloadBytes) } : {};
    // A PUT of the same properties is idempotent: with `retryMs`, a client that retries whatever the answer.
    const deadline = Date.now() + (options.retryMs ?? 0);
    let answer = await putContent(cluster, via, path, { label, via, ...payload }, { timeoutMs: options.timeoutMs ?? 15_000 });
    while (!isOk(answer) && Date.now() < deadline) {
      retried.push(`${path} via ${via}: ${describeAnswer(answer)}`);
      await sleep(200);
      answer = await putContent(cluster, via, path, { label, via, ...payload }, { timeoutMs: options.timeoutMs ?? 15_000 });
    }
    assert.ok(isOk(answer), `smoke ${label}: expected the write of ${path} through ${via} to be acknowledged (200/201), saw ${describeAnswer(answer)}${retried.length > 0 ? `; earlier answers: ${retried.join('; ')}` : ''}`);
    written.push({ path, via });
  }
  for (const { path, via } of written) {
    for (const reader of readers) {
      // With `retryMs`, a refusal to serve (503: no master could confirm the read, as when a master on a slow link
      // loses its leadership) is retried too; a stale answer (200 without the write) fails at once.
      const deadline = Date.now() + (options.retryMs ?? 0);
      let answer = await getContent(cluster, reader, path, undefined, options.timeoutMs ?? 15_000);
      while (typeof answer !== 'string' && answer.status === 503 && Date.now() < deadline) {
        retried.push(`read of ${path} via ${reader}: ${describeAnswer(answer)}`);
        await sleep(200);
        answer = await getContent(cluster, reader, path, undefined, options.timeoutMs ?? 15_000);
      }
      const seen = typeof answer === 'string' ? undefined : (answer.body as { properties?: { via?: string } }).properties?.via;
      assert.ok(isOk(answer) && seen === via, `smoke ${label}: expected ${reader} to read ${path} (written through ${via}, acknowledged) at once, saw ${describeAnswer(answer)} via=${String(seen)}`);
    }
  }
  return { written, digest: await assertDigestsEqual(cluster, `smoke ${label}`, 30_000, readers), retried };
}

/** Creates a content node through whichever node is master, retrying through elections (bounded). */
export async function ensureNode(cluster: ChaosCluster, path: string, timeoutMs = 30_000): Promise<void> {
  let last: Answer = 'not tried';
  await waitFor(`${path} to be created`, async () => {
    const master = await cluster.master();
    if (master === undefined) return undefined;
    last = await putContent(cluster, master, path, {});
    return isOk(last) ? true : undefined;
  }, timeoutMs).catch((err: Error) => {
    throw new Error(`${err.message}; last answer ${describeAnswer(last)}`);
  });
}

/** An acknowledged write of the background writer. */
export interface Acknowledged {
  readonly name: string;
  readonly via: string;
  readonly atMs: number;
}

/**
 * Background writers: `concurrency` loops, each creating write-once content nodes /crx/ledger/<prefix>-<loop>-<n>
 * through a node picked in turn from `targets()` (re-read every time, so a scenario can steer writes away from a
 * node it is about to kill). Records which were acknowledged; the others may or may not exist.
 */
export class LedgerWriter {
  readonly acknowledged: Acknowledged[] = [];
  readonly refusals = new Map<string, number>();
  private running = false;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly cluster: ChaosCluster,
    private readonly prefix: string,
    private readonly targets: () => readonly string[],
    private readonly concurrency = 3,
  ) {}

  start(): void {
    this.running = true;
    this.loops = Array.from({ length: this.concurrency }, (_, loop) => this.loop(loop));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  ackedSince(atMs: number, excludingVia?: string): number {
    return this.acknowledged.filter((a) => a.atMs >= atMs && a.via !== excludingVia).length;
  }

  describeRefusals(): string {
    return [...this.refusals].map(([what, n]) => `${what} ×${n}`).join(', ') || 'none';
  }

  private async loop(loop: number): Promise<void> {
    let n = 0;
    while (this.running) {
      const targets = this.targets();
      if (targets.length === 0) {
        await sleep(50);
        continue;
      }
      const via = targets[(loop + n) % targets.length]!;
      const name = `${this.prefix}-${loop}-${++n}`;
      const answer = await putContent(this.cluster, via, `${ledgerParent}/${name}`, { via }, { headers: { 'if-none-match': '*' }, timeoutMs: 20_000 });
      if (isOk(answer)) {
        this.acknowledged.push({ name, via, atMs: Date.now() });
      } else {
        const what = `${via}: ${typeof answer === 'string' ? answer : `${answer.status} ${answer.code ?? ''}`.trim()}`;
        this.refusals.set(what, (this.refusals.get(what) ?? 0) + 1);
        // A node that is down refuses at once: do not spin on it.
        await sleep(50);
      }
    }
  }
}

/** Waits (bounded) until the writer has `count` acknowledgements since `atMs` through nodes other than `excludingVia`. */
export async function waitForWritesToContinue(writer: LedgerWriter, atMs: number, count: number, timeoutMs: number, excludingVia?: string): Promise<void> {
  await waitFor(`${count} writes acknowledged${excludingVia !== undefined ? ` through nodes other than ${excludingVia}` : ''}`, () => (writer.ackedSince(atMs, excludingVia) >= count ? true : undefined), timeoutMs).catch((err: Error) => {
    throw new Error(`expected writes to continue: ${err.message}; saw ${writer.ackedSince(atMs, excludingVia)} acknowledged; refusals: ${writer.describeRefusals()}`);
  });
}

/** The ledger entries a node holds (its own state, `stale`: called once the cluster converged). */
export async function ledgerOn(cluster: ChaosCluster, node: string): Promise<Set<string>> {
  const names = new Set<string>();
  let cursor: string | null = null;
  do {
    const query: string = `children=true&limit=1000&consistency=stale${cursor !== null ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const res: { status: number; body: { children: { items: { name: string }[]; nextCursor: string | null } } } = await cluster.getJson(node, `/api/v1/content${ledgerParent}?${query}`, 30_000);
    assert.equal(res.status, 200, `expected the ledger listing on ${node} to answer 200, saw ${res.status}`);
    for (const item of res.body.children.items) names.add(item.name);
    cursor = res.body.children.nextCursor;
  } while (cursor !== null);
  return names;
}

/** Every acknowledged write of `writer` exists on every running node (call once the digests agree). */
export async function assertNoAcknowledgedWriteLost(cluster: ChaosCluster, writer: LedgerWriter, context: string): Promise<void> {
  assert.ok(writer.acknowledged.length > 0, `${context}: expected the background writer to have writes acknowledged, saw none; refusals: ${writer.describeRefusals()}`);
  for (const node of runningNodes(cluster)) {
    const held = await ledgerOn(cluster, node);
    const missing = writer.acknowledged.filter((a) => !held.has(a.name));
    assert.deepEqual(missing, [], `${context}: expected ${node} to hold all ${writer.acknowledged.length} acknowledged writes, ${missing.length} missing`);
  }
}

/**
 * Brings the cluster back to full health after a scenario (whether it passed or not): links healed and at full
 * speed, disks freed, paused nodes resumed, stopped nodes started, every node in sync.
 */
export async function restoreHealth(cluster: ChaosCluster, timeoutMs = 60_000): Promise<void> {
  cluster.network.heal();
  for (const node of cluster.nodes.values()) {
    cluster.freeDisk(node.name);
    if (node.paused) await cluster.resume(node.name);
    if (node.child === null) await cluster.start(node.name);
  }
  await waitHealthy(cluster, timeoutMs, [...cluster.nodes.keys()]);
}

/** No node exited without the harness asking: a crash is a bug in every scenario. */
export function assertNoCrash(cluster: ChaosCluster, context: string): void {
  assert.deepEqual(
    cluster.unexpectedExits.map((x) => `${x.node} exited ${x.code}: ${x.outputTail.slice(-1_500)}`),
    [],
    `${context}: expected no node to exit unless the test stopped it`,
  );
}

/** The "role" the master reports for `name` (MASTER/REPLICA). */
export function roleOf(status: ClusterStatusBody, name: string): string | undefined {
  return status.nodes.find((n) => n.name === name)?.role;
}

/**
 * Heavy load on one node: `clients` closed loops of reads (default consistency) and writes through it, on an agent of
 * their own so that the scenario's own requests do not queue behind them. Counts answers by outcome.
 */
export class LoadGenerator {
  readonly outcomes = new Map<string, number>();
  private readonly agent: Agent;
  private running = false;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly cluster: ChaosCluster,
    private readonly node: string,
    private readonly clients: number,
  ) {
    this.agent = new Agent({ connections: clients, connectTimeout: 2_000 });
  }

  start(): void {
    this.running = true;
    this.loops = Array.from({ length: this.clients }, (_, i) => this.loop(i));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    await this.agent.close();
  }

  count(outcome: string): number {
    return this.outcomes.get(outcome) ?? 0;
  }

  private async loop(client: number): Promise<void> {
    let n = 0;
    while (this.running) {
      n++;
      const write = n % 5 === 0;
      const answer = write
        ? await send(this.cluster, this.node, 'PUT', `/api/v1/content${crxParent}/load-${client}`, { body: { properties: { n } }, timeoutMs: 20_000, dispatcher: this.agent })
        : await send(this.cluster, this.node, 'GET', `/api/v1/content${crxParent}?children=true&limit=100`, { timeoutMs: 20_000, dispatcher: this.agent });
      const outcome = `${write ? 'write' : 'read'} ${typeof answer === 'string' ? answer : answer.code ?? answer.status}`;
      this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
      if (!isOk(answer)) await sleep(20);
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
