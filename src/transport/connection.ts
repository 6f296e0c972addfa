import type { Socket } from 'node:net';

import { TransportError } from './errors.js';
import { encodeFrame, FrameDecoder } from './frames.js';
import { handshakeFrameBytesMax } from './handshake.js';

/**
 * One socket (plain or TLS) carrying frames: decoding what arrives, queueing what leaves within fixed bounds, and
 * closing cleanly. It knows nothing of the handshake's content; it only limits frames to a handshake's size and
 * times the handshake out until told `established()`.
 */

export interface ConnectionOptions {
  /** The largest frame accepted once established (before, only handshake-sized frames are). */
  readonly frameBytesMax: number;
  /** Frames waiting for the socket to drain; more are dropped (send returns false). */
  readonly sendQueueFramesMax: number;
  /** Bytes waiting for the socket to drain; more are dropped (send returns false). */
  readonly sendQueueBytesMax: number;
  /** From the socket's creation to `established()`, dial time included. */
  readonly handshakeTimeoutMs: number;
}

export interface ConnectionHandlers {
  /** One decoded frame. Not called after close()/destroy(). */
  readonly onFrame: (value: unknown) => void;
  /**
   * The byte stream broke (a frame too large, or not MessagePack). The handler may close with last words naming
   * the cause; if it does not, the connection is destroyed. Nothing more is read from this connection.
   */
  readonly onFrameError: (error: TransportError) => void;
  /** The handshake did not finish in time; the handler decides what to say before closing. */
  readonly onHandshakeTimeout: () => void;
  /** The socket is gone; `error` is why, when it was not a clean close. Called once. */
  readonly onClose: (error: Error | null) => void;
}

export interface ConnectionStats {
  readonly queuedFrames: number;
  readonly queuedBytes: number;
  /** Frames refused because the queue was full. */
  readonly droppedFrames: number;
}

/** How long a closing connection may take to flush its last frames before it is destroyed. */
const closeGraceMs = 1000;

type ConnectionState = 'open' | 'closing' | 'closed';

export class Connection {
  private state: ConnectionState = 'open';
  private readonly decoder = new FrameDecoder(handshakeFrameBytesMax);
  /** The socket said write() false: frames wait in `queue` until 'drain'. */
  private blocked = false;
  private readonly queue: Buffer[] = [];
  private queueHead = 0;
  private queuedBytesValue = 0;
  private droppedFramesValue = 0;
  /** The largest frame we may send: ours until the handshake tells us the peer's. */
  private sendFrameBytesMax: number;
  private handshakeTimer: NodeJS.Timeout | null;
  private closeTimer: NodeJS.Timeout | null = null;
  private firstError: Error | null = null;
  /** After a bad frame the byte stream is out of step: whatever else arrives is discarded. */
  private discarding = false;

  constructor(
    readonly socket: Socket,
    private readonly options: ConnectionOptions,
    private readonly handlers: ConnectionHandlers,
  ) {
    checkBound('sendQueueFramesMax', options.sendQueueFramesMax);
    checkBound('sendQueueBytesMax', options.sendQueueBytesMax);
    checkBound('handshakeTimeoutMs', options.handshakeTimeoutMs);
    this.sendFrameBytesMax = options.frameBytesMax;
    this.handshakeTimer = setTimeout(() => {
      this.handshakeTimer = null;
      if (this.state === 'open') this.handlers.onHandshakeTimeout();
    }, options.handshakeTimeoutMs);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.onDrain());
    socket.on('error', (err) => this.noteError(err));
    socket.on('close', () => this.onSocketClose());
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  get remoteAddress(): string {
    const { remoteAddress, remotePort } = this.socket;
    if (remoteAddress === undefined) return 'unknown';
    return remoteAddress.includes(':') ? `[${remoteAddress}]:${remotePort}` : `${remoteAddress}:${remotePort}`;
  }

  stats(): ConnectionStats {
    return { queuedFrames: this.queue.length - this.queueHead, queuedBytes: this.queuedBytesValue, droppedFrames: this.droppedFramesValue };
  }

  /**
   * The handshake is done: stop its timer, accept frames up to frameBytesMax, and send no frame larger than the
   * peer said it accepts (so an oversized message fails here, with a reason, rather than cutting the link).
   */
  established(peerFrameBytesMax: number): void {
    this.clearHandshakeTimer();
    this.decoder.setFrameBytesMax(this.options.frameBytesMax);
    this.sendFrameBytesMax = Math.min(this.options.frameBytesMax, peerFrameBytesMax);
  }

  /**
   * Queues one value. False when the connection is closing or the queue is full: the frame is dropped, because
   * the coordination protocol resends and an unbounded queue would only turn a slow peer into a dead node.
   * Throws TransportError FRAME_TOO_LARGE / FRAME_INVALID for a value that can never be sent.
   */
  send(value: unknown): boolean {
    if (this.state !== 'open') return false;
    return this.enqueue(encodeFrame(value, this.sendFrameBytesMax), false);
  }

  /**
   * Closes after the queued frames (and `lastWords`, if given, regardless of the queue's bounds) are written;
   * `error` is what onClose reports. A peer that does not read them within closeGraceMs is cut off.
   */
  close(lastWords?: unknown, error?: Error): void {
    if (this.state !== 'open') return;
    if (error !== undefined) this.noteError(error);
    this.clearHandshakeTimer();
    if (lastWords !== undefined) {
      try {
        this.enqueue(encodeFrame(lastWords, this.sendFrameBytesMax), true);
      } catch {
        // Last words are a courtesy; a value that cannot be framed must not keep the connection open.
      }
    }
    this.state = 'closing';
    this.closeTimer = setTimeout(() => this.destroy(), closeGraceMs);
    this.closeTimer.unref();
    if (!this.blocked) this.socket.end();
  }

  /** Closes at once, dropping whatever is queued. */
  destroy(error?: Error): void {
    if (this.state === 'closed') return;
    if (error !== undefined) this.noteError(error);
    this.clearHandshakeTimer();
    this.state = 'closing';
    this.dropQueue();
    this.socket.destroy();
  }

  private enqueue(frame: Buffer, ignoreBounds: boolean): boolean {
    if (!this.blocked) {
      this.write(frame);
      return true;
    }
    if (!ignoreBounds) {
      const queuedFrames = this.queue.length - this.queueHead;
      if (queuedFrames >= this.options.sendQueueFramesMax || this.queuedBytesValue + frame.byteLength > this.options.sendQueueBytesMax) {
        this.droppedFramesValue += 1;
        return false;
      }
    }
    this.queue.push(frame);
    this.queuedBytesValue += frame.byteLength;
    return true;
  }

  private write(frame: Buffer): void {
    // write() returning false means the socket's own buffer is past its high-water mark: the frame is taken, but
    // further frames wait in our bounded queue instead of growing Node's unbounded one.
    if (!this.socket.write(frame)) this.blocked = true;
  }

  private onDrain(): void {
    this.blocked = false;
    while (!this.blocked && this.queueHead < this.queue.length) {
      const frame = this.queue[this.queueHead]!;
      this.queue[this.queueHead] = Buffer.alloc(0);
      this.queueHead += 1;
      this.queuedBytesValue -= frame.byteLength;
      this.write(frame);
    }
    if (this.queueHead === this.queue.length) {
      this.queue.length = 0;
      this.queueHead = 0;
    } else if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue.splice(0, this.queueHead);
      this.queueHead = 0;
    }
    if (this.state === 'closing' && !this.blocked && !this.socket.writableEnded && !this.socket.destroyed) this.socket.end();
  }

  private onData(chunk: Buffer): void {
    if (this.state !== 'open' || this.discarding) return;
    let values: unknown[];
    try {
      values = this.decoder.push(chunk);
    } catch (err) {
      this.discarding = true;
      this.handlers.onFrameError(err as TransportError);
      if (this.state === 'open') this.destroy(err as Error);
      return;
    }
    for (const value of values) {
      if (this.state !== 'open') return;
      this.handlers.onFrame(value);
    }
  }

  private onSocketClose(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.clearHandshakeTimer();
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    this.closeTimer = null;
    this.dropQueue();
    this.handlers.onClose(this.firstError);
  }

  private noteError(err: Error): void {
    this.firstError ??= err;
  }

  private dropQueue(): void {
    this.queue.length = 0;
    this.queueHead = 0;
    this.queuedBytesValue = 0;
  }

  private clearHandshakeTimer(): void {
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
  }
}

function checkBound(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 1) throw new TransportError('OPTIONS_INVALID', `${name} must be a positive integer, not ${value}`);
}
