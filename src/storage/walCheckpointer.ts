import { Worker } from 'node:worker_threads';

import type { Db } from './database.js';

/** The cells the node and the checkpoint worker share (Int32 indexes into one SharedArrayBuffer). */
export const checkpointCells = { commits: 0, stop: 1 } as const;

export interface CheckpointWorkerData {
  readonly databasePath: string;
  readonly intervalMs: number;
  readonly cells: SharedArrayBuffer;
}

/** What the worker posts: a checkpoint that failed (the next one tries again), and its exit. */
export type CheckpointWorkerMessage = { readonly failed: string };

/**
 * Checkpoints of the node's write-ahead log, off the event loop. SQLite's automatic checkpoint runs inside the commit
 * that fills the WAL past `wal_autocheckpoint` pages: on the event loop, it copies those pages into the database
 * file and fsyncs it — measured here at ~50 ms on an idle disk, and 0.3–1.2 s per node while a backup or a bulk
 * load kept the one shared disk busy (every node logged its event loop held up at those moments, and writes beside
 * a backup kept 65 % of their throughput). A worker thread with a connection of its own runs a PASSIVE checkpoint
 * every `intervalMs` once something was committed: it never blocks the node's writers or readers, and a checkpoint
 * busy with another one just skips its turn.
 *
 * Why the node's own automatic checkpoint stays on (at a higher threshold, `walCheckpointPages`): only a checkpoint
 * that backfills the whole WAL lets the next write start it over, and under continuous writes the worker's never
 * does — frames arrive while it copies — so the WAL would grow without bound. The node's own, run right after its
 * commit with nothing else writing, completes; by then the worker has copied nearly everything, and it is left with
 * the frames of the last interval and two small fsyncs.
 *
 * Durability is SQLite's own either way: a checkpoint syncs the WAL before it copies and the database file after,
 * and only then records how far it got, so the WAL is never started over (and frames overwritten: see WalSync) past
 * what the database file holds durably. A crash during a checkpoint is a crash SQLite recovers from.
 */
export class WalCheckpointer {
  private readonly cells: Int32Array;
  private readonly worker: Worker;
  private readonly exited: Promise<void>;

  constructor(db: Db, options: { readonly intervalMs: number; readonly walCheckpointPages: number }, onFailure: (message: string) => void) {
    db.pragma(`wal_autocheckpoint = ${options.walCheckpointPages}`);
    const shared = new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT);
    this.cells = new Int32Array(shared);
    const workerData: CheckpointWorkerData = { databasePath: db.name, intervalMs: options.intervalMs, cells: shared };
    this.worker = new Worker(new URL('./walCheckpointWorker.js', import.meta.url), { workerData });
    // The node's process ends when its event loop has nothing left; a worker that sleeps between checkpoints must
    // not keep it alive.
    this.worker.unref();
    this.worker.on('message', (message: CheckpointWorkerMessage) => onFailure(message.failed));
    this.worker.on('error', (err) => onFailure(err.message));
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
  }

  /** A transaction was committed on the node's connection: the worker checkpoints at its next turn. */
  noteCommit(): void {
    Atomics.add(this.cells, checkpointCells.commits, 1);
  }

  /**
   * Stops the worker after the checkpoint under way, if any, and resolves once its connection is closed: then the
   * node's connection is the last one open, and closing it checkpoints the whole WAL and removes it.
   */
  close(): Promise<void> {
    Atomics.store(this.cells, checkpointCells.stop, 1);
    Atomics.notify(this.cells, checkpointCells.stop);
    // Whoever waits for the exit keeps the process alive until then.
    this.worker.ref();
    return this.exited;
  }
}
