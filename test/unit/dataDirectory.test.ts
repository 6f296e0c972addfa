import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { isConclaveError } from '../../src/errors/catalogue.js';
import { foreignOwner, openDatabase } from '../../src/storage/database.js';
import { runConclave } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

const modeOf = (path: string): number => statSync(path).mode & 0o777;

describe('the data directory is private', () => {
  it('belongs to this user or root: another user\'s directory is refused whatever its mode', () => {
    assert.equal(foreignOwner(1000, 1000), null);
    assert.equal(foreignOwner(0, 1000), null, 'root may own it (a Kubernetes volume shared through fsGroup)');
    assert.equal(foreignOwner(1001, 1000), 1001);
    assert.equal(foreignOwner(1001, 0), null, 'a node running as root fears nobody');
    assert.equal(foreignOwner(1001, undefined), null);
  });

  it('a new one is created 0700, its database files 0600 (the -wal and -shm files and the lock too)', () => {
    const tmp = tempDir();
    try {
      const dir = join(tmp.dir, 'new', 'data');
      const db = openDatabase(dir);
      db.exec("INSERT INTO meta (key, value) VALUES ('probe', 1)");
      assert.equal(modeOf(dir), 0o700);
      for (const file of ['conclave.db', 'conclave.db-wal', 'conclave.db-shm', 'conclave.lock']) assert.equal(modeOf(join(dir, file)), 0o600, file);
      db.close();
    } finally {
      tmp.cleanup();
    }
  });

  it('refuses one that other users may read, write or enter, naming the chmod; group access is allowed', () => {
    const tmp = tempDir();
    try {
      for (const mode of [0o755, 0o701, 0o702, 0o704, 0o777]) {
        const dir = join(tmp.dir, mode.toString(8));
        mkdirSync(dir);
        chmodSync(dir, mode);
        assert.throws(
          () => openDatabase(dir),
          (err: unknown) => isConclaveError(err) && err.code === 'DATA_DIR_UNSAFE' && err.message.includes(`chmod o-rwx ${dir}`),
          mode.toString(8),
        );
      }
      const group = join(tmp.dir, 'group');
      mkdirSync(group);
      chmodSync(group, 0o770);
      openDatabase(group).close();
    } finally {
      tmp.cleanup();
    }
  });

  it('`conclave start` on an open data directory exits with DATA_DIR_UNSAFE and the chmod to run', async () => {
    const tmp = tempDir();
    try {
      chmodSync(tmp.dir, 0o755);
      const { code, stderr } = await runConclave(['start', '--data', tmp.dir, '--http-port', '0', '--transport-port', '0']);
      assert.equal(code, 1);
      assert.match(stderr, new RegExp(`DATA_DIR_UNSAFE.*chmod o-rwx ${tmp.dir}`, 's'));
    } finally {
      tmp.cleanup();
    }
  });
});
