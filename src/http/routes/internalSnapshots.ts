import type { FastifyInstance, FastifyRequest } from 'fastify';
import { createReadStream } from 'node:fs';
import { Transform, type Readable } from 'node:stream';

import { ConclaveError } from '../../errors/catalogue.js';
import { verifyInternalCaller } from '../../replication/internalAccess.js';
import { header } from '../representation.js';
import { parseRange } from './binaries.js';

/**
 *   GET /internal/v1/snapshots/:index   (node-to-node) the file of a snapshot this node holds, with Range
 *
 * Asked by a follower that the master sent a snapshot to (see src/replication/snapshotFetcher.ts). The caller
 * proves the cluster secret for this node (src/auth/internalAuth.ts) and must be a member of the cluster state. The answer
 * carries the file's SHA-256 as its ETag, so a resumed download (Range with If-Range) never mixes two files. At
 * most replication.snapshotTransfersMax transfers are served at once (more: OVERLOADED); each is read in chunks of
 * replication.snapshotChunkBytes, paced to replication.snapshotBytesPerSecondMax when that is set.
 */
export async function internalSnapshotRoutes(app: FastifyInstance): Promise<void> {
  const { config, snapshots, metrics } = app.conclave;
  const { snapshotTransfersMax, snapshotChunkBytes, snapshotBytesPerSecondMax } = config.replication;
  let serving = 0;

  app.get('/internal/v1/snapshots/:index', async (request: FastifyRequest<{ Params: { index: string } }>, reply) => {
    const caller = verifyInternalCaller(app.conclave, request);
    if (!/^\d{1,15}$/.test(request.params.index)) throw new ConclaveError('INVALID_REQUEST', 'A snapshot index is a positive integer.');
    const index = Number(request.params.index);
    if (snapshots === null) throw new ConclaveError('SNAPSHOT_NOT_FOUND', 'This node keeps no snapshots.', { index });
    if (serving >= snapshotTransfersMax) {
      throw new ConclaveError('OVERLOADED', `${serving} snapshot transfers are under way; retry after a pause.`, { snapshotTransfersMax });
    }
    const file = snapshots.acquire(index);
    if (file === undefined) {
      throw new ConclaveError('SNAPSHOT_NOT_FOUND', `This node holds no snapshot at ${index} (any more); the master sends a newer one.`, { index });
    }
    serving++;
    let released = false;
    let body: Readable | null = null;
    // However the transfer ends (done, the follower gone, an error), the file and the slot are given back.
    const release = () => {
      if (released) return;
      released = true;
      serving--;
      body?.destroy();
      file.release();
    };
    try {
      const size = file.info.bytes;
      const etag = `"${file.info.sha256}"`;
      const ifRange = header(request.headers, 'if-range');
      const range = ifRange === undefined || ifRange.trim() === etag ? parseRange(header(request.headers, 'range'), size) : undefined;
      const start = range?.start ?? 0;
      const end = range?.end ?? size - 1;
      request.log.info({ index, node: caller, rangeStart: start, bytes: end - start + 1 }, 'serving a snapshot');
      // Paced transfers read small pieces, so that no piece waits long for its turn.
      const chunkBytes = snapshotBytesPerSecondMax > 0 ? Math.max(1024, Math.min(snapshotChunkBytes, Math.floor(snapshotBytesPerSecondMax / 10))) : snapshotChunkBytes;
      const source = createReadStream(file.path, { start, end, highWaterMark: chunkBytes });
      if (metrics !== null) {
        metrics.snapshots.serving();
        // Read from the file, however the transfer ended (a 'data' listener would start the stream before it is sent).
        source.once('close', () => metrics.snapshots.sent(source.bytesRead));
      }
      const stream = snapshotBytesPerSecondMax > 0 ? source.pipe(paced(snapshotBytesPerSecondMax)) : source;
      body = stream;
      source.once('error', (err) => stream.destroy(err));
      source.once('close', () => {
        if (stream !== source && !source.readableEnded) stream.destroy();
      });
      stream.once('close', release);
      reply.raw.once('close', release);
      if (range !== undefined) reply.status(206).header('Content-Range', `bytes ${start}-${end}/${size}`);
      return reply
        .header('ETag', etag)
        .header('Accept-Ranges', 'bytes')
        .header('Content-Type', 'application/vnd.sqlite3')
        .header('Content-Length', end - start + 1)
        .send(stream);
    } catch (err) {
      release();
      throw err;
    }
  });
}

/** Passes bytes on no faster than `bytesPerSecond` on average since the transfer began. */
function paced(bytesPerSecond: number): Transform {
  const startedMs = Date.now();
  let sent = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      sent += chunk.length;
      const waitMs = startedMs + (sent / bytesPerSecond) * 1000 - Date.now();
      if (waitMs <= 0) done(null, chunk);
      else setTimeout(() => done(null, chunk), waitMs);
    },
  });
}
