import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { openDatabase } from '../../src/storage/database.js';
import { JournalStore } from '../../src/storage/journal.js';
import { fillFileSystem } from '../helpers/fillDisk.js';
import { tempDir } from '../helpers/tmp.js';

// JournalStore.probeWritable is how a node whose journal could not be written learns that space returned when no
// master sends it entries (clusterRuntime.ts, probeStorage). A full disk is made for real: a small tmpfs, filled to
// its last byte. Mounting needs root, as the chaos suites do (CI runs as root).
const isRoot = process.getuid?.() === 0;

test('a probe write fails on a full disk, succeeds once space returns, and leaves nothing behind', { skip: isRoot ? false : 'mounting a tmpfs needs root' }, () => {
  const { dir, cleanup } = tempDir();
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tmpfs', dir]);
  try {
    const db = openDatabase(join(dir, 'data'));
    try {
      const journal = new JournalStore(db);
      assert.equal(journal.probeWritable(1024 * 1024), true, 'an empty disk takes the probe');
      const filler = join(dir, 'filler');
      fillFileSystem(filler);
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
