import type { FastifyBaseLogger, FastifyReply } from 'fastify';
import type { ServerResponse } from 'node:http';

import { filterKey, type ChangeFeed, type FeedFilter, type FeedFollower } from '../changes/changeFeed.js';
import { formatFeedPosition, positionOf, type FeedPosition } from '../content/changes.js';
import { isConclaveError, type ErrorCode } from '../errors/catalogue.js';
import type { FeedMetrics } from '../metrics/feedMetrics.js';

export interface FeedStreamLimits {
  /** Events read per step (the stream goes on at once while there are more). */
  readonly pageSizeMax: number;
  readonly subscriberBufferBytesMax: number;
  readonly subscriberStallMsMax: number;
  readonly heartbeatMs: number;
}

/**
 * One Server-Sent Events stream of the change feed. It reads the feed's table, never a buffer of its own: a client
 * that reads slowly only makes it read later (the socket holds at most subscriberBufferBytesMax before it waits), and
 * one that reads nothing for subscriberStallMsMax is cut. Every event's `id` is its feed position, so EventSource
 * resumes with Last-Event-ID exactly after the last event it got; when a filter skips events, an id-only line moves
 * that resume point on without dispatching anything. The stream ends with a final `cut` event naming the code and
 * the position to resume from (node stopping, retention overtaking the reader, a stalled client).
 *
 * Driven by the feed rather than looping on waits of its own: the feed wakes it once per round of news
 * (FeedFollower), a step sends everything new in one write, and only a full socket or a page cut short make it go
 * on by itself. One timer per stream for the heartbeat, re-armed only when it fires, and one while the socket is full.
 */
export class FeedStream implements FeedFollower {
  private readonly res: ServerResponse;
  private position: FeedPosition;
  private lastIdSent: string;
  private lastWriteMs = Date.now();
  /** A step is under way or will run by itself (once the socket took a write, or at once for a page cut short): wakes are not needed. */
  private busy = false;
  private finished = false;
  private unfollow: (() => void) | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private stallTimer: NodeJS.Timeout | null = null;
  private readonly done: Promise<void>;
  private readonly filterKey: string;
  private resolveDone!: () => void;

  constructor(
    private readonly feed: ChangeFeed,
    reply: FastifyReply,
    since: FeedPosition,
    private readonly filter: FeedFilter,
    private readonly limits: FeedStreamLimits,
    private readonly log: FastifyBaseLogger,
    appliedIndex: number,
    private readonly metrics: FeedMetrics | null,
  ) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    this.filterKey = filterKey(filter);
    this.position = since;
    this.lastIdSent = formatFeedPosition(since);
    this.res = reply.raw;
    // From here on the response is this object's: Fastify's serialisation and onSend hooks do not run.
    reply.hijack();
    this.res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      // Proxies such as nginx otherwise buffer the stream and deliver events late, in bursts.
      'x-accel-buffering': 'no',
      'x-conclave-index': String(appliedIndex),
    });
    this.res.on('close', () => this.finish());
    // `retry`: EventSource reconnects after 1 s (its default is browser-dependent).
    this.write(`retry: 1000\n: conclave change feed after ${this.lastIdSent}\n\n`);
  }

  /** Streams until the client goes or end() is called; resolves then, never rejects. */
  run(): Promise<void> {
    // A client that went before this point fired no 'close' to hear: it must not keep a slot.
    if (this.res.destroyed || this.res.socket === null || this.res.socket.destroyed) this.finish();
    if (this.finished) return this.done;
    this.unfollow = this.feed.follow(this);
    this.armHeartbeat(this.limits.heartbeatMs);
    this.step();
    return this.done;
  }

  wake(): void {
    if (this.busy || this.finished) return;
    this.step();
  }

  /** Ends the stream with a final `cut` event saying why and where to resume. */
  end(code: ErrorCode, message: string): void {
    if (this.finished) return;
    const resume = formatFeedPosition(this.position);
    this.write(`event: cut\ndata: ${JSON.stringify({ code, message, resume })}\n\n`);
    this.finish();
  }

  /** Sends what is new: one write, then waits for the next wake or for the socket to take the write, or goes on at once. */
  private step(): void {
    this.busy = true;
    try {
      // What the socket may still take: a stream far behind reads no more than it can send in this step.
      const room = Math.max(1, this.limits.subscriberBufferBytesMax - this.res.writableLength);
      let chunk;
      try {
        chunk = this.feed.chunk(this.position, this.filter, this.filterKey, this.limits.pageSizeMax, room);
      } catch (err) {
        if (isConclaveError(err) && err.code === 'CHANGES_COMPACTED') return this.end('CHANGES_COMPACTED', err.message);
        throw err;
      }
      const { page } = chunk;
      const items = page.items;
      // One write per step, not per event: a wake-up of many streams for a few events costs a write each — of the
      // same bytes for every stream at the same position with the same filter.
      let full = false;
      let sent = items.length;
      let frames = chunk.frames;
      if (sent > 1 && frames.length > room) {
        // The socket holds at most about subscriberBufferBytesMax (the first event always goes): the rest of the
        // page is read again later. (The page's bound counts the events' JSON, a frame is a little more.)
        let bytes = items[0]!.frame.length;
        sent = 1;
        while (sent < items.length && bytes + items[sent]!.frame.length <= room) bytes += items[sent++]!.frame.length;
        full = true;
        frames = frames.subarray(0, bytes);
      }
      let waitsForSocket = false;
      if (sent > 0) {
        // Past the bound, the stream goes on once this write reached the kernel. Not on 'drain': that comes only after
        // a write the socket refused (its own bound, 16 KiB), which may be more than subscriberBufferBytesMax.
        waitsForSocket = this.res.writableLength + frames.length > this.limits.subscriberBufferBytesMax;
        this.write(frames, waitsForSocket ? this.awaitFlush() : undefined);
        this.position = positionOf(items[sent - 1]!.event);
        this.lastIdSent = formatFeedPosition(this.position);
        this.metrics?.eventsSent.inc(sent);
      }
      if (!full) {
        this.position = page.next;
        const at = formatFeedPosition(this.position);
        if (at !== this.lastIdSent) {
          this.write(`id: ${at}\n\n`);
          this.lastIdSent = at;
        }
      }
      if (this.finished || waitsForSocket) return;
      if (full || page.more) {
        // More to read at once: let the event loop serve others between steps (a narrow filter over a long table).
        setImmediate(() => {
          this.busy = false;
          this.wake();
        });
        return;
      }
      this.busy = false;
    } catch (err) {
      this.log.error({ err }, 'a change feed stream failed');
      this.end('INTERNAL', 'The stream failed on the server; resume from the position named.');
    }
  }

  /**
   * The callback of a write past the bound: the stream goes on once the write reached the kernel, or is cut if that
   * took subscriberStallMsMax (the client read nothing meanwhile).
   */
  private awaitFlush(): () => void {
    const timer = setTimeout(() => {
      this.stallTimer = null;
      if (this.finished) return;
      this.metrics?.subscribersCut.inc();
      this.end('SUBSCRIBER_TOO_SLOW', `The client read nothing for ${this.limits.subscriberStallMsMax} ms with its buffer full (changes.subscriberStallMsMax).`);
    }, this.limits.subscriberStallMsMax);
    this.stallTimer = timer;
    return () => {
      clearTimeout(timer);
      if (this.stallTimer === timer) this.stallTimer = null;
      this.busy = false;
      this.wake();
    };
  }

  /** A comment line when nothing went out for heartbeatMs; the timer fires at most once per heartbeatMs. */
  private armHeartbeat(delayMs: number): void {
    this.heartbeat = setTimeout(() => {
      this.heartbeat = null;
      if (this.finished) return;
      const quietMs = Date.now() - this.lastWriteMs;
      if (quietMs >= this.limits.heartbeatMs) this.write(': heartbeat\n\n');
      this.armHeartbeat(Math.max(1, this.limits.heartbeatMs - (Date.now() - this.lastWriteMs)));
    }, delayMs);
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.unfollow?.();
    this.unfollow = null;
    if (this.heartbeat !== null) clearTimeout(this.heartbeat);
    this.heartbeat = null;
    if (this.stallTimer !== null) clearTimeout(this.stallTimer);
    this.stallTimer = null;
    if (!this.res.writableEnded) this.res.end();
    // A client that does not take the rest (a stalled one, cut) must not keep its socket and what waits in it: the
    // connection goes once it had another subscriberStallMsMax to read.
    if (!this.res.writableFinished && !this.res.destroyed) {
      const timer = setTimeout(() => this.res.destroy(), this.limits.subscriberStallMsMax).unref();
      const clear = () => clearTimeout(timer);
      this.res.once('finish', clear);
      this.res.once('close', clear);
    }
    this.resolveDone();
  }

  private write(data: string | Buffer, flushed?: () => void): void {
    if (this.res.writableEnded || this.res.destroyed) return;
    if (flushed === undefined) this.res.write(data);
    else this.res.write(data, () => flushed());
    this.lastWriteMs = Date.now();
  }
}
