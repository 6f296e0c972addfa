import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';

import { applyClusterEntry, emptyClusterState, type ClusterState } from '../core/clusterState.js';
import type { CoordinatorSnapshotData } from '../core/clusterCoordinator.js';
import type { ConfigurationPayload } from '../core/types.js';
import { invariant } from '../errors/catalogue.js';
import { contentDigest, contentDigestVersion } from '../replication/contentDigest.js';
import { ContentTables } from '../storage/contentTables.js';
import { JournalStore } from '../storage/journal.js';
import { extractSnapshot, type SnapshotFileInfo } from '../storage/snapshotFile.js';

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

/**
 * Runs in a worker thread (backupState.ts): extracts the state machine from a copy of the node's database into
 * `outPath` (a snapshot file: extractSnapshot), then works out from the copy's journal what the coordinator knew
 * at that applied index — the entry's term, the voting configuration, the cluster state — and from the extracted
 * file the content digest and the blobs it references. Exported for tests.
 */
export function captureState(copyPath: string, outPath: string): CapturedState {
  const state = extractSnapshot(copyPath, outPath);
  const copy = new Database(copyPath, { readonly: true });
  let term: number;
  let configuration: ConfigurationPayload;
  let clusterState: ClusterState;
  try {
    const journal = new JournalStore(copy);
    const snapshot = journal.snapshot();
    invariant(snapshot === undefined || snapshot.index <= state.index, `the copy's snapshot ${snapshot?.index} is past its applied index ${state.index}`);
    clusterState = (snapshot?.data as CoordinatorSnapshotData | undefined)?.clusterState ?? emptyClusterState;
    term = snapshot?.term ?? 0;
    configuration = snapshot?.configuration ?? { kind: 'configuration', current: [] };
    // The applied entries after the snapshot are all in the journal (compaction never passes the applied index).
    for (let from = (snapshot?.index ?? 0) + 1; from <= state.index; ) {
      const entries = journal.read(from, Math.min(1000, state.index - from + 1));
      invariant(entries.length > 0, `applied entry ${from} is missing from the journal copy`);
      for (const entry of entries) {
        clusterState = applyClusterEntry(clusterState, entry);
        if (entry.payload.kind === 'configuration') configuration = entry.payload;
        term = entry.term;
      }
      from += entries.length;
    }
  } finally {
    copy.close();
  }
  const out = new Database(outPath, { readonly: true });
  try {
    const content = new ContentTables(out);
    const { digest, counts } = contentDigest(content.nodesById(), content.users());
    const sizes = new Map<string, number>();
    for (const { sha256, size } of content.blobReferences()) sizes.set(sha256, size);
    const blobs = [...sizes].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([sha256, size]) => ({ sha256, size }));
    const { current, next } = configuration;
    return {
      state,
      term,
      configuration: next === undefined ? { current: [...current] } : { current: [...current], next: [...next] },
      clusterState,
      contentDigest: { version: contentDigestVersion, digest, counts },
      blobs,
    };
  } finally {
    out.close();
  }
}

if (parentPort !== null && (workerData as { captureBackupState?: boolean } | null)?.captureBackupState === true) {
  const { copyPath, outPath } = workerData as { copyPath: string; outPath: string };
  try {
    parentPort.postMessage({ result: captureState(copyPath, outPath) });
  } catch (err) {
    parentPort.postMessage({ error: err instanceof Error ? err.message : String(err) });
  }
}
