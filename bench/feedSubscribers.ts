import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { StringDecoder } from 'node:string_decoder';
import { fileURLToPath } from 'node:url';
import { fork, type ChildProcess } from 'node:child_process';

import { authorization } from './operations.js';

/**
 * The feed bench's subscribers (bench/feed.ts), in a process of their own: a subscriber stands for a client on
 * another machine, and in the bench's process its reading would hold up the writers' event loop — the writers' answers
 * waited behind the streams' data, and the bench counted that as the servers' cost. They still share the two cores.
 *
 * Times are absolute (performance.timeOrigin + performance.now(), milliseconds), comparable between the processes.
 */

const dataLine = Buffer.from('\ndata: ');

/** What the parent asks for: one subscriber per entry, to `url`, measuring or counting. */
export interface SubscriberSpec {
  readonly node: string;
  readonly url: string;
  readonly measuring: boolean;
}

type Request = { kind: 'start'; parentPath: string; specs: SubscriberSpec[] } | { kind: 'status' } | { kind: 'arrivals'; paths: string[] } | { kind: 'close' };

export interface SubscribersStatus {
  readonly events: number[];
  readonly chunks: number;
  readonly failures: string[];
  /** CPU this process used so far, in milliseconds. */
  readonly cpuMs: number;
}

/**
 * One Server-Sent Events stream; a measuring one notes when each path's event arrived, a counting one counts events.
 * Both read the raw socket, not through node:http's client: a subscriber stands for a client on another machine,
 * and the bench shares the servers' two cores — node:http's client spent about 35 µs of CPU per chunk received, a
 * plain socket 12. The body is chunked (Transfer-Encoding), but the chunk framing only ever falls between two events
 * (one write is whole events), so it never splits a `data:` line and reading the bytes as they come stays exact.
 */
class Subscriber {
  readonly arrivedAt = new Map<string, number>();
  events = 0;
  chunks = 0;
  failure: string | null = null;
  private readonly socket: Socket;
  private head: Buffer | null = Buffer.alloc(0);
  private readonly decoder = new StringDecoder('utf8');
  private tail = '';
  private tailBytes: Buffer = Buffer.alloc(0);

  constructor(
    readonly node: string,
    url: string,
    readonly measuring: boolean,
    parentPath: string,
  ) {
    const { hostname, port } = new URL(url);
    this.socket = connect(Number(port), hostname, () => {
      this.socket.write(
        `GET /api/v1/changes?since=now&under=${parentPath} HTTP/1.1\r\nHost: ${hostname}:${port}\r\n` +
          `Authorization: ${authorization}\r\nAccept: text/event-stream\r\n\r\n`,
      );
    });
    this.socket.on('data', (chunk: Buffer) => {
      this.chunks++;
      if (this.head !== null) {
        // The status line and headers first: the body is what follows the blank line.
        this.head = Buffer.concat([this.head, chunk]);
        const end = this.head.indexOf('\r\n\r\n');
        if (end < 0) return;
        const status = this.head.subarray(0, this.head.indexOf('\r\n')).toString('latin1');
        if (!status.startsWith('HTTP/1.1 200 ')) {
          this.failure = `a feed subscriber on ${node} got ${status}`;
          this.socket.destroy();
          return;
        }
        chunk = this.head.subarray(end + 4);
        this.head = null;
      }
      if (measuring) this.take(this.decoder.write(chunk));
      else this.count(chunk);
    });
    this.socket.on('error', (err) => (this.failure ??= `a feed subscriber on ${node}: ${err.message}`));
  }

  private take(chunk: string): void {
    const now = performance.timeOrigin + performance.now();
    const text = this.tail + chunk;
    let start = 0;
    for (let at = text.indexOf('\ndata: ', start); at >= 0; at = text.indexOf('\ndata: ', start)) {
      const end = text.indexOf('\n', at + 7);
      if (end < 0) break;
      this.events++;
      // The path without parsing the event: the bench's paths hold nothing JSON escapes, so it stands as written.
      const path = text.indexOf('"path":"', at);
      if (path >= 0 && path < end) this.arrivedAt.set(text.slice(path + 8, text.indexOf('"', path + 8)), now);
      start = end;
    }
    this.tail = text.slice(start);
  }

  /**
   * Counts events in the bytes as they come, without decoding them: a counting subscriber stands for a client on
   * another machine, and the bench shares the servers' two cores.
   */
  private count(chunk: Buffer): void {
    // A `data: ` line cut between two chunks: the previous chunk's last bytes and this one's first hold it whole.
    if (this.tailBytes.length > 0 && Buffer.concat([this.tailBytes, chunk.subarray(0, dataLine.length - 1)]).includes(dataLine)) this.events++;
    let start = 0;
    for (let at = chunk.indexOf(dataLine, start); at >= 0; at = chunk.indexOf(dataLine, start)) {
      this.events++;
      start = at + dataLine.length;
    }
    this.tailBytes = Buffer.from(chunk.subarray(Math.max(start, chunk.length - (dataLine.length - 1))));
  }

  close(): void {
    this.socket.destroy();
  }
}


/** The subscribers' process, seen from the bench: every call a request and its answer over IPC. */
export class SubscriberProcess {
  private readonly child: ChildProcess;
  private pending: ((value: unknown) => void) | null = null;

  constructor() {
    this.child = fork(fileURLToPath(import.meta.url), ['--feed-subscribers'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (message) => {
      const resolve = this.pending;
      this.pending = null;
      resolve?.(message);
    });
  }

  start(parentPath: string, specs: SubscriberSpec[]): Promise<unknown> {
    return this.ask({ kind: 'start', parentPath, specs });
  }

  status(): Promise<SubscribersStatus> {
    return this.ask({ kind: 'status' }) as Promise<SubscribersStatus>;
  }

  /** For each measuring subscriber (in the order started), when each of `paths` arrived (absolute ms), or null. */
  arrivals(paths: string[]): Promise<{ node: string; at: (number | null)[] }[]> {
    return this.ask({ kind: 'arrivals', paths }) as Promise<{ node: string; at: (number | null)[] }[]>;
  }

  async close(): Promise<void> {
    await this.ask({ kind: 'close' });
  }

  private ask(request: Request): Promise<unknown> {
    if (this.pending !== null) throw new Error('one request at a time');
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`the subscribers' process exited (${code})`));
      this.child.once('exit', onExit);
      this.pending = (value) => {
        this.child.off('exit', onExit);
        resolve(value);
      };
      this.child.send(request);
    });
  }
}

function serve(): void {
  let subscribers: Subscriber[] = [];
  process.on('message', (request: Request) => {
    const answer = (value: unknown) => process.send!(value);
    switch (request.kind) {
      case 'start':
        subscribers = request.specs.map((spec) => new Subscriber(spec.node, spec.url, spec.measuring, request.parentPath));
        return answer({});
      case 'status':
        return answer({
          events: subscribers.map((s) => s.events),
          chunks: subscribers.reduce((sum, s) => sum + s.chunks, 0),
          failures: subscribers.flatMap((s) => (s.failure === null ? [] : [s.failure])),
          cpuMs: (process.cpuUsage().user + process.cpuUsage().system) / 1000,
        } satisfies SubscribersStatus);
      case 'arrivals':
        return answer(subscribers.filter((s) => s.measuring).map((s) => ({ node: s.node, at: request.paths.map((p) => s.arrivedAt.get(p) ?? null) })));
      case 'close':
        for (const s of subscribers) s.close();
        answer({});
        process.disconnect();
        return;
    }
  });
}

if (process.argv.includes('--feed-subscribers') && process.send !== undefined) serve();
