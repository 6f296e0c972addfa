import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';

import { archiveStream } from '../../src/backup/archiveWriter.js';
import type { BackupManifest } from '../../src/backup/manifest.js';
import { verifyBackup } from '../../src/backup/verify.js';
import { contentDigestVersion } from '../../src/replication/contentDigest.js';
import { databaseSchema, dataFormatVersion } from '../../src/storage/database.js';
import { stateSchemaProblem } from '../../src/storage/snapshotFile.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * A state file from elsewhere (a backup, a peer's snapshot) is accepted only with this build's tables and indexes:
 * no view, trigger, extra table or generated column — SQL of the file's author that would run when it is read.
 */

function stateFile(dir: string, name: string, craft: (db: Database.Database) => void): string {
  const path = join(dir, `${name}.db`);
  const db = new Database(path);
  db.exec(databaseSchema);
  db.prepare('INSERT INTO meta (key, value) VALUES (?, ?), (?, ?)').run('format_version', dataFormatVersion, 'applied_index', 5);
  craft(db);
  db.close();
  return path;
}

function problemOf(path: string): string | null {
  const db = new Database(path, { readonly: true });
  try {
    return stateSchemaProblem(db, 'main');
  } finally {
    db.close();
  }
}

test('only the tables and indexes of this build pass', () => {
  const tmp = tempDir();
  try {
    assert.equal(problemOf(stateFile(tmp.dir, 'genuine', () => undefined)), null);
    const crafted: Record<string, (db: Database.Database) => void> = {
      // Answers one thing when opened alone (a verify) and another when attached (a restore).
      view: (db) => {
        db.exec('ALTER TABLE nodes RENAME TO nodes_real');
        db.exec('CREATE VIEW nodes AS SELECT * FROM nodes_real WHERE (SELECT count(*) FROM pragma_database_list) < 2');
      },
      trigger: (db) => db.exec("CREATE TRIGGER t AFTER INSERT ON users BEGIN DELETE FROM nodes; END"),
      extraTable: (db) => db.exec('CREATE TABLE extra (x)'),
      recursiveMeta: (db) => {
        db.exec('DROP TABLE meta');
        db.exec("CREATE VIEW meta AS WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT 'format_version' AS key, count(*) AS value FROM r");
      },
      otherIndex: (db) => {
        db.exec('DROP INDEX nodes_type');
        db.exec('CREATE INDEX nodes_type ON nodes(name)');
      },
      generatedColumn: (db) => db.exec("ALTER TABLE users ADD COLUMN shadow TEXT GENERATED ALWAYS AS (name || 'x') VIRTUAL"),
      missingTable: (db) => db.exec('DROP TABLE users'),
    };
    for (const [name, craft] of Object.entries(crafted)) {
      const problem = problemOf(stateFile(tmp.dir, name, craft));
      assert.ok(problem !== null, `${name} is refused`);
    }
  } finally {
    tmp.cleanup();
  }
});

test('a backup whose state runs a never-ending view is refused at once, not read for ever', async () => {
  const tmp = tempDir();
  try {
    const path = stateFile(tmp.dir, 'endless', (db) => {
      db.exec('DROP TABLE meta');
      db.exec("CREATE VIEW meta AS WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT 'format_version' AS key, count(*) AS value FROM r");
    });
    const bytes = readFileSync(path);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const now = new Date().toISOString();
    const uuid = randomUUID();
    const manifest: BackupManifest = {
      format: 'conclave-backup',
      formatVersion: 1,
      id: randomUUID(),
      createdAt: now,
      conclaveVersion: '0.1.0',
      dataFormatVersion,
      cluster: { name: 'c', uuid },
      source: { nodeId: 'n1', nodeName: 'a' },
      index: 5,
      term: 1,
      configuration: { current: ['n1'] },
      clusterState: { version: 1, clusterName: 'c', clusterUuid: uuid, nodes: [], votingConfiguration: { current: ['n1'] }, votingExclusions: [], settings: {}, inSync: [] } as unknown as BackupManifest['clusterState'],
      contentDigest: { version: contentDigestVersion, digest: '0'.repeat(64), counts: { nodes: 0, users: 0, binaryReferences: 0, blobs: 0, versions: 0, schemaLines: 0 } },
      base: null,
      blobsReferenced: [],
      parts: [{ name: 'state.db', bytes: bytes.length, sha256 }],
    };
    const file = join(tmp.dir, 'endless.backup.tar');
    await pipeline(archiveStream(manifest, [{ name: 'state.db', bytes: bytes.length, sha256, open: async function* () { yield bytes; } }]), createWriteStream(file));
    await assert.rejects(verifyBackup(file), (err: Error & { code?: string }) => err.code === 'BACKUP_CORRUPT' && /view/.test(err.message));
  } finally {
    tmp.cleanup();
  }
});
