import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { WaitAborted, waitFor } from './tmp.js';

export const binPath = fileURLToPath(new URL('../../../bin/conclave.js', import.meta.url));

export interface NodeProcess {
  readonly child: ChildProcess;
  readonly url: string;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>;
}

/**
 * Starts `conclave start` as a real child process on a free loopback port and waits (bounded) for its
 * "listening" log line, which carries the URL.
 */
export async function startNodeProcess(dataDir: string, options: { env?: Record<string, string>; args?: string[] } = {}): Promise<NodeProcess> {
  const child = spawn(process.execPath, [binPath, 'start', '--data', dataDir, '--http-port', '0', '--transport-port', '0', ...(options.args ?? [])], {
    env: {
      PATH: process.env['PATH'] ?? '',
      CONCLAVE_ADMIN_PASSWORD: 'process-test-password',
      CONCLAVE_LOG_FORMAT: 'json',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  let gone: number | string | undefined;
  void exited.then((code) => (gone = code));
  const url = await waitFor(
    'the node to log "listening"',
    () => {
      if (gone !== undefined) throw new WaitAborted(`the node exited (${gone}) before listening:\n${output}`);
      for (const line of output.split('\n')) {
        if (line.includes('"msg":"listening"')) return (JSON.parse(line) as { url: string }).url;
      }
      return undefined;
    },
    20_000,
  ).catch((err: Error) => {
    child.kill('SIGKILL');
    throw new Error(`${err.message}\n--- node output ---\n${output}`);
  });
  return { child, url, output: () => output, exited };
}

export const processAuth = `Basic ${Buffer.from('admin:process-test-password').toString('base64')}`;
