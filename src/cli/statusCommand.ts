import { Command } from 'commander';
import { Agent, fetch } from 'undici';

import type { ClusterStatus, NodeStatus } from '../node/clusterStatus.js';

/**
 * `conclave status`: GET /api/v1/cluster/status of one node, printed as a table (or as the JSON received). A node
 * that is not the master knows only its own progress (`authoritative: false`), so the command follows, once, to
 * the master's HTTP address and shows the master's view; --no-follow shows the asked node's own view.
 */

export const defaultUrl = 'http://127.0.0.1:7400';
export const requestTimeoutMs = 10_000;

interface StatusFlags {
  url: string;
  user?: string;
  password?: string;
  json?: boolean;
  follow: boolean;
}

/** A failure the user can act on: printed as "conclave: <message>", exit 1. */
export class StatusFailure extends Error {}

interface Fetched {
  readonly url: string;
  readonly text: string;
  readonly status: ClusterStatus;
}

export function statusCommand(): Command {
  return new Command('status')
    .description("Show the cluster as its master sees it: members, roles, voters and each node's progress.")
    .option('--url <url>', 'HTTP address of any node of the cluster', defaultUrl)
    .option('--user <name>', 'user name (default: CONCLAVE_USER, else admin)')
    .option('--password <password>', 'password (default: CONCLAVE_PASSWORD; prefer the variable, flags show in ps)')
    .option('--json', 'print the JSON of GET /api/v1/cluster/status as received')
    .option('--no-follow', "show the asked node's own view even when it is not the master")
    .addHelpText(
      'after',
      '\nAsked of a node that is not the master, the answer is not authoritative (the node knows only its own\n' +
        "progress); status then asks the master at the address the cluster knows for it and shows the master's view.",
    )
    .action(async (options: StatusFlags) => {
      const agent = new Agent();
      try {
        await runStatus(options, agent);
      } catch (err) {
        if (!(err instanceof StatusFailure)) throw err;
        process.stderr.write(`conclave: ${err.message}\n`);
        process.exitCode = 1;
      } finally {
        await agent.close();
      }
    });
}

async function runStatus(options: StatusFlags, agent: Agent): Promise<void> {
  const base = normaliseUrl(options.url);
  const user = options.user ?? process.env['CONCLAVE_USER'] ?? 'admin';
  const password = options.password ?? process.env['CONCLAVE_PASSWORD'];
  const authorization = password === undefined ? undefined : `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

  let shown = await fetchStatus(base, authorization, password !== undefined, agent);
  if (!shown.status.authoritative && options.follow) {
    const asked = shown.status.answeredBy.name;
    const master = shown.status.master;
    if (master === null) {
      note(`${asked} at ${base} is not the master and no master is elected; showing ${asked}'s own view.`);
    } else {
      const masterUrl = httpUrlOf(shown.status.nodes.find((n) => n.id === master.id), base);
      if (masterUrl === null) {
        note(`${asked} at ${base} is not the master, and the master ${master.name}'s HTTP address is not known; showing ${asked}'s own view.`);
      } else {
        note(`${asked} at ${base} is not the master, so its answer is not authoritative; asking the master ${master.name} at ${masterUrl}.`);
        try {
          shown = await fetchStatus(masterUrl, authorization, password !== undefined, agent);
          if (!shown.status.authoritative) note(`${shown.status.answeredBy.name} at ${masterUrl} is no longer the master either (an election?); showing its view.`);
        } catch (err) {
          if (!(err instanceof StatusFailure)) throw err;
          note(`the master did not answer (${err.message}); showing ${asked}'s own view.`);
        }
      }
    }
  }
  process.stdout.write(options.json === true ? `${shown.text.trimEnd()}\n` : formatStatus(shown.status));
}

function note(text: string): void {
  process.stderr.write(`conclave: ${text}\n`);
}

export function normaliseUrl(raw: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new StatusFailure(`--url ${raw} is not a URL; pass one like ${defaultUrl}.`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new StatusFailure(`--url ${raw}: only http:// and https:// are supported.`);
  return url.origin;
}

/**
 * The URL of a member's HTTP API, or null when it is not known (or is a wildcard address nobody can dial). The
 * scheme is the one of the URL the user gave (`base`): the cluster status names addresses, not schemes, and the
 * members of one cluster serve their API alike (HTTPS when http.tlsCertFile is set).
 */
export function httpUrlOf(node: NodeStatus | undefined, base: string): string | null {
  if (node === undefined || node.httpAddress === null) return null;
  const scheme = base.startsWith('https:') ? 'https' : 'http';
  const wildcard = /^(0\.0\.0\.0|\[::\]):/;
  if (!wildcard.test(node.httpAddress)) return `${scheme}://${node.httpAddress}`;
  // Listening on every interface: the transport address names a dialable host more often than not.
  const port = node.httpAddress.slice(node.httpAddress.lastIndexOf(':') + 1);
  const host = node.transportAddress.slice(0, node.transportAddress.lastIndexOf(':'));
  return host === '' || wildcard.test(`${host}:`) ? null : `${scheme}://${host}:${port}`;
}

async function fetchStatus(base: string, authorization: string | undefined, passwordGiven: boolean, agent: Agent): Promise<Fetched> {
  const { body, text } = await getNodeJson(base, '/api/v1/cluster/status', { header: authorization, given: passwordGiven }, agent, {}, isClusterStatus, 'a Conclave cluster status');
  return { url: base, text, status: body };
}

/**
 * GETs `path` from a node and checks the answer's shape. Every failure is a StatusFailure that says what to do:
 * unreachable, wrong or missing credentials (401), a catalogue error, or an answer that is not `what`.
 */
export async function getNodeJson<T>(
  base: string,
  path: string,
  auth: { header: string | undefined; given: boolean },
  agent: Agent,
  headers: Record<string, string>,
  check: (body: unknown) => body is T,
  what: string,
): Promise<{ body: T; text: string }> {
  let response;
  let text: string;
  try {
    response = await fetch(`${base}${path}`, {
      dispatcher: agent,
      headers: { accept: 'application/json', ...headers, ...(auth.header === undefined ? {} : { authorization: auth.header }) },
      signal: AbortSignal.timeout(requestTimeoutMs),
    });
    text = await response.text();
  } catch (err) {
    throw new StatusFailure(describeFetchError(base, err));
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const error = catalogueError(body);
  if (response.status === 401) {
    const why = auth.given ? 'wrong credentials' : 'no credentials given';
    throw new StatusFailure(`${base} answered 401${error === null ? '' : ` ${error.code}`}: ${why}; pass --user/--password or CONCLAVE_PASSWORD.`);
  }
  if (error !== null) throw new StatusFailure(`${base} answered ${response.status} ${error.code}: ${error.message}`);
  if (response.status !== 200 || !check(body)) {
    const excerpt = text.length > 200 ? `${text.slice(0, 200)}…` : text;
    throw new StatusFailure(`${base} answered HTTP ${response.status} with something other than ${what}; is --url a Conclave node?\n${excerpt}`);
  }
  return { body, text };
}

export function describeFetchError(base: string, err: unknown): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  if (e.name === 'TimeoutError' || e.name === 'AbortError') {
    return `${base} did not answer within ${requestTimeoutMs / 1000} s; is it the right address, and is the node overloaded?`;
  }
  const code = e.cause?.code;
  if (code === 'ECONNREFUSED') return `cannot connect to ${base} (connection refused): is the node running? pass --url to name a running node.`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `cannot resolve the host of ${base} (${code}); pass --url with a reachable address.`;
  const detail = e.cause?.message ?? e.message;
  return `cannot reach ${base} (${code ?? e.name}: ${detail}): is the node running? pass --url to name a running node.`;
}

export function catalogueError(body: unknown): { code: string; message: string } | null {
  if (typeof body !== 'object' || body === null) return null;
  const error = (body as { error?: unknown }).error;
  if (typeof error !== 'object' || error === null) return null;
  const { code, message } = error as { code?: unknown; message?: unknown };
  return typeof code === 'string' ? { code, message: typeof message === 'string' ? message : '' } : null;
}

export function isClusterStatus(body: unknown): body is ClusterStatus {
  if (typeof body !== 'object' || body === null) return false;
  const b = body as Partial<Record<keyof ClusterStatus, unknown>>;
  return Array.isArray(b.nodes) && typeof b.authoritative === 'boolean' && typeof b.answeredBy === 'object' && b.answeredBy !== null;
}

/** The header, then one row per member, master first, then by name. */
export function formatStatus(status: ClusterStatus): string {
  const nameOf = (id: string) => status.nodes.find((n) => n.id === id)?.name ?? id;
  const list = (items: readonly string[]) => (items.length === 0 ? 'none' : items.join(', '));
  const answeredBy = status.authoritative
    ? `${status.answeredBy.name} (the master: authoritative)`
    : `${status.answeredBy.name} (not the master: the other members' status and progress are unknown here)`;
  const header: [string, string][] = [
    ['Cluster', status.clusterName ?? '(not formed yet)'],
    ['Cluster UUID', status.clusterUuid ?? '-'],
    ['Term', String(status.term)],
    ['Cluster-state version', String(status.version)],
    ['Commit index', String(status.commitIndex)],
    ['Master', status.master === null ? 'none elected' : `${status.master.name} (${status.master.id.slice(0, 8)})`],
    ['Voting configuration', list(status.votingConfiguration)],
    ['Voting exclusions', list(status.votingExclusions.map(nameOf))],
    ['Answered by', answeredBy],
  ];
  for (const m of status.schemaMigrations ?? []) {
    const progress = `${m.nodesDone} of ${m.nodesTotal} nodes`;
    header.push([
      `Schema migration`,
      m.state === 'failed'
        ? `${m.type} to version ${m.toVersion}: FAILED at ${m.failure?.path ?? '?'} (${m.failure?.message ?? ''}) after ${progress}; retry or abandon it`
        : `${m.type} to version ${m.toVersion}: ${progress}${m.nodesPerSecond === null ? '' : `, ${m.nodesPerSecond} nodes/s`}${m.secondsLeftEstimate === null ? '' : `, about ${m.secondsLeftEstimate} s left`}`,
    ]);
  }
  const labelWidth = Math.max(...header.map(([label]) => label.length)) + 2;
  const lines = header.map(([label, value]) => `${`${label}:`.padEnd(labelWidth)}${value}`);

  const nodes = [...status.nodes].sort((a, b) => (a.role === b.role ? a.name.localeCompare(b.name) : a.role === 'MASTER' ? -1 : 1));
  const yesNo = (b: boolean) => (b ? 'yes' : 'no');
  const columns = ['NAME', 'ID', 'TRANSPORT', 'HTTP', 'ROLES', 'STATUS', 'ROLE', 'VOTER', 'IN-SYNC', 'APPLIED', 'LAG'];
  const rows = nodes.map((n) => [
    n.name,
    n.id.slice(0, 8),
    n.transportAddress,
    n.httpAddress ?? '-',
    n.roles.join(','),
    n.status,
    n.role,
    yesNo(n.voter),
    yesNo(n.inSync),
    n.appliedIndex === null ? '-' : String(n.appliedIndex),
    n.lag === null ? '-' : String(n.lag),
  ]);
  const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i]!.length)));
  const format = (cells: string[]) => cells.map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ');
  return `${lines.join('\n')}\n\n${[format(columns), ...rows.map(format)].join('\n')}\n`;
}
