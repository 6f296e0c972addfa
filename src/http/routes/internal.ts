import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { ConclaveError } from '../../errors/catalogue.js';
import { internalBlobsPath } from '../../replication/blobClient.js';
import { internalAccessHook } from '../../replication/internalAccess.js';

type BlobRequest = FastifyRequest<{ Params: { sha256: string } }>;

function hashOf(request: BlobRequest): string {
  const sha256 = request.params.sha256;
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new ConclaveError('INVALID_REQUEST', 'A blob is named by its SHA-256: 64 lowercase hex digits.');
  return sha256;
}

function notHere(sha256: string): ConclaveError {
  return new ConclaveError('BLOB_NOT_FOUND', `This node holds no blob ${sha256}.`, { sha256 });
}

/**
 * Node-to-node blob transfer, for members that sign for this node (internalAccess.ts):
 *
 *   HEAD /internal/v1/blobs/{sha256}   200 when held here (and keeps it young for the collector), 404 otherwise
 *   GET  /internal/v1/blobs/{sha256}   the bytes, streamed
 *   PUT  /internal/v1/blobs/{sha256}   the bytes, streamed in and kept only if they hash to {sha256}
 *
 * Every answer is named by the content's hash; a replayed request is refused anyway (internalAuth.ts remembers
 * nonces for their window).
 */
export async function internalBlobRoutes(app: FastifyInstance): Promise<void> {
  const { repository } = app.conclave;
  const blobs = repository.blobs;

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));
  app.addHook('onRequest', internalAccessHook(app.conclave));

  app.head(`${internalBlobsPath}/:sha256`, async (request: BlobRequest, reply: FastifyReply) => {
    const sha256 = hashOf(request);
    // The master skips the copy on a 200 and counts this node as holding the blob until its entry is applied.
    if (!blobs.touch(sha256)) throw notHere(sha256);
    return reply.send();
  });

  app.get(`${internalBlobsPath}/:sha256`, { exposeHeadRoute: false }, async (request: BlobRequest, reply: FastifyReply) => {
    const sha256 = hashOf(request);
    const size = await blobs.size(sha256);
    if (size === undefined) throw notHere(sha256);
    reply.header('Content-Type', 'application/octet-stream').header('Content-Length', size);
    return reply.send(blobs.read(sha256));
  });

  app.put(`${internalBlobsPath}/:sha256`, async (request: BlobRequest, reply: FastifyReply) => {
    const sha256 = hashOf(request);
    const declared = Number(request.headers['content-length'] ?? NaN);
    if (!Number.isSafeInteger(declared) || declared < 0) {
      throw new ConclaveError('INVALID_REQUEST', 'A blob is sent with its Content-Length.');
    }
    // The caller is a member that vouches for the size; the hash check below is what decides what is kept.
    const stored = await blobs.write(request.raw, { bytesMax: declared, expectedSha256: sha256 });
    return reply.send(stored);
  });
}
