import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { openDatabase } from '../../src/storage/database.js';
import { JournalStore } from '../../src/storage/journal.js';
import { tempDir } from '../helpers/tmp.js';

// JournalStore.probeWritable is how a node whose journal could not be written learns that space returned when no
// master sends it entries (clusterRuntime.ts, probeStorage). A full disk is made for real: a small tmpfs, filled to
// its last byte. Mounting needs root, as the chaos suites do (CI runs as root).
const isRoot = process.getuid?.() === 0;

/** Fills the file system of `dir` with one file; returns its path. */
function fill(dir: string): string {
  const file = join(dir, 'filler');
  const chunk = Buffer.alloc(256 * 1024);
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
  return file;
}

test('a probe write fails on a full disk, succeeds once space returns, and leaves nothing behind', { skip: isRoot ? false : 'mounting a tmpfs needs root' }, () => {
  const { dir, cleanup } = tempDir();
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tmpfs', dir]);
  try {
    const db = openDatabase(join(dir, 'data'));
    try {
      const journal = new JournalStore(db);
      assert.equal(journal.probeWritable(1024 * 1024), true, 'an empty disk takes the probe');
      const filler = fill(dir);
      assert.equal(journal.probeWritable(1024 * 1024), false, 'a full disk refuses it');
      rmSync(filler);
      assert.equal(journal.probeWritable(1024 * 1024), true, 'space returned');
      assert.equal(db.prepare(`SELECT COUNT(*) FROM meta WHERE key = 'storage_probe'`).pluck().get(), 0, 'the probe row is removed');
    } finally {
      db.close();
    }
  } finally {
    execFileSync('umount', ['-l', dir]);
    cleanup();
  }
});
