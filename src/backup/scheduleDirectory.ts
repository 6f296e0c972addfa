import { lstatSync, realpathSync } from 'node:fs';
import { dirname, resolve, sep } from 'node:path';

import { ConclaveError } from '../errors/catalogue.js';

/**
 * Where scheduled backups may go: `backup.schedule.directory` is a dynamic setting any cluster admin can set, and the
 * master writes there (and its holders later delete from there) as the node's user. So the node's operator decides,
 * in each node's own configuration (`backup.directoriesAllowed`): the directory must be one of those or under one,
 * after normalisation and again after resolving symlinks, and never inside the node's data directory. None allowed
 * (the default): scheduled backups are refused.
 */
export interface ScheduleDirectoryPolicy {
  /** backup.directoriesAllowed: absolute paths. */
  readonly allowed: readonly string[];
  readonly dataDir: string;
}

/** Whether `path` is `parent` or lies under it; both already normalised. */
function within(path: string, parent: string): boolean {
  return path === parent || path.startsWith(parent.endsWith(sep) ? parent : `${parent}${sep}`);
}

/** What is wrong with writing to (or deleting from) `directory` by the policy alone, lexically; null when allowed. */
export function directoryRefusal(directory: string, policy: ScheduleDirectoryPolicy): string | null {
  const dir = resolve(directory);
  if (policy.allowed.length === 0) return 'no directory is allowed for scheduled backups on this node (backup.directoriesAllowed is empty)';
  if (!policy.allowed.some((allowed) => within(dir, resolve(allowed)))) return `${dir} is neither one of the directories backup.directoriesAllowed names nor under one`;
  if (within(dir, resolve(policy.dataDir))) return `${dir} is inside the node's data directory`;
  return null;
}

/**
 * Checks the directory a scheduled backup is about to be written to: allowed by the policy, both as written and with
 * its symlinks resolved, and an existing directory — not a symlink — owned by this process's user. Throws
 * BACKUP_DIRECTORY_REFUSED saying what does not hold.
 */
export function checkScheduleDirectory(directory: string, policy: ScheduleDirectoryPolicy): void {
  const refuse = (why: string) =>
    new ConclaveError('BACKUP_DIRECTORY_REFUSED', `Scheduled backups are not written to ${directory}: ${why}.`, { directory });
  const lexical = directoryRefusal(directory, policy);
  if (lexical !== null) throw refuse(lexical);
  let stat;
  try {
    stat = lstatSync(directory);
  } catch (err) {
    throw refuse(`it cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)}); create it, owned by the node's user`);
  }
  if (stat.isSymbolicLink()) throw refuse('it is a symbolic link; name the directory itself');
  if (!stat.isDirectory()) throw refuse('it is not a directory');
  const uid = process.getuid?.();
  if (uid !== undefined && stat.uid !== uid) throw refuse(`it is owned by uid ${stat.uid}, not by the node's user (uid ${uid})`);
  const real = realpathSync(directory);
  const realPolicy = { allowed: policy.allowed.map(realOrSelf), dataDir: realOrSelf(policy.dataDir) };
  const resolved = directoryRefusal(real, realPolicy);
  if (resolved !== null) throw refuse(`with its symbolic links resolved, ${resolved}`);
}

function realOrSelf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}

/** Whether the pruner may delete this file: its directory is allowed (lexically; the file itself is checked by name). */
export function prunableBy(policy: ScheduleDirectoryPolicy, path: string): boolean {
  return directoryRefusal(dirname(path), policy) === null;
}
