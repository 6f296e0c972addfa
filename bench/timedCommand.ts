import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';

import { sampleRss } from './processMemory.js';

/**
 * A command run to its end and timed from spawn to exit, with its peak resident memory: how the bench runs the
 * commands an operator would (`conclave restore`, `etcdctl snapshot save` and `snapshot restore`).
 */

export interface TimedCommand {
  readonly exit: number | string;
  readonly wallMs: number;
  /** Largest RSS of the command's process seen while it ran; null when /proc could not be read. */
  readonly peakRssBytes: number | null;
  /** The end of what it wrote to stdout and stderr. */
  readonly output: string;
}

const outputTailChars = 16 * 1024;

export function runTimed(command: string, args: readonly string[], env: Readonly<Record<string, string>>, timeoutMs: number): Promise<TimedCommand> {
  return new Promise((resolve, reject) => {
    const startMs = performance.now();
    const child = spawn(command, args, { env: { PATH: process.env['PATH'] ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
    const rss = child.pid === undefined ? null : sampleRss(child.pid);
    let output = '';
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-outputTailChars);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', (err) => {
      rss?.stop();
      reject(err);
    });
    child.on('exit', (code, signal) => {
      const wallMs = performance.now() - startMs;
      // The process is gone by now: the last sample read nothing, the earlier ones hold the peak.
      const peakRssBytes = rss?.stop().peakBytes ?? null;
      resolve({ exit: code ?? signal ?? -1, wallMs, peakRssBytes, output });
    });
  });
}
