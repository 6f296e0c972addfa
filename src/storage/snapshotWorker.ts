import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';

import { diskFull, extractSnapshot, type SnapshotWorkerData } from './snapshotFile.js';

// The worker thread of writeSnapshotFile (snapshotFile.ts) and of a backup's state: the extraction, fsync and
// hashing of a snapshot file run here, off the event loop of the node.
const { sourcePath, outPath, commitPoint, nice, durable } = workerData as SnapshotWorkerData;
try {
  // Without a pid, the calling thread's (Linux keeps a nice value per thread): only this worker yields.
  if (nice !== undefined) setPriority(nice);
  parentPort?.postMessage({ result: extractSnapshot(sourcePath, outPath, commitPoint, durable) });
} catch (err) {
  parentPort?.postMessage({ error: err instanceof Error ? err.message : String(err), ...(diskFull(err) ? { code: 'DISK_FULL' } : {}) });
}
