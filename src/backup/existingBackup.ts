import { lstatSync } from 'node:fs';
import type { Logger } from 'pino';

import type { ClusterState } from '../core/clusterState.js';
import type { BackupWritten } from './backupTaker.js';

/**
 * A file found under a slot's name before the master writes it: the backup a master of this cluster wrote for the slot
 * and was deposed before committing its record — or a file someone else put there, the directory being shared and the
 * name predictable. It is recorded as the cluster's own backup only when it can only be the former: a regular file
 * (not a symlink) of this process's user that no one else may write, which verifies, of this cluster (its UUID), full
 * (no base), and taken on a member. Anything else: null, and the slot is written again (the rename replaces it).
 */
export async function existingScheduledBackup(
  path: string,
  deps: { readonly state: () => ClusterState; readonly verify: (path: string, signal: AbortSignal) => Promise<BackupWritten>; readonly log: Logger },
  signal: AbortSignal,
): Promise<BackupWritten | null> {
  let stat;
  try {
    stat = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const refuse = (why: string): null => {
    deps.log.warn({ path }, `a file of this backup slot is there but ${why}; it is written again`);
    return null;
  };
  const uid = process.getuid?.();
  if (!stat.isFile()) return refuse('is not a regular file');
  if (uid !== undefined && stat.uid !== uid) return refuse(`is owned by uid ${stat.uid}, not the node's user`);
  if ((stat.mode & 0o022) !== 0) return refuse('may be written by other users');
  let written: BackupWritten;
  try {
    written = await deps.verify(path, signal);
  } catch (err) {
    if (signal.aborted) throw err;
    deps.log.warn({ err, path }, 'a file of this backup slot is there but does not verify; it is written again');
    return null;
  }
  const state = deps.state();
  const manifest = written.manifest;
  if (manifest.cluster.uuid !== state.clusterUuid) return refuse(`is a backup of another cluster (${manifest.cluster.uuid})`);
  if (manifest.base !== null) return refuse('is an incremental backup, not a scheduled one');
  if (!state.nodes.some((n) => n.id === manifest.source.nodeId)) return refuse(`was taken on ${manifest.source.nodeId}, not a member`);
  return written;
}
