import Database from 'better-sqlite3';
import { closeSync, fsyncSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { LatencyHistogram, type LatencySummary } from './histogram.js';

/**
 * The physical floor under the server's numbers, measured on the disk that holds its data directory: what one
 * fsync costs, and what better-sqlite3 alone achieves with the same durability settings as the node's database.
 * These put the HTTP figures in context; they are not targets.
 */

export interface FsyncFloor {
  readonly writes: number;
  readonly writeBytes: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

export interface SqliteFloor {
  readonly rowsPerTransaction: number;
  readonly rowBytes: number;
  readonly durationMs: number;
  readonly rows: number;
  readonly rowsPerSec: number;
  readonly transactionsPerSec: number;
  /** Latency of one 64-row transaction, commit (and its fsync) included. */
  readonly transactionP50Ms: number;
  readonly transactionP99Ms: number;
}

/** Appends `writeBytes` and fsyncs, `writes` times. Appending (not overwriting) matches how a WAL grows. */
export function measureFsync(dir: string, writes = 200, writeBytes = 4096): FsyncFloor {
  mkdirSync(dir, { recursive: true });
  const fd = openSync(join(dir, 'fsync-probe'), 'w');
  const block = Buffer.alloc(writeBytes, 0x5a);
  const histogram = new LatencyHistogram();
  try {
    for (let i = 0; i < writes; i++) {
      const startMs = performance.now();
      writeSync(fd, block, 0, block.length, i * writeBytes);
      fsyncSync(fd);
      histogram.record(performance.now() - startMs);
    }
  } finally {
    closeSync(fd);
  }
  const summary: LatencySummary = histogram.summary();
  return { writes, writeBytes, p50Ms: summary.p50Ms, p99Ms: summary.p99Ms, maxMs: summary.maxMs };
}

/**
 * Inserts rows of `rowBytes` text in transactions of `rowsPerTransaction` for `durationMs`, with WAL and
 * synchronous=FULL as in src/storage/database.ts, so each commit waits for its fsync as the node's group commit does.
 */
export function measureSqliteInserts(dir: string, durationMs: number, rowsPerTransaction = 64, rowBytes = 1024): SqliteFloor {
  mkdirSync(dir, { recursive: true });
  const db = new Database(join(dir, 'floor.db'));
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec('CREATE TABLE rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL) STRICT');
    const insert = db.prepare('INSERT INTO rows (id, body) VALUES (?, ?)');
    const body = 'r'.repeat(rowBytes);
    let nextId = 1;
    const insertBatch = db.transaction(() => {
      for (let i = 0; i < rowsPerTransaction; i++) insert.run(nextId++, body);
    });
    const histogram = new LatencyHistogram();
    const startMs = performance.now();
    const endMs = startMs + durationMs;
    let nowMs = startMs;
    while (nowMs < endMs) {
      const batchStartMs = nowMs;
      insertBatch();
      nowMs = performance.now();
      histogram.record(nowMs - batchStartMs);
    }
    const elapsedSec = (nowMs - startMs) / 1000;
    const summary = histogram.summary();
    const rows = summary.count * rowsPerTransaction;
    return {
      rowsPerTransaction,
      rowBytes,
      durationMs: Math.round(nowMs - startMs),
      rows,
      rowsPerSec: rows / elapsedSec,
      transactionsPerSec: summary.count / elapsedSec,
      transactionP50Ms: summary.p50Ms,
      transactionP99Ms: summary.p99Ms,
    };
  } finally {
    db.close();
  }
}
