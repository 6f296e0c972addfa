import { closeSync, openSync, statfsSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Fills the file system holding `file` to its last byte by appending to `file` (a small tmpfs in the tests that use
 * it: a full disk made for real). Removing the file gives the space back.
 */
export function fillFileSystem(file: string): void {
  const dir = dirname(file);
  const chunk = Buffer.alloc(1024 * 1024);
  const fd = openSync(file, 'a');
  try {
    for (;;) {
      const stats = statfsSync(dir);
      const free = stats.bavail * stats.bsize;
      if (free === 0) break;
      writeSync(fd, chunk, 0, Math.min(chunk.length, free));
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
}
