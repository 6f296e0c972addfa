import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';

import { applyClusterEntry, emptyClusterState, type ClusterState } from '../core/clusterState.js';
import type { CoordinatorSnapshotData } from '../core/clusterCoordinator.js';
import type { ConfigurationPayload } from '../core/types.js';
import { invariant } from '../errors/catalogue.js';
import { contentDigest, contentDigestVersion } from '../replication/contentDigest.js';
import { ContentTables } from '../storage/contentTables.js';
import { JournalStore } from '../storage/journal.js';
import { diskFull, type SnapshotFileInfo } from '../storage/snapshotFile.js';

/** What a backup's manifest says of its state, computed from the copy of the node's database. */
export interface CapturedState {
  readonly state: SnapshotFileInfo;
  readonly term: number;
  readonly configuration: { readonly current: readonly string[]; readonly next?: readonly string[] };
  readonly clusterState: ClusterState;
  readonly contentDigest: { readonly version: string; readonly digest: string; readonly counts: { nodes: number; users: number; binaryReferences: number; blobs: number } };
  /** Every blob the state references, sorted, with its size. */
  readonly blobs: ReadonlyArray<{ readonly sha256: string; readonly size: number }>;
}

/** What describeState works out; the state file's own size and hash come from extractSnapshot. */
export type StateDescription = Omit<CapturedState, 'state'>;

/**
 * Runs in a worker thread (backupState.ts), beside another that extracts the state file from the same copy
 * (extractSnapshot): works out from the copy of the node's database what the coordinator knew at its applied index —
 * the entry's term, the voting configuration, the cluster state — and the content digest and the blobs referenced
 * there. The copy's content tables are the state file's, row for row. Exported for tests.
 */
export function describeState(copyPath: string): StateDescription {
  const copy = new Database(copyPath, { readonly: true });
  try {
    const applied = (copy.prepare(`SELECT value FROM meta WHERE key = 'applied_index'`).pluck().get() as number | undefined) ?? 0;
    const journal = new JournalStore(copy);
    const snapshot = journal.snapshot();
    invariant(snapshot === undefined || snapshot.index <= applied, `the copy's snapshot ${snapshot?.index} is past its applied index ${applied}`);
    let clusterState: ClusterState = (snapshot?.data as CoordinatorSnapshotData | undefined)?.clusterState ?? emptyClusterState;
    let term = snapshot?.term ?? 0;
    let configuration: ConfigurationPayload = snapshot?.configuration ?? { kind: 'configuration', current: [] };
    // The applied entries after the snapshot are all in the journal (compaction never passes the applied index).
    for (let from = (snapshot?.index ?? 0) + 1; from <= applied; ) {
      const entries = journal.read(from, Math.min(1000, applied - from + 1));
      invariant(entries.length > 0, `applied entry ${from} is missing from the journal copy`);
      for (const entry of entries) {
        clusterState = applyClusterEntry(clusterState, entry);
        if (entry.payload.kind === 'configuration') configuration = entry.payload;
        term = entry.term;
      }
      from += entries.length;
    }
    const content = new ContentTables(copy);
    const { digest, counts } = contentDigest(content.nodesById(), content.users());
    const sizes = new Map<string, number>();
    for (const { sha256, size } of content.blobReferences()) sizes.set(sha256, size);
    const blobs = [...sizes].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([sha256, size]) => ({ sha256, size }));
    const { current, next } = configuration;
    return {
      term,
      configuration: next === undefined ? { current: [...current] } : { current: [...current], next: [...next] },
      clusterState,
      contentDigest: { version: contentDigestVersion, digest, counts },
      blobs,
    };
  } finally {
    copy.close();
  }
}

if (parentPort !== null && (workerData as { describeBackupState?: boolean } | null)?.describeBackupState === true) {
  const { copyPath } = workerData as { copyPath: string };
  try {
    parentPort.postMessage({ result: describeState(copyPath) });
  } catch (err) {
    parentPort.postMessage({ error: err instanceof Error ? err.message : String(err), ...(diskFull(err) ? { code: 'DISK_FULL' } : {}) });
  }
}
