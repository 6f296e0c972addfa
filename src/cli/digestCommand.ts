import { Command } from 'commander';
import { Agent } from 'undici';

import { defaultUrl, getNodeJson, httpUrlOf, isClusterStatus, normaliseUrl, StatusFailure } from './statusCommand.js';

/**
 * `conclave digest`: GET /api/v1/cluster/digest of one node, or with --all of every member the cluster status
 * lists, and whether they agree. Digests compare only at the same applied index: when the members answer at
 * different indexes, they are asked once more to answer at the highest one (X-Conclave-Min-Index).
 *
 * Exit codes: 0 when every member answered at one index with one digest; 1 when members at the same applied index
 * disagree; 2 when not every member could be compared (unreachable, or still at different indexes).
 */

export interface DigestAnswer {
  readonly node: string;
  readonly nodeId: string;
  readonly appliedIndex: number;
  readonly digest: string;
  readonly counts: { nodes: number; users: number; binaryReferences: number; blobs: number; versions: number };
  readonly blobsMissing: number;
}

interface DigestFlags {
  url: string;
  all?: boolean;
  user?: string;
  password?: string;
  json?: boolean;
}

interface Member {
  readonly name: string;
  readonly url: string | null;
  answer?: DigestAnswer;
  failure?: string;
}

export function digestCommand(): Command {
  return new Command('digest')
    .description("Show a node's content digest, or with --all every member's, and whether they agree.")
    .option('--url <url>', 'HTTP address of a node of the cluster', defaultUrl)
    .option('--all', 'ask every member listed by the cluster status and compare their digests')
    .option('--user <name>', 'an admin user (default: CONCLAVE_USER, else admin)')
    .option('--password <password>', 'password (default: CONCLAVE_PASSWORD; prefer the variable, flags show in ps)')
    .option('--json', 'print the answers as JSON')
    .addHelpText(
      'after',
      '\nTwo nodes that applied the same journal prefix have the same digest. Use it after maintenance: with --all,\n' +
        'exit code 1 means members at the same applied index hold different content; 2 means some member could\n' +
        'not be compared (unreachable, or at another applied index while writes go on).',
    )
    .action(async (options: DigestFlags) => {
      const agent = new Agent();
      try {
        process.exitCode = options.all === true ? await runAll(options, agent) : await runOne(options, agent);
      } catch (err) {
        if (!(err instanceof StatusFailure)) throw err;
        process.stderr.write(`conclave: ${err.message}\n`);
        process.exitCode = 1;
      } finally {
        await agent.close();
      }
    });
}

function authorizationOf(options: DigestFlags): { header: string | undefined; given: boolean } {
  const user = options.user ?? process.env['CONCLAVE_USER'] ?? 'admin';
  const password = options.password ?? process.env['CONCLAVE_PASSWORD'];
  return { header: password === undefined ? undefined : `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`, given: password !== undefined };
}

async function runOne(options: DigestFlags, agent: Agent): Promise<number> {
  const base = normaliseUrl(options.url);
  const auth = authorizationOf(options);
  const answer = (await getNodeJson(base, '/api/v1/cluster/digest', auth, agent, {}, isDigestAnswer, 'a Conclave content digest')).body;
  if (options.json === true) process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
  else {
    const c = answer.counts;
    process.stdout.write(
      `Node:           ${answer.node}\nApplied index:  ${answer.appliedIndex}\nDigest:         ${answer.digest}\n` +
        `Content:        ${count(c.nodes, 'node')}, ${count(c.users, 'user')}, ${count(c.binaryReferences, 'binary reference')} (${count(c.blobs, 'blob')})\n` +
        `Blobs missing:  ${answer.blobsMissing}\n`,
    );
  }
  return 0;
}

async function runAll(options: DigestFlags, agent: Agent): Promise<number> {
  const base = normaliseUrl(options.url);
  const auth = authorizationOf(options);
  const status = (await getNodeJson(base, '/api/v1/cluster/status', auth, agent, {}, isClusterStatus, 'a Conclave cluster status')).body;
  const members: Member[] = status.nodes.map((node) => ({ name: node.name, url: httpUrlOf(node, base) }));
  await askAll(members, auth, agent, {});
  const indexes = new Set(members.flatMap((m) => (m.answer === undefined ? [] : [m.answer.appliedIndex])));
  if (indexes.size > 1) {
    // Writes in flight, or a member catching up: ask every member to answer once it has applied the highest index.
    const highest = Math.max(...indexes);
    await askAll(members, auth, agent, { 'x-conclave-min-index': String(highest) });
  }
  const verdict = compare(members);
  if (options.json === true) {
    const out = { agree: verdict.code === 0, verdict: verdict.text, members: members.map((m) => ({ name: m.name, url: m.url, ...(m.answer ? { answer: m.answer } : { failure: m.failure }) })) };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } else {
    process.stdout.write(`${formatMembers(members)}\n${verdict.text}\n`);
  }
  return verdict.code;
}

async function askAll(members: Member[], auth: { header: string | undefined; given: boolean }, agent: Agent, headers: Record<string, string>): Promise<void> {
  await Promise.all(
    members.map(async (member) => {
      if (member.url === null) {
        member.failure = 'its HTTP address is not known';
        return;
      }
      try {
        member.answer = (await getNodeJson(member.url, '/api/v1/cluster/digest', auth, agent, headers, isDigestAnswer, 'a Conclave content digest')).body;
        delete member.failure;
      } catch (err) {
        if (!(err instanceof StatusFailure)) throw err;
        member.failure = err.message;
      }
    }),
  );
}

/** The verdict and its exit code (see the file comment). */
export function compare(members: ReadonlyArray<{ name: string; answer?: DigestAnswer; failure?: string }>): { code: number; text: string } {
  const byIndex = new Map<number, Map<string, string[]>>();
  for (const m of members) {
    if (m.answer === undefined) continue;
    const digests = byIndex.get(m.answer.appliedIndex) ?? new Map<string, string[]>();
    digests.set(m.answer.digest, [...(digests.get(m.answer.digest) ?? []), m.name]);
    byIndex.set(m.answer.appliedIndex, digests);
  }
  const disagreements = [...byIndex].filter(([, digests]) => digests.size > 1);
  if (disagreements.length > 0) {
    const lines = disagreements.map(([index, digests]) => `at applied index ${index}: ${[...digests.values()].map((names) => names.join(', ')).join(' | ')}`);
    return { code: 1, text: `DISAGREE: members at the same applied index hold different content (groups by digest):\n  ${lines.join('\n  ')}` };
  }
  const failed = members.filter((m) => m.answer === undefined);
  if (failed.length > 0) {
    return { code: 2, text: `Not compared: ${failed.map((m) => `${m.name} (${m.failure ?? 'no answer'})`).join('; ')}.` };
  }
  if (byIndex.size > 1) {
    return { code: 2, text: `Not compared: the members are at different applied indexes (${[...byIndex.keys()].sort((a, b) => a - b).join(', ')}); writes are going on. Run again.` };
  }
  const [index] = [...byIndex.keys()];
  return { code: 0, text: `All ${members.length} members agree at applied index ${index}.` };
}

/** One row per member; those that did not answer show dashes (the verdict says why). */
function formatMembers(members: readonly Member[]): string {
  const columns = ['NAME', 'APPLIED', 'DIGEST', 'NODES', 'USERS', 'BLOBS', 'MISSING'];
  const rows = members.map((m) =>
    m.answer === undefined
      ? [m.name, '-', '-', '-', '-', '-', '-']
      : [m.name, String(m.answer.appliedIndex), m.answer.digest.slice(0, 16), String(m.answer.counts.nodes), String(m.answer.counts.users), String(m.answer.counts.blobs), String(m.answer.blobsMissing)],
  );
  const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i]!.length)));
  const format = (cells: string[]) => cells.map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ');
  return [format(columns), ...rows.map(format)].join('\n');
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

function isDigestAnswer(body: unknown): body is DigestAnswer {
  if (typeof body !== 'object' || body === null) return false;
  const b = body as Partial<Record<keyof DigestAnswer, unknown>>;
  return typeof b.node === 'string' && typeof b.appliedIndex === 'number' && typeof b.digest === 'string' && typeof b.counts === 'object' && typeof b.blobsMissing === 'number';
}
