import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { invariant } from '../errors/catalogue.js';
import { removeDatabaseFileInBackground, type SnapshotFileInfo } from './snapshotFile.js';

/**
 * The snapshot files of a node, under `data/snapshots`:
 *
 *   <index>.db          complete snapshots: the latest (the one the journal starts after, served to followers) and
 *                       at most one newer, written and waiting for the compaction it stands for
 *   tmp/                files being written (emptied at start)
 *   incoming/           downloads from another node (see src/replication/snapshotFetcher.ts)
 *
 * A file is served while it is kept; a file no longer kept is deleted as soon as no transfer is reading it.
 */
export interface SnapshotReader {
  readonly path: string;
  readonly info: SnapshotFileInfo;
  /** Call once the transfer is over (however it ended). */
  release(): void;
}

export class SnapshotStore {
  readonly dir: string;
  readonly tmpDir: string;
  readonly incomingDir: string;
  private readonly keptFiles = new Map<number, SnapshotFileInfo>();
  private readonly readers = new Map<number, number>();
  /** Files no longer kept that a transfer still reads: deleted on their last release. */
  private readonly retired = new Set<number>();

  /** Opens the directory keeping the file of `latest` (the durable snapshot, if any) and removes every other. */
  constructor(dataDir: string, latest: SnapshotFileInfo | undefined) {
    this.dir = join(dataDir, 'snapshots');
    this.tmpDir = join(this.dir, 'tmp');
    this.incomingDir = join(this.dir, 'incoming');
    rmSync(this.tmpDir, { recursive: true, force: true });
    mkdirSync(this.tmpDir, { recursive: true });
    mkdirSync(this.incomingDir, { recursive: true });
    if (latest !== undefined) this.keptFiles.set(latest.index, latest);
    // Left by a crash between writing a file and the compaction it was for, or before an install committed.
    for (const name of readdirSync(this.dir)) {
      const match = /^(\d+)\.db(-journal|-wal|-shm)?$/.exec(name);
      if (match !== null && (match[2] !== undefined || !this.keptFiles.has(Number(match[1])))) rmSync(join(this.dir, name), { force: true });
    }
  }

  pathOf(index: number): string {
    return join(this.dir, `${index}.db`);
  }

  /** The kept file of this snapshot, if any. */
  kept(index: number): SnapshotFileInfo | undefined {
    return this.keptFiles.get(index);
  }

  /** Whether the latest snapshot's file is on disk (a data directory copied without it would not be). */
  hasFile(index: number): boolean {
    try {
      return statSync(this.pathOf(index)).isFile();
    } catch {
      return false;
    }
  }

  /** Moves a finished file (written or downloaded and verified) into place as `<index>.db`, durably, and keeps it. */
  adopt(from: string, info: SnapshotFileInfo): string {
    invariant(!this.readers.has(info.index), `snapshot ${info.index} is replaced while a transfer reads it`);
    const to = this.pathOf(info.index);
    this.retired.delete(info.index);
    renameSync(from, to);
    fsyncDirectory(this.dir);
    this.keptFiles.set(info.index, info);
    return to;
  }

  /** Keeps only these snapshots' files; the others go now, or when their last transfer ends. */
  keepOnly(indexes: readonly number[]): void {
    for (const index of [...this.keptFiles.keys()]) {
      if (indexes.includes(index)) continue;
      this.keptFiles.delete(index);
      if ((this.readers.get(index) ?? 0) > 0) this.retired.add(index);
      else removeDatabaseFileInBackground(this.pathOf(index), this.tmpDir);
    }
  }

  /** Opens a kept snapshot for a transfer; undefined when this node does not hold it (any more). */
  acquire(index: number): SnapshotReader | undefined {
    const info = this.keptFiles.get(index);
    if (info === undefined) return undefined;
    this.readers.set(index, (this.readers.get(index) ?? 0) + 1);
    let released = false;
    return {
      path: this.pathOf(index),
      info,
      release: () => {
        if (released) return;
        released = true;
        const left = (this.readers.get(index) ?? 1) - 1;
        if (left > 0) return void this.readers.set(index, left);
        this.readers.delete(index);
        if (this.retired.delete(index)) removeDatabaseFileInBackground(this.pathOf(index), this.tmpDir);
      },
    };
  }

  /** Transfers reading a file now, for status and tests. */
  readersOf(index: number): number {
    return this.readers.get(index) ?? 0;
  }
}

/** Makes a rename in `dir` durable (POSIX: the directory entry is data of the directory). */
export function fsyncDirectory(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, 'r');
  } catch {
    return; // platforms that cannot open a directory (Windows) make renames durable by themselves
  }
  try {
    fsyncSync(fd);
  } catch {
    // Some file systems refuse fsync on a directory; the rename is then as durable as they make it.
  } finally {
    closeSync(fd);
  }
}
