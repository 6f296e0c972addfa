import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, type ReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';

import { ConclaveError } from '../errors/catalogue.js';

export interface StoredBlob {
  readonly sha256: string;
  readonly size: number;
}

const sha256Pattern = /^[0-9a-f]{64}$/;

/**
 * Content-addressed binary storage: a blob's file name is its SHA-256, so equal content is stored once and a
 * stored file can be verified against its name. Uploads stream through a temporary file that is fsynced before it
 * is renamed into place, so a crash leaves either no blob or a complete one — never a torn file under a hash.
 */
export class BlobStore {
  private readonly tmpDir: string;

  private constructor(private readonly root: string) {
    this.tmpDir = join(root, 'tmp');
  }

  static async open(root: string): Promise<BlobStore> {
    const store = new BlobStore(root);
    // Leftovers in tmp are uploads a crash interrupted; nothing references them.
    await rm(store.tmpDir, { recursive: true, force: true });
    await mkdir(store.tmpDir, { recursive: true });
    return store;
  }

  pathOf(sha256: string): string {
    if (!sha256Pattern.test(sha256)) throw new ConclaveError('INVALID_REQUEST', 'A blob hash is 64 lowercase hex digits.');
    return join(this.root, sha256.slice(0, 2), sha256.slice(2, 4), sha256);
  }

  /**
   * Streams `source` into the store. Stops reading and removes the partial file as soon as `bytesMax` is passed or
   * the source fails; verifies `expectedSha256` when the client sent one.
   */
  async write(source: Readable, options: { bytesMax: number; expectedSha256?: string }): Promise<StoredBlob> {
    const tmpPath = join(this.tmpDir, `${randomBytes(12).toString('hex')}.part`);
    const hash = createHash('sha256');
    let size = 0;
    const file = await open(tmpPath, 'wx');
    let closed = false;
    try {
      await consume(source, async (chunk) => {
        size += chunk.length;
        if (size > options.bytesMax) {
          throw new ConclaveError('BINARY_TOO_LARGE', `The binary exceeds the limit of ${options.bytesMax} bytes.`, {
            limit: options.bytesMax,
          });
        }
        hash.update(chunk);
        await writeFully(file, chunk);
      });
      await file.sync();
      await file.close();
      closed = true;
      const sha256 = hash.digest('hex');
      if (options.expectedSha256 !== undefined && options.expectedSha256 !== sha256) {
        throw new ConclaveError('CHECKSUM_MISMATCH', `The upload's SHA-256 is ${sha256}, not ${options.expectedSha256}.`, {
          expected: options.expectedSha256,
          actual: sha256,
        });
      }
      const finalPath = this.pathOf(sha256);
      const dir = join(this.root, sha256.slice(0, 2), sha256.slice(2, 4));
      const existing = await stat(finalPath).catch(() => undefined);
      if (existing !== undefined && existing.size === size) {
        await rm(tmpPath, { force: true }); // de-duplicated: the same content is already stored
      } else {
        await mkdir(dir, { recursive: true });
        await rename(tmpPath, finalPath);
      }
      // Sync the file's directory and its parents on every path, de-duplication included: the file found there
      // may have been renamed in by a concurrent upload (or a run killed before its sync) and not be durable yet.
      // A journal entry may name the blob only once the name itself survives a power cut.
      await syncPath(finalPath);
      await syncPath(dir);
      await syncPath(join(this.root, sha256.slice(0, 2)));
      await syncPath(this.root);
      return { sha256, size };
    } catch (err) {
      if (!closed) await file.close().catch(() => undefined);
      await rm(tmpPath, { force: true });
      if (err instanceof ConclaveError) throw err;
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') {
        throw new ConclaveError('DISK_FULL', 'The data disk is full; the binary was not stored. Free space and retry.');
      }
      throw err;
    }
  }

  async has(sha256: string): Promise<boolean> {
    return (await stat(this.pathOf(sha256)).catch(() => undefined)) !== undefined;
  }

  /** A stream of the blob's bytes from `start` to `end` inclusive. */
  read(sha256: string, range?: { start: number; end: number }): ReadStream {
    return createReadStream(this.pathOf(sha256), range);
  }
}

/**
 * Feeds every chunk of `source` to `handle`, one at a time (the stream is paused while a chunk is written). If the
 * handler throws, the rest of the stream is drained and discarded rather than destroyed: destroying a request body
 * resets the connection, and the client would never read the error response that explains why.
 */
function consume(source: Readable, handle: (chunk: Buffer) => Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    let failed = false;
    // 'end' can arrive while the last chunk is still being written: finish only after that write.
    let pending: Promise<void> = Promise.resolve();
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      source.removeListener('data', onData);
      source.on('data', () => undefined);
      source.resume();
      reject(err);
    };
    const onData = (chunk: Buffer) => {
      source.pause();
      pending = handle(chunk).then(() => {
        if (!failed) source.resume();
      });
      pending.catch(fail);
    };
    source.on('data', onData);
    let ended = false;
    source.once('end', () => {
      ended = true;
      pending.then(() => {
        if (!failed) resolve();
      }, fail);
    });
    source.once('error', fail);
    source.once('close', () => {
      if (!ended) fail(new ConclaveError('INVALID_REQUEST', 'The client aborted the upload before its end.'));
    });
  });
}

/** FileHandle.write may write less than asked (a nearly full disk); keep writing until the chunk is on file. */
async function writeFully(file: FileHandle, chunk: Buffer): Promise<void> {
  let offset = 0;
  while (offset < chunk.length) {
    const { bytesWritten } = await file.write(chunk, offset, chunk.length - offset);
    if (bytesWritten === 0) throw Object.assign(new Error('no progress writing a blob'), { code: 'ENOSPC' });
    offset += bytesWritten;
  }
}

/** fsync of a file or a directory (a directory's sync makes the names in it durable). */
async function syncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
