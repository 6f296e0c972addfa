import { request, type Dispatcher } from 'undici';

import { processAuth } from '../helpers/process.js';
import type { SimRandom } from '../sim/simRandom.js';
import type { HistoryRecorder, ReadMode } from './history.js';

/**
 * One chaos client: a closed loop of reads (in all three modes), writes and compare-and-sets on a small set of keys,
 * each sent to a node picked at random, each with a timeout. The register of key `k3` is the `value` property of
 * the content node /chaos/k3; every written value is unique, so a value names the write that made it.
 *
 * Compare-and-set is a conditional PUT: with `If-Match` carrying the ETag of the version this client last saw (the
 * ETag names one version of the node, and a version holds exactly one unique value, so "the node is still at that
 * version" is "the value is still that value"), or with `If-None-Match: *` when it saw the key absent.
 *
 * Besides the registers, a client creates write-once ledger entries /chaos/log/<client>-<n>: the plainest "no
 * acknowledged write is lost" check (each must exist on every node at the end).
 *
 * How an answer is recorded: 2xx is ok; an answer that says nothing changed is fail (every 4xx, CLUSTER_NO_MASTER,
 * MASTER_CHANGED, OVERLOADED, NOT_READY, SHUTTING_DOWN, DISK_FULL, and MASTER_UNREACHABLE,
 * which the forwarding node sends only when nothing reached the master — all as docs/http-api.md promises, which
 * is what this harness holds the product to); everything else (timeouts, WRITE_OUTCOME_UNKNOWN, a broken
 * connection, STORAGE_ERROR — which promises only that nothing was acknowledged — or any other 500) is info: the write may or may not have happened. Reads have no effect, so a failed read is fail.
 */
export interface ClientOptions {
  readonly id: number;
  readonly nodes: readonly { readonly name: string; readonly url: string }[];
  readonly keys: number;
  readonly opTimeoutMs: number;
  readonly random: SimRandom;
  readonly history: HistoryRecorder;
  readonly dispatcher: Dispatcher;
}

const definiteRefusals = new Set([
  'CLUSTER_NO_MASTER',
  'MASTER_CHANGED',
  'MASTER_UNREACHABLE',
  'OVERLOADED',
  'NOT_READY',
  'SHUTTING_DOWN',
  'DISK_FULL',
]);

interface Seen {
  readonly value: string | null;
  readonly etag: string | null;
}

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: unknown;
}

export const chaosParent = '/chaos';
export const ledgerParent = '/chaos/log';
export const keyName = (k: number) => `k${k}`;

export class ChaosClient {
  /** What this client last saw of each key: the base of its next compare-and-set. */
  private readonly seen = new Map<string, Seen>();
  /** The highest X-Conclave-Index this client has seen: its session, sent with sequential reads. */
  private sessionIndex = 0;
  private sequence = 0;
  readonly ledgerAcknowledged: string[] = [];

  constructor(private readonly options: ClientOptions) {}

  async run(until: () => boolean): Promise<void> {
    while (!until()) await this.step();
  }

  private async step(): Promise<void> {
    const r = this.options.random;
    const node = r.pick(this.options.nodes);
    const key = keyName(r.nextInt(this.options.keys));
    const op = r.weighted<'read' | 'write' | 'cas' | 'ledger'>([[50, 'read'], [22, 'write'], [18, 'cas'], [10, 'ledger']]);
    if (op === 'read') await this.read(node, key, r.weighted<ReadMode>([[40, 'linearizable'], [40, 'sequential'], [20, 'stale']]));
    else if (op === 'write') await this.write(node, key);
    else if (op === 'cas') await this.cas(node, key);
    else await this.ledger(node);
  }

  private nextValue(): string {
    return `c${this.options.id}-${++this.sequence}`;
  }

  private async read(node: { name: string; url: string }, key: string, mode: ReadMode): Promise<void> {
    const { history, id } = this.options;
    history.record({ process: id, type: 'invoke', f: 'read', key, node: node.name, mode });
    const headers: Record<string, string> = { authorization: processAuth, 'x-conclave-consistency': mode };
    if (mode === 'sequential' && this.sessionIndex > 0) headers['x-conclave-min-index'] = String(this.sessionIndex);
    const answer = await this.send(node.url, 'GET', `/api/v1/content${chaosParent}/${key}`, headers);
    if (typeof answer === 'string' || (answer.status !== 200 && answer.status !== 404) || (answer.status === 404 && errorCode(answer) !== 'NODE_NOT_FOUND')) {
      history.record({ process: id, type: 'fail', f: 'read', key, node: node.name, mode, error: describe(answer) });
      return;
    }
    const index = this.noteIndex(answer);
    const body = answer.body as { properties?: { value?: string }; version?: number; etag?: string };
    const value = answer.status === 200 ? (body.properties?.value ?? null) : null;
    const version = answer.status === 200 ? (body.version ?? 0) : 0;
    const stale = answer.headers['x-conclave-stale'] === 'true';
    this.seen.set(key, { value, etag: answer.status === 200 ? (body.etag ?? null) : null });
    history.record({ process: id, type: 'ok', f: 'read', key, value, node: node.name, mode, version, index, ...(stale ? { stale } : {}) });
  }

  private async write(node: { name: string; url: string }, key: string): Promise<void> {
    const value = this.nextValue();
    await this.put(node, 'write', key, value, value, {});
  }

  private async cas(node: { name: string; url: string }, key: string): Promise<void> {
    // Mostly read first (a recorded read of its own): a compare-and-set on a fresh version mostly succeeds, and the
    // successes are what constrain the history.
    if (this.options.random.chance(0.7)) await this.read(node, key, 'linearizable');
    const base = this.seen.get(key) ?? { value: null, etag: null };
    const value = this.nextValue();
    const conditions: Record<string, string> = base.etag === null ? { 'if-none-match': '*' } : { 'if-match': base.etag };
    await this.put(node, 'cas', key, [base.value, value], value, conditions);
  }

  private async ledger(node: { name: string; url: string }): Promise<void> {
    const { history, id } = this.options;
    const name = `c${id}-${++this.sequence}`;
    const key = `log/${name}`;
    history.record({ process: id, type: 'invoke', f: 'write', key, value: name, node: node.name });
    const answer = await this.send(node.url, 'PUT', `/api/v1/content${ledgerParent}/${name}`, { authorization: processAuth, 'content-type': 'application/json', 'if-none-match': '*' }, JSON.stringify({ properties: { value: name } }));
    const outcome = outcomeOf(answer);
    if (outcome === 'ok') {
      this.noteIndex(answer as Answer);
      this.ledgerAcknowledged.push(name);
    }
    history.record({ process: id, type: outcome, f: 'write', key, value: name, node: node.name, ...(outcome === 'ok' ? { version: versionOf(answer as Answer), index: indexOf(answer as Answer) } : { error: describe(answer) }) });
  }

  private async put(node: { name: string; url: string }, f: 'write' | 'cas', key: string, value: unknown, newValue: string, conditions: Record<string, string>): Promise<void> {
    const { history, id } = this.options;
    history.record({ process: id, type: 'invoke', f, key, value, node: node.name });
    const answer = await this.send(node.url, 'PUT', `/api/v1/content${chaosParent}/${key}`, { authorization: processAuth, 'content-type': 'application/json', ...conditions }, JSON.stringify({ properties: { value: newValue } }));
    const outcome = outcomeOf(answer);
    if (outcome === 'ok') {
      const a = answer as Answer;
      this.noteIndex(a);
      this.seen.set(key, { value: newValue, etag: (a.body as { etag?: string }).etag ?? null });
      history.record({ process: id, type: 'ok', f, key, value, node: node.name, version: versionOf(a), index: indexOf(a) });
    } else {
      history.record({ process: id, type: outcome, f, key, value, node: node.name, error: describe(answer) });
    }
  }

  private noteIndex(answer: Answer): number {
    const index = indexOf(answer);
    if (index > this.sessionIndex) this.sessionIndex = index;
    return index;
  }

  /** The answer, or what went wrong on the way as a string (timeout, connection refused or reset…). */
  private async send(url: string, method: 'GET' | 'PUT', path: string, headers: Record<string, string>, body?: string): Promise<Answer | string> {
    try {
      const res = await request(`${url}${path}`, {
        method,
        headers,
        ...(body !== undefined ? { body } : {}),
        dispatcher: this.options.dispatcher,
        signal: AbortSignal.timeout(this.options.opTimeoutMs),
      });
      const text = await res.body.text();
      let parsed: unknown = null;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
      return { status: res.statusCode, headers: res.headers, body: parsed };
    } catch (err) {
      const e = err as { name?: string; code?: string; message?: string };
      return e.name === 'TimeoutError' || e.name === 'AbortError' ? 'timeout' : (e.code ?? e.message ?? String(err));
    }
  }
}

function errorCode(answer: Answer): string | undefined {
  return (answer.body as { error?: { code?: string } } | null)?.error?.code;
}

function outcomeOf(answer: Answer | string): 'ok' | 'fail' | 'info' {
  if (typeof answer === 'string') {
    // Refused before anything was sent: the write cannot have happened.
    return answer === 'ECONNREFUSED' ? 'fail' : 'info';
  }
  if (answer.status >= 200 && answer.status < 300) return 'ok';
  if (answer.status >= 400 && answer.status < 500) return 'fail';
  return definiteRefusals.has(errorCode(answer) ?? '') ? 'fail' : 'info';
}

function indexOf(answer: Answer): number {
  const value = answer.headers['x-conclave-index'];
  return typeof value === 'string' ? Number(value) : 0;
}

function versionOf(answer: Answer): number {
  return (answer.body as { version?: number }).version ?? 0;
}

function describe(answer: Answer | string): string {
  if (typeof answer === 'string') return answer;
  return `${answer.status} ${errorCode(answer) ?? ''}`.trim();
}
