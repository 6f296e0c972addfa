import { encode } from '@msgpack/msgpack';
import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { AppendRequest, Entry } from '../../src/core/types.js';
import { fromWire, toWire } from '../../src/node/appendWire.js';
import { messageProblem } from '../../src/node/messageShape.js';
import { encodePayload, payloadBytes } from '../../src/storage/journal.js';
import { encodeFrame, FrameDecoder } from '../../src/transport/frames.js';

const frameBytesMax = 4 * 1024 * 1024;

function append(entries: Entry[]): AppendRequest {
  return { type: 'appendRequest', from: 'a', to: 'b', term: 2, prevIndex: 4, prevTerm: 1, commitIndex: 4, seq: 9, sentTick: 40, entries } as AppendRequest;
}

/** What the peer's transport hands over: the frame encoded and decoded on real bytes. */
function overTheWire(value: unknown): unknown {
  const values = new FrameDecoder(frameBytesMax).push(encodeFrame(value, frameBytesMax));
  assert.equal(values.length, 1);
  return values[0];
}

/** An append whose entries carry `payloads` as raw wire bytes. */
function rawAppend(payloads: Uint8Array[]): unknown {
  return { ...append([]), entries: payloads.map((payload, i) => ({ index: 5 + i, term: 2, payload })) };
}

test('an append crosses the wire with its payloads as bytes, and arrives as it was sent, keeping those bytes for the journal', () => {
  const entries: Entry[] = [
    { index: 5, term: 2, payload: { kind: 'noop' } },
    { index: 6, term: 2, payload: { kind: 'configuration', current: ['a', 'b'], next: ['a'] } },
    { index: 7, term: 2, payload: { kind: 'command', data: { type: 'put', path: '/x', properties: { text: 'é'.repeat(5000), n: 1.5, list: [1, null, true] } } } },
  ];
  const sent = append(entries);
  const wire = toWire(sent, 0) as { entries: Array<{ payload: unknown }> };
  for (const [i, entry] of wire.entries.entries()) assert.deepEqual(entry.payload, encodePayload(entries[i]!.payload));

  const received = fromWire(overTheWire(wire));
  assert.ok('message' in received);
  assert.equal(messageProblem(received.message, 'a', 'b'), null);
  assert.deepEqual(received.message, JSON.parse(JSON.stringify(sent)));
  for (const [i, entry] of (received.message as AppendRequest).entries.entries()) {
    // The journal stores the bytes that arrived: the same the master stores.
    assert.deepEqual(payloadBytes(entry.payload), encodePayload(entries[i]!.payload));
  }
  // Other messages travel as they are.
  const response = { type: 'appendResponse', from: 'b', to: 'a', term: 2, success: true, matchIndex: 7, lastIndex: 7, appliedIndex: 4, echoSeq: 9, echoSentTick: 40, recvTick: 12, epoch: 7 } as const;
  assert.equal(toWire(response, 0), response);
});

test('payload bytes that are not one well-formed entry payload are refused, never thrown', () => {
  const good = encodePayload({ kind: 'noop' });
  const cases: Array<[Uint8Array, RegExp]> = [
    [good.subarray(0, good.length - 1), /not one MessagePack value/],
    [Buffer.concat([good, Buffer.from([0xc0])]), /not one MessagePack value/],
    [new Uint8Array(0), /not one MessagePack value/],
    [new Uint8Array([0xc1]), /not one MessagePack value/],
    // An array announcing four billion elements in five bytes.
    [new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff]), /not one MessagePack value/],
    [encode('a string'), /without a payload/],
    [encode([1, 2]), /without a payload/],
    [encode({ kind: 'weird' }), /unknown kind/],
    [encode({ kind: 'configuration', current: [] }), /configuration/],
  ];
  for (const [bytes, why] of cases) {
    const received = fromWire(overTheWire(rawAppend([good, bytes])));
    const problem = 'problem' in received ? received.problem : messageProblem(received.message, 'a', 'b');
    assert.match(problem ?? 'passed', why, Buffer.from(bytes).toString('hex'));
  }
  // Entries out of sequence are still caught after decoding.
  const shifted = { ...(rawAppend([good]) as object), prevIndex: 7 };
  const received = fromWire(overTheWire(shifted));
  assert.ok('message' in received);
  assert.match(messageProblem(received.message, 'a', 'b') ?? 'passed', /sequence/);
});

test('what is not an append with entries passes through for messageProblem to judge', () => {
  for (const value of [null, 'text', 7, { type: 'appendRequest', entries: 'none' }, { type: 'voteRequest', entries: [{ payload: new Uint8Array([1]) }] }]) {
    const received = fromWire(value);
    assert.ok('message' in received);
    assert.equal(received.message, value);
  }
});
