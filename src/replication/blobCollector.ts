import type { Logger } from 'pino';

import type { Command } from '../content/commands.js';
import type { Entry } from '../core/types.js';
import type { BlobFile } from '../storage/blobStore.js';

/** What the collector needs of the blob store. */
export interface CollectableStore {
  files(): AsyncIterable<BlobFile>;
  deleteIfOlderThan(sha256: string, cutoffMs: number): number | null;
}

export interface BlobCollectorOptions {
  readonly intervalMs: number;
  /** A file younger than this is never deleted (storage.blobGcGraceMs: see settings.ts for why it is long). */
  readonly graceMs: number;
  /** Deletions in one synchronous step. */
  readonly batchMax: number;
  /** True while nothing may be deleted (a backup copying its state: BlobPins.holdAll); the run deletes nothing then. */
  readonly deferred?: () => boolean;
}

export interface CollectionOutcome {
  readonly deleted: number;
  readonly bytesFreed: number;
}

/**
 * Mark and sweep of the blob store. Referenced: every blob the content tables name, and every blob named by a
 * journal entry this node holds but has not applied yet (it may commit later). A file that is not referenced and
 * older than the grace period is deleted.
 *
 * What keeps a blob that is about to be referenced: an upload is written (or de-duplicated, or confirmed to the
 * master by a HEAD) shortly before its entry is proposed, so its file is young until the entry is applied — the
 * grace period is longer than any upload may take from its file to its applied entry. Files under tmp/ are never
 * looked at. And each batch is swept in one synchronous step that marks again and checks each file's age right
 * before unlinking it: no entry can be applied, and no upload can rename or touch a file, within that step (apply
 * and BlobStore's rename/touch are synchronous too), so nothing referenced or young is deleted by a stale mark.
 */
export class BlobCollector {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<CollectionOutcome> | null = null;
  private stopped = false;

  constructor(
    private readonly store: CollectableStore,
    /** Every referenced blob, computed synchronously. */
    private readonly referenced: () => ReadonlySet<string>,
    private readonly options: BlobCollectorOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Collects every intervalMs, the first time one interval from now. */
  start(): void {
    if (this.stopped || this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.collect()
        .catch((err: unknown) => this.log.warn({ err }, 'blob collection failed; it runs again at the next interval'))
        .finally(() => this.start());
    }, this.options.intervalMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    await this.running?.catch(() => undefined);
  }

  /** One run (a run already going is joined, not doubled). */
  collect(): Promise<CollectionOutcome> {
    this.running ??= this.run().finally(() => (this.running = null));
    return this.running;
  }

  private async run(): Promise<CollectionOutcome> {
    const marked = this.referenced();
    let deleted = 0;
    let bytesFreed = 0;
    let batch: string[] = [];
    let deferred = false;
    const sweep = () => {
      if (this.options.deferred?.() === true) {
        deferred = true;
        batch = [];
        return;
      }
      // One synchronous step: mark again, then check each file's age as it is unlinked.
      const referenced = this.referenced();
      const cutoffMs = this.now() - this.options.graceMs;
      for (const sha256 of batch) {
        if (referenced.has(sha256)) continue;
        const freed = this.store.deleteIfOlderThan(sha256, cutoffMs);
        if (freed === null) continue;
        deleted++;
        bytesFreed += freed;
      }
      batch = [];
    };
    for await (const file of this.store.files()) {
      if (this.stopped) break;
      if (marked.has(file.sha256) || file.mtimeMs >= this.now() - this.options.graceMs) continue;
      batch.push(file.sha256);
      if (batch.length >= this.options.batchMax) sweep();
    }
    if (!this.stopped) sweep();
    if (deleted > 0) this.log.info({ deleted, bytesFreed }, 'collected unreferenced blobs');
    if (deferred) this.log.info('blob collection deferred in part: a backup was copying its state; the next run collects the rest');
    return { deleted, bytesFreed };
  }
}

/**
 * The blobs to keep: those the content references, and those named by journal entries after `appliedIndex` (held
 * here, not applied yet: they may still commit).
 */
export function referencedBlobs(
  content: { blobReferences(): ReadonlyArray<{ sha256: string }> },
  journal: { read(fromIndex: number, countMax: number): Entry[]; lastIndex(): number },
  appliedIndex: number,
): Set<string> {
  const referenced = new Set(content.blobReferences().map((r) => r.sha256));
  const last = journal.lastIndex();
  for (let from = appliedIndex + 1; from <= last; ) {
    const entries = journal.read(from, 1000);
    if (entries.length === 0) break;
    for (const entry of entries) {
      if (entry.payload.kind !== 'command') continue;
      const command = entry.payload.data as Command;
      if (command.type === 'setBinary') referenced.add(command.binary.sha256);
    }
    from += entries.length;
  }
  return referenced;
}
