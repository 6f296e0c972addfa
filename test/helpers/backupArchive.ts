import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

import type { ArchivePartSource } from '../../src/backup/archiveWriter.js';
import { archiveStream } from '../../src/backup/archiveWriter.js';
import { backupFileName, backupFormatName, backupFormatVersion, stateEntryName, type BackupBase, type BackupManifest } from '../../src/backup/manifest.js';
import type { ConfigurationPayload } from '../../src/core/types.js';
import { inspectNode } from '../../src/node/recovery.js';
import { contentDigest, contentDigestVersion } from '../../src/replication/contentDigest.js';
import { ContentTables } from '../../src/storage/contentTables.js';
import { dataFormatVersion, getMeta, openDatabase } from '../../src/storage/database.js';
import { JournalStore } from '../../src/storage/journal.js';
import { hashFile, writeSnapshotFile } from '../../src/storage/snapshotFile.js';

/**
 * Test-only: a backup archive built from a stopped node's data directory, with the same layout the node's backup
 * service writes (manifest.ts), so that readers and restores can be tested before and independently of it. The
 * state is the node's at its applied index; `base` makes it incremental (the base's blobs are left out).
 */
export async function backupFromDataDir(
  dataDir: string,
  outDir: string,
  options: {
    base?: { manifest: BackupManifest; file: string };
    mutateManifest?: (m: BackupManifest) => BackupManifest;
    /** Writes the state as data format 2 did (before the change feed): the table and its meta key left out. */
    stateFormat2?: boolean;
    /** Changes the state file after it is written (and hashed again): a state the node never held. */
    mutateState?: (state: Database.Database) => void;
  } = {},
): Promise<{ path: string; manifest: BackupManifest }> {
  const node = inspectNode(dataDir);
  const db = openDatabase(dataDir);
  const tmp = mkdtempSync(join(outDir, '.state-'));
  try {
    const written = await writeSnapshotFile(db, tmp);
    const statePath = written.path;
    let info = written.info;
    if (options.mutateState !== undefined) {
      const state = new Database(statePath);
      options.mutateState(state);
      state.close();
      info = { ...info, ...(await hashFile(statePath)) };
    }
    if (options.stateFormat2 === true) {
      const state = new Database(statePath);
      state.exec(`DROP TABLE access; DROP TABLE schemas; DROP TABLE schema_migrations; DROP INDEX nodes_type_id; DROP TABLE changes; DROP TABLE versions; ALTER TABLE nodes DROP COLUMN op; ALTER TABLE nodes DROP COLUMN idx; ALTER TABLE nodes DROP COLUMN restored_from; DELETE FROM meta WHERE key IN ('changes_pruned_through', 'history_started_at', 'history_versions_per_node', 'schemas_required', 'search_index_untyped'); UPDATE meta SET value = 2 WHERE key = 'format_version'`);
      state.close();
      info = { ...info, ...(await hashFile(statePath)) };
    }
    const journal = new JournalStore(db);
    const snapshot = journal.snapshot();
    // The term of the applied entry and the configuration in force there.
    let term = snapshot?.term ?? 0;
    let configuration: ConfigurationPayload | undefined = snapshot?.configuration;
    const from = (snapshot?.index ?? 0) + 1;
    for (const entry of journal.read(from, info.index - from + 1)) {
      term = entry.term;
      if (entry.payload.kind === 'configuration') configuration = entry.payload;
    }
    const content = new ContentTables(db);
    const digest = contentDigest(content.nodesById(), content.users(), options.stateFormat2 === true ? [] : content.versions.all(), options.stateFormat2 === true ? [] : content.stateDigestLines());
    const referenced = [...new Set(content.blobReferences().map((r) => r.sha256))].sort();
    const baseHeld = new Set(options.base?.manifest.blobsReferenced ?? []);
    const blobs = referenced.filter((sha256) => !baseHeld.has(sha256));
    const blobParts = await Promise.all(
      blobs.map(async (sha256) => {
        const path = join(dataDir, 'blobs', sha256.slice(0, 2), sha256.slice(2, 4), sha256);
        const { size } = await import('node:fs/promises').then((fs) => fs.stat(path));
        return { name: `blobs/${sha256}`, bytes: size, sha256, path };
      }),
    );
    const createdAt = new Date().toISOString();
    const base: BackupBase | null =
      options.base === undefined
        ? null
        : { id: options.base.manifest.id, index: options.base.manifest.index, createdAt: options.base.manifest.createdAt, file: options.base.file.split('/').pop()! };
    const { kind: _kind, ...config } = configuration!;
    let manifest: BackupManifest = {
      format: backupFormatName,
      formatVersion: backupFormatVersion,
      id: randomUUID(),
      createdAt,
      conclaveVersion: '0.1.0',
      dataFormatVersion: options.stateFormat2 === true ? 2 : dataFormatVersion,
      cluster: { name: node.clusterState.clusterName!, uuid: node.clusterState.clusterUuid! },
      source: { nodeId: getMeta<string>(db, 'node_id')!, nodeName: node.clusterState.nodes.find((n) => n.id === node.nodeId)?.name ?? 'n1' },
      index: info.index,
      term,
      configuration: config,
      clusterState: node.clusterState,
      contentDigest: { version: contentDigestVersion, digest: digest.digest, counts: digest.counts },
      base,
      blobsReferenced: referenced,
      parts: [{ name: stateEntryName, bytes: info.bytes, sha256: info.sha256 }, ...blobParts.map(({ name, bytes, sha256 }) => ({ name, bytes, sha256 }))],
    };
    if (options.mutateManifest !== undefined) manifest = options.mutateManifest(manifest);
    const sources: ArchivePartSource[] = [
      { name: stateEntryName, bytes: info.bytes, sha256: info.sha256, open: () => createReadStream(statePath) },
      ...blobParts.map((p) => ({ name: p.name, bytes: p.bytes, sha256: p.sha256, open: () => createReadStream(p.path) })),
    ];
    const path = join(outDir, backupFileName(manifest).replace('.backup.tar', `-${manifest.id.slice(0, 8)}.backup.tar`));
    await pipeline(archiveStream(manifest, sources), createWriteStream(path));
    return { path, manifest };
  } finally {
    db.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}
