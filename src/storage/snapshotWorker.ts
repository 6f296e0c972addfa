import { parentPort, workerData } from 'node:worker_threads';

import { diskFull, extractSnapshot } from './snapshotFile.js';

// The worker thread of writeSnapshotFile (snapshotFile.ts): the extraction, fsync and hashing of a snapshot file
// run here, off the event loop of the node.
const { copyPath, outPath } = workerData as { copyPath: string; outPath: string };
try {
  parentPort?.postMessage({ result: extractSnapshot(copyPath, outPath) });
} catch (err) {
  parentPort?.postMessage({ error: err instanceof Error ? err.message : String(err), ...(diskFull(err) ? { code: 'DISK_FULL' } : {}) });
}
