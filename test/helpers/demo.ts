import { createServer } from 'node:net';

import type { CliProcess } from './cli.js';
import { WaitAborted, waitFor } from './tmp.js';

/**
 * What the tests of `conclave demo` share: a base port whose ports the demo will take are free, and whether a
 * process still runs.
 */

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A base port P with P+1..P+3 and P+101..P+103 free, below the usual ephemeral range. */
export async function freeBasePort(): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const base = 10_000 + Math.floor(Math.random() * 20_000);
    let free = true;
    for (const port of [1, 2, 3, 101, 102, 103].map((d) => base + d)) free = free && (await portFree(port));
    if (free) return base;
  }
  throw new Error('no free base port found');
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits until `conclave demo` says its cluster is ready (or fails at once if it exited); returns what it printed. */
export async function demoReady(demo: CliProcess): Promise<string> {
  await waitFor(
    'the demo to be ready',
    () => {
      if (demo.stdout().includes('Press Ctrl-C')) return true;
      if (demo.exitCode() !== undefined) throw new WaitAborted(`the demo exited (${demo.exitCode()}):\n${demo.stdout()}\n${demo.stderr()}`);
      return undefined;
    },
    40_000,
  );
  return demo.stdout();
}
