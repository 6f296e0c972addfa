import { closeSync, fdatasync, fsyncSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { invariant } from '../errors/catalogue.js';
import type { Db } from './database.js';

/**
 * The fsync of the node's write-ahead log, off the event loop. better-sqlite3 is synchronous: a transaction
 * committed with synchronous=FULL holds the event loop for its fsync (2-3 ms here under load, about half of a busy
 * node's wall time), while no message is read and no request parsed. The Ready loop commits with
 * synchronous=NORMAL instead — the transaction's frames are written to the WAL, not synced — and then calls this,
 * which runs fdatasync on the WAL file in libuv's thread pool; when it returns, every frame written before it was
 * called is on the disk (an fsync flushes the file, whichever descriptor asks).
 *
 * Why this is SQLite's own durability and not a lesser one: in WAL mode a transaction is durable once its frames,
 * commit frame included, are on the disk. The WAL file is the same file while the connection is open (it is
 * truncated, never deleted and created again); when SQLite starts it over after a checkpoint, the frames it
 * overwrites were first copied into the database file and synced there (synchronous=NORMAL syncs the WAL before
 * and the database after every checkpoint). Every write transaction appends to the same sequential log, so the
 * sync of the WAL also makes every earlier transaction durable.
 *
 * Why not a worker thread owning the connection (the other remedy issue 17 names): the state machine applies
 * commands on the main thread and answers from their results, and reads share the connection's page cache. Moving
 * it all behind a thread boundary costs a copy of every Ready and every outcome; the fsync is the only slow part,
 * and this moves exactly it.
 */
export class WalSync {
  private readonly fd: number;
  private syncing = 0;
  private closeRequested = false;
  private closed = false;

  constructor(db: Db) {
    invariant(String(db.pragma('journal_mode', { simple: true })).toLowerCase() === 'wal', 'WalSync needs a database in WAL mode');
    // SQLite creates the WAL when the connection first reads; the node's schema has been written by now.
    this.fd = openSync(`${db.name}-wal`, 'r');
    // The WAL's directory entry must be durable too, or a crash could lose the whole file: once is enough, since
    // SQLite never removes it while the connection is open.
    const directory = openSync(dirname(db.name), 'r');
    try {
      fsyncSync(directory);
    } finally {
      closeSync(directory);
    }
  }

  /**
   * Calls `done` once every frame written to the WAL before this call is on the disk. A failed fsync is not
   * retried (what it left on the disk is unknown: the page cache may have dropped the pages it could not write):
   * `failed` hears of it, and must end the process.
   */
  sync(done: () => void, failed: (err: NodeJS.ErrnoException) => void): void {
    invariant(!this.closeRequested, 'a WAL sync after close');
    this.syncing++;
    fdatasync(this.fd, (err) => {
      this.syncing--;
      if (this.closeRequested && this.syncing === 0) this.closeNow();
      if (err !== null) failed(err);
      else done();
    });
  }

  /** Closes the descriptor once no sync is under way. */
  close(): void {
    this.closeRequested = true;
    if (this.syncing === 0) this.closeNow();
  }

  private closeNow(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}
