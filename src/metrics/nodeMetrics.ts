import type { Logger } from 'pino';
import { Registry } from 'prom-client';

import type { ClusterRuntime } from '../node/clusterRuntime.js';
import { BackupMetrics } from './backupMetrics.js';
import { BlobMetrics, type BlobSources } from './blobMetrics.js';
import { ClusterMetrics } from './clusterMetrics.js';
import { EventLoopMetrics } from './eventLoopMetrics.js';
import { FeedMetrics } from './feedMetrics.js';
import { ForwardMetrics } from './forwardMetrics.js';
import { HttpMetrics } from './httpMetrics.js';
import { registerProcessMetrics } from './processMetrics.js';
import { ReadMetrics } from './readMetrics.js';
import { ReadyMetrics } from './readyMetrics.js';
import { SnapshotMetrics } from './snapshotMetrics.js';

export interface NodeMetricsSources {
  readonly runtime: ClusterRuntime;
  readonly blobs: BlobSources;
  /** Backups this node is writing now. */
  readonly backupsInProgress: () => number;
  readonly softwareVersion: string;
  readonly blobScanIntervalMs: number;
  readonly log: Logger;
}

/**
 * Every metric of one node, in a registry of its own: several nodes may run in one process (tests do), and each
 * must answer GET /metrics with its own figures, never the process's global registry. Gauges that the node can read
 * at any time (indexes, role, members, lag) are read at each scrape; events (requests, elections, Readies, forwards,
 * backups) are counted where they happen, through the hooks the pieces below are handed to.
 */
export class NodeMetrics {
  readonly registry = new Registry();
  readonly http: HttpMetrics;
  readonly ready: ReadyMetrics;
  readonly forwards: ForwardMetrics;
  readonly reads: ReadMetrics;
  readonly snapshots: SnapshotMetrics;
  readonly backups: BackupMetrics;
  readonly feed: FeedMetrics;
  private readonly cluster: ClusterMetrics;
  private readonly blobs: BlobMetrics;
  private readonly eventLoop: EventLoopMetrics;

  constructor(sources: NodeMetricsSources) {
    const registry = this.registry;
    registerProcessMetrics(registry);
    this.eventLoop = new EventLoopMetrics(registry);
    this.cluster = new ClusterMetrics(registry, sources.runtime, sources.softwareVersion);
    this.http = new HttpMetrics(registry);
    this.ready = new ReadyMetrics(registry);
    this.forwards = new ForwardMetrics(registry);
    this.reads = new ReadMetrics(registry);
    this.snapshots = new SnapshotMetrics(registry, sources.runtime);
    this.blobs = new BlobMetrics(registry, sources.blobs, sources.blobScanIntervalMs, sources.log);
    this.backups = new BackupMetrics(registry, sources.backupsInProgress);
    this.feed = new FeedMetrics(registry);
  }

  /** Starts what runs in the background (the walk of the blob store, the event-loop sampling). */
  start(): void {
    this.eventLoop.start();
    this.blobs.start();
  }

  /** The exposition text of every metric (Prometheus text format 0.0.4) and its content type. */
  async exposition(): Promise<{ text: string; contentType: string }> {
    return { text: await this.registry.metrics(), contentType: this.registry.contentType };
  }

  /** Stops listening to the runtime and the walk of the blob store (before the store and database close). */
  async close(): Promise<void> {
    this.eventLoop.close();
    this.cluster.close();
    this.snapshots.close();
    await this.blobs.close();
  }
}
