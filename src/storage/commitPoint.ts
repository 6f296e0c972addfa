import { ConclaveError } from '../errors/catalogue.js';

/**
 * Several worker threads reading the live database at one commit point, without a copy of it.
 *
 * Each worker opens its own connection and begins a read transaction; in WAL mode a read transaction sees the
 * database as of the last commit before its first read, whatever is committed after. Two transactions begun at
 * different moments may see different commits, so the workers begin theirs while the event loop — the only thread
 * that commits to the node's database — is held: every worker says it is ready (its connection open), the event
 * loop releases them all and waits, blocked, until each has made its first read (a millisecond or two), and only
 * then goes on committing. Every worker then reads exactly the same commit however long it takes.
 *
 * The shared cells: [ready, go, begun].
 */
export interface CommitPointCells {
  readonly cells: SharedArrayBuffer;
  readonly parties: number;
  /** How long a worker waits for the go, and the event loop for the workers' first reads, before giving up. */
  readonly waitMs: number;
}

const readyCell = 0;
const goCell = 1;
const begunCell = 2;
/** While the workers open their connections (tens of milliseconds), the event loop looks this often. */
const readyPollMs = 2;

export function newCommitPoint(parties: number, waitMs: number): CommitPointCells {
  return { cells: new SharedArrayBuffer(3 * Int32Array.BYTES_PER_ELEMENT), parties, waitMs };
}

/**
 * On the event loop: resolves once every worker has begun its read transaction at the same commit. Holds the event
 * loop only between the go and the last worker's first read. `signal` gives up (a worker failed, or the caller
 * abandoned the work).
 */
export async function openCommitPoint(point: CommitPointCells, signal: AbortSignal): Promise<void> {
  const cells = new Int32Array(point.cells);
  for (;;) {
    signal.throwIfAborted();
    const ready = Atomics.load(cells, readyCell);
    if (ready >= point.parties) break;
    await new Promise((resolve) => setTimeout(resolve, readyPollMs));
  }
  Atomics.store(cells, goCell, 1);
  Atomics.notify(cells, goCell);
  const deadlineMs = Date.now() + point.waitMs;
  for (;;) {
    const begun = Atomics.load(cells, begunCell);
    if (begun >= point.parties) return;
    const leftMs = deadlineMs - Date.now();
    if (leftMs <= 0) throw new ConclaveError('STORAGE_ERROR', `Reading the database at one commit point: ${point.parties - begun} worker(s) did not begin within ${point.waitMs} ms.`);
    Atomics.wait(cells, begunCell, begun, leftMs);
  }
}

/**
 * In a worker, its connection open: waits for the go, then `begin()` starts the read transaction (it must read
 * something: a deferred BEGIN takes no snapshot until its first read).
 */
export function joinCommitPoint(point: CommitPointCells, begin: () => void): void {
  const cells = new Int32Array(point.cells);
  Atomics.add(cells, readyCell, 1);
  Atomics.notify(cells, readyCell);
  if (Atomics.wait(cells, goCell, 0, point.waitMs) === 'timed-out') {
    throw new Error(`the go to read the database at one commit point did not come within ${point.waitMs} ms`);
  }
  begin();
  Atomics.add(cells, begunCell, 1);
  Atomics.notify(cells, begunCell);
}
