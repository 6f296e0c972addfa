import type { Logger } from 'pino';

import type { Command } from '../content/commands.js';
import type { ClusterState, NodeDescriptor } from '../core/clusterState.js';
import type { Entry, SoftState } from '../core/types.js';

/** What the fetcher needs of the runtime: who leads and who is a member. */
export interface FetcherRuntime {
  softState(): SoftState;
  clusterState(): ClusterState;
  self(): NodeDescriptor;
}

/** What the fetcher needs of the local store and the content. */
export interface FetcherStore {
  has(sha256: string): Promise<boolean>;
  /** Settles when a copy of this blob arriving now (a push from the master) is stored or has failed. */
  arriving(sha256: string): Promise<void>;
  blobReferences(): Array<{ sha256: string; size: number }>;
  isBlobReferenced(sha256: string): boolean;
}

/** What the fetcher needs of the transfer client (BlobClient). */
export interface BlobSource {
  fetch(peer: NodeDescriptor, sha256: string, size: number, signal?: AbortSignal): Promise<boolean>;
}

export interface BlobFetcherOptions {
  /** Blobs queued, being fetched or waiting to retry; more are left for the next scan. */
  readonly queueMax: number;
  /** Blobs fetched at once. */
  readonly concurrency: number;
}

interface Wanted {
  readonly sha256: string;
  readonly size: number;
  attempts: number;
  retryTimer: NodeJS.Timeout | null;
  readonly waiters: Set<(held: boolean) => void>;
}

const retryDelayMsMin = 250;
const retryDelayMsMax = 30_000;
/** After this many failed rounds over every peer, each further failure is logged as a warning. */
const attemptsBeforeWarning = 5;

/**
 * Gets the blobs this node lacks from its peers: those named by committed setBinary entries as they are applied,
 * those a read asks for, and — at start-up or after a snapshot is installed — every blob the content references
 * that is missing here (queueMissing). One queue, de-duplicated by hash and bounded (queueMax); a few fetches at
 * once (concurrency); the master first (it held every upload), then the other members; failed rounds are retried
 * with a back-off for as long as the content references the blob.
 *
 * When the queue was full, the blobs left out are found again by a scan once it is half empty, so none is
 * forgotten for good.
 */
export class BlobFetcher {
  private readonly wanted = new Map<string, Wanted>();
  private readonly ready: Wanted[] = [];
  private active = 0;
  private overflowed = false;
  private scanning: Promise<number> | null = null;
  private closed = false;
  private readonly closing = new AbortController();

  constructor(
    private readonly runtime: FetcherRuntime,
    private readonly store: FetcherStore,
    private readonly source: BlobSource,
    private readonly options: BlobFetcherOptions,
    private readonly log: Logger,
  ) {}

  /** Blobs queued, being fetched or waiting to retry. */
  get queued(): number {
    return this.wanted.size;
  }

  /** For ClusterRuntime.onApplied: queues the blob of every applied setBinary entry that is not here. */
  onApplied(entries: readonly Entry[]): void {
    for (const entry of entries) {
      if (entry.payload.kind !== 'command') continue;
      const command = entry.payload.data as Command;
      if (command.type !== 'setBinary' || command.binary.size === 0) continue;
      const { sha256, size } = command.binary;
      if (this.wanted.has(sha256)) continue;
      void this.store.has(sha256).then(
        (held) => {
          if (!held) this.enqueue(sha256, size);
        },
        (err: unknown) => this.log.warn({ err, sha256 }, 'cannot check the blob store'),
      );
    }
  }

  /**
   * Queues every blob the content references that is not here; resolves with how many were queued. Call it at
   * start-up and after a snapshot is installed. Concurrent calls share one scan.
   */
  queueMissing(): Promise<number> {
    this.scanning ??= this.scan().finally(() => (this.scanning = null));
    return this.scanning;
  }

  /**
   * Resolves true once the blob is here, fetching it if needed; false when it is not here within `timeoutMs` (or
   * the queue is full).
   */
  async awaitBlob(sha256: string, size: number, timeoutMs: number): Promise<boolean> {
    if (await this.store.has(sha256)) return true;
    const wanted = this.enqueue(sha256, size);
    if (wanted === undefined || timeoutMs === 0) return false;
    return new Promise<boolean>((resolve) => {
      const done = (held: boolean) => {
        clearTimeout(timer);
        wanted.waiters.delete(done);
        resolve(held);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      wanted.waiters.add(done);
    });
  }

  close(): void {
    this.closed = true;
    this.closing.abort();
    for (const wanted of this.wanted.values()) {
      if (wanted.retryTimer !== null) clearTimeout(wanted.retryTimer);
      for (const waiter of [...wanted.waiters]) waiter(false);
    }
    this.wanted.clear();
    this.ready.length = 0;
  }

  /** Queues a blob unless it is queued already; undefined when the queue is full. */
  private enqueue(sha256: string, size: number): Wanted | undefined {
    if (this.closed) return undefined;
    const existing = this.wanted.get(sha256);
    if (existing !== undefined) return existing;
    if (this.wanted.size >= this.options.queueMax) {
      if (!this.overflowed) this.log.warn({ blobFetchQueueMax: this.options.queueMax }, 'the blob fetch queue is full; the blobs left out are queued again once it drains');
      this.overflowed = true;
      return undefined;
    }
    const wanted: Wanted = { sha256, size, attempts: 0, retryTimer: null, waiters: new Set() };
    this.wanted.set(sha256, wanted);
    this.ready.push(wanted);
    this.pump();
    return wanted;
  }

  private pump(): void {
    while (!this.closed && this.active < this.options.concurrency && this.ready.length > 0) {
      const wanted = this.ready.shift()!;
      this.active++;
      void this.fetchOne(wanted).finally(() => {
        this.active--;
        this.pump();
        if (this.overflowed && !this.closed && this.wanted.size <= this.options.queueMax / 2) {
          this.overflowed = false;
          void this.queueMissing().catch((err: unknown) => this.log.warn({ err }, 'the scan for missing blobs failed'));
        }
      });
    }
  }

  private async fetchOne(wanted: Wanted): Promise<void> {
    const { sha256, size } = wanted;
    // The master's copy often arrives while the entry is applied: wait for it rather than fetch the bytes twice.
    await this.store.arriving(sha256);
    let held = await this.store.has(sha256).catch(() => false);
    const failures: string[] = [];
    for (const peer of held ? [] : this.sources()) {
      if (this.closed) return;
      try {
        if (await this.source.fetch(peer, sha256, size, this.closing.signal)) {
          held = true;
          break;
        }
        failures.push(`${peer.name}: not there`);
      } catch (err) {
        failures.push(`${peer.name}: ${(err as Error).message}`);
      }
    }
    if (this.closed) return;
    if (held) return this.finish(wanted, true);
    wanted.attempts++;
    if (!this.store.isBlobReferenced(sha256)) {
      // The binary was replaced or deleted since: nobody will ask for these bytes.
      return this.finish(wanted, false);
    }
    const level = wanted.attempts >= attemptsBeforeWarning ? 'warn' : 'debug';
    this.log[level]({ sha256, attempts: wanted.attempts, failures }, 'could not fetch a missing blob from any peer; retrying later');
    // Every waiting read gives up at its own deadline; the fetch goes on.
    const delayMs = Math.min(retryDelayMsMin * 2 ** Math.min(wanted.attempts - 1, 20), retryDelayMsMax);
    wanted.retryTimer = setTimeout(() => {
      wanted.retryTimer = null;
      this.ready.push(wanted);
      this.pump();
    }, delayMs * (0.5 + Math.random() / 2));
  }

  private finish(wanted: Wanted, held: boolean): void {
    this.wanted.delete(wanted.sha256);
    if (held && wanted.attempts > 0) this.log.info({ sha256: wanted.sha256, attempts: wanted.attempts + 1 }, 'fetched a missing blob');
    for (const waiter of [...wanted.waiters]) waiter(held);
  }

  /** The master first (it took every upload), then the other members in a random order, never this node. */
  private sources(): NodeDescriptor[] {
    const selfId = this.runtime.self().id;
    const master = this.runtime.softState().master;
    const others = this.runtime.clusterState().nodes.filter((n) => n.id !== selfId && n.id !== master);
    for (let i = others.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [others[i], others[j]] = [others[j]!, others[i]!];
    }
    const first = this.runtime.clusterState().nodes.find((n) => n.id === master && n.id !== selfId);
    return first === undefined ? others : [first, ...others];
  }

  private async scan(): Promise<number> {
    let queued = 0;
    for (const { sha256, size } of this.store.blobReferences()) {
      if (this.closed) break;
      if (size === 0 || this.wanted.has(sha256) || (await this.store.has(sha256))) continue;
      if (this.enqueue(sha256, size) === undefined) break;
      queued++;
    }
    if (queued > 0) this.log.info({ queued }, 'queued missing blobs for fetching from peers');
    return queued;
  }
}
