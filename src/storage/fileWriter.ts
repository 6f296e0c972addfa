import { open, type FileHandle } from 'node:fs/promises';

/**
 * Bytes of a large file (a backup archive) written between two flushes to the disk. Without them the kernel keeps
 * the whole file dirty in memory (gigabytes, below its dirty-page thresholds) and writes it in one burst at the final
 * fsync, and every fsync the node's own writes make meanwhile queues behind that burst. Flushing as the file grows
 * (RocksDB's bytes_per_sync) keeps the disk's queue short; one flush runs while the next bytes are written, so the
 * writer waits only when the disk is slower than the stream.
 */
export const fileSyncEveryBytes = 16 * 1024 * 1024;

/**
 * A new file written sequentially and made durable: every chunk written whole (writeFully), a datasync started every
 * `syncEveryBytes`, and an fsync at the end.
 */
export class SyncedFileWriter {
  private unsynced = 0;
  private flushing: Promise<void> | null = null;
  private closed = false;

  private constructor(
    private readonly handle: FileHandle,
    private readonly syncEveryBytes: number,
  ) {}

  /** Creates `path`, which must not exist (`wx`: never a file or symlink someone else prepared). */
  static async create(path: string, mode: number, syncEveryBytes = fileSyncEveryBytes): Promise<SyncedFileWriter> {
    return new SyncedFileWriter(await open(path, 'wx', mode), syncEveryBytes);
  }

  async write(chunk: Uint8Array): Promise<void> {
    await writeFully(this.handle, chunk);
    this.unsynced += chunk.length;
    if (this.unsynced < this.syncEveryBytes) return;
    // At most one flush in flight: waiting for the previous one is what paces a stream faster than the disk.
    await this.flushing;
    this.unsynced = 0;
    this.flushing = this.handle.datasync();
    // Its failure is reported by the next write or by finish(); meanwhile it must not count as unhandled.
    this.flushing.catch(() => undefined);
  }

  /** Everything written is on the disk, and the file closed. */
  async finish(): Promise<void> {
    await this.flushing;
    await this.handle.sync();
    await this.close();
  }

  /** Closes without making anything durable (a write that failed; the caller removes the file). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }
}

/** FileHandle.write may write less than asked (a nearly full disk); keep writing until the chunk is on file. */
export async function writeFully(file: FileHandle, chunk: Uint8Array): Promise<void> {
  for (let offset = 0; offset < chunk.length; ) {
    const { bytesWritten } = await file.write(chunk, offset, chunk.length - offset);
    if (bytesWritten === 0) throw Object.assign(new Error('no progress writing a file'), { code: 'ENOSPC' });
    offset += bytesWritten;
  }
}
