import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';

import { invariant } from '../errors/catalogue.js';

/**
 * What the node's extra listeners (internal, metrics) share beside the API's own: binding, and a stop that lets
 * requests under way finish.
 */

/** Binds `server`; resolves with the port bound (the one asked may be 0). `what` names it in the log. */
export async function listenOn(server: Server, options: { host: string; port: number; tls: boolean; log: Logger }, what: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: options.host, port: options.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo | null;
  invariant(address !== null && typeof address === 'object', `the ${what} is bound to a TCP address`);
  options.log.info({ port: address.port, tls: options.tls }, `${what} listening`);
  return address.port;
}

/** Stops taking connections; requests under way finish (cut after graceMs). */
export async function closeServer(server: Server, graceMs: number): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const timer = setTimeout(() => server.closeAllConnections(), graceMs);
  try {
    await closed;
  } finally {
    clearTimeout(timer);
  }
}
