import type { FastifyError, FastifyInstance } from 'fastify';

import { ConclaveError, isConclaveError } from '../errors/catalogue.js';
import { ForwardedRefusal } from '../node/commandForwarder.js';
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
