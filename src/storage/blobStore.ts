import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync, renameSync, statSync, unlinkSync, utimesSync, type ReadStream } from 'node:fs';
import { open, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';

import { ConclaveError } from '../errors/catalogue.js';
import { writeFully } from './fileWriter.js';

export interface StoredBlob {
  readonly sha256: string;
  readonly size: number;
}

/** A blob file as the collector sees it: its hash and when it was last written or vouched for (and its size). */
export interface BlobFile {
  readonly sha256: string;
  readonly mtimeMs: number;
  readonly bytes: number;
}

const sha256Pattern = /^[0-9a-f]{64}$/;

/**
 * Content-addressed binary storage: a blob's file name is its SHA-256, so equal content is stored once and a
 * stored file can be verified against its name. Uploads stream through a temporary file that is fsynced before it
 * is renamed into place, so a crash leaves either no blob or a complete one — never a torn file under a hash.
 *
 * A file's modification time is its age for the collector (blobCollector.ts): writing a blob, de-duplicating an
 * upload against it, or a peer asking whether it is here (touch) makes it young again, so a blob that an entry is
 * about to reference is never collected. Those steps and the collector's deletion are each one synchronous block,
 * so they never interleave within the process.
 */
export class BlobStore {
  private readonly tmpDir: string;
  /** Writes in progress that vouch for their hash, by that hash (see arriving()). */
  private readonly writing = new Map<string, Set<Promise<unknown>>>();

  private constructor(private readonly root: string) {
    this.tmpDir = join(root, 'tmp');
  }

  static async open(root: string): Promise<BlobStore> {
    const store = new BlobStore(root);
    // Leftovers in tmp are uploads a crash interrupted; nothing references them.
    await rm(store.tmpDir, { recursive: true, force: true });
    mkdirSync(store.tmpDir, { recursive: true });
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
    const expected = options.expectedSha256;
    if (expected === undefined) return this.writeFile(source, options);
    const promise = this.writeFile(source, options);
    const set = this.writing.get(expected) ?? new Set();
    set.add(promise);
    this.writing.set(expected, set);
    try {
      return await promise;
    } finally {
      set.delete(promise);
      if (set.size === 0) this.writing.delete(expected);
    }
  }

  /** Settles once every write in progress that vouches for this hash has finished, stored or not. */
  async arriving(sha256: string): Promise<void> {
    const set = this.writing.get(sha256);
    if (set !== undefined) await Promise.allSettled([...set]);
  }

  private async writeFile(source: Readable, options: { bytesMax: number; expectedSha256?: string }): Promise<StoredBlob> {
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
      // Synchronous from the check to the rename: the collector cannot delete the file between "it is here" and
      // "it is young again", nor between the rename and the entry that will reference it (see the class comment).
      if (keepYoung(finalPath, size)) {
        await rm(tmpPath, { force: true }); // de-duplicated: the same content is already stored
      } else {
        mkdirSync(dir, { recursive: true });
        renameSync(tmpPath, finalPath);
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
    return (await this.size(sha256)) !== undefined;
  }

  /** The stored blob's size in bytes, or undefined when it is not here. */
  async size(sha256: string): Promise<number | undefined> {
    return (await stat(this.pathOf(sha256)).catch(() => undefined))?.size;
  }

  /**
   * True when the blob is here, and then makes it young for the collector: a peer that asks before copying a blob
   * (the master pushing an upload) relies on the answer until the entry that references it is applied.
   */
  touch(sha256: string): boolean {
    return keepYoung(this.pathOf(sha256));
  }

  /** Every stored blob with its age (uploads in progress under tmp/ are not blobs yet). */
  async *files(): AsyncGenerator<BlobFile> {
    for (const first of await readdirOrEmpty(this.root)) {
      if (!/^[0-9a-f]{2}$/.test(first)) continue;
      for (const second of await readdirOrEmpty(join(this.root, first))) {
        if (!/^[0-9a-f]{2}$/.test(second)) continue;
        for (const name of await readdirOrEmpty(join(this.root, first, second))) {
          if (!sha256Pattern.test(name) || !name.startsWith(first + second)) continue;
          const info = await stat(join(this.root, first, second, name)).catch(() => undefined);
          if (info !== undefined) yield { sha256: name, mtimeMs: info.mtimeMs, bytes: info.size };
        }
      }
    }
  }

  /**
   * Deletes the blob if its file is still older than `cutoffMs` (epoch ms), in one synchronous step (see the class
   * comment). Returns the bytes freed, or null when the blob is gone or young again.
   */
  deleteIfOlderThan(sha256: string, cutoffMs: number): number | null {
    const path = this.pathOf(sha256);
    try {
      const info = statSync(path);
      if (info.mtimeMs >= cutoffMs) return null;
      unlinkSync(path);
      return info.size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  /** A stream of the blob's bytes from `start` to `end` inclusive. */
  read(sha256: string, range?: { start: number; end: number }): ReadStream {
    return createReadStream(this.pathOf(sha256), range);
  }
}

/**
 * True when a file is stored at `path` (of `size` bytes, when given: a complete one); it is then made young
 * (touched), so the collector leaves it alone for another grace period.
 */
function keepYoung(path: string, size?: number): boolean {
  try {
    if (size !== undefined && statSync(path).size !== size) return false;
    const now = new Date();
    utimesSync(path, now, now);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  return readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
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

/** fsync of a file or a directory (a directory's sync makes the names in it durable). */
async function syncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
