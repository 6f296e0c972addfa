import type { FastifyError, FastifyInstance } from 'fastify';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

import { ConclaveError, isConclaveError } from '../errors/catalogue.js';
import { ForwardedRefusal } from '../forwarding/refusals.js';
import { syntaxProblem } from './jsonBody.js';

/** Turns anything thrown in a route — ours or Fastify's — into the catalogue's error body. */
export function toConclaveError(err: FastifyError | Error): ConclaveError {
  if (isConclaveError(err)) return err;
  const e = err as FastifyError & { validation?: unknown };
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ConclaveError('BODY_TOO_LARGE', 'The request body exceeds http.bodyBytesMax.');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ConclaveError(
        'UNSUPPORTED_MEDIA_TYPE',
        'Send JSON with Content-Type: application/json (binary uploads: any Content-Type, such as application/octet-stream).',
      );
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ConclaveError('INVALID_JSON', 'The body is empty; send a JSON document.');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new ConclaveError('INVALID_JSON', 'The body is not valid JSON.');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new ConclaveError('INVALID_REQUEST', 'The Content-Length header does not match the body.');
  }
  if (e instanceof SyntaxError || e.name === 'SyntaxError') {
    return new ConclaveError('INVALID_JSON', `The body is not valid JSON: ${syntaxProblem(e)}.`);
  }
  if (e.validation !== undefined) {
    return new ConclaveError('INVALID_REQUEST', e.message);
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    if (e.statusCode === 413) return new ConclaveError('BODY_TOO_LARGE', e.message);
    if (e.statusCode === 415) return new ConclaveError('UNSUPPORTED_MEDIA_TYPE', e.message);
    return new ConclaveError('INVALID_REQUEST', e.message);
  }
  return new ConclaveError('INTERNAL', 'An unexpected error occurred; the server log has the details.');
}

export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err, request, reply) => {
    const error = toConclaveError(err as Error);
    if (error.code === 'INTERNAL' || error.code === 'STORAGE_ERROR') {
      request.log.error({ err }, 'request failed');
    }
    if (error.code === 'AUTH_REQUIRED' || error.code === 'AUTH_INVALID') {
      reply.header('WWW-Authenticate', 'Basic realm="conclave", charset="UTF-8"');
    }
    // A refusal the master decided for a forwarded command reflects the master's state, as its own answer would.
    if (error instanceof ForwardedRefusal) reply.header('X-Conclave-Index', error.masterAppliedIndex);
    if (error.code === 'RATE_LIMITED' && typeof error.details['retryAfterSeconds'] === 'number') {
      reply.header('Retry-After', String(error.details['retryAfterSeconds']));
    }
    if (error.code === 'RANGE_NOT_SATISFIABLE' && typeof error.details['size'] === 'number') {
      reply.header('Content-Range', `bytes */${error.details['size']}`);
    }
    void reply.status(error.status).type('application/json; charset=utf-8').send(error.toJSON());
  });
  app.setNotFoundHandler((request, reply) => {
    const error = new ConclaveError('ROUTE_NOT_FOUND', `No endpoint at ${request.method} ${request.url.split('?')[0]}.`);
    void reply.status(error.status).send(error.toJSON());
  });
}

/** A catalogue error written by hand, where Node's HTTP server answers before Fastify is involved. */
function writeRawError(socket: Socket, error: ConclaveError, appliedIndex: number): void {
  const body = JSON.stringify(error.toJSON());
  socket.write(
    `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nX-Conclave-Index: ${appliedIndex}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/**
 * Errors Node's HTTP parser meets before Fastify sees a request (headers over the size limit, a malformed request
 * line or header, a request that arrives too slowly) answered in the catalogue's format, as every other error is;
 * Fastify's default wrote its own shape. The connection is closed afterwards: the parser cannot resume on it.
 */
export function clientErrorHandler(appliedIndex: () => number): (err: Error & { code?: string }, socket: Socket) => void {
  return (err, socket) => {
    // A reset connection has nobody to answer.
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    const error =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? new ConclaveError('HEADERS_TOO_LARGE', 'The request line and headers are too large; shorten the URL or the headers.')
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? new ConclaveError('REQUEST_TIMEOUT', 'The request did not arrive in time; the connection is closed.')
          : new ConclaveError('INVALID_REQUEST', `The request is not valid HTTP/1.1 (${err.code ?? 'parse error'}); the connection is closed.`);
    // A response already under way on this connection (a pipelined request's) cannot be followed by another.
    const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (socket.writable && inFlight?.headersSent !== true) writeRawError(socket, error, appliedIndex());
    socket.destroy();
  };
}

/**
 * The other answers Node's HTTP server would make itself, with an empty body: 417 to an `Expect` other than
 * 100-continue (its 'checkExpectation' event), and 400 to an HTTP/1.1 request without Host (the server is built
 * with requireHostHeader off so that this hook refuses it instead, in the catalogue's format).
 */
export function registerServerRefusals(app: FastifyInstance, appliedIndex: () => number): void {
  app.server.on('checkExpectation', (request: IncomingMessage, response: ServerResponse) => {
    const error = new ConclaveError('EXPECTATION_FAILED', `Expect: ${String(request.headers.expect).slice(0, 100)} is not supported; send Expect: 100-continue or none.`);
    response.shouldKeepAlive = false;
    response
      .writeHead(error.status, { 'content-type': 'application/json; charset=utf-8', 'x-conclave-index': appliedIndex(), connection: 'close' })
      .end(JSON.stringify(error.toJSON()));
  });
  app.addHook('onRequest', async (request) => {
    if (request.raw.httpVersion === '1.1' && request.headers.host === undefined) {
      throw new ConclaveError('INVALID_REQUEST', 'An HTTP/1.1 request must carry a Host header (RFC 9112 §3.2).');
    }
  });
}
