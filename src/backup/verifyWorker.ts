import { parentPort, workerData } from 'node:worker_threads';

import { isConclaveError } from '../errors/catalogue.js';
import { verifyBackup } from './verify.js';

// The worker thread of BackupService.writeToDirectory (backupService.ts): a node checks a backup it wrote here, so that hashing
// the file and recomputing the content digest never hold the event loop of a node that serves.
const { file, scratchDir } = workerData as { file: string; scratchDir: string };
verifyBackup(file, { scratchDir }).then(
  (report) => parentPort?.postMessage({ result: { manifest: report.manifest, path: report.file, bytes: report.bytes } }),
  (err: unknown) => parentPort?.postMessage({ error: err instanceof Error ? err.message : String(err), ...(isConclaveError(err) ? { code: err.code } : {}) }),
);
