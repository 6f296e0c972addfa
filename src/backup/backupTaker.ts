import type { BackupManifest } from './manifest.js';

/** A backup written to a file, verified. */
export interface BackupWritten {
  readonly manifest: BackupManifest;
  readonly path: string;
  readonly bytes: number;
}

/**
 * What the scheduled backups (and anything else that writes backups to a directory) need of the node: implemented by
 * BackupService (backupService.ts), which takes the consistent copy, completes the blobs and streams the archive.
 */
export interface BackupTaker {
  /**
   * Writes a full backup of this node's state into `directory` as `fileName`: to a temporary name first, fsynced,
   * renamed, the directory fsynced, then read back and verified (verify.ts). A file already there under that name is
   * replaced only by the rename, never truncated. Rejects with a ConclaveError when any step fails (nothing is left
   * under `fileName` then).
   */
  writeToDirectory(directory: string, fileName: string, signal?: AbortSignal): Promise<BackupWritten>;
}
