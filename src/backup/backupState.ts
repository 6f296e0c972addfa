import { randomUUID } from 'node:crypto';
import { join } from 'node:path';

import { ConclaveError, invariant } from '../errors/catalogue.js';
import { newCommitPoint, openCommitPoint } from '../storage/commitPoint.js';
import type { Db } from '../storage/database.js';
import { removeDatabaseFileInBackground, runFileWorker, type SnapshotFileInfo, type SnapshotWorkerData } from '../storage/snapshotFile.js';
import type { CapturedState, DescribeWorkerData, StateDescription } from './backupStateWorker.js';

/**
 * How long the workers may take to open their connections and begin reading, and the event loop to see them begin
 * (it is held only for the second: a millisecond or two).
 */
const commitPointWaitMs = 10_000;

/**
 * The state part of a backup, taken while the node serves, without a copy of the database: two worker threads read
 * the live database at one commit point (commitPoint.ts) — one extracts the state file and hashes it, the other
 * works out what the manifest says of it (backupStateWorker.ts) — on two cores, the backup's first byte comes that
 * much sooner. Both run at `nice` (Linux: per thread), so a backup takes what CPU the node's serving leaves. Resolves
 * with the path of the state file (in tmpDir: the caller removes it when done) and what it holds.
 */
export async function captureBackupState(db: Db, tmpDir: string, nice: number, signal?: AbortSignal): Promise<{ path: string; captured: CapturedState }> {
  const outPath = join(tmpDir, `${randomUUID()}.state.db`);
  // One worker's failure stops the other, which would otherwise wait for a commit point that never comes.
  const stop = new AbortController();
  const onAbort = () => stop.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const commitPoint = newCommitPoint(2, commitPointWaitMs);
    // Not durable: the state file is streamed once and removed; a crash loses the backup in progress whatever is synced.
    const extract: SnapshotWorkerData = { sourcePath: db.name, outPath, commitPoint, nice, durable: false };
    const describe: DescribeWorkerData = { describeBackupState: true, sourcePath: db.name, commitPoint, nice };
    const workers = Promise.all([
      runFileWorker<SnapshotFileInfo>(new URL('../storage/snapshotWorker.js', import.meta.url), extract, 'Extracting the state for a backup', stop.signal, { smallHeap: true }),
      runFileWorker<StateDescription>(new URL('./backupStateWorker.js', import.meta.url), describe, 'Describing the state for a backup', stop.signal, { smallHeap: true }),
    ]);
    workers.catch(() => stop.abort());
    await Promise.race([openCommitPoint(commitPoint, stop.signal), workers]);
    const [state, { index, ...description }] = await workers;
    invariant(state.index === index, `the backup's workers read two commit points (applied ${state.index} and ${index})`);
    return { path: outPath, captured: { state, ...description } };
  } catch (err) {
    stop.abort();
    removeDatabaseFileInBackground(outPath, tmpDir);
    if (err instanceof Error && err.name === 'AbortError' && signal?.aborted !== true) {
      // The commit point was given up because a worker failed: that failure is the one to report.
      throw new ConclaveError('STORAGE_ERROR', 'Reading the state for a backup failed.');
    }
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
