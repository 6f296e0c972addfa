import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { SyncedFileWriter } from '../../src/storage/fileWriter.js';
import { tempDir } from '../helpers/tmp.js';

// The writer of backup files on a real file: flushed as it grows, whole chunks, never over a file that exists.

test('a file written in chunks of every size, flushed along the way, holds exactly what was written', async () => {
  const { dir, cleanup } = tempDir('file-writer-');
  try {
    const path = join(dir, 'archive.tar');
    // Flushes every 64 KiB: dozens of them overlap the writes that follow, and the last chunk is not a multiple.
    const writer = await SyncedFileWriter.create(path, 0o600, 64 * 1024);
    const chunks = [0, 1, 4095, 65_536, 100_000, 300_000, 3, 70_001].map((n) => randomBytes(n));
    for (let i = 0; i < 8; i++) for (const chunk of chunks) await writer.write(chunk);
    await writer.finish();
    const expected = Buffer.concat(Array.from({ length: 8 }, () => Buffer.concat(chunks)));
    assert.deepEqual(readFileSync(path), expected);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    // finish() closed it; a second close is harmless (the error paths of its callers close again).
    await writer.close();
  } finally {
    cleanup();
  }
});

test('a writer never opens a file that is already there', async () => {
  const { dir, cleanup } = tempDir('file-writer-');
  try {
    const path = join(dir, 'taken');
    writeFileSync(path, 'someone else');
    await assert.rejects(SyncedFileWriter.create(path, 0o600), (err: NodeJS.ErrnoException) => err.code === 'EEXIST');
    assert.equal(readFileSync(path, 'utf8'), 'someone else');
  } finally {
    cleanup();
  }
});
