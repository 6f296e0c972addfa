import { existsSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';

import type { NodeDescriptor } from '../core/clusterState.js';
import type { SnapshotRequest } from '../core/types.js';
import { fileRefOf, hashFile, type SnapshotFileRef } from '../storage/snapshotFile.js';
import { fsyncDirectory } from '../storage/snapshotStore.js';
import { PeerUnreachable, type InternalHttpClient } from './internalHttp.js';

/**
 * Downloads the snapshot a master sends to a follower that needs compacted entries. The snapshotRequest message
 * names the file (index, term, size, SHA-256); the bytes come over HTTP from the node that sent it
 * (`GET /internal/v1/snapshots/:index` through the node-to-node client: signed, and over TLS when the cluster uses
 * TLS), streamed to
 * `data/snapshots/incoming/<index>-<sha256>.part`:
 *
 * - resumable: after a broken connection, a timeout or a restart of this node, the download goes on from the bytes
 *   already on disk with a Range request (If-Range on the SHA-256, so bytes of another file are never appended);
 * - retried with exponential back-off while the holder is unreachable or busy; after `stalledAttemptsMax` attempts
 *   in a row without a new byte it is abandoned (the partial file stays), and the master's next snapshotRequest —
 *   it repeats them every election timeout — starts it again;
 * - verified: size and SHA-256 of the whole file; a mismatch deletes it and fetches it again from the start.
 *
 * Once verified the file is renamed `<index>-<sha256>.db` and `onVerified` gets the latest message for it, which
 * the runtime then steps into the coordinator. One download at a time: a message for the same snapshot while it
 * runs only refreshes which master to ask; one for a newer snapshot (or from a newer term) replaces it.
 */
export interface SnapshotFetcherOptions {
  readonly incomingDir: string;
  readonly selfId: string;
  /** The node-to-node HTTP client (src/replication/internalHttp.ts). */
  readonly http: Pick<InternalHttpClient, 'send'>;
  /** Where to download the file that a snapshotRequest names: its sender (see SnapshotRequest.sender); null when unknown. */
  readonly peerOf: (message: SnapshotRequest) => NodeDescriptor | null;
  /** A request without a byte for this long (headers, or between body chunks) is abandoned and retried. */
  readonly transferTimeoutMs: number;
  /** Called with the latest message for a snapshot once its file is verified on disk. */
  readonly onVerified: (message: SnapshotRequest) => void;
  readonly log: Logger;
  /** Milliseconds between progress lines in the log. */
  readonly progressLogIntervalMs?: number;
}

export interface SnapshotDownloadProgress {
  readonly index: number;
  /** The node the bytes come from. */
  readonly from: string;
  readonly state: 'downloading' | 'verifying' | 'retrying' | 'verified' | 'abandoned';
  readonly bytes: number;
  readonly totalBytes: number;
  readonly percent: number;
  /** At the current attempt's rate; null before it has one. */
  readonly secondsLeft: number | null;
  /** Attempts so far (1 for a download that has not failed). */
  readonly attempt: number;
}

/** Back-off between attempts: 250 ms, doubling, at most 10 s (with jitter, so followers do not retry in step). */
const retryDelayMinMs = 250;
const retryDelayMaxMs = 10_000;
/** Attempts in a row that bring no new byte before the download is abandoned until the next snapshotRequest. */
const stalledAttemptsMax = 8;
/** Checksum failures in a row before the download is abandoned until the next snapshotRequest. */
const checksumFailuresMax = 3;
const progressLogIntervalMsDefault = 5000;

/** The holder refused for a reason a retry of the same request cannot fix. */
class TransferRefused extends Error {}

interface Download {
  readonly ref: SnapshotFileRef;
  /** The latest snapshotRequest for this snapshot: the one stepped once verified, and whose sender is asked. */
  latest: SnapshotRequest;
  readonly abort: AbortController;
  state: SnapshotDownloadProgress['state'];
  running: boolean;
  bytes: number;
  attempt: number;
  attemptStartBytes: number;
  attemptStartMs: number;
  verifiedPath: string | null;
}

export class SnapshotFetcher {
  private current: Download | null = null;
  private readonly progressTimer: NodeJS.Timeout;
  private closed = false;

  /** Removes incoming files for snapshots at or below `appliedIndex`: this node is past them. */
  constructor(
    private readonly options: SnapshotFetcherOptions,
    appliedIndex: number,
  ) {
    for (const name of readdirSync(options.incomingDir)) {
      const index = Number(/^(\d+)-/.exec(name)?.[1] ?? NaN);
      if (!(index > appliedIndex)) rmSync(join(options.incomingDir, name), { force: true });
    }
    this.progressTimer = setInterval(() => this.logProgress(), options.progressLogIntervalMs ?? progressLogIntervalMsDefault);
    this.progressTimer.unref();
  }

  /** A snapshotRequest whose file this node does not hold: download it (or note it, if it already is). */
  offer(message: SnapshotRequest): void {
    if (this.closed) return;
    const ref = fileRefOf(message.snapshot);
    const d = this.current;
    if (d !== null && d.ref.index === ref.index && d.ref.sha256 === ref.sha256) {
      if (message.term >= d.latest.term) d.latest = message;
      if (d.verifiedPath !== null && existsSync(d.verifiedPath)) return this.options.onVerified(d.latest);
      // Not downloaded yet, given up on earlier, or its verified file has gone: (re)start from what is on disk.
      d.verifiedPath = null;
      if (!d.running) void this.run(d);
      return;
    }
    if (d !== null && ref.index <= d.ref.index && message.term <= d.latest.term) {
      // An older snapshot from the same master (or an earlier one): the download under way serves better.
      return;
    }
    if (d !== null) this.discard(d, 'replaced by a newer snapshot');
    const next: Download = {
      ref,
      latest: message,
      abort: new AbortController(),
      state: 'downloading',
      running: false,
      bytes: 0,
      attempt: 0,
      attemptStartBytes: 0,
      attemptStartMs: Date.now(),
      verifiedPath: null,
    };
    this.current = next;
    // Only one snapshot's files are kept in incoming/: this one's (a partial file is resumed).
    for (const name of readdirSync(this.options.incomingDir)) {
      if (!name.startsWith(`${ref.index}-${ref.sha256}.`)) rmSync(join(this.options.incomingDir, name), { force: true });
    }
    if (existsSync(this.verifiedPathOf(ref))) {
      next.verifiedPath = this.verifiedPathOf(ref);
      next.state = 'verified';
      next.bytes = ref.bytes;
      return this.options.onVerified(message);
    }
    void this.run(next);
  }

  /** The verified file of this snapshot, if it is in incoming/. */
  verifiedFile(ref: SnapshotFileRef): string | undefined {
    const d = this.current;
    if (d === null || d.verifiedPath === null || d.ref.index !== ref.index || d.ref.sha256 !== ref.sha256) return undefined;
    return existsSync(d.verifiedPath) ? d.verifiedPath : undefined;
  }

  /** A snapshot at `index` is installed: downloads at or below it are over, and their files go. */
  installed(index: number): void {
    const d = this.current;
    if (d !== null && d.ref.index <= index) {
      d.abort.abort();
      this.current = null;
    }
    for (const name of readdirSync(this.options.incomingDir)) {
      if (Number(/^(\d+)-/.exec(name)?.[1] ?? NaN) <= index) rmSync(join(this.options.incomingDir, name), { force: true });
    }
  }

  progress(): SnapshotDownloadProgress | null {
    const d = this.current;
    if (d === null) return null;
    const elapsedSeconds = (Date.now() - d.attemptStartMs) / 1000;
    const rate = elapsedSeconds > 0 ? (d.bytes - d.attemptStartBytes) / elapsedSeconds : 0;
    const left = d.ref.bytes - d.bytes;
    return {
      index: d.ref.index,
      from: d.latest.from,
      state: d.state,
      bytes: d.bytes,
      totalBytes: d.ref.bytes,
      percent: d.ref.bytes === 0 ? 100 : Math.floor((d.bytes / d.ref.bytes) * 1000) / 10,
      secondsLeft: left === 0 ? 0 : rate > 0 && d.state === 'downloading' ? Math.ceil(left / rate) : null,
      attempt: d.attempt,
    };
  }

  close(): void {
    this.closed = true;
    clearInterval(this.progressTimer);
    this.current?.abort.abort();
  }

  // ------------------------------------------------------------------ downloading

  private partPathOf(ref: SnapshotFileRef): string {
    return join(this.options.incomingDir, `${ref.index}-${ref.sha256}.part`);
  }

  private verifiedPathOf(ref: SnapshotFileRef): string {
    return join(this.options.incomingDir, `${ref.index}-${ref.sha256}.db`);
  }

  private discard(d: Download, why: string): void {
    d.abort.abort();
    rmSync(this.partPathOf(d.ref), { force: true });
    if (d.verifiedPath !== null) rmSync(d.verifiedPath, { force: true });
    this.options.log.info({ index: d.ref.index }, `snapshot download ${why}`);
    if (this.current === d) this.current = null;
  }

  private async run(d: Download): Promise<void> {
    d.running = true;
    const log = this.options.log;
    let stalled = 0;
    let checksumFailures = 0;
    try {
      while (!d.abort.signal.aborted) {
        d.attempt++;
        const before = d.bytes;
        try {
          await this.fetchRemaining(d);
          d.state = 'verifying';
          const part = this.partPathOf(d.ref);
          const { bytes, sha256 } = await hashFile(part);
          if (d.abort.signal.aborted) return;
          if (bytes === d.ref.bytes && sha256 === d.ref.sha256) {
            renameSync(part, this.verifiedPathOf(d.ref));
            fsyncDirectory(this.options.incomingDir);
            d.verifiedPath = this.verifiedPathOf(d.ref);
            d.state = 'verified';
            log.info({ index: d.ref.index, bytes, sha256, from: d.latest.from, attempts: d.attempt }, 'snapshot downloaded and verified');
            this.options.onVerified(d.latest);
            return;
          }
          // Torn by a power cut, or corrupted on either disk or on the way: start again from nothing.
          rmSync(part, { force: true });
          d.bytes = 0;
          checksumFailures++;
          log.warn(
            { code: 'SNAPSHOT_CHECKSUM_MISMATCH', index: d.ref.index, expected: { bytes: d.ref.bytes, sha256: d.ref.sha256 }, got: { bytes, sha256 } },
            'the downloaded snapshot does not match its checksum; it was deleted and is fetched again',
          );
          if (checksumFailures >= checksumFailuresMax) {
            log.warn({ index: d.ref.index }, 'the snapshot failed its checksum too often; waiting for the master to send one again');
            d.state = 'abandoned';
            return;
          }
        } catch (err) {
          if (d.abort.signal.aborted) return;
          if (err instanceof TransferRefused) {
            log.warn({ index: d.ref.index, from: d.latest.from, reason: err.message }, 'the snapshot download was refused; waiting for the master to send one again');
            rmSync(this.partPathOf(d.ref), { force: true });
            d.bytes = 0;
            d.state = 'abandoned';
            return;
          }
          stalled = d.bytes > before ? 0 : stalled + 1;
          if (stalled >= stalledAttemptsMax) {
            log.warn({ index: d.ref.index, from: d.latest.from, err }, 'the snapshot download makes no progress; waiting for the master to send one again (the bytes so far are kept)');
            d.state = 'abandoned';
            return;
          }
          log.warn({ index: d.ref.index, from: d.latest.from, bytes: d.bytes, totalBytes: d.ref.bytes, err: (err as Error).message }, 'the snapshot download broke off; resuming after a pause');
        }
        d.state = 'retrying';
        const delay = Math.min(retryDelayMaxMs, retryDelayMinMs * 2 ** Math.min(16, d.attempt - 1));
        await sleep(delay / 2 + Math.random() * (delay / 2), undefined, { signal: d.abort.signal }).catch(() => undefined);
      }
    } finally {
      d.running = false;
    }
  }

  /** One HTTP request for what is not on disk yet, appended to the partial file. */
  private async fetchRemaining(d: Download): Promise<void> {
    const part = this.partPathOf(d.ref);
    let offset = existsSync(part) ? statSync(part).size : 0;
    if (offset > d.ref.bytes) {
      rmSync(part, { force: true });
      offset = 0;
    }
    d.bytes = offset;
    if (offset === d.ref.bytes && offset > 0) return;
    const peer = this.options.peerOf(d.latest);
    if (peer === null) throw new PeerUnreachable(`node ${d.latest.from} is not known yet`);
    const path = `/internal/v1/snapshots/${d.ref.index}`;
    const etag = `"${d.ref.sha256}"`;
    const headers: Record<string, string> = {};
    if (offset > 0) {
      headers['range'] = `bytes=${offset}-`;
      headers['if-range'] = etag;
      this.options.log.info({ index: d.ref.index, fromByte: offset, totalBytes: d.ref.bytes, from: d.latest.from }, 'resuming a snapshot download');
    }
    d.state = 'downloading';
    d.attemptStartBytes = offset;
    d.attemptStartMs = Date.now();
    // Opened before the request, so that the body is read from the moment it comes: a connection that breaks
    // while nobody reads discards what it had buffered.
    const file = await open(part, 'a');
    try {
      const response = await this.options.http.send(peer, {
        method: 'GET',
        path,
        headers,
        idleTimeoutMs: this.options.transferTimeoutMs,
        signal: d.abort.signal,
      });
      const status = response.statusCode;
      if (status !== 200 && status !== 206) {
        const body = await response.body.text().catch(() => '');
        const code = /"code":"([A-Z_]+)"/.exec(body)?.[1] ?? String(status);
        if (status === 404 || status === 401 || status === 403) throw new TransferRefused(`${d.latest.from} answered ${status} ${code}`);
        throw new Error(`${d.latest.from} answered ${status} ${code}`);
      }
      if (response.headers['etag'] !== etag) {
        await response.body.dump();
        throw new TransferRefused(`${d.latest.from} holds another file for snapshot ${d.ref.index}`);
      }
      if (status === 206) {
        const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(response.headers['content-range'] ?? ''));
        if (range === null || Number(range[1]) !== offset || Number(range[3]) !== d.ref.bytes) {
          await response.body.dump();
          throw new Error(`${d.latest.from} answered a range other than the one asked for`);
        }
      } else if (offset > 0) {
        // The whole file came instead of the rest (the holder's file changed, or it ignores ranges): start over.
        await file.truncate(0);
        d.bytes = 0;
        d.attemptStartBytes = 0;
      }
      // Each chunk is written before the next is read (back-pressure on the socket), so whatever arrived before a
      // broken connection is on disk for the resumed request.
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        if (d.bytes + chunk.length > d.ref.bytes) throw new Error('the holder sent more bytes than the snapshot has');
        await file.write(chunk);
        d.bytes += chunk.length;
      }
    } finally {
      await file.sync().catch(() => undefined);
      await file.close();
    }
    if (d.bytes !== d.ref.bytes) throw new Error(`the transfer ended at byte ${d.bytes} of ${d.ref.bytes}`);
  }

  private logProgress(): void {
    const progress = this.progress();
    if (progress === null || progress.state !== 'downloading') return;
    this.options.log.info(progress, 'downloading a snapshot');
  }
}
