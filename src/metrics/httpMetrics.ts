import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, Histogram, type Registry } from 'prom-client';

/** The route label of a request no route matched: one value, whatever path was asked for. */
export const unmatchedRoute = 'unmatched';

const knownMethods = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/**
 * HTTP requests by route, method and status, and their latency. Labels stay bounded whatever clients send: the
 * route is the pattern a request matched (`/api/v1/content/*`), never its path, and every request no route matched
 * shares one value; a method outside the usual ones is "other"; a status is one of a few hundred codes.
 *
 * Event streams (Content-Type text/event-stream) are counted but kept out of the latency histogram: they last as
 * long as their subscriber stays, and would drown the latency of everything else.
 */
export class HttpMetrics {
  private readonly requests: Counter<'route' | 'method' | 'status'>;
  private readonly duration: Histogram<'route' | 'method'>;

  constructor(registry: Registry) {
    this.requests = new Counter({
      name: 'conclave_http_requests_total',
      help: 'HTTP requests answered, by route pattern, method and status code.',
      labelNames: ['route', 'method', 'status'],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: 'conclave_http_request_duration_seconds',
      help: 'Time from a request\'s arrival to the end of its answer, by route pattern and method (event streams excluded).',
      labelNames: ['route', 'method'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    });
  }

  /** Counts every answer of `app` (the API's listener, the internal one and the metrics one serve the same app). */
  register(app: FastifyInstance): void {
    app.addHook('onResponse', async (request, reply) => this.answered(request, reply));
  }

  private answered(request: FastifyRequest, reply: FastifyReply): void {
    const route = routeLabel(request);
    const method = knownMethods.has(request.method) ? request.method : 'other';
    this.requests.inc({ route, method, status: String(reply.statusCode) });
    const type = reply.getHeader('content-type');
    if (typeof type === 'string' && type.startsWith('text/event-stream')) return;
    this.duration.observe({ route, method }, reply.elapsedTime / 1000);
  }
}

/** The pattern of the route a request matched, or `unmatched` (a 404, or a request refused before routing). */
export function routeLabel(request: FastifyRequest): string {
  // Fastify's not-found handler has a route of its own whose url is undefined.
  const url = request.routeOptions.url;
  return url === undefined || request.is404 ? unmatchedRoute : url;
}
