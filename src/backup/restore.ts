import { randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, constants, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

import { clusterSecretWeakness, generateClusterSecret } from '../config/clusterSecret.js';
import type { RotateTokenKeyCommand } from '../content/commands.js';
import type { Entry, Snapshot } from '../core/types.js';
import { ConclaveError, invariant, isConclaveError } from '../errors/catalogue.js';
import { restoredClusterState, type ClusterState } from '../core/clusterState.js';
import { dataDirectoryInUse, getMeta, openDatabase, setMeta, storageError } from '../storage/database.js';
import { JournalStore } from '../storage/journal.js';
import { fsyncFile, stateSchemaProblem, type SnapshotFileRef } from '../storage/snapshotFile.js';
import { fsyncDirectory } from '../storage/snapshotStore.js';
import { checkedCloneClusterState, newClusterState } from './restoredClusterState.js';
import { restoredFromMetaKey } from './restoredOrigin.js';
import { readManifestOfFile, verifyBackup, type VerifyReport } from './verify.js';

/**
 * `conclave restore`: a data directory built from a backup (and its chain of bases), such that a node started on it
 * starts exactly like a node that installed a snapshot at the backup's index — no runtime code knows about restores.
 *
 * Nothing is written to the target until the whole chain verified (verify.ts): the directory is built in a staging
 * directory beside it (same file system, 0700) and renamed into place at the end. A target that exists must be empty,
 * or is replaced only with `force`, after verification, by two renames.
 *
 * The directory holds what a snapshot install leaves: the state machine from the backup's state.db, meta
 * applied_index = the backup's index, the same state.db as snapshots/<index>.db and the journal's snapshot naming it
 * (held by the new node), a hard state at the backup's term with everything up to the index committed, an empty
 * journal after it, and the referenced blobs. Then:
 *
 * - `new-cluster`: the snapshot's cluster state is a cluster of one under a new UUID from the start (see
 *   buildDataDirectory for why not unsafe-bootstrap's way), the hard state a term later, and a rotateTokenKey entry
 *   is the new cluster's first (see tokenKeyRotation below);
 * - `clone`: nothing more. The node keeps the cluster's UUID and, started with --seed, joins it like a new member:
 *   the master sends the entries after the backup's index from its journal, or a snapshot when it no longer has
 *   them. A backup of another cluster is refused at the join by the cluster UUID (CLUSTER_UUID_MISMATCH), or here
 *   already when `clusterUuid` is given.
 */
export type RestoreMode = 'new-cluster' | 'clone';

export interface RestoreOptions {
  readonly file: string;
  readonly dataDir: string;
  readonly as: RestoreMode;
  /** Replace a non-empty target (after verification only). */
  readonly force?: boolean;
  /** The cluster secret to keep in DATA/cluster-secret (new-cluster: generated there when absent). */
  readonly clusterSecret?: string;
  readonly baseDirs?: readonly string[];
  /** clone: the UUID of the cluster the node is to join; a backup of another is refused (BACKUP_FOREIGN). */
  readonly clusterUuid?: string;
  readonly signal?: AbortSignal;
  readonly onProgress?: (file: string, bytesRead: number, bytesTotal: number) => void;
  readonly now?: () => Date;
}

export interface RestoreResult {
  readonly dataDir: string;
  readonly as: RestoreMode;
  readonly nodeId: string;
  readonly index: number;
  /** The term of the journal from now on (new-cluster: a new term). */
  readonly term: number;
  readonly clusterName: string;
  /** The cluster the node belongs to now (new-cluster: a new UUID). */
  readonly clusterUuid: string;
  readonly report: VerifyReport;
  /** DATA/cluster-secret when one was written; `generated` when restore drew it. */
  readonly secret: { readonly file: string; readonly generated: boolean } | null;
  /**
   * new-cluster: the dynamic settings of the backup not carried over, sorted — every `backup.schedule.*` (the
   * source's paths and schedule: scheduled backups are off until set again) and any value today's rules refuse.
   */
  readonly droppedSettings: readonly string[];
}

export async function restoreBackup(options: RestoreOptions): Promise<RestoreResult> {
  try {
    return await restore(options);
  } catch (err) {
    if (isConclaveError(err)) throw err;
    throw storageError(err);
  }
}

async function restore(options: RestoreOptions): Promise<RestoreResult> {
  const target = resolve(options.dataDir);
  const targetNonEmpty = checkTarget(target, options.force === true);
  if (options.clusterSecret !== undefined) {
    const weakness = clusterSecretWeakness(options.clusterSecret);
    if (weakness !== null) throw new ConclaveError('INVALID_REQUEST', `The cluster secret given is unusable: ${weakness}.`);
  }
  if (options.as === 'clone' && options.clusterUuid !== undefined) {
    const manifest = await readManifestOfFile(resolve(options.file));
    if (manifest.cluster.uuid !== options.clusterUuid) {
      throw new ConclaveError(
        'BACKUP_FOREIGN',
        `The backup is of cluster ${manifest.cluster.name} (${manifest.cluster.uuid}), not of the cluster ${options.clusterUuid} the clone is to join. Use a backup of that cluster.`,
        { backupCluster: manifest.cluster.uuid, clusterUuid: options.clusterUuid },
      );
    }
  }
  const parent = dirname(target);
  mkdirSync(parent, { recursive: true });
  // An empty target that exists may be a mount point (a volume mounted for the node): nothing can be renamed onto
  // it, so the directory is built inside it and its entries moved up at the end (same file system either way).
  const inside = existsSync(target) && !targetNonEmpty;
  const staging = mkdtempSync(inside ? join(target, '.restoring-') : join(parent, `.${basename(target)}.restoring-`));
  try {
    chmodSync(staging, 0o700);
    const snapshotsDir = join(staging, 'snapshots');
    mkdirSync(snapshotsDir, { mode: 0o700 });
    const keptState = join(snapshotsDir, 'restoring.db');
    const report = await verifyBackup(options.file, {
      ...(options.baseDirs !== undefined ? { baseDirs: options.baseDirs } : {}),
      scratchDir: staging,
      blobDir: join(staging, 'blobs'),
      keepStateAt: keptState,
      ...(options.signal !== undefined ? { signal: options.signal } : {}),
      ...(options.onProgress !== undefined ? { onProgress: options.onProgress } : {}),
    });
    options.signal?.throwIfAborted();
    const built = buildDataDirectory(staging, keptState, report, options);
    fsyncDirectory(snapshotsDir);
    fsyncDirectory(staging);
    if (inside) moveEntriesUp(staging, target);
    else moveIntoPlace(staging, target, targetNonEmpty);
    return { ...built, dataDir: target, report, secret: built.secret === null ? null : { ...built.secret, file: join(target, 'cluster-secret') } };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** Whether the target holds anything; refuses one that does unless `force`, and anything that is not a directory. */
function checkTarget(target: string, force: boolean): boolean {
  if (!existsSync(target)) return false;
  if (!statSync(target).isDirectory()) throw new ConclaveError('INVALID_REQUEST', `${target} exists and is not a directory; choose a directory for --data.`);
  const entries = readdirSync(target);
  if (entries.length > 0 && !force) {
    throw new ConclaveError(
      'RESTORE_TARGET_NOT_EMPTY',
      `The data directory ${target} is not empty (${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}); restore into an empty or new directory, or pass --force to replace what it holds (only once the backup verified).`,
      { dataDir: target },
    );
  }
  return entries.length > 0;
}

function buildDataDirectory(
  dir: string,
  keptState: string,
  report: VerifyReport,
  options: RestoreOptions,
): Omit<RestoreResult, 'dataDir' | 'report'> {
  const manifest = report.manifest;
  const index = manifest.index;
  const statePath = join(dir, 'snapshots', `${index}.db`);
  renameSync(keptState, statePath);
  fsyncFile(statePath);
  const nodeId = randomUUID();
  const ref: SnapshotFileRef = { index, bytes: manifest.parts[0]!.bytes, sha256: manifest.parts[0]!.sha256, term: manifest.term, holder: nodeId };
  // A new cluster is one from its first tick: its snapshot already names the new UUID, no member but this node (which
  // adds itself when elected) and a voting configuration of it alone. Were it to start with the backup's cluster
  // state and re-form later (as unsafe-bootstrap's journal entries do), it would for a moment be a master of the OLD
  // cluster's UUID with the old members as its replicas, in a term above theirs — and a source cluster still running
  // would take its appends and truncate its journal to match.
  const newCluster = options.as === 'new-cluster';
  const clusterUuid = newCluster ? randomUUID() : manifest.cluster.uuid;
  const term = newCluster ? manifest.term + 1 : manifest.term;
  const configuration = newCluster ? { current: [nodeId] } : manifest.configuration;
  // The manifest's cluster state is not covered by any digest: never installed as it stands (restoredClusterState.ts).
  const restored = newCluster ? newClusterState(manifest.clusterState, { clusterUuid, nodeId }) : null;
  const clusterState: ClusterState = restored?.state ?? checkedCloneClusterState(restoredClusterState(manifest.clusterState));
  const snapshot: Snapshot = {
    index,
    term: manifest.term,
    configuration: { kind: 'configuration', ...configuration },
    data: { clusterState, stateMachine: ref },
  };
  const at = (options.now?.() ?? new Date()).toISOString();
  // The node's database starts as a byte copy of the verified state file (a state file has the node's schema, an
  // empty journal and the state machine's meta): one sequential copy instead of re-inserting every row through the
  // WAL and checkpointing it — and what the node will serve is exactly the bytes whose digest was verified. Then the
  // node's own records go in.
  const databaseFile = join(dir, 'conclave.db');
  copyFileSync(statePath, databaseFile, constants.COPYFILE_EXCL);
  chmodSync(databaseFile, 0o600);
  const db = openDatabase(dir);
  try {
    const problem = stateSchemaProblem(db, 'main');
    invariant(problem === null, `the copy of a verified state file is not a state file: ${problem}`);
    const journal = new JournalStore(db);
    db.transaction(() => {
      invariant(getMeta<number>(db, 'applied_index') === index, 'the copied state is at the backup\'s index');
      setMeta(db, 'node_id', nodeId);
      journal.install(snapshot);
      journal.saveHardState({ term, votedFor: null, commitIndex: index });
      setMeta(db, restoredFromMetaKey, JSON.stringify({ backupId: manifest.id, index, as: options.as, at }));
      if (newCluster) journal.write([tokenKeyRotation(index + 1, term, at)]);
    })();
  } finally {
    db.close();
  }
  let secret: RestoreResult['secret'] = null;
  if (options.clusterSecret !== undefined || options.as === 'new-cluster') {
    const file = join(dir, 'cluster-secret');
    // Written as the node writes its generated secret (conclaveNode.ts clusterSecret()): it reads this file when no
    // secret is configured. A clone without one must be given the cluster's at start.
    writeFileSync(file, `${options.clusterSecret ?? generateClusterSecret()}\n`, { mode: 0o600, flag: 'wx' });
    fsyncFile(file);
    secret = { file, generated: options.clusterSecret === undefined };
  }
  return { as: options.as, nodeId, index, term, clusterName: manifest.cluster.name, clusterUuid, secret, droppedSettings: restored?.droppedSettings ?? [] };
}

/**
 * Bearer tokens issued before the backup must not open the recovered cluster. A token is signed with a key derived
 * from the cluster secret and the state's token key id (auth/tokens.ts); the secret may well be the old one, so the
 * key id changes: a rotateTokenKey entry, the first of the new cluster's journal, in its first term.
 * An entry rather than an edit of the restored state: the state stays byte-for-byte the backup's (its file is the
 * snapshot that nodes joining later download, checked by SHA-256), and every node — this one at its first start,
 * the others when they replicate — applies the same rotation at the same index through the ordinary journal.
 */
function tokenKeyRotation(index: number, term: number, at: string): Entry {
  const command: RotateTokenKeyCommand = { type: 'rotateTokenKey', keyId: randomUUID(), time: at };
  return { index, term, payload: { kind: 'command', data: command } };
}

/**
 * The staging directory becomes the target: by one rename when the target is absent; when it holds
 * something (force), the old directory is renamed aside first and removed once the new one is in place.
 */
function moveIntoPlace(staging: string, target: string, targetNonEmpty: boolean): void {
  if (!targetNonEmpty) {
    renameSync(staging, target);
  } else {
    refuseInUse(target);
    const aside = `${target}.replaced-${randomBytes(4).toString('hex')}`;
    renameSync(target, aside);
    try {
      renameSync(staging, target);
    } catch (err) {
      renameSync(aside, target);
      throw err;
    }
    rmSync(aside, { recursive: true, force: true });
  }
  fsyncDirectory(dirname(target));
}

/**
 * The staging directory's entries become the (empty) target's, the database last: a crash in between leaves a
 * target without conclave.db that a node would not start from as this restore (restore again with --force).
 */
function moveEntriesUp(staging: string, target: string): void {
  const names = readdirSync(staging).sort((a, b) => Number(a.startsWith('conclave.db')) - Number(b.startsWith('conclave.db')));
  for (const name of names) renameSync(join(staging, name), join(target, name));
  fsyncDirectory(target);
}

/** A node running on the directory holds its lock (database.ts): replacing its files under it is refused. */
function refuseInUse(target: string): void {
  if (dataDirectoryInUse(target)) {
    throw new ConclaveError('STORAGE_ERROR', `The data directory ${target} is in use by a running Conclave node; stop it before restoring over it.`, { dataDir: target });
  }
}
