import { randomUUID } from 'node:crypto';
import { join } from 'node:path';

import { copyDatabase, removeDatabaseFileInBackground, runFileWorker, type SnapshotFileInfo } from '../storage/snapshotFile.js';
import type { Db } from '../storage/database.js';
import type { CapturedState, StateDescription } from './backupStateWorker.js';

/**
 * The state part of a backup, taken while the node serves: SQLite's online backup copies the live database a few
 * milliseconds of the event loop at a time (copyDatabase), and a worker thread extracts the state machine at the
 * copy's applied index and computes what the manifest says of it (backupStateWorker.ts). Resolves with the path of
 * the state file (in tmpDir: the caller removes it when done) and what it holds.
 */
export async function captureBackupState(db: Db, tmpDir: string, signal?: AbortSignal): Promise<{ path: string; captured: CapturedState }> {
  const name = randomUUID();
  const copyPath = join(tmpDir, `${name}.copy.db`);
  const outPath = join(tmpDir, `${name}.state.db`);
  try {
    await copyDatabase(db, copyPath, signal);
    signal?.throwIfAborted();
    // Two threads read the copy at once: one extracts the state file (and hashes it), the other digests the content
    // and works out the cluster's view at that index — on two cores, the backup's first byte comes that much sooner.
    const [state, description] = await Promise.all([
      runFileWorker<SnapshotFileInfo>(new URL('../storage/snapshotWorker.js', import.meta.url), { copyPath, outPath }, 'Extracting the state for a backup', signal),
      runFileWorker<StateDescription>(new URL('./backupStateWorker.js', import.meta.url), { copyPath, describeBackupState: true }, 'Describing the state for a backup', signal),
    ]);
    return { path: outPath, captured: { state, ...description } };
  } catch (err) {
    removeDatabaseFileInBackground(outPath, tmpDir);
    throw err;
  } finally {
    removeDatabaseFileInBackground(copyPath, tmpDir);
  }
}
