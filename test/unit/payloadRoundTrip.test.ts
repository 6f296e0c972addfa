/**
 * Issue 13, the class: nothing may be proposed that every node cannot decode and apply. Property tests over
 * arbitrary JSON documents (test/helpers/jsonDocuments.ts) of each decoding a payload meets — the journal on real
 * SQLite, an append over real frames, a forwarded command's frame — and of the check a proposal passes first.
 * Seeded through CONCLAVE_TEST_SEED (test/sim/testSeed.ts).
 */
import { decode, encode } from '@msgpack/msgpack';
import assert from 'node:assert/strict';
import { test } from 'node:test';

import fc from 'fast-check';

import type { AppendRequest, Entry, EntryPayload } from '../../src/core/types.js';
import { isConclaveError } from '../../src/errors/catalogue.js';
import { fromWire, toWire } from '../../src/node/appendWire.js';
import { openDatabase } from '../../src/storage/database.js';
import { encodePayload, JournalStore, proposedCommandBytes } from '../../src/storage/journal.js';
import { encodeFrame, FrameDecoder } from '../../src/transport/frames.js';
import { decodePlain } from '../../src/transport/plainDecoder.js';
import { jsonDocument, refusalsOf, type Json } from '../helpers/jsonDocuments.js';
import { tempDir } from '../helpers/tmp.js';
import { propertyParameters } from '../sim/testSeed.js';

const frameBytesMax = 16 * 1024 * 1024;

/** Every object in `value` has Object.prototype as its prototype, as JSON.parse would make it. */
function prototypesUntouched(value: unknown): boolean {
  const stack = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v !== 'object' || v === null) continue;
    if (!Array.isArray(v) && Object.getPrototypeOf(v) !== Object.prototype) return false;
    stack.push(...Object.values(v));
  }
  return true;
}

/** The documents every node must read back exactly: those the HTTP API accepts (no lone surrogate, no "__proto__")
 *  and, for the decoders, those holding "__proto__" too (a journal written before the API refused it). */
const decodable = jsonDocument.filter((doc) => !refusalsOf(doc).includes('INVALID_UNICODE'));

const command = (properties: Json): EntryPayload => ({ kind: 'command', data: { type: 'put', path: '/x', newId: 'id', nodeType: 'node', properties } });

test('the journal stores and reads back every document, "__proto__" keys as own data (real SQLite)', () => {
  const tmp = tempDir();
  const db = openDatabase(tmp.dir);
  try {
    const journal = new JournalStore(db);
    let index = 1;
    fc.assert(
      fc.property(decodable, (doc) => {
        const payload = command(doc);
        db.transaction(() => journal.write([{ index, term: 1, payload }]))();
        const [entry] = journal.read(index, 1);
        index++;
        const data = (entry!.payload as { data: { properties: unknown } }).data;
        assert.equal(JSON.stringify(data.properties), JSON.stringify(doc));
        assert.ok(prototypesUntouched(data), 'a decoded key became a prototype');
      }),
      propertyParameters(150),
    );
  } finally {
    db.close();
    tmp.cleanup();
  }
});

test('an append and a forwarded command cross real frames with every document, "__proto__" keys as own data', () => {
  fc.assert(
    fc.property(decodable, (doc) => {
      const entries: Entry[] = [{ index: 7, term: 2, payload: command(doc) }];
      const message = { type: 'appendRequest', from: 'a', to: 'b', term: 2, prevIndex: 6, prevTerm: 2, commitIndex: 6, seq: 1, sentTick: 1, entries } as AppendRequest;
      const [wire] = new FrameDecoder(frameBytesMax).push(encodeFrame(toWire(message, 0), frameBytesMax));
      const received = fromWire(wire);
      assert.ok('message' in received, JSON.stringify(received));
      const data = ((received.message as AppendRequest).entries[0]!.payload as { data: { properties: unknown } }).data;
      assert.equal(JSON.stringify(data.properties), JSON.stringify(doc));
      assert.ok(prototypesUntouched(data));
      // A forwarded command travels as a frame of its own (src/forwarding/wire.ts).
      const [forwarded] = new FrameDecoder(frameBytesMax).push(encodeFrame({ type: 'commandRequest', id: 'r1', command: { properties: doc } }, frameBytesMax)) as [
        { command: { properties: unknown } },
      ];
      assert.equal(JSON.stringify(forwarded.command.properties), JSON.stringify(doc));
      assert.ok(prototypesUntouched(forwarded));
    }),
    propertyParameters(300),
  );
});

test('a proposal is refused (COMMAND_NOT_REPLICABLE) exactly when the journal encoding would not give it back', () => {
  fc.assert(
    fc.property(jsonDocument, (doc) => {
      const data = { type: 'put', path: '/x', newId: 'id', nodeType: 'node', properties: doc };
      let refused = false;
      try {
        proposedCommandBytes(data);
      } catch (err) {
        assert.ok(isConclaveError(err) && err.code === 'COMMAND_NOT_REPLICABLE', String(err));
        refused = true;
      }
      // What the other nodes would decode: if it differs from what this node holds, the write must be refused.
      const decodedJson = JSON.stringify((new FrameDecoder(frameBytesMax).push(encodeFrame(data, frameBytesMax))[0] as typeof data).properties);
      assert.equal(refused, decodedJson !== JSON.stringify(doc), `refused ${refused} for ${JSON.stringify(doc).slice(0, 200)}`);
    }),
    propertyParameters(300),
  );
});

test('a long string with a lone surrogate is refused before it is proposed: the encoder would store U+FFFD elsewhere', () => {
  const data = { type: 'put', properties: { text: `${'x'.repeat(300)}\ud800` } };
  assert.throws(() => proposedCommandBytes(data), (err: unknown) => isConclaveError(err) && err.code === 'COMMAND_NOT_REPLICABLE');
  // A "__proto__" key round-trips: a journal written by an older version stays readable.
  const legacy = Object.fromEntries([['__proto__', { polluted: true }]]);
  assert.ok(proposedCommandBytes({ type: 'put', properties: legacy }) > 0);
  assert.deepEqual(encodePayload({ kind: 'command', data: { properties: legacy } }), Buffer.from(encode({ kind: 'command', data: { properties: legacy } })));
});

test('every payload the library could decode before decodes to exactly the same value now (journals written earlier)', () => {
  const decodableBefore = jsonDocument.filter((doc) => !refusalsOf(doc).includes('PROPERTY_NAME_REFUSED'));
  fc.assert(
    fc.property(decodableBefore, (doc) => {
      const bytes = encode({ kind: 'command', data: { properties: doc } });
      // JSON.stringify tells a lone surrogate ("\ud800") from U+FFFD, and keeps key order.
      assert.equal(JSON.stringify(decodePlain(bytes)), JSON.stringify(decode(bytes)));
    }),
    propertyParameters(500),
  );
});
