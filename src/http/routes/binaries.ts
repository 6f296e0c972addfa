import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { parseBinaryProperty } from '../../content/validate.js';
import { ConclaveError } from '../../errors/catalogue.js';
import { contentPathOf, sendCommitted } from './content.js';
import { writeOriginOf } from '../writeOrigin.js';
import { header, parsePreconditions, parseTags } from '../representation.js';
import { canRead } from '../readAccess.js';

type BinaryRequest = FastifyRequest<{ Params: { '*'?: string }; Querystring: Record<string, string | string[]> }>;

function propertyOf(request: BinaryRequest): string {
  return parseBinaryProperty(request.query['property']);
}

/** The SHA-256 a client vouches for: X-Conclave-Sha256 (hex) or Content-Digest: sha-256=:base64: (RFC 9530). */
export function expectedSha256(request: FastifyRequest): string | undefined {
  const hex = header(request.headers, 'x-conclave-sha256');
  if (hex !== undefined) {
    if (!/^[0-9a-fA-F]{64}$/.test(hex.trim())) {
      throw new ConclaveError('INVALID_REQUEST', 'X-Conclave-Sha256 must be 64 hex digits.');
    }
    return hex.trim().toLowerCase();
  }
  const digest = header(request.headers, 'content-digest');
  if (digest === undefined) return undefined;
  const match = /sha-256=:([A-Za-z0-9+/=]+):/.exec(digest);
  if (match === null) throw new ConclaveError('INVALID_REQUEST', 'Content-Digest must carry sha-256=:<base64>:.');
  const bytes = Buffer.from(match[1]!, 'base64');
  if (bytes.length !== 32) throw new ConclaveError('INVALID_REQUEST', 'The sha-256 in Content-Digest must be 32 bytes.');
  return bytes.toString('hex');
}

/**
 * Parses a single byte range (RFC 9110 §14). Multiple ranges and malformed headers are ignored — the whole body is
 * served, as the RFC allows; a well-formed range outside the binary is 416.
 */
export function parseRange(text: string | undefined, size: number): { start: number; end: number } | undefined {
  if (text === undefined) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(text.trim());
  if (match === null || (match[1] === '' && match[2] === '')) return undefined;
  let start: number;
  let end: number;
  if (match[1] === '') {
    const suffix = Number(match[2]);
    if (suffix === 0) throw new ConclaveError('RANGE_NOT_SATISFIABLE', 'An empty suffix range selects nothing.', { size });
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
    if (match[2] !== '' && Number(match[2]) < start) return undefined;
  }
  if (start >= size) {
    throw new ConclaveError('RANGE_NOT_SATISFIABLE', `The range starts at ${start}, past the end of a ${size}-byte binary.`, { size });
  }
  return { start, end };
}

/**
 *   PUT    /api/v1/binaries/{path}?property=NAME   the raw body, streamed; Content-Type is kept (If-Match)
 *   GET    /api/v1/binaries/{path}?property=NAME   streamed, with Range and If-None-Match
 *   HEAD   the same, headers only
 *   DELETE /api/v1/binaries/{path}?property=NAME   (If-Match)
 */
export async function binaryRoutes(app: FastifyInstance): Promise<void> {
  const { repository, config, blobFetcher } = app.conclave;

  // In this plugin every body is a raw stream: nothing is parsed or buffered, whatever its content type.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));

  app.put('/api/v1/binaries/*', { config: { permission: 'write', query: ['property'] } }, async (request: BinaryRequest, reply) => {
    const path = contentPathOf(request);
    const property = propertyOf(request);
    const pre = parsePreconditions(request.headers);
    // A node the caller may not read is one that does not exist: no precondition is checked against it.
    if (!canRead(repository.content, request, path)) throw new ConclaveError('NODE_NOT_FOUND', `No node exists at ${path}.`, { path });
    const declared = Number(request.headers['content-length'] ?? NaN);
    if (declared > config.content.binaryBytesMax) {
      throw new ConclaveError('BINARY_TOO_LARGE', `The binary exceeds the limit of ${config.content.binaryBytesMax} bytes.`, {
        limit: config.content.binaryBytesMax,
      });
    }
    const committed = await repository.setBinary(
      path,
      property,
      request.raw,
      {
        contentType: request.headers['content-type'] ?? 'application/octet-stream',
        expectedSha256: expectedSha256(request),
        bytesMax: config.content.binaryBytesMax,
      },
      pre,
      // Never forwarded as a command: the upload itself is forwarded to the master as an HTTP request.
      writeOriginOf(request, 'write'),
    );
    return sendCommitted(reply, committed);
  });

  const getBinary = async (request: BinaryRequest, reply: FastifyReply) => {
    const path = contentPathOf(request);
    const property = propertyOf(request);
    // A node the caller may not read is one that does not exist (src/http/readAccess.ts).
    if (!canRead(repository.content, request, path)) throw new ConclaveError('NODE_NOT_FOUND', `No node exists at ${path}.`, { path });
    const node = repository.node(path);
    const binary = Object.hasOwn(node.binaries, property) ? node.binaries[property] : undefined;
    if (binary === undefined) {
      throw new ConclaveError('BINARY_NOT_FOUND', `${path} has no binary property "${property}".`, { path, property });
    }
    const etag = `"${binary.sha256}"`;
    reply.header('ETag', etag).header('Accept-Ranges', 'bytes').header('Content-Type', binary.contentType);
    // Uploaded bytes are served from the API's own origin: a browser must never run them as a page with the
    // viewer's credentials (stored cross-site scripting). No sniffing, no scripts, and active types download.
    reply.header('X-Content-Type-Options', 'nosniff').header('Content-Security-Policy', "sandbox; default-src 'none'");
    if (/html|xml|svg|javascript/i.test(binary.contentType)) reply.header('Content-Disposition', 'attachment');
    const ifNoneMatch = header(request.headers, 'if-none-match');
    if (ifNoneMatch !== undefined && (ifNoneMatch.trim() === '*' || parseTags(ifNoneMatch, 'If-None-Match', 'weak').includes(etag))) {
      return reply.status(304).send();
    }
    // If-Range (RFC 9110 §13.1.5): resume only the same bytes; a replaced binary is sent whole.
    const ifRange = header(request.headers, 'if-range');
    const range = ifRange === undefined || ifRange.trim() === etag ? parseRange(header(request.headers, 'range'), binary.size) : undefined;
    if (range !== undefined) {
      reply.status(206).header('Content-Range', `bytes ${range.start}-${range.end}/${binary.size}`);
    }
    // Binaries live in each node's blob store; a replica that applied the entry before the bytes arrived fetches
    // them from a peer. Wait for that (bounded), and say so before the headers go out rather than reset the stream.
    if (binary.size > 0 && !(await blobFetcher.awaitBlob(binary.sha256, binary.size, config.replication.blobReadWaitMs))) {
      throw new ConclaveError('NOT_READY', 'This binary\'s bytes are not on this node yet (they are being fetched from a peer); retry shortly or read it elsewhere.', {
        sha256: binary.sha256,
      });
    }
    const length = range === undefined ? binary.size : range.end - range.start + 1;
    reply.header('Content-Length', length);
    if (request.method === 'HEAD' || length === 0) return reply.send();
    return reply.send(repository.blobs.read(binary.sha256, range));
  };
  app.get('/api/v1/binaries/*', { config: { permission: 'read', query: ['property'] }, exposeHeadRoute: false }, getBinary);
  app.head('/api/v1/binaries/*', { config: { permission: 'read', query: ['property'] } }, getBinary);

  app.delete('/api/v1/binaries/*', { config: { permission: 'write', forwardsCommand: true, query: ['property'] } }, async (request: BinaryRequest, reply) => {
    const path = contentPathOf(request);
    const property = propertyOf(request);
    const committed = await repository.deleteBinary(path, property, parsePreconditions(request.headers), writeOriginOf(request, 'write'));
    return sendCommitted(reply, committed);
  });
}
