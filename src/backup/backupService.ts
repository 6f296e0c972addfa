import { randomBytes, randomUUID } from 'node:crypto';
import { createReadStream, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';

import type { NodeDescriptor } from '../core/clusterState.js';
import { ConclaveError, invariant } from '../errors/catalogue.js';
import type { BlobPins } from '../replication/blobPins.js';
import type { BlobStore } from '../storage/blobStore.js';
import { dataFormatVersion, type Db } from '../storage/database.js';
import { SyncedFileWriter } from '../storage/fileWriter.js';
import { removeDatabaseFileInBackground, runFileWorker } from '../storage/snapshotFile.js';
import { fsyncDirectory } from '../storage/snapshotStore.js';
import { archiveBytes, archiveStream, type ArchivePartSource } from './archiveWriter.js';
import { BackupPacer, type BackupPacing } from './backupPacer.js';
import { captureBackupState } from './backupState.js';
import type { BackupTaker, BackupWritten } from './backupTaker.js';
import { backupFileName, backupFormatName, backupFormatVersion, blobEntryPrefix, stateEntryName, type BackupBase, type BackupManifest } from './manifest.js';

/** The backup an incremental one is taken against, as the client describes it (from that backup's manifest). */
export interface SinceBackup extends BackupBase {
  readonly blobsReferenced: readonly string[];
}

/** Told how each backup this node wrote ended (src/metrics/backupMetrics.ts). */
export interface BackupObserver {
  completed(bytes: number): void;
  failed(): void;
}

export interface BackupServiceOptions {
  readonly db: Db;
  readonly blobs: BlobStore;
  readonly pins: BlobPins;
  /** Resolves true once the blob is here (fetched from a peer if needed), false after `timeoutMs`. */
  readonly awaitBlob: (sha256: string, size: number, timeoutMs: number) => Promise<boolean>;
  readonly self: () => NodeDescriptor;
  readonly conclaveVersion: string;
  /** Where state files are written while a backup runs (emptied at start). */
  readonly tmpDir: string;
  readonly concurrentMax: number;
  /** Nice value of the threads that read the state (see captureBackupState). */
  readonly workerNice: number;
  /** How a backup's stream yields to the writes the cluster commits (backupPacer.ts), and the index it watches. */
  readonly pacing: BackupPacing;
  readonly appliedIndex: () => number;
  readonly blobFetchTimeoutMs: number;
  readonly log: Logger;
  readonly observer?: BackupObserver;
}

/** A backup ready to stream: its manifest, and its archive once (then close it, however the transfer ended). */
export interface OpenBackup {
  readonly manifest: BackupManifest;
  readonly fileName: string;
  /** The bytes of the whole archive. */
  readonly bytes: number;
  stream(signal?: AbortSignal): Readable;
  close(): void;
}

/** Bytes read from a part's file at a time while a backup streams. */
const readChunkBytes = 1024 * 1024;
/** Missing blobs named in an error, at most. */
const missingNamedMax = 10;

/**
 * Takes backups of this node while it serves (see manifest.ts for what one holds and docs/operations.md for the
 * user's view): the state at one applied index (backupState.ts), then every blob it references — fetched from a
 * peer first when this node lacks one (a replica still catching up), or the backup fails with BACKUP_BLOB_MISSING
 * before a byte is sent — pinned against the collector until the archive is written.
 */
export class BackupService implements BackupTaker {
  private running = 0;

  constructor(private readonly options: BackupServiceOptions) {
    rmSync(options.tmpDir, { recursive: true, force: true });
    mkdirSync(options.tmpDir, { recursive: true, mode: 0o700 });
  }

  get inProgress(): number {
    return this.running;
  }

  /** A backup to stream: completed once its stream has been read to the end. */
  open(since: SinceBackup | null, signal?: AbortSignal): Promise<OpenBackup> {
    return this.openBackup(since, signal, this.options.observer);
  }

  /** `observer` is told how the backup ended: here when it is streamed, by writeToDirectory when it writes it. */
  private async openBackup(since: SinceBackup | null, signal: AbortSignal | undefined, observer: BackupObserver | undefined): Promise<OpenBackup> {
    const o = this.options;
    if (this.running >= o.concurrentMax) {
      throw new ConclaveError('BACKUPS_BUSY', `This node is already writing ${this.running} backup(s) (backup.concurrentMax); retry when one ends.`, { concurrentMax: o.concurrentMax });
    }
    this.running++;
    // Until the backup's own blobs are known, no blob is collected: one the content drops between now and the copy's
    // commit point is in the backup, and an old unreferenced file may be collected at any moment.
    const releaseWide = o.pins.holdAll();
    let releaseExact: (() => void) | null = null;
    let statePath: string | null = null;
    let closed = false;
    // How long the event loop was held while this backup ran: the promise is "a few milliseconds at a time", and the
    // log line lets an operator (and the bench) see it kept.
    const loopDelay = monitorEventLoopDelay({ resolution: 5 });
    loopDelay.enable();
    const startedMs = performance.now();
    let summary: Record<string, unknown> = {};
    const close = () => {
      if (closed) return;
      closed = true;
      loopDelay.disable();
      releaseWide();
      releaseExact?.();
      if (statePath !== null) removeDatabaseFileInBackground(statePath, o.tmpDir);
      this.running--;
      o.log.info(
        { ...summary, ms: Math.round(performance.now() - startedMs), eventLoopDelayMaxMs: Math.round(loopDelay.max / 1e6), eventLoopDelayP99Ms: Math.round(loopDelay.percentile(99) / 1e6) },
        'backup ended',
      );
    };
    try {
      const { path, captured } = await captureBackupState(o.db, o.tmpDir, o.workerNice, signal);
      statePath = path;
      releaseExact = o.pins.pin(captured.blobs.map((b) => b.sha256));
      releaseWide();
      const inBase = new Set(since?.blobsReferenced ?? []);
      const parts: ArchivePartSource[] = [
        { name: stateEntryName, bytes: captured.state.bytes, sha256: captured.state.sha256, open: () => createReadStream(path, { highWaterMark: readChunkBytes }) },
      ];
      const missing: string[] = [];
      for (const blob of captured.blobs) {
        if (inBase.has(blob.sha256)) continue;
        signal?.throwIfAborted();
        let size = await o.blobs.size(blob.sha256);
        if (size === undefined && blob.size > 0 && (await o.awaitBlob(blob.sha256, blob.size, o.blobFetchTimeoutMs))) size = await o.blobs.size(blob.sha256);
        if (size === undefined && blob.size > 0) {
          missing.push(blob.sha256);
          continue;
        }
        const held = size !== undefined;
        parts.push({
          name: `${blobEntryPrefix}${blob.sha256}`,
          bytes: size ?? 0,
          sha256: blob.sha256,
          // An empty binary needs no file: its content is known.
          // 1 MiB reads (a stream's default is 64 KiB): a backup is mostly large files read once, end to end.
          open: () => (held ? createReadStream(o.blobs.pathOf(blob.sha256), { highWaterMark: readChunkBytes }) : emptyChunks()),
        });
      }
      if (missing.length > 0) {
        throw new ConclaveError(
          'BACKUP_BLOB_MISSING',
          `${missing.length} blob(s) the content references are not on this node and could not be fetched from another within ${o.blobFetchTimeoutMs} ms; no backup was written. Retry, or take the backup from another node.`,
          { missing: missing.length, blobs: missing.slice(0, missingNamedMax) },
        );
      }
      const self = o.self();
      const cluster = captured.clusterState;
      invariant(cluster.clusterName !== null && cluster.clusterUuid !== null, 'a backup of a node whose cluster is not formed');
      const manifest: BackupManifest = {
        format: backupFormatName,
        formatVersion: backupFormatVersion,
        id: randomUUID(),
        createdAt: new Date().toISOString(),
        conclaveVersion: o.conclaveVersion,
        dataFormatVersion,
        cluster: { name: cluster.clusterName, uuid: cluster.clusterUuid },
        source: { nodeId: self.id, nodeName: self.name },
        index: captured.state.index,
        term: captured.term,
        configuration: captured.configuration,
        clusterState: cluster,
        contentDigest: captured.contentDigest,
        base: since === null ? null : { id: since.id, index: since.index, createdAt: since.createdAt, file: since.file },
        blobsReferenced: captured.blobs.map((b) => b.sha256),
        parts: parts.map(({ name, bytes, sha256 }) => ({ name, bytes, sha256 })),
      };
      const bytes = archiveBytes(manifest);
      summary = { backup: manifest.id, index: manifest.index, parts: manifest.parts.length, bytes, incremental: since !== null };
      let streamed = false;
      return {
        manifest,
        fileName: backupFileName(manifest),
        bytes,
        stream: (streamSignal) => {
          invariant(!streamed, 'a backup is streamed once');
          streamed = true;
          const pacer = new BackupPacer(o.pacing, o.appliedIndex);
          const stream = archiveStream(manifest, parts, streamSignal, pacer);
          stream.once('close', () => {
            if (stream.readableEnded) observer?.completed(bytes);
            else observer?.failed();
            close();
          });
          return stream;
        },
        close,
      };
    } catch (err) {
      close();
      observer?.failed();
      if (err instanceof ConclaveError) throw err;
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') {
        throw new ConclaveError('DISK_FULL', 'The data disk is full: the state file a backup starts from does not fit. Free space and retry.');
      }
      throw err;
    }
  }

  async writeToDirectory(directory: string, fileName: string, signal?: AbortSignal): Promise<BackupWritten> {
    const observer = this.options.observer;
    let backup: OpenBackup;
    try {
      mkdirSync(directory, { recursive: true, mode: 0o700 });
      backup = await this.openBackup(null, signal, undefined);
    } catch (err) {
      observer?.failed();
      throw err;
    }
    const partial = join(directory, `.${fileName}.${randomBytes(6).toString('hex')}.partial`);
    const path = join(directory, fileName);
    try {
      // 0600: a backup holds every password hash and all the content. Flushed as it grows (fileWriter.ts), from the
      // thread pool: this node serves meanwhile.
      const file = await SyncedFileWriter.create(partial, 0o600);
      try {
        for await (const chunk of backup.stream(signal)) await file.write(chunk as Buffer);
        await file.finish();
      } finally {
        // Its own failure must not hide the one that brought us here.
        await file.close().catch(() => undefined);
      }
      signal?.throwIfAborted();
      renameSync(partial, path);
      fsyncDirectory(directory);
    } catch (err) {
      backup.close();
      rmSync(partial, { force: true });
      observer?.failed();
      throw err;
    }
    // Read back and checked as `conclave backup verify` does: a file that does not verify is removed.
    try {
      await this.verifyFile(path, signal);
    } catch (err) {
      rmSync(path, { force: true });
      observer?.failed();
      throw err;
    }
    observer?.completed(backup.bytes);
    return { manifest: backup.manifest, path, bytes: backup.bytes };
  }

  /**
   * Checks a backup file as `conclave backup verify` does, in a worker thread (hashing gigabytes and recomputing the
   * content digest would hold the event loop of a node that serves). Rejects with the code of what does not hold.
   */
  verifyFile(path: string, signal?: AbortSignal): Promise<BackupWritten> {
    return runFileWorker<BackupWritten>(new URL('./verifyWorker.js', import.meta.url), { file: path, scratchDir: this.options.tmpDir }, `Verifying the backup ${path}`, signal);
  }
}

async function* emptyChunks(): AsyncGenerator<Buffer> {}
