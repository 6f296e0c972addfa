import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';

import { WriteQueue } from '../../src/node/writeQueue.js';

test('group commit: groups keep the order and the bounds, and the first write of a group always goes', () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 5_000 }), { maxLength: 60 }),
      fc.integer({ min: 1, max: 10 }),
      fc.integer({ min: 1, max: 8_000 }),
      (sizes, groupEntriesMax, groupBytesMax) => {
        const queue = new WriteQueue<number>({ entriesMax: 1_000, bytesMax: Number.MAX_SAFE_INTEGER, groupEntriesMax, groupBytesMax });
        sizes.forEach((bytes, i) => queue.push(i, bytes));
        const taken: number[] = [];
        while (queue.length > 0) {
          const group = queue.takeGroup();
          assert.ok(group.length >= 1 && group.length <= groupEntriesMax);
          const bytes = group.reduce((sum, i) => sum + sizes[i]!, 0);
          assert.ok(group.length === 1 || bytes <= groupBytesMax, `${bytes} bytes in a group of ${group.length}`);
          // A group stops only at a bound: the next write would have passed one.
          const next = taken.length + group.length;
          if (next < sizes.length && group.length < groupEntriesMax) assert.ok(bytes + sizes[next]! > groupBytesMax);
          taken.push(...group);
        }
        assert.deepEqual(taken, sizes.map((_, i) => i));
        assert.equal(queue.queuedBytes, 0);
      },
    ),
  );
});

test('the queue refuses past its entries (counting the writes proposed and unanswered) and its bytes, but always takes one write', () => {
  const queue = new WriteQueue<string>({ entriesMax: 3, bytesMax: 100, groupEntriesMax: 10, groupBytesMax: 1_000 });
  assert.equal(queue.refusal(500, 0), null, 'one write, whatever its size');
  queue.push('a', 500);
  assert.deepEqual(queue.refusal(1, 0), { kind: 'bytes', queuedBytes: 500 });
  assert.equal(queue.entriesRefusal(0), null, 'the entries bound alone does not count bytes');
  assert.deepEqual(queue.takeGroup(), ['a']);
  queue.push('b', 10);
  assert.equal(queue.refusal(10, 1), null);
  assert.deepEqual(queue.refusal(10, 2), { kind: 'entries', waiting: 3 });
  queue.push('c', 10);
  assert.deepEqual(queue.takeAll(), ['b', 'c']);
  assert.equal(queue.length, 0);
  assert.equal(queue.queuedBytes, 0);
});
