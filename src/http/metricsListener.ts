import type { FastifyInstance } from 'fastify';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type ServerOptions } from 'node:https';
import type { Logger } from 'pino';

import { ConclaveError } from '../errors/catalogue.js';
import { closeServer, listenOn } from './extraListener.js';

/**
 * The listener of metrics.port: a socket of its own for GET /metrics and nothing else, so an operator can open the
 * metrics to the scraper's network (metrics.access "open", or a firewall rule for that port alone) without opening
 * the API. Every other request is answered 404 here, before the API's app sees it. It speaks HTTPS with the API's
 * certificate when the API does.
 */
const cameForMetrics = new WeakSet<IncomingMessage>();

/** Whether a request arrived on the metrics listener. */
export function viaMetricsListener(raw: IncomingMessage): boolean {
  return cameForMetrics.has(raw);
}

/** How long a scraper's connection may stay idle, or a request take, before it is closed. */
const idleTimeoutMs = 10_000;

export class MetricsListener {
  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  /** Starts listening for `app` (which must be ready); resolves once bound. */
  static async start(
    app: FastifyInstance,
    options: { host: string; port: number; https: ServerOptions | null; handshakeTimeoutMs: number; connectionsMax: number; log: Logger },
  ): Promise<MetricsListener> {
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      const path = (req.url ?? '').split('?', 1)[0];
      if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
        const error = new ConclaveError('ROUTE_NOT_FOUND', 'This port serves GET /metrics only.');
        res.writeHead(error.status, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(error.toJSON()));
        return;
      }
      cameForMetrics.add(req);
      app.routing(req, res);
    };
    // transport.handshakeTimeoutMs: Node's default (120 s) lets any TCP client hold one of the few slots that long.
    const server: Server = options.https === null ? createHttpServer(handler) : createHttpsServer({ ...options.https, handshakeTimeout: options.handshakeTimeoutMs }, handler);
    server.maxConnections = options.connectionsMax;
    server.keepAliveTimeout = idleTimeoutMs;
    server.headersTimeout = idleTimeoutMs;
    server.requestTimeout = idleTimeoutMs;
    const port = await listenOn(server, { host: options.host, port: options.port, tls: options.https !== null, log: options.log }, 'metrics listener');
    return new MetricsListener(server, port);
  }

  /** Stops taking connections; a scrape under way finishes (cut after graceMs). */
  close(graceMs: number): Promise<void> {
    return closeServer(this.server, graceMs);
  }
}
