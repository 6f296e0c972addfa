import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { freePort } from '../test/helpers/ports.js';

/**
 * A real `conclave start` child process for the bench; it shares only the port picker with test/helpers. The node
 * logs at "warn", so its "listening" line (info) never appears: the bench picks the ports itself and polls
 * /health/ready (or /health/live) instead.
 */

const binPath = fileURLToPath(new URL('../../bin/conclave.js', import.meta.url));
/** Time for a node to be ready; a cluster node also waits for an election and the repository's first entry. */
const startTimeoutMs = 30_000;
/** Longer than a clean stop needs once the bench has closed its connections, short enough not to hang a run. */
const termTimeoutMs = 10_000;
const killTimeoutMs = 5_000;
/** Another process may take the picked port between the probe and the node's bind; retry a few times. */
const startAttemptsMax = 3;

export interface BenchNode {
  readonly url: string;
  readonly pid: number;
  /** Everything the node wrote to stdout and stderr (at log level warn this should be empty). */
  output(): string;
  /** SIGTERM, then SIGKILL if the node outlives termTimeoutMs. Resolves with how it ended; safe to call twice. */
  stop(): Promise<StopOutcome>;
}

export interface StopOutcome {
  readonly exit: number | string;
  readonly killed: boolean;
}

export interface BenchNodeOptions {
  /** Fixed HTTP port (a cluster node's peers learn it); without one a free port is picked, retried on EADDRINUSE. */
  readonly httpPort?: number;
  /** Flags after `start --data DIR --host 127.0.0.1 --http-port N`. */
  readonly args?: readonly string[];
  /** Environment added to the minimal one (settings as CONCLAVE_* variables). */
  readonly env?: Readonly<Record<string, string>>;
  /** Node's own flags, before the script (for example --cpu-prof). */
  readonly execArgv?: readonly string[];
  /**
   * What "started" means: 'ready' waits for /health/ready (a master, the repository, this node in sync); 'live'
   * only for the HTTP server (a restarted replica that is still catching up).
   */
  readonly until?: 'ready' | 'live';
}

export async function startBenchNode(dataDir: string, adminPassword: string, options: BenchNodeOptions = {}): Promise<BenchNode> {
  if (options.httpPort !== undefined) return startOnce(dataDir, adminPassword, options.httpPort, options);
  let lastError: Error | undefined;
  for (let attempt = 1; attempt <= startAttemptsMax; attempt++) {
    try {
      return await startOnce(dataDir, adminPassword, await freePort(), options);
    } catch (err) {
      lastError = err as Error;
      if (!/EADDRINUSE/.test(lastError.message)) throw lastError;
    }
  }
  throw lastError!;
}

async function startOnce(dataDir: string, adminPassword: string, port: number, options: BenchNodeOptions): Promise<BenchNode> {
  const args = [...(options.execArgv ?? []), binPath, 'start', '--data', dataDir, '--host', '127.0.0.1', '--http-port', String(port), ...(options.args ?? [])];
  const child = spawn(process.execPath, args, {
    // A minimal environment: a stray CONCLAVE_* variable from the caller's shell must not change what is measured.
    env: {
      PATH: process.env['PATH'] ?? '',
      CONCLAVE_ADMIN_PASSWORD: adminPassword,
      CONCLAVE_LOG_LEVEL: 'warn',
      CONCLAVE_LOG_FORMAT: 'json',
      // Every client of the bench is the one user admin: the per-user write rate limit (2,000 a second per node by
      // default) would refuse a node of one its load with RATE_LIMITED instead of measuring it.
      CONCLAVE_AUTH_USER_WRITES_PER_SECOND_MAX: '1000000',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = exitOf(child);
  let exit: number | string | undefined;
  void exited.then((code) => (exit = code));

  const url = `http://127.0.0.1:${port}`;
  const node: BenchNode = {
    url,
    pid: child.pid ?? -1,
    output: () => output,
    stop: onceOnly(() => stopChild(child, exited)),
  };
  const probe = `${url}/health/${options.until ?? 'ready'}`;
  const deadline = Date.now() + startTimeoutMs;
  while (true) {
    if (exit !== undefined) throw new Error(`the node exited (${exit}) before it was ready:\n${output}`);
    if (await answers200(probe)) return node;
    if (Date.now() > deadline) {
      await node.stop();
      throw new Error(`${probe} did not answer 200 within ${startTimeoutMs} ms:\n${output}`);
    }
    await sleep(20);
  }
}

export async function answers200(url: string): Promise<boolean> {
  try {
    // A fresh connection per probe (fetch's default agent) is fine here; the measured traffic uses its own pools.
    const response = await fetch(url, { signal: AbortSignal.timeout(1_000) });
    await response.arrayBuffer();
    return response.status === 200;
  } catch {
    return false;
  }
}

async function stopChild(child: ChildProcess, exited: Promise<number | string>): Promise<StopOutcome> {
  if (child.exitCode !== null || child.signalCode !== null) return { exit: child.exitCode ?? child.signalCode!, killed: false };
  child.kill('SIGTERM');
  const graceful = await within(exited, termTimeoutMs);
  if (graceful !== undefined) return { exit: graceful, killed: false };
  child.kill('SIGKILL');
  const killed = await within(exited, killTimeoutMs);
  return { exit: killed ?? 'still running after SIGKILL', killed: true };
}

function exitOf(child: ChildProcess): Promise<number | string> {
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)));
}

function within<T>(promise: Promise<T>, timeoutMs: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function onceOnly<T>(action: () => Promise<T>): () => Promise<T> {
  let result: Promise<T> | undefined;
  return () => (result ??= action());
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
