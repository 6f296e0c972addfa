import { spawn, type ChildProcess } from 'node:child_process';

import { binPath } from './process.js';
export { freePort } from './ports.js';
import { WaitAborted, waitFor } from './tmp.js';

/** A `conclave` child process started with exactly the given arguments and environment (plus PATH). */
export interface CliProcess {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** The exit code (or signal name), once the process has exited; undefined while it runs. */
  exitCode(): number | string | undefined;
  exited: Promise<number | string>;
}

export function spawnConclave(args: readonly string[], env: Record<string, string> = {}): CliProcess {
  const child = spawn(process.execPath, [binPath, ...args], {
    env: { PATH: process.env['PATH'] ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  let code: number | string | undefined;
  // 'close' (not 'exit'): by then both pipes are drained, so stdout() and stderr() are complete.
  const exited = new Promise<number | string>((resolve) =>
    child.on('close', (c, signal) => {
      code = c ?? signal ?? -1;
      resolve(code);
    }),
  );
  return { child, stdout: () => stdout, stderr: () => stderr, exitCode: () => code, exited };
}

/** Runs a short-lived `conclave` command to its end (bounded) and returns what it printed. */
export async function runConclave(
  args: readonly string[],
  env: Record<string, string> = {},
  timeoutMs = 15_000,
): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const proc = spawnConclave(args, env);
  try {
    const code = await waitFor(`conclave ${args.join(' ')} to exit`, () => proc.exitCode(), timeoutMs);
    return { code, stdout: proc.stdout(), stderr: proc.stderr() };
  } finally {
    await killAndWait(proc);
  }
}

/** Waits (bounded) for the JSON "listening" log line and returns it. */
export function waitListening(proc: CliProcess, timeoutMs = 20_000): Promise<{ url: string; port: number }> {
  return waitFor(
    'the node to log "listening"',
    () => {
      for (const line of proc.stdout().split('\n')) {
        if (line.includes('"msg":"listening"')) return JSON.parse(line) as { url: string; port: number };
      }
      const code = proc.exitCode();
      if (code !== undefined) {
        throw new WaitAborted(`the node exited (${code}) before listening:\n${proc.stdout()}\n${proc.stderr()}`);
      }
      return undefined;
    },
    timeoutMs,
  );
}

/** SIGKILLs the process unless it already exited, and waits (bounded) until it has. */
export async function killAndWait(proc: { child: ChildProcess; exited: Promise<number | string> }): Promise<void> {
  if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill('SIGKILL');
  let done = false;
  void proc.exited.then(() => (done = true));
  await waitFor('the child process to exit', () => (done ? true : undefined), 10_000);
}

