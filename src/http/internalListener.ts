import type { FastifyInstance } from 'fastify';
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Logger } from 'pino';

import { RateLimitedLog } from '../transport/rateLimitedLog.js';
import type { NodeTlsMaterial } from '../replication/internalHttp.js';
import { closeServer, listenOn } from './extraListener.js';

/**
 * The internal listener: a second socket for the same Fastify app that takes node-to-node HTTP (requests a replica
 * forwards to the master, blob copies, snapshot downloads), run whenever the transport or the API uses TLS.
 *
 * Why a listener of its own rather than the API's: the certificate a node shows its clients may come from a public
 * CA, while nodes trust only the cluster's own CA (transport.tlsCaFile) and prove themselves with their transport
 * certificates. Here the server shows the transport certificate and requires one the cluster CA signed from every
 * client (TLS refuses anyone else before a byte of HTTP is read); the API's listener then refuses every
 * node-to-node request, so none can travel in clear by mistake. When only the API uses TLS (no TLS between nodes),
 * the internal listener speaks plain HTTP, like the transport.
 */
const cameInternally = new WeakSet<IncomingMessage>();

/** Whether a request arrived on the internal listener. */
export function viaInternalListener(raw: IncomingMessage): boolean {
  return cameInternally.has(raw);
}

export class InternalListener {
  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  /** Starts listening for `app` (which must be ready); resolves once bound. */
  static async start(
    app: FastifyInstance,
    options: {
      host: string;
      port: number;
      tls: NodeTlsMaterial | null;
      log: Logger;
      /** transport.handshakeTimeoutMs: Node's default (120 s) lets any TCP client hold a descriptor that long. */
      handshakeTimeoutMs: number;
      /** http.internalConnectionsMax: only nodes call here, so a few per peer is plenty. */
      connectionsMax: number;
      /** transport.refusalLogLinesPerMinuteMax: whoever reaches the port provokes these lines. */
      refusalLogLinesPerMinuteMax: number;
    },
  ): Promise<InternalListener> {
    const handler = (req: IncomingMessage, res: Parameters<FastifyInstance['routing']>[1]) => {
      cameInternally.add(req);
      app.routing(req, res);
    };
    const server: Server =
      options.tls === null
        ? createHttpServer(handler)
        : createHttpsServer(
            { cert: options.tls.cert, key: options.tls.key, ca: options.tls.ca, requestCert: true, rejectUnauthorized: true, handshakeTimeout: options.handshakeTimeoutMs },
            handler,
          );
    server.maxConnections = options.connectionsMax;
    if (options.tls !== null) {
      const refusalLog = new RateLimitedLog(options.log, { linesPerWindowMax: options.refusalLogLinesPerMinuteMax, windowMs: 60_000 });
      server.on('tlsClientError', (err: Error, socket: { remoteAddress?: string }) => {
        refusalLog.warn('TLS_HANDSHAKE_FAILED', { code: 'TLS_HANDSHAKE_FAILED', remoteAddress: socket.remoteAddress ?? null, err: err.message }, 'refused a TLS client on the internal listener: node-to-node HTTP needs a certificate signed by transport.tlsCaFile');
      });
    }
    const port = await listenOn(server, { host: options.host, port: options.port, tls: options.tls !== null, log: options.log }, 'internal listener');
    return new InternalListener(server, port);
  }

  /** Stops taking connections; requests under way finish (cut after graceMs). */
  close(graceMs: number): Promise<void> {
    return closeServer(this.server, graceMs);
  }
}
