import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Command } from 'commander';
import { Agent, fetch } from 'undici';

import { clusterSecretWeakness, generateClusterSecret } from '../config/clusterSecret.js';

/**
 * `conclave demo`: a throwaway cluster of N `conclave start` processes on loopback, for trying Conclave out. Each
 * node's output goes to DIR/node-i.log (never to the console); Ctrl-C stops them all gracefully. A node that exits
 * while the demo runs (killed to try a failover) leaves the others running: the demo says how to start it again,
 * and stops only once every node is gone.
 */

const binPath = fileURLToPath(new URL('../../../bin/conclave.js', import.meta.url));
const host = '127.0.0.1';
const nodesMax = 7;
const readyTimeoutMs = 30_000;
/** A node's own graceful stop waits up to http.shutdownGraceMs (15 s) for requests; ours are done by then. */
const stopTimeoutMs = 20_000;
const killTimeoutMs = 5_000;
const tailLines = 20;

interface DemoFlags {
  nodes: string;
  basePort: string;
  data?: string;
}

interface DemoNode {
  readonly name: string;
  readonly dir: string;
  readonly log: string;
  readonly httpPort: number;
  readonly transportPort: number;
  readonly url: string;
  child: ChildProcess | null;
  exit: { code: number | null; signal: NodeJS.Signals | null } | null;
  exited: Promise<void>;
}

interface Credentials {
  readonly password: string;
  readonly clusterSecret: string;
}

export function demoCommand(): Command {
  return new Command('demo')
    .description(`Run a throwaway cluster of N nodes on ${host} (one process each) until Ctrl-C.`)
    .option('--nodes <n>', `number of nodes, 1 to ${nodesMax}`, '3')
    .option('--base-port <port>', 'node i listens for HTTP on port+i and for the cluster transport on port+100+i', '7400')
    .option('--data <dir>', 'keep data (DIR/node-i) and logs (DIR/node-i.log) in DIR (default: a temporary directory, removed on exit)')
    .addHelpText(
      'after',
      '\nEvery node gets the same generated cluster secret and admin password (printed once the cluster is ready;\n' +
        'with --data they are kept in DIR/demo-credentials.json, so a second run reuses the same repository).\n' +
        'Each node writes its log to DIR/node-i.log.',
    )
    .action(async (options: DemoFlags) => {
      process.exit(await runDemo(options));
    });
}

function parseIntFlag(flag: string, raw: string, min: number, max: number): number {
  const value = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    process.stderr.write(`conclave: ${flag} must be an integer from ${min} to ${max} (got ${raw}).\n`);
    process.exit(2);
  }
  return value;
}

async function runDemo(options: DemoFlags): Promise<number> {
  const count = parseIntFlag('--nodes', options.nodes, 1, nodesMax);
  const basePort = parseIntFlag('--base-port', options.basePort, 1, 65535 - 100 - nodesMax);
  const kept = options.data !== undefined;
  const root = kept ? resolve(options.data!) : mkdtempSync(join(tmpdir(), 'conclave-demo-'));
  mkdirSync(root, { recursive: true });
  const cleanup = () => {
    if (!kept) rmSync(root, { recursive: true, force: true });
  };

  const names = Array.from({ length: count }, (_, i) => `node-${i + 1}`);
  const nodes: DemoNode[] = names.map((name, i) => ({
    name,
    dir: join(root, name),
    log: join(root, `${name}.log`),
    httpPort: basePort + 1 + i,
    transportPort: basePort + 101 + i,
    url: `http://${host}:${basePort + 1 + i}`,
    child: null,
    exit: null,
    exited: Promise.resolve(),
  }));

  const busy = await busyPorts(nodes.flatMap((n) => [n.httpPort, n.transportPort]));
  if (busy.length > 0) {
    process.stderr.write(`conclave: port${busy.length > 1 ? 's' : ''} ${busy.join(', ')} ${busy.length > 1 ? 'are' : 'is'} in use; pick another --base-port.\n`);
    cleanup();
    return 1;
  }

  const credentials = loadCredentials(root, kept);
  const secretFile = join(root, 'cluster-secret');
  writeFileSync(secretFile, `${credentials.clusterSecret}\n`, { mode: 0o600 });
  chmodSync(secretFile, 0o600);
  const seeds = nodes.map((n) => `${host}:${n.transportPort}`);
  const agent = new Agent();
  // The first of: a signal (0), a node that exits on its own (1), or a start that fails (1). From then on the demo
  // is stopping: a node's exit is expected and polling ends.
  let stopping = false;
  let resolveFinished!: (code: number) => void;
  const finished = new Promise<number>((r) => (resolveFinished = r));
  const finish = (code: number) => {
    if (stopping) return;
    stopping = true;
    resolveFinished(code);
  };

  // A safety net for a crash of this process: no child outlives it. (Only kill -9 of the demo orphans them.)
  const killAll = () => nodes.forEach((n) => n.child !== null && n.exit === null && n.child.kill('SIGKILL'));
  process.on('exit', killAll);

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      process.stderr.write(`\nconclave demo: ${signal}: stopping ${count} node${count > 1 ? 's' : ''}…\n`);
      finish(0);
    } else {
      process.stderr.write(`conclave demo: second ${signal}: killing the nodes.\n`);
      killAll();
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A closed terminal too: killed by SIGHUP, the demo would leave the nodes (their own process groups) running.
  process.on('SIGHUP', onSignal);

  const startArgs = (node: DemoNode) => [
    'start',
    '--data', node.dir,
    '--name', node.name,
    '--host', host,
    '--http-port', String(node.httpPort),
    '--transport-port', String(node.transportPort),
    // From a private file, never argv (a command line shows in `ps` to every user of the machine): the command the
    // demo prints to restart a killed node can name the same file.
    '--cluster-secret-file', secretFile,
    '--initial-master-nodes', names.join(','),
    ...seeds.flatMap((s) => ['--seed', s]),
  ];
  let ready = false;
  for (const node of nodes) {
    mkdirSync(node.dir, { recursive: true, mode: 0o700 });
    // A node refuses a data directory other users may enter; one left by an older demo is brought in line.
    chmodSync(node.dir, 0o700);
    const fd = openSync(node.log, 'a');
    const child = spawn(process.execPath, [binPath, ...startArgs(node)], {
      env: { ...childEnv(), CONCLAVE_ADMIN_PASSWORD: credentials.password },
      stdio: ['ignore', fd, fd],
      // Their own process group: Ctrl-C reaches only the demo, which then stops each node exactly once.
      detached: true,
    });
    closeSync(fd);
    node.child = child;
    node.exited = new Promise((r) =>
      child.on('exit', (code, signal) => {
        node.exit = { code, signal };
        r();
        if (stopping) return;
        const how = signal ?? `code ${code}`;
        const left = nodes.filter((n) => n.exit === null);
        // Before the cluster was ready, an exit is a failed start; once every node is gone there is nothing to run.
        if (!ready || left.length === 0) {
          process.stderr.write(`\nconclave demo: ${node.name} exited unexpectedly (${how}); the last lines of ${node.log}:\n${tail(node.log)}\n`);
          finish(1);
          return;
        }
        process.stderr.write(restartNotice(node, how, left, startArgs(node), root, kept));
      }),
    );
  }

  if (await waitReady(nodes, agent)) {
    ready = true;
    const master = await findMaster(nodes, agent);
    if (!stopping) process.stdout.write(banner(nodes, master, credentials, root, kept));
  }
  const code = await finished;
  await agent.close();
  await stopAll(nodes);
  process.removeListener('exit', killAll);
  cleanup();
  if (code === 0) {
    const unclean = nodes.filter((n) => n.exit === null || n.exit.code !== 0).map((n) => `${n.name} (${n.exit === null ? 'still running' : (n.exit.signal ?? `code ${n.exit.code}`)})`);
    const how = unclean.length === 0 ? 'every node stopped cleanly' : `the nodes stopped, not all cleanly: ${unclean.join(', ')}`;
    process.stderr.write(`conclave demo: ${how}${kept ? `; data and logs kept in ${root}` : ''}.\n`);
  }
  return code;

  /**
   * Polls /health/ready of every node until all answer 200 (true); false once the demo is stopping (a signal, a
   * node that exited) or after 30 s, which finishes the demo with 1.
   */
  async function waitReady(all: DemoNode[], dispatcher: Agent): Promise<boolean> {
    const deadline = Date.now() + readyTimeoutMs;
    const last = new Map<string, string>();
    const pending = new Set(all);
    while (pending.size > 0) {
      for (const node of [...pending]) {
        if (stopping) return false;
        try {
          const res = await fetch(`${node.url}/health/ready`, { dispatcher, signal: AbortSignal.timeout(2_000) });
          const text = await res.text();
          if (res.status === 200) pending.delete(node);
          else last.set(node.name, `HTTP ${res.status} ${text}`);
        } catch (err) {
          last.set(node.name, (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message);
        }
      }
      if (pending.size === 0) break;
      if (stopping) return false;
      if (Date.now() > deadline) {
        const report = [...pending].map((n) => `  ${n.name} (${n.url}/health/ready: ${last.get(n.name) ?? 'no answer'}); the last lines of ${n.log}:\n${tail(n.log)}`);
        process.stderr.write(`conclave demo: not every node was ready within ${readyTimeoutMs / 1000} s:\n${report.join('\n')}\n`);
        finish(1);
        return false;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    return true;
  }
}

/**
 * What the demo prints when a node exits while the others run: they go on (a failover to try), and the command
 * that starts the node again on its own data (it rejoins and catches up). The admin password is not needed again.
 */
function restartNotice(node: DemoNode, how: string, left: DemoNode[], args: string[], root: string, kept: boolean): string {
  const quote = (arg: string) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`);
  return [
    '',
    `conclave demo: ${node.name} exited (${how}); ${left.map((n) => n.name).join(', ')} keep${left.length === 1 ? 's' : ''} running (its log: ${node.log}).`,
    `To start ${node.name} again (it rejoins the cluster and catches up), in another terminal:`,
    `  ${[process.execPath, binPath, ...args].map(quote).join(' ')} >> ${quote(node.log)} 2>&1`,
    kept ? '' : `Stop it before this demo ends: the demo removes ${root} on exit.`,
    '',
  ].join('\n');
}

/** The environment of the nodes: ours without CONCLAVE_* settings (the demo decides them), except the log level. */
function childEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined) continue;
    if (key.startsWith('CONCLAVE_') && key !== 'CONCLAVE_LOG_LEVEL') continue;
    env[key] = value;
  }
  env['CONCLAVE_LOG_FORMAT'] = 'json';
  return env;
}

/** A fresh password and secret; with --data, the ones of an earlier run in the same directory. */
function loadCredentials(root: string, kept: boolean): Credentials {
  const file = join(root, 'demo-credentials.json');
  if (kept && existsSync(file)) {
    const saved = JSON.parse(readFileSync(file, 'utf8')) as Partial<Credentials>;
    // A secret saved by an older release may be weaker than nodes now accept: such a one is replaced.
    if (typeof saved.password === 'string' && typeof saved.clusterSecret === 'string' && clusterSecretWeakness(saved.clusterSecret) === null) {
      return { password: saved.password, clusterSecret: saved.clusterSecret };
    }
  }
  const credentials = { password: randomBytes(15).toString('base64url'), clusterSecret: generateClusterSecret() };
  if (kept) writeFileSync(file, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600 });
  return credentials;
}

/** The ports among `ports` that something on this host already listens on. */
async function busyPorts(ports: number[]): Promise<number[]> {
  const busy: number[] = [];
  for (const port of ports) {
    const free = await new Promise<boolean>((r) => {
      const server = createServer();
      server.once('error', () => r(false));
      server.listen(port, host, () => server.close(() => r(true)));
    });
    if (!free) busy.push(port);
  }
  return busy;
}

async function findMaster(nodes: DemoNode[], dispatcher: Agent): Promise<DemoNode | null> {
  for (const node of nodes) {
    const res = await fetch(`${node.url}/health/master`, { dispatcher, signal: AbortSignal.timeout(2_000) }).catch(() => null);
    await res?.text();
    if (res?.status === 200) return node;
  }
  return null;
}

function banner(nodes: DemoNode[], master: DemoNode | null, credentials: Credentials, root: string, kept: boolean): string {
  const nameWidth = Math.max(...nodes.map((n) => n.name.length));
  const urlWidth = Math.max(...nodes.map((n) => n.url.length));
  const rows = nodes.map((n) => `  ${n.name.padEnd(nameWidth)}  ${n.url.padEnd(urlWidth)}  ${(n === master ? 'master' : 'replica').padEnd(7)}  log: ${n.log}  (pid ${n.child?.pid})`);
  const target = master ?? nodes[0]!;
  const other = nodes.find((n) => n !== target) ?? target;
  const auth = `admin:${credentials.password}`;
  return [
    '',
    `A Conclave cluster of ${nodes.length} node${nodes.length > 1 ? 's' : ''} is ready (data and logs in ${root}${kept ? '' : ', removed on exit'}):`,
    '',
    ...rows,
    '',
    'Log in as',
    '  user:     admin',
    `  password: ${credentials.password}`,
    '',
    `Try (writes go to the master${master === null ? '; none was elected a moment ago, so this may answer NOT_MASTER' : `, ${target.name}`}):`,
    `  curl -s -u ${auth} -X PUT ${target.url}/api/v1/content/hello -H 'content-type: application/json' -d '{"properties": {"greeting": "hello"}}'`,
    `  curl -s -u ${auth} ${other.url}/api/v1/content/hello`,
    `  CONCLAVE_PASSWORD=${credentials.password} npx conclave status --url ${other.url}`,
    '',
    'Press Ctrl-C to stop every node.',
    '',
  ].join('\n');
}

/** SIGTERM to every running node, a bounded wait, then SIGKILL for any that did not stop. */
async function stopAll(nodes: DemoNode[]): Promise<void> {
  const running = nodes.filter((n) => n.child !== null && n.exit === null);
  for (const node of running) node.child!.kill('SIGTERM');
  const all = Promise.all(running.map((n) => n.exited));
  if (await within(all, stopTimeoutMs)) return;
  for (const node of running) {
    if (node.exit !== null) continue;
    process.stderr.write(`conclave demo: ${node.name} did not stop within ${stopTimeoutMs / 1000} s; killing it.\n`);
    node.child!.kill('SIGKILL');
  }
  if (!(await within(all, killTimeoutMs))) process.stderr.write('conclave demo: a node did not exit after SIGKILL.\n');
}

async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([promise.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The last lines of a log file ("(empty)" when there are none). */
function tail(file: string): string {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return '    (no log)';
  }
  const lines = text.trimEnd().split('\n').slice(-tailLines);
  return lines.length === 1 && lines[0] === '' ? '    (empty)' : lines.map((l) => `    ${l}`).join('\n');
}
