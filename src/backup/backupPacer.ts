import { setTimeout as delay } from 'node:timers/promises';

/**
 * Paces a backup's stream while the cluster commits writes, so that a backup taken in the middle of the day costs
 * the writes little: on a node that applies at least `busyEntriesPerSecondMin` entries a second, the archive goes
 * out at most `busyBytesPerSecondMax`; on a quiet one it goes as fast as the disk, the CPU and the reader allow.
 * (Elasticsearch throttles every snapshot to a fixed 40 MB/s; following the load instead keeps a nightly backup of
 * an idle cluster fast.) The stream is read one chunk at a time, so pacing it paces everything behind it: the
 * blob files read, the hashing, the socket and the receiver's disk.
 */
export interface BackupPacing {
  /** Bytes a second while the cluster writes; 0: never paced. */
  readonly busyBytesPerSecondMax: number;
  readonly busyEntriesPerSecondMin: number;
}

/** How often the applied index is sampled to tell a writing cluster from a quiet one. */
const sampleIntervalMs = 500;

export class BackupPacer {
  private sampleAtMs: number;
  private sampleIndex: number;
  private busy = false;
  /** When the bytes taken so far may have gone at the paced rate: ahead of now, the stream waits. */
  private dueAtMs: number;

  constructor(
    private readonly pacing: BackupPacing,
    private readonly appliedIndex: () => number,
    private readonly nowMs: () => number = () => performance.now(),
    private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void> = sleepMs,
  ) {
    this.sampleAtMs = nowMs();
    this.sampleIndex = appliedIndex();
    this.dueAtMs = this.sampleAtMs;
  }

  /** Called after each chunk of `bytes` is handed on: waits as long as the paced rate needs. */
  async took(bytes: number, signal?: AbortSignal): Promise<void> {
    if (this.pacing.busyBytesPerSecondMax === 0) return;
    const now = this.nowMs();
    if (now - this.sampleAtMs >= sampleIntervalMs) {
      const index = this.appliedIndex();
      this.busy = ((index - this.sampleIndex) * 1000) / (now - this.sampleAtMs) >= this.pacing.busyEntriesPerSecondMin;
      this.sampleAtMs = now;
      this.sampleIndex = index;
    }
    if (!this.busy) {
      // A quiet stretch is not credit for a burst later.
      this.dueAtMs = now;
      return;
    }
    // The chunk may end no sooner than the last one's due time plus its own; a reader slower than that is not held
    // back, and earns no credit for a burst later.
    const due = this.dueAtMs + (bytes * 1000) / this.pacing.busyBytesPerSecondMax;
    if (due <= now) {
      this.dueAtMs = now;
      return;
    }
    this.dueAtMs = due;
    await this.sleep(due - now, signal);
  }
}

/** Resolves after `ms`, or at once when `signal` aborts (or has). */
function sleepMs(ms: number, signal?: AbortSignal): Promise<void> {
  return delay(ms, undefined, { signal }).then(
    () => undefined,
    () => undefined,
  );
}
