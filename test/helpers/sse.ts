import { request, type IncomingMessage } from 'node:http';

import { waitFor } from './tmp.js';

/** One Server-Sent Event as a client sees it; an id-only line comes as an event with no data. */
export interface SseEvent {
  readonly id: string | undefined;
  readonly event: string | undefined;
  readonly data: string | undefined;
}

/**
 * A Server-Sent Events client over a real socket, parsing the stream as EventSource does (lines, fields, a blank
 * line ends an event) and keeping everything it got: events, comments, the last event id, and how it ended.
 */
export class SseClient {
  readonly events: SseEvent[] = [];
  readonly comments: string[] = [];
  lastEventId: string | undefined;
  ended = false;
  status = 0;
  headers: IncomingMessage['headers'] = {};
  body = '';
  private buffer = '';
  private pending: { id?: string; event?: string; data?: string[] } = {};
  private readonly req;
  private res: IncomingMessage | null = null;

  constructor(url: string, headers: Record<string, string>) {
    this.req = request(url, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      this.res = res;
      this.status = res.statusCode ?? 0;
      this.headers = res.headers;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (this.status !== 200) this.body += chunk;
        else this.feed(chunk);
      });
      res.on('end', () => (this.ended = true));
      res.on('error', () => (this.ended = true));
    });
    this.req.on('error', () => (this.ended = true));
    this.req.end();
  }

  /** The change events (data events of the default type), parsed. */
  changes<T = Record<string, unknown>>(): T[] {
    return this.events.filter((e) => e.event === undefined && e.data !== undefined).map((e) => JSON.parse(e.data!) as T);
  }

  /** The final `cut` event's data, once it came. */
  cut(): { code: string; message: string; resume: string } | undefined {
    const cut = this.events.find((e) => e.event === 'cut');
    return cut === undefined ? undefined : (JSON.parse(cut.data!) as { code: string; message: string; resume: string });
  }

  async opened(): Promise<void> {
    await waitFor('the stream to answer', () => (this.status !== 0 ? true : undefined));
  }

  close(): void {
    this.req.destroy();
  }

  /** Stops reading the socket (what arrives stays in the kernel's buffers, and then in the server's): a stalled client. */
  pause(): void {
    this.res?.pause();
  }

  resume(): void {
    this.res?.resume();
  }

  private feed(chunk: string): void {
    this.buffer += chunk;
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).replace(/\r$/, '');
      this.buffer = this.buffer.slice(newline + 1);
      if (line === '') {
        const { id, event, data } = this.pending;
        if (id !== undefined) this.lastEventId = id;
        if (id !== undefined || data !== undefined || event !== undefined) this.events.push({ id, event, data: data?.join('\n') });
        this.pending = {};
        continue;
      }
      if (line.startsWith(':')) {
        this.comments.push(line.slice(1).trim());
        continue;
      }
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'id') this.pending.id = value;
      else if (field === 'event') this.pending.event = value;
      else if (field === 'data') (this.pending.data ??= []).push(value);
    }
  }
}
