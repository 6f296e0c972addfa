import type { FastifyBaseLogger, FastifyReply } from 'fastify';
import type { ServerResponse } from 'node:http';

import type { ChangeFeed, FeedFilter, FeedItem } from '../changes/changeFeed.js';
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
 */
export class FeedStream {
  private readonly gone = new AbortController();
  private readonly res: ServerResponse;
  private position: FeedPosition;
  private lastIdSent: string;
  private lastWriteMs = Date.now();

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
    this.res.on('close', () => this.gone.abort());
    // A client that went before this point fired no 'close' to hear: it must not keep a slot.
    if (this.res.destroyed || this.res.socket === null || this.res.socket.destroyed) this.gone.abort();
    // `retry`: EventSource reconnects after 1 s (its default is browser-dependent).
    this.write(`retry: 1000\n: conclave change feed after ${this.lastIdSent}\n\n`);
  }

  /** Streams until the client goes or end() is called; never rejects. */
  async run(): Promise<void> {
    try {
      while (!this.gone.signal.aborted && !this.res.destroyed) {
        let page;
        try {
          page = this.feed.page(this.position, this.filter, this.limits.pageSizeMax);
        } catch (err) {
          if (isConclaveError(err) && err.code === 'CHANGES_COMPACTED') return this.end('CHANGES_COMPACTED', err.message);
          throw err;
        }
        // One write per step, not per event: a wake-up of many streams for a few events costs a write each.
        let full = false;
        let chunk = '';
        let sent = 0;
        let last: FeedItem['event'] | null = null;
        for (const { event, frame } of page.items) {
          chunk += frame;
          sent++;
          last = event;
          // The socket holds at most about subscriberBufferBytesMax: the rest of the page is read again later.
          if (this.res.writableLength + chunk.length > this.limits.subscriberBufferBytesMax) {
            full = true;
            this.position = positionOf(event);
            break;
          }
        }
        if (last !== null) {
          this.write(chunk);
          this.lastIdSent = formatFeedPosition(positionOf(last));
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
        if (this.res.writableLength > this.limits.subscriberBufferBytesMax && !(await this.drained())) {
          if (this.gone.signal.aborted) return;
          this.metrics?.subscribersCut.inc();
          return this.end('SUBSCRIBER_TOO_SLOW', `The client read nothing for ${this.limits.subscriberStallMsMax} ms with its buffer full (changes.subscriberStallMsMax).`);
        }
        if (full || page.more) {
          // More to read at once: let the event loop serve others between steps (a narrow filter over a long table).
          await new Promise((resolve) => setImmediate(resolve));
          continue;
        }
        const quietMs = Date.now() - this.lastWriteMs;
        const arrived = await this.feed.waitForEntryAfter(this.position.index, Math.max(1, this.limits.heartbeatMs - quietMs), this.gone.signal, { coalesce: true });
        if (!arrived && Date.now() - this.lastWriteMs >= this.limits.heartbeatMs) this.write(': heartbeat\n\n');
      }
    } catch (err) {
      this.log.error({ err }, 'a change feed stream failed');
      this.end('INTERNAL', 'The stream failed on the server; resume from the position named.');
    } finally {
      if (!this.res.writableEnded) this.res.end();
    }
  }

  /** Ends the stream with a final `cut` event saying why and where to resume. */
  end(code: ErrorCode, message: string): void {
    if (this.gone.signal.aborted && this.res.writableEnded) return;
    const resume = formatFeedPosition(this.position);
    this.write(`event: cut\ndata: ${JSON.stringify({ code, message, resume })}\n\n`);
    this.res.end();
    this.gone.abort();
  }

  private write(text: string): void {
    if (this.res.writableEnded || this.res.destroyed) return;
    this.res.write(text);
    this.lastWriteMs = Date.now();
  }

  /** Whether the socket drained within subscriberStallMsMax (false too when the client went meanwhile). */
  private drained(): Promise<boolean> {
    return new Promise((resolve) => {
      const finish = (outcome: boolean) => {
        clearTimeout(timer);
        this.res.off('drain', onDrain);
        this.gone.signal.removeEventListener('abort', onGone);
        resolve(outcome);
      };
      const onDrain = () => finish(true);
      const onGone = () => finish(false);
      const timer = setTimeout(() => finish(false), this.limits.subscriberStallMsMax);
      this.res.on('drain', onDrain);
      this.gone.signal.addEventListener('abort', onGone, { once: true });
    });
  }
}
