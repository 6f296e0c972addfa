import { createServer } from 'node:net';

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

export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < attemptsMax; attempt++) {
    const port = portLow + Math.floor(Math.random() * (portHigh - portLow));
    if (handedOut.has(port)) continue;
    if (await binds(port)) {
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
