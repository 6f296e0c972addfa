import { encode } from '@msgpack/msgpack';

import { TransportError } from './errors.js';
import { PlainDecoder } from './plainDecoder.js';

/**
 * Framing between nodes: a 4-byte big-endian body length, then a MessagePack body. Bodies are plain maps, arrays
 * and scalars (no extension types), so any later version — or another language — can read them.
 *
 * `frameBytesMax` bounds the body length (the header's value), not counting the 4 header bytes.
 */

export const frameHeaderBytes = 4;

/** What the 32-bit length field can express; no setting may go beyond it. */
export const frameBodyBytesLimit = 0xffff_ffff;

/** Encodes one value as a whole frame. Throws FRAME_TOO_LARGE beyond frameBytesMax, FRAME_INVALID when unencodable. */
export function encodeFrame(value: unknown, frameBytesMax: number): Buffer {
  let body: Uint8Array;
  try {
    body = encode(value, { ignoreUndefined: true });
  } catch (err) {
    throw new TransportError('FRAME_INVALID', `value cannot be encoded as MessagePack: ${(err as Error).message}`, {}, { cause: err });
  }
  if (body.byteLength > frameBytesMax) {
    throw new TransportError(
      'FRAME_TOO_LARGE',
      `a frame of ${body.byteLength} bytes exceeds frameBytesMax ${frameBytesMax}`,
      { frameBytes: body.byteLength, frameBytesMax },
    );
  }
  // One buffer per frame so that a single socket write carries it: no partial frame can sit in a queue.
  const frame = Buffer.allocUnsafe(frameHeaderBytes + body.byteLength);
  frame.writeUInt32BE(body.byteLength, 0);
  frame.set(body, frameHeaderBytes);
  return frame;
}

/**
 * Reassembles frames from the chunks a socket delivers, in any split. Chunks are kept as a list and joined once
 * per frame, so a large frame arriving in many small chunks costs linear, not quadratic, copying.
 *
 * Once `push` has thrown, the stream is out of step and the decoder must be discarded with its connection.
 */
export class FrameDecoder {
  private readonly chunks: Buffer[] = [];
  private bufferedBytesValue = 0;
  /** The body length of the frame being assembled, once its header has been read. */
  private bodyBytes: number | null = null;
  private frameBytesMaxValue: number;
  private decoder: PlainDecoder;

  constructor(frameBytesMax: number) {
    this.frameBytesMaxValue = checkFrameBytesMax(frameBytesMax);
    this.decoder = FrameDecoder.decoderFor(frameBytesMax);
  }

  get frameBytesMax(): number {
    return this.frameBytesMaxValue;
  }

  /** Bytes received but not yet returned as values (at most one header plus one frame body). */
  get bufferedBytes(): number {
    return this.bufferedBytesValue;
  }

  /**
   * Changes the limit for frames whose header is not yet read. The transport starts a connection with a small
   * limit so that a peer that has not proved it knows the cluster secret cannot make us buffer a large frame.
   */
  setFrameBytesMax(frameBytesMax: number): void {
    this.frameBytesMaxValue = checkFrameBytesMax(frameBytesMax);
    this.decoder = FrameDecoder.decoderFor(frameBytesMax);
  }

  /** Takes one chunk; returns every value it completes, in order. Throws a TransportError on a bad frame. */
  push(chunk: Uint8Array): unknown[] {
    if (chunk.byteLength > 0) {
      this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      this.bufferedBytesValue += chunk.byteLength;
    }
    const values: unknown[] = [];
    while (true) {
      if (this.bodyBytes === null) {
        if (this.bufferedBytesValue < frameHeaderBytes) break;
        const length = this.take(frameHeaderBytes).readUInt32BE(0);
        // Refused on the header alone: the body is never buffered.
        if (length > this.frameBytesMaxValue) {
          throw new TransportError(
            'FRAME_TOO_LARGE',
            `the peer sent a frame of ${length} bytes, over frameBytesMax ${this.frameBytesMaxValue}`,
            { frameBytes: length, frameBytesMax: this.frameBytesMaxValue },
          );
        }
        if (length === 0) throw new TransportError('FRAME_INVALID', 'the peer sent an empty frame (no MessagePack value)');
        this.bodyBytes = length;
      }
      if (this.bufferedBytesValue < this.bodyBytes) break;
      const body = this.take(this.bodyBytes);
      this.bodyBytes = null;
      try {
        // A plain Uint8Array view, so binary fields decode as Uint8Array (not Buffer) whichever way they arrived.
        values.push(this.decoder.decode(new Uint8Array(body.buffer, body.byteOffset, body.byteLength)));
      } catch (err) {
        throw new TransportError('FRAME_INVALID', `the peer sent a frame that is not one MessagePack value: ${(err as Error).message}`, {}, { cause: err });
      }
    }
    return values;
  }

  /** Removes and returns the next `bytes` bytes; the caller has checked that they are buffered. */
  private take(bytes: number): Buffer {
    this.bufferedBytesValue -= bytes;
    const first = this.chunks[0]!;
    if (first.byteLength > bytes) {
      this.chunks[0] = first.subarray(bytes);
      return first.subarray(0, bytes);
    }
    if (first.byteLength === bytes) {
      this.chunks.shift();
      return first;
    }
    const out = Buffer.allocUnsafe(bytes);
    let filled = 0;
    while (filled < bytes) {
      const chunk = this.chunks[0]!;
      const wanted = bytes - filled;
      if (chunk.byteLength <= wanted) {
        chunk.copy(out, filled);
        filled += chunk.byteLength;
        this.chunks.shift();
      } else {
        chunk.copy(out, filled, 0, wanted);
        this.chunks[0] = chunk.subarray(wanted);
        filled += wanted;
      }
    }
    return out;
  }

  private static decoderFor(frameBytesMax: number): PlainDecoder {
    // Every element takes at least one byte, so no honest frame declares more elements than it has bytes; the
    // limits stop a tiny frame from announcing a huge container. Keys decode as plain data: a forwarded command
    // whose document holds a key "__proto__" must not end the connection (plainDecoder.ts).
    return new PlainDecoder({ maxArrayLength: frameBytesMax, maxMapLength: frameBytesMax });
  }
}

function checkFrameBytesMax(frameBytesMax: number): number {
  if (!Number.isSafeInteger(frameBytesMax) || frameBytesMax < 1 || frameBytesMax > frameBodyBytesLimit) {
    throw new TransportError('OPTIONS_INVALID', `frameBytesMax must be an integer in [1, ${frameBodyBytesLimit}], not ${frameBytesMax}`);
  }
  return frameBytesMax;
}
