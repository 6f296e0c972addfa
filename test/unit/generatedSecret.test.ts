import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { loadConfig } from '../../src/config/load.js';
import { clusterSecret } from '../../src/node/conclaveNode.js';
import { getMeta, openDatabase, setMeta } from '../../src/storage/database.js';
import { tempDir } from '../helpers/tmp.js';

// A node started without a cluster secret generates one: kept in a 0600 file of its own (a copy of the database then
// carries nothing that can sign a token), never printed (standard output ends up in logs), the same at every start.
test('a generated cluster secret lives in DATA/cluster-secret (0600), is never printed, and survives restarts', () => {
  const tmp = tempDir();
  try {
    const dir = join(tmp.dir, 'data');
    const config = loadConfig({ env: {}, flags: { 'data.dir': dir } });
    const said: string[] = [];
    const db = openDatabase(dir);
    const secret = clusterSecret(db, config, (text) => said.push(text));
    const file = join(dir, 'cluster-secret');
    assert.equal(readFileSync(file, 'utf8'), `${secret}\n`);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(said.length, 1);
    assert.ok(!said[0]!.includes(secret), 'the secret itself is never printed');
    assert.ok(said[0]!.includes(file), 'the announcement names the file');
    assert.equal(getMeta(db, 'cluster_secret'), undefined, 'not in the database');
    assert.equal(clusterSecret(db, config, (text) => said.push(text)), secret, 'the same at the next start');
    assert.equal(said.length, 1, 'announced once');

    // A release before kept it in the database: it moves to the file, silently.
    const old = 'Zq3-legacy_SECRET-kept-in-meta-0123456789abcd';
    const oldDir = join(tmp.dir, 'old');
    const oldDb = openDatabase(oldDir);
    setMeta(oldDb, 'cluster_secret', old);
    const oldConfig = loadConfig({ env: {}, flags: { 'data.dir': oldDir } });
    assert.equal(clusterSecret(oldDb, oldConfig, (text) => said.push(text)), old);
    assert.equal(getMeta(oldDb, 'cluster_secret'), undefined);
    assert.equal(readFileSync(join(oldDir, 'cluster-secret'), 'utf8'), `${old}\n`);
    assert.equal(said.length, 1);
    db.close();
    oldDb.close();
  } finally {
    tmp.cleanup();
  }
});
