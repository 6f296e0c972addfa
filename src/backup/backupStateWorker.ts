import Database from 'better-sqlite3';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';

import { applyClusterEntry, emptyClusterState, type ClusterState } from '../core/clusterState.js';
import type { CoordinatorSnapshotData } from '../core/clusterCoordinator.js';
import type { ConfigurationPayload } from '../core/types.js';
import { invariant } from '../errors/catalogue.js';
import { contentDigest, contentDigestVersion } from '../replication/contentDigest.js';
import { joinCommitPoint, type CommitPointCells } from '../storage/commitPoint.js';
import { ContentTables } from '../storage/contentTables.js';
import { JournalStore } from '../storage/journal.js';
import { diskFull, type SnapshotFileInfo } from '../storage/snapshotFile.js';

/** What a backup's manifest says of its state, computed from the node's database. */
export interface CapturedState {
  readonly state: SnapshotFileInfo;
  readonly term: number;
  readonly configuration: { readonly current: readonly string[]; readonly next?: readonly string[] };
  readonly clusterState: ClusterState;
  readonly contentDigest: { readonly version: string; readonly digest: string; readonly counts: { nodes: number; users: number; binaryReferences: number; blobs: number; versions: number; schemaLines: number } };
  /** Every blob the state references, sorted, with its size. */
  readonly blobs: ReadonlyArray<{ readonly sha256: string; readonly size: number }>;
}

/** What describeState works out; the state file's own size and hash come from extractSnapshot. */
export type StateDescription = Omit<CapturedState, 'state'> & { readonly index: number };

/** What the describing worker is given (see backupState.ts). */
export interface DescribeWorkerData {
  readonly describeBackupState: true;
  readonly sourcePath: string;
  readonly commitPoint?: CommitPointCells;
  readonly nice?: number;
}

/**
 * Runs in a worker thread (backupState.ts), beside another that extracts the state file at the same commit point
 * (extractSnapshot): works out from the node's database, read in one transaction, what the coordinator knew at its
 * applied index — the entry's term, the voting configuration, the cluster state — and the content digest and the
 * blobs referenced there. The content tables it reads are the state file's, row for row. Exported for tests.
 */
export function describeState(sourcePath: string, commitPoint?: CommitPointCells): StateDescription {
  const source = new Database(sourcePath, { readonly: true });
  try {
    let applied = 0;
    source.exec('BEGIN');
    const begin = () => {
      applied = (source.prepare(`SELECT value FROM meta WHERE key = 'applied_index'`).pluck().get() as number | undefined) ?? 0;
    };
    if (commitPoint === undefined) begin();
    else joinCommitPoint(commitPoint, begin);
    const journal = new JournalStore(source);
    const snapshot = journal.snapshot();
    invariant(snapshot === undefined || snapshot.index <= applied, `the snapshot ${snapshot?.index} is past its applied index ${applied}`);
    let clusterState: ClusterState = (snapshot?.data as CoordinatorSnapshotData | undefined)?.clusterState ?? emptyClusterState;
    let term = snapshot?.term ?? 0;
    let configuration: ConfigurationPayload = snapshot?.configuration ?? { kind: 'configuration', current: [] };
    // The applied entries after the snapshot are all in the journal (compaction never passes the applied index).
    for (let from = (snapshot?.index ?? 0) + 1; from <= applied; ) {
      const entries = journal.read(from, Math.min(1000, applied - from + 1));
      invariant(entries.length > 0, `applied entry ${from} is missing from the journal`);
      for (const entry of entries) {
        clusterState = applyClusterEntry(clusterState, entry);
        if (entry.payload.kind === 'configuration') configuration = entry.payload;
        term = entry.term;
      }
      from += entries.length;
    }
    const content = new ContentTables(source);
    const { digest, counts } = contentDigest(content.nodesById(), content.users(), content.versions.all(), content.stateDigestLines());
    const sizes = new Map<string, number>();
    for (const { sha256, size } of content.blobReferences()) sizes.set(sha256, size);
    const blobs = [...sizes].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([sha256, size]) => ({ sha256, size }));
    const { current, next } = configuration;
    return {
      index: applied,
      term,
      configuration: next === undefined ? { current: [...current] } : { current: [...current], next: [...next] },
      clusterState,
      contentDigest: { version: contentDigestVersion, digest, counts },
      blobs,
    };
  } finally {
    if (source.inTransaction) source.exec('COMMIT');
    source.close();
  }
}

if (parentPort !== null && (workerData as { describeBackupState?: boolean } | null)?.describeBackupState === true) {
  const { sourcePath, commitPoint, nice } = workerData as DescribeWorkerData;
  try {
    if (nice !== undefined) setPriority(nice);
    parentPort.postMessage({ result: describeState(sourcePath, commitPoint) });
  } catch (err) {
    parentPort.postMessage({ error: err instanceof Error ? err.message : String(err), ...(diskFull(err) ? { code: 'DISK_FULL' } : {}) });
  }
}
