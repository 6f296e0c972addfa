import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Ports for test and bench processes that must be named before the process starts (seeds name each other's
 * transport ports). Asking the OS for port 0 hands out ports from the ephemeral range, and the OS hands the very
 * same range to outgoing connections: a port we probed free became the local end of some other test's client
 * connection before our node could bind it (EADDRINUSE in CI). So we draw from below the ephemeral range instead
 * (Linux's default range starts at 32768), where only listeners live, and probe that the port binds.
 */
const portLow = 20_000;
const portHigh = 32_000;
const attemptsMax = 200;
const handedOut = new Set<number>();

/**
 * A port handed out stays this process's until it exits, across processes too: test files run in parallel
 * processes, and a node that a test stops and starts again on its port (a catch-up, a restart) leaves the port
 * unbound meanwhile — another process's probe found it free and its node took it (EADDRINUSE in CI's bench run,
 * beside the recovery tests). Each port handed out is claimed by a file naming this process, created exclusively;
 * a claim whose process is gone is taken over; the files go when this process exits.
 */
const claimsDir = join(tmpdir(), 'conclave-test-ports');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function claim(port: number): boolean {
  mkdirSync(claimsDir, { recursive: true });
  const file = join(claimsDir, String(port));
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      if (handedOut.size === 0) process.once('exit', releaseClaims);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let owner = Number.NaN;
    try {
      owner = Number(readFileSync(file, 'utf8'));
    } catch {
      // Released between the two calls: try again.
    }
    if (Number.isSafeInteger(owner) && owner > 0 && alive(owner)) return false;
    try {
      unlinkSync(file);
    } catch {
      // Another process took the stale claim over first; the exclusive create decides.
    }
  }
  return false;
}

function releaseClaims(): void {
  for (const port of handedOut) {
    try {
      unlinkSync(join(claimsDir, String(port)));
    } catch {
      // Gone already.
    }
  }
}

export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < attemptsMax; attempt++) {
    const port = portLow + Math.floor(Math.random() * (portHigh - portLow));
    if (handedOut.has(port)) continue;
    if (await binds(port)) {
      if (!claim(port)) continue;
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free loopback port in ${portLow}–${portHigh} after ${attemptsMax} attempts`);
}

function binds(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
