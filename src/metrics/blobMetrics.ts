import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';

/** What the blob metrics read: the store's files (with their sizes) and the blobs known to be missing. */
export interface BlobSources {
  files(): AsyncIterable<{ readonly bytes: number }>;
  /** Blobs the content references that this node lacks and is fetching (src/replication/blobFetcher.ts). */
  missing(): number;
}

/**
 * The blob store's size and the blobs this node lacks. The size is measured by walking the store (a stat per file)
 * every metrics.blobScanIntervalMs, not at each scrape: a scrape every few seconds of a store of millions of files
 * would keep the disk busy. The gauges show the last completed walk, and when it ended.
 */
export class BlobMetrics {
  private measured: { blobs: number; bytes: number; atSeconds: number } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private walking: Promise<void> | null = null;
  private closed = false;

  constructor(
    registry: Registry,
    private readonly sources: BlobSources,
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {
    const registers = [registry];
    const measured = () => this.measured;
    new Gauge({
      name: 'conclave_blob_store_bytes',
      help: 'Bytes of the files in this node\'s blob store (referenced or not yet collected), at the last walk of the store.',
      registers,
      collect() {
        const m = measured();
        if (m !== null) this.set(m.bytes);
      },
    });
    new Gauge({
      name: 'conclave_blob_store_blobs',
      help: 'Files in this node\'s blob store, at the last walk of the store.',
      registers,
      collect() {
        const m = measured();
        if (m !== null) this.set(m.blobs);
      },
    });
    new Gauge({
      name: 'conclave_blob_store_walk_timestamp_seconds',
      help: 'When the last walk of the blob store (for conclave_blob_store_bytes) ended, in seconds since the epoch (0: not walked yet).',
      registers,
      collect() {
        const m = measured();
        if (m !== null) this.set(m.atSeconds);
      },
    });
    new Gauge({
      name: 'conclave_blobs_missing',
      help: 'Blobs the content references that this node lacks: queued, being fetched from a peer, or waiting to retry.',
      registers,
      collect() {
        this.set(sources.missing());
      },
    });
  }

  /** Walks the store now, then every intervalMs. */
  start(): void {
    if (this.closed) return;
    this.walking = this.walk().finally(() => {
      this.walking = null;
      if (!this.closed) this.timer = setTimeout(() => this.start(), this.intervalMs);
    });
  }

  /** Stops walking; resolves once a walk under way has stopped (before the store goes). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    await this.walking;
  }

  private async walk(): Promise<void> {
    let blobs = 0;
    let bytes = 0;
    try {
      for await (const file of this.sources.files()) {
        if (this.closed) return;
        blobs++;
        bytes += file.bytes;
      }
      this.measured = { blobs, bytes, atSeconds: Date.now() / 1000 };
    } catch (err) {
      this.log.warn({ err }, 'the walk of the blob store for its metrics failed; the last figures stay until the next walk');
    }
  }
}
