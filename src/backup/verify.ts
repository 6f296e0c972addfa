import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';

import { ConclaveError, isConclaveError } from '../errors/catalogue.js';
import { versionsPerNodeMin } from '../content/history.js';
import { contentDigest } from '../replication/contentDigest.js';
import { ContentTables } from '../storage/contentTables.js';
import { dataFormatVersion } from '../storage/database.js';
import { removeDatabaseFile, stateFormatOf } from '../storage/snapshotFile.js';
import { fsyncDirectory } from '../storage/snapshotStore.js';
import { discardSink, readArchive, readManifest, type PartSink } from './archiveReader.js';
import { blobEntryPrefix, stateEntryName, type BackupManifest } from './manifest.js';

/**
 * `verifyBackup`: everything a restore relies on, checked without touching any data directory — every part's size
 * and SHA-256 (archiveReader.ts), then the state itself: opened read-only, its data format, its applied index, its
 * content digest recomputed and compared with the manifest's, the blobs it references compared with the manifest's
 * list — and for an incremental backup its whole chain of bases, each verified the same way, and every blob the
 * state references found in the file or one of its bases.
 *
 * Disk use: each state.db is written to a scratch directory while it is checked and removed after; blobs are hashed
 * and discarded unless the caller (a restore) asks for them in a blob directory.
 */

/** The longest chain of incremental backups followed: a longer one is a loop of copies or damage, not a history. */
export const backupChainDepthMax = 1000;
const readChunkBytes = 1024 * 1024;

export interface VerifyOptions {
  /** Directories where bases are looked for after the backup's own directory (`--base-dir`). */
  readonly baseDirs?: readonly string[];
  /** Where each state.db is written while it is checked (default: the system's temporary directory). */
  readonly scratchDir?: string;
  /**
   * A restore's blob directory (a node's layout: <dir>/ab/cd/<sha256>): every blob the backup's state references is
   * written there (files 0600, directories 0700, fsynced) as it is read from the backup or its chain.
   */
  readonly blobDir?: string;
  /** A restore's copy of the backup's own state.db: kept at this path (0600, fsynced) once verified. */
  readonly keepStateAt?: string;
  readonly signal?: AbortSignal;
  /** Progress of each file read: its path, the bytes read and its size. */
  readonly onProgress?: (file: string, bytesRead: number, bytesTotal: number) => void;
}

export interface VerifiedFile {
  readonly file: string;
  readonly id: string;
  readonly index: number;
  readonly createdAt: string;
  readonly bytes: number;
  readonly parts: number;
}

export interface VerifyReport {
  readonly file: string;
  readonly manifest: BackupManifest;
  readonly id: string;
  readonly createdAt: string;
  readonly cluster: { readonly name: string; readonly uuid: string };
  readonly source: { readonly nodeId: string; readonly nodeName: string };
  readonly index: number;
  readonly term: number;
  readonly digest: string;
  readonly counts: BackupManifest['contentDigest']['counts'];
  readonly blobsReferenced: number;
  /** Parts of this file (state.db and the blobs it holds). */
  readonly parts: number;
  /** Bytes of this file. */
  readonly bytes: number;
  /** The bases this backup needs, nearest first (empty for a full backup). */
  readonly chain: readonly VerifiedFile[];
  /** Bytes of this file and its chain. */
  readonly bytesTotal: number;
}

interface ChainLink {
  readonly file: string;
  readonly manifest: BackupManifest;
}

export async function verifyBackup(file: string, options: VerifyOptions = {}): Promise<VerifyReport> {
  const chain = await resolveChain(resolve(file), options.baseDirs ?? []);
  const top = chain[0]!.manifest;
  const wanted = options.blobDir === undefined ? null : new Set(top.blobsReferenced);
  const blobs = options.blobDir === undefined ? null : new BlobWriter(options.blobDir);
  const scratch = mkdtempSync(join(options.scratchDir ?? tmpdir(), 'conclave-verify-'));
  const verified: VerifiedFile[] = [];
  try {
    for (const [i, link] of chain.entries()) {
      const keep = i === 0 ? options.keepStateAt : undefined;
      verified.push(await verifyOne(link, scratch, keep, wanted, blobs, options));
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  // Every file's state must find its blobs in itself or its bases (a base chain is complete for its own state too).
  const held = new Set<string>();
  for (let i = chain.length - 1; i >= 0; i--) {
    const { file: path, manifest } = chain[i]!;
    for (const part of manifest.parts.slice(1)) held.add(part.sha256);
    const missing = manifest.blobsReferenced.filter((sha256) => !held.has(sha256));
    if (missing.length > 0) {
      throw new ConclaveError(
        'BACKUP_CORRUPT',
        `The backup ${basename(path)} references ${missing.length} blob(s) that neither it nor its bases hold (the first: ${missing[0]}); the chain is not the one it was taken against. Use a full backup.`,
        { file: path, blobsMissing: missing.length },
      );
    }
  }
  blobs?.syncDirectories();
  const bytesTotal = verified.reduce((sum, v) => sum + v.bytes, 0);
  return {
    file: chain[0]!.file,
    manifest: top,
    id: top.id,
    createdAt: top.createdAt,
    cluster: top.cluster,
    source: top.source,
    index: top.index,
    term: top.term,
    digest: top.contentDigest.digest,
    counts: top.contentDigest.counts,
    blobsReferenced: top.blobsReferenced.length,
    parts: top.parts.length,
    bytes: verified[0]!.bytes,
    chain: verified.slice(1),
    bytesTotal,
  };
}

/** The manifest of a backup file (its first entry only). */
export async function readManifestOfFile(file: string): Promise<BackupManifest> {
  const stream = createReadStream(file, { highWaterMark: 64 * 1024 });
  try {
    return await readManifest(stream);
  } catch (err) {
    if (isConclaveError(err)) throw err;
    throw new ConclaveError('BACKUP_CORRUPT', `Cannot read the backup ${file}: ${(err as Error).message}`, { file });
  } finally {
    stream.destroy();
  }
}

/**
 * The backup and its bases, nearest first, from their manifests alone (cheap): a missing base, a base of another
 * cluster or a loop is reported before any file is read whole.
 */
async function resolveChain(file: string, baseDirs: readonly string[]): Promise<ChainLink[]> {
  if (!existsSync(file)) throw new ConclaveError('INVALID_REQUEST', `There is no file ${file}.`, { file });
  const chain: ChainLink[] = [{ file, manifest: await readManifestOfFile(file) }];
  const ids = new Set([chain[0]!.manifest.id]);
  const cluster = chain[0]!.manifest.cluster;
  for (;;) {
    const { file: from, manifest } = chain[chain.length - 1]!;
    const base = manifest.base;
    if (base === null) return chain;
    if (chain.length > backupChainDepthMax) {
      throw new ConclaveError('BACKUP_CORRUPT', `The backup's chain of bases is longer than ${backupChainDepthMax} files; take a full backup.`, { file });
    }
    if (base.file !== basename(base.file) || base.file === '.' || base.file === '..') {
      throw new ConclaveError('BACKUP_CORRUPT', `The backup ${basename(from)} names its base as ${JSON.stringify(base.file)}, which is not a file name.`, { file: from });
    }
    const dirs = [...new Set([dirname(from), ...baseDirs.map((d) => resolve(d))])];
    let found: ChainLink | null = null;
    const others: string[] = [];
    for (const dir of dirs) {
      const path = join(dir, base.file);
      if (!existsSync(path)) continue;
      const candidate = await readManifestOfFile(path);
      if (candidate.id === base.id) {
        found = { file: path, manifest: candidate };
        break;
      }
      others.push(`${path} is backup ${candidate.id}`);
    }
    if (found === null) {
      throw new ConclaveError(
        'BACKUP_CHAIN_INCOMPLETE',
        `The backup ${basename(from)} is incremental: it needs its base ${base.file} (backup ${base.id}, index ${base.index}, taken ${base.createdAt}), ` +
          `which is not in ${dirs.join(' or ')}${others.length > 0 ? ` (${others.join('; ')}, not that one)` : ''}. ` +
          'Put that file beside it, or name its directory with --base-dir.',
        { file: from, needed: base.file, baseId: base.id },
      );
    }
    if (found.manifest.cluster.uuid !== cluster.uuid) {
      throw new ConclaveError(
        'BACKUP_FOREIGN',
        `The base ${found.file} belongs to cluster ${found.manifest.cluster.name} (${found.manifest.cluster.uuid}), not to ${cluster.name} (${cluster.uuid}) like the backup that names it.`,
        { file: found.file },
      );
    }
    if (found.manifest.index !== base.index || found.manifest.index > manifest.index) {
      throw new ConclaveError('BACKUP_CORRUPT', `The base ${found.file} holds index ${found.manifest.index}, not the ${base.index} the backup names.`, { file: found.file });
    }
    if (ids.has(found.manifest.id)) throw new ConclaveError('BACKUP_CORRUPT', `The chain of bases loops back to ${found.file}.`, { file: found.file });
    ids.add(found.manifest.id);
    chain.push(found);
  }
}

async function verifyOne(
  link: ChainLink,
  scratch: string,
  keepStateAt: string | undefined,
  wanted: Set<string> | null,
  blobs: BlobWriter | null,
  options: VerifyOptions,
): Promise<VerifiedFile> {
  const statePath = keepStateAt ?? join(scratch, `${randomBytes(8).toString('hex')}.db`);
  const total = statSync(link.file).size;
  const stream = createReadStream(link.file, { highWaterMark: readChunkBytes });
  let read;
  try {
    read = await readArchive(stream, {
      ...(options.signal !== undefined ? { signal: options.signal } : {}),
      onManifest: (manifest) => {
        if (manifest.id !== link.manifest.id) {
          throw new ConclaveError('BACKUP_CORRUPT', `The file ${link.file} changed while it was read (now backup ${manifest.id}).`, { file: link.file });
        }
        if (manifest.dataFormatVersion > dataFormatVersion) throw formatNewer(link.file, manifest.dataFormatVersion);
      },
      sinkFor: (part) => {
        if (part.name === stateEntryName) return fileSink(statePath);
        const sha256 = part.name.slice(blobEntryPrefix.length);
        return blobs !== null && wanted!.has(sha256) ? blobs.sink(sha256) : discardSink;
      },
      onProgress: (bytes) => options.onProgress?.(link.file, bytes, total),
    });
  } catch (err) {
    removeDatabaseFile(statePath);
    if (isConclaveError(err)) throw withFile(err, link.file);
    throw new ConclaveError('BACKUP_CORRUPT', `Cannot read the backup ${link.file}: ${(err as Error).message}`, { file: link.file });
  } finally {
    stream.destroy();
  }
  try {
    checkState(statePath, read.manifest, link.file);
  } catch (err) {
    removeDatabaseFile(statePath);
    throw err;
  }
  if (keepStateAt === undefined) removeDatabaseFile(statePath);
  return { file: link.file, id: read.manifest.id, index: read.manifest.index, createdAt: read.manifest.createdAt, bytes: read.bytes, parts: read.manifest.parts.length };
}

/** The state.db of a backup against its manifest (see the file comment). Read-only: the file's bytes stay as hashed. */
function checkState(path: string, manifest: BackupManifest, file: string): void {
  if (manifest.dataFormatVersion > dataFormatVersion) throw formatNewer(file, manifest.dataFormatVersion);
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
    // Nothing of the file's own runs: its schema is checked before any query reads a table (stateSchemaProblem).
    db.pragma('trusted_schema = OFF');
  } catch (err) {
    throw stateCorrupt(file, `its state.db cannot be opened (${(err as Error).message})`);
  }
  try {
    // This build's schema, or format 2's (a backup taken before the change feed: restored, its feed starts at its index).
    const schema = stateFormatOf(db, 'main');
    if (schema.problem !== null) throw stateCorrupt(file, `its state.db is not a Conclave state: ${schema.problem}`);
    const meta = (key: string) => db.prepare('SELECT value FROM meta WHERE key = ?').pluck().get(key);
    const format = meta('format_version');
    if (typeof format === 'number' && format > dataFormatVersion) throw formatNewer(file, format);
    if (format !== schema.format) throw stateCorrupt(file, `its state.db has data format ${String(format)}, but the schema of format ${schema.format}`);
    const applied = meta('applied_index');
    if (applied !== manifest.index) throw stateCorrupt(file, `its state.db is at applied index ${String(applied)}, not the ${manifest.index} its manifest says`);
    if (schema.format >= 4) {
      // What apply() holds and a digest does not show: a version history keeps is older than its node's current one,
      // and the retention is one an entry could have set. A restored state breaking either would stop the cluster at
      // its first write to such a node.
      const ahead = db.prepare('SELECT v.node_id FROM versions v JOIN nodes n ON n.id = v.node_id WHERE v.version >= n.version LIMIT 1').pluck().get();
      if (ahead !== undefined) throw stateCorrupt(file, `its history holds a version of node ${String(ahead)} that is not older than the node's own`);
      const perNode = meta('history_versions_per_node');
      if (perNode !== undefined && !(typeof perNode === 'number' && Number.isSafeInteger(perNode) && perNode >= versionsPerNodeMin)) {
        throw stateCorrupt(file, `its history keeps ${String(perNode)} versions per node`);
      }
    }
    const content = new ContentTables(db);
    const { digest, counts } = contentDigest(content.nodesById(), content.users(), content.versions.all(), content.stateDigestLines());
    if (digest !== manifest.contentDigest.digest || JSON.stringify(counts) !== JSON.stringify(manifest.contentDigest.counts)) {
      throw stateCorrupt(file, `the content digest of its state is ${digest}, not the ${manifest.contentDigest.digest} its manifest says`);
    }
    const references = content
      .blobReferences()
      .map((r) => r.sha256)
      .sort();
    const listed = manifest.blobsReferenced;
    if (references.length !== listed.length || references.some((sha256, i) => sha256 !== listed[i])) {
      throw stateCorrupt(file, `its state references ${references.length} blob(s), its manifest lists ${listed.length} (or other ones)`);
    }
  } catch (err) {
    if (isConclaveError(err)) throw err;
    throw stateCorrupt(file, `its state.db cannot be read as a Conclave state (${(err as Error).message})`);
  } finally {
    db.close();
  }
}

function stateCorrupt(file: string, message: string): ConclaveError {
  return new ConclaveError('BACKUP_CORRUPT', `The backup ${basename(file)} is not valid: ${message}. Use another copy of it.`, { file });
}

function formatNewer(file: string, format: number): ConclaveError {
  return new ConclaveError(
    'BACKUP_FORMAT_NEWER',
    `The backup ${basename(file)} holds data format ${format}; this conclave reads data format ${dataFormatVersion}. Restore it with the Conclave version that took it, or newer.`,
    { file, dataFormatVersion: format, readable: dataFormatVersion },
  );
}

/** The same error, saying which file of a chain it is about (the reader's messages do not know the file). */
function withFile(err: ConclaveError, file: string): ConclaveError {
  if (err.message.includes(basename(file))) return err;
  return new ConclaveError(err.code, `${basename(file)}: ${err.message}`, { ...err.details, file });
}

// ------------------------------------------------------------------ sinks

async function writeFully(handle: FileHandle, chunk: Buffer): Promise<void> {
  for (let offset = 0; offset < chunk.length; ) {
    const { bytesWritten } = await handle.write(chunk, offset, chunk.length - offset);
    offset += bytesWritten;
  }
}

/** A file written whole (exclusive create, 0600), fsynced when the part is complete, removed when it is not. */
export function fileSink(path: string, onFinished?: () => Promise<void>): PartSink {
  let handle: FileHandle | null = null;
  const opened = async () => (handle ??= await open(path, 'wx', 0o600));
  return {
    write: async (chunk) => writeFully(await opened(), chunk).catch(storageFailure(path)),
    finish: async () => {
      try {
        const h = await opened();
        await h.sync();
        await h.close();
        handle = null;
        await onFinished?.();
      } catch (err) {
        storageFailure(path)(err);
      }
    },
    abort: async () => {
      await handle?.close().catch(() => undefined);
      handle = null;
      await rm(path, { force: true });
    },
  };
}

/** A failure to write where the backup is unpacked is this machine's (a full disk), not the backup's. */
function storageFailure(path: string): (err: unknown) => never {
  return (err) => {
    if (isConclaveError(err)) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw new ConclaveError('DISK_FULL', `The disk holding ${dirname(path)} is full; nothing was restored. Free space (or choose another directory) and retry.`);
    throw new ConclaveError('STORAGE_ERROR', `Cannot write ${path}: ${(err as Error).message}`);
  };
}

/** Blobs into a node's blob directory layout, each renamed into place once complete; directories synced at the end. */
class BlobWriter {
  private readonly tmpDir: string;
  private readonly dirs = new Set<string>();

  constructor(private readonly root: string) {
    this.tmpDir = join(root, 'tmp');
    mkdirSync(this.tmpDir, { recursive: true, mode: 0o700 });
    this.dirs.add(root);
  }

  sink(sha256: string): PartSink {
    const first = join(this.root, sha256.slice(0, 2));
    const dir = join(first, sha256.slice(2, 4));
    const final = join(dir, sha256);
    if (existsSync(final)) return discardSink; // the same blob in two files of the chain: the first is kept
    const tmp = join(this.tmpDir, `${sha256}.${randomBytes(6).toString('hex')}.part`);
    return fileSink(tmp, async () => {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      this.dirs.add(first).add(dir);
      await rename(tmp, final);
    });
  }

  syncDirectories(): void {
    rmSync(this.tmpDir, { recursive: true, force: true });
    // Deepest first: a directory's entry is made durable after what it holds.
    for (const dir of [...this.dirs].sort((a, b) => b.length - a.length)) fsyncDirectory(dir);
  }
}
