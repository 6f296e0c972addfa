import assert from 'node:assert/strict';
import { test } from 'node:test';

import { BackupPacer } from '../../src/backup/backupPacer.js';

// The pacer on a simulated clock: a backup streams freely on a quiet cluster and at the paced rate on a writing one.

const MiB = 1024 * 1024;

/** A stream of `chunks` chunks of 1 MiB through a pacer whose clock moves only when it waits (a reader infinitely fast) or by `readMs` a chunk. */
async function stream(options: { chunks: number; entriesPerSecond: number; bytesPerSecondMax: number; readMs?: number | ((chunk: number) => number) }): Promise<{ elapsedMs: number; waits: number; at: number[] }> {
  let now = 0;
  let waits = 0;
  const pacer = new BackupPacer(
    { busyBytesPerSecondMax: options.bytesPerSecondMax, busyEntriesPerSecondMin: 20 },
    () => Math.floor((now * options.entriesPerSecond) / 1000),
    () => now,
    async (ms) => {
      waits++;
      now += ms;
    },
  );
  const at: number[] = [];
  for (let i = 0; i < options.chunks; i++) {
    now += typeof options.readMs === 'function' ? options.readMs(i) : (options.readMs ?? 1);
    await pacer.took(MiB);
    at.push(now);
  }
  return { elapsedMs: now, waits, at };
}

test('on a quiet cluster a backup is never held back', async () => {
  const { elapsedMs, waits } = await stream({ chunks: 2000, entriesPerSecond: 5, bytesPerSecondMax: 32 * MiB });
  assert.equal(waits, 0);
  assert.equal(elapsedMs, 2000);
});

test('while the cluster writes, a backup goes at the paced rate, from the first sample on', async () => {
  // A reader of 100 MiB/s: the first 500 ms (50 MiB, before the first sample) go unpaced, the 1,950 MiB after at 32 MiB/s.
  const { elapsedMs } = await stream({ chunks: 2000, entriesPerSecond: 600, bytesPerSecondMax: 32 * MiB, readMs: 10 });
  assert.ok(elapsedMs >= 61_000 && elapsedMs <= 62_000, `${elapsedMs} ms`);
});

test('a reader slower than the paced rate is not held back further, and earns no burst', async () => {
  const { waits } = await stream({ chunks: 500, entriesPerSecond: 600, bytesPerSecondMax: 32 * MiB, readMs: 50 });
  assert.equal(waits, 0);
  // 200 chunks at 50 ms each (slower than 32 MiB/s), then a reader of 1 ms a chunk: from the first fast chunk on,
  // the paced rate holds at once — ten seconds of slow reading are no credit for a burst.
  const { at } = await stream({ chunks: 400, entriesPerSecond: 600, bytesPerSecondMax: 32 * MiB, readMs: (i) => (i < 200 ? 50 : 1) });
  const fastMs = at[399]! - at[200]!;
  assert.ok(fastMs >= 199 * 31 && fastMs <= 199 * 32.5, `199 MiB in ${fastMs} ms`);
});

test('a cluster that goes quiet frees the backup from its pace', async () => {
  let now = 0;
  let index = 0;
  const pacer = new BackupPacer(
    { busyBytesPerSecondMax: 32 * MiB, busyEntriesPerSecondMin: 20 },
    () => index,
    () => now,
    async (ms) => {
      now += ms;
    },
  );
  // Writing: 600 entries a second for 5 s of streaming.
  while (now < 5000) {
    now += 1;
    index += 0.6;
    await pacer.took(MiB);
  }
  const quietFrom = now;
  // Quiet: after the next sample (at most 500 ms), 1,000 chunks go at the reader's 1 ms each.
  for (let i = 0; i < 1000; i++) {
    now += 1;
    await pacer.took(MiB);
  }
  assert.ok(now - quietFrom <= 1000 + 600, `1,000 MiB in ${now - quietFrom} ms after the cluster went quiet`);
});

test('0 turns pacing off', async () => {
  const { waits, elapsedMs } = await stream({ chunks: 1000, entriesPerSecond: 10_000, bytesPerSecondMax: 0 });
  assert.equal(waits, 0);
  assert.equal(elapsedMs, 1000);
});
