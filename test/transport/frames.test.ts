import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { encode } from '@msgpack/msgpack';

import { isTransportError } from '../../src/transport/errors.js';
import { FrameDecoder, encodeFrame, frameHeaderBytes } from '../../src/transport/frames.js';

const values = [
  { type: 'appendRequest', from: 'a', to: 'b', term: 3, entries: [{ index: 1, term: 1, payload: { kind: 'noop' } }] },
  { type: 'ping', bytes: new Uint8Array([1, 2, 3]), nested: { list: [1, 'two', null, true] } },
  'a string',
  42,
];

describe('frames', () => {
  it('is a 4-byte big-endian length then a MessagePack body, undefined fields left out', () => {
    const frame = encodeFrame({ a: 1, gone: undefined }, 1024);
    const body = encode({ a: 1 });
    assert.equal(frame.readUInt32BE(0), body.byteLength);
    assert.deepEqual(frame.subarray(frameHeaderBytes), Buffer.from(body));
  });

  it('decodes frames whatever the chunking: whole, byte by byte, and several per chunk', () => {
    const stream = Buffer.concat(values.map((v) => encodeFrame(v, 1024)));
    const expected = values.map((v) => (v === values[1] ? { ...(v as object) } : v));
    for (const size of [1, 2, 3, 5, 7, 64, stream.length]) {
      const decoder = new FrameDecoder(1024);
      const out: unknown[] = [];
      for (let i = 0; i < stream.length; i += size) out.push(...decoder.push(stream.subarray(i, i + size)));
      assert.deepEqual(out, expected, `chunks of ${size}`);
      assert.equal(decoder.bufferedBytes, 0);
    }
  });

  it('refuses a frame over frameBytesMax from its header alone, before buffering the body', () => {
    const decoder = new FrameDecoder(100);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(101, 0);
    assert.throws(() => decoder.push(header), (err: unknown) => isTransportError(err, 'FRAME_TOO_LARGE') && /101 bytes.*100/.test(err.message));
    // Exactly at the limit is fine.
    const ok = new FrameDecoder(encode('x'.repeat(50)).byteLength);
    assert.deepEqual(ok.push(encodeFrame('x'.repeat(50), 1000)), ['x'.repeat(50)]);
  });

  it('refuses to encode a value over frameBytesMax', () => {
    assert.throws(() => encodeFrame('x'.repeat(200), 100), (err: unknown) => isTransportError(err, 'FRAME_TOO_LARGE'));
  });

  it('refuses empty frames and bodies that are not MessagePack', () => {
    const empty = Buffer.alloc(4);
    assert.throws(() => new FrameDecoder(100).push(empty), (err: unknown) => isTransportError(err, 'FRAME_INVALID'));
    const bad = Buffer.from([0, 0, 0, 1, 0xc1]); // 0xc1 is never used in MessagePack
    assert.throws(() => new FrameDecoder(100).push(bad), (err: unknown) => isTransportError(err, 'FRAME_INVALID'));
    const trailing = Buffer.from([0, 0, 0, 2, 0x01, 0x02]); // two values in one frame
    assert.throws(() => new FrameDecoder(100).push(trailing), (err: unknown) => isTransportError(err, 'FRAME_INVALID'));
  });

  it('decodes a "__proto__" key as an own data property, never as the prototype (issue 13)', () => {
    // fixmap of one: "__proto__" → {"polluted": 1}; before, the decoder threw and the transport dropped the connection.
    const proto = Buffer.concat([Buffer.from([0x81, 0xa9]), Buffer.from('__proto__'), Buffer.from([0x81, 0xa8]), Buffer.from('polluted'), Buffer.from([0x01])]);
    const frame = Buffer.concat([Buffer.from([0, 0, 0, proto.length]), proto]);
    const [value] = new FrameDecoder(100).push(frame) as [Record<string, unknown>];
    assert.equal(Object.getPrototypeOf(value), Object.prototype);
    assert.deepEqual(Object.getOwnPropertyDescriptor(value, '__proto__')?.value, { polluted: 1 });
    assert.equal((value as { polluted?: unknown }).polluted, undefined);
    assert.deepEqual(Object.keys(value), ['__proto__']);
  });

  it('refuses a tiny frame that announces a huge array', () => {
    const body = Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff]); // array32 of 2^32-1 elements, none present
    const frame = Buffer.concat([Buffer.from([0, 0, 0, body.length]), body]);
    assert.throws(() => new FrameDecoder(100).push(frame), (err: unknown) => isTransportError(err, 'FRAME_INVALID'));
  });

  it('raises its limit when told (after the handshake)', () => {
    const decoder = new FrameDecoder(16);
    decoder.setFrameBytesMax(1000);
    assert.deepEqual(decoder.push(encodeFrame('y'.repeat(500), 1000)), ['y'.repeat(500)]);
  });
});
