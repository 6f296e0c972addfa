import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';

import { checkpointCells, type CheckpointWorkerData, type CheckpointWorkerMessage } from './walCheckpointer.js';

// The worker thread of WalCheckpointer (walCheckpointer.ts): PASSIVE checkpoints of the node's WAL, off its event loop.
const { databasePath, intervalMs, cells: shared } = workerData as CheckpointWorkerData;
const cells = new Int32Array(shared);
const db = new Database(databasePath);
try {
  // Never wait for a lock: a PASSIVE checkpoint that meets another one skips its turn rather than block.
  db.pragma('busy_timeout = 0');
  // A checkpoint syncs the WAL before it copies and the database file after it (NORMAL does both for checkpoints).
  db.pragma('synchronous = NORMAL');
  const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
  // Commits noted before this thread started count too: the count starts at 0 with the shared cells.
  let seen = 0;
  for (;;) {
    // Sleeps the interval, or until the node asks it to stop.
    Atomics.wait(cells, checkpointCells.stop, 0, intervalMs);
    if (Atomics.load(cells, checkpointCells.stop) !== 0) break;
    const commits = Atomics.load(cells, checkpointCells.commits);
    if (commits === seen) continue;
    seen = commits;
    try {
      checkpoint.get();
    } catch (err) {
      // A full disk (the database file grows), an I/O error: the node's own checkpoint still runs, and the next turn
      // tries again. The node logs it.
      parentPort?.postMessage({ failed: err instanceof Error ? err.message : String(err) } satisfies CheckpointWorkerMessage);
    }
  }
} finally {
  db.close();
}
