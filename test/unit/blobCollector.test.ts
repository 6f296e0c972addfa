import assert from 'node:assert/strict';
import { existsSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';

import type { Entry } from '../../src/core/types.js';
import { BlobCollector, referencedBlobs } from '../../src/replication/blobCollector.js';
import { BlobPins } from '../../src/replication/blobPins.js';
import { BlobStore } from '../../src/storage/blobStore.js';
import { tempDir } from '../helpers/tmp.js';

const log = pino({ level: 'silent' });
const hour = 3600_000;
const options = { intervalMs: 60_000, graceMs: hour, batchMax: 2 };

async function storeWith(dir: string, contents: string[]): Promise<{ store: BlobStore; hashes: string[] }> {
  const store = await BlobStore.open(join(dir, 'blobs'));
  const hashes: string[] = [];
  for (const text of contents) hashes.push((await store.write(Readable.from([Buffer.from(text)]), { bytesMax: 1024 })).sha256);
  return { store, hashes };
}

function age(store: BlobStore, sha256: string, ms: number): void {
  const when = new Date(Date.now() - ms);
  utimesSync(store.pathOf(sha256), when, when);
}

test('a run deletes old unreferenced blobs and keeps referenced and young ones', async () => {
  const tmp = tempDir();
  try {
    const { store, hashes } = await storeWith(tmp.dir, ['referenced-old', 'unreferenced-old-1', 'unreferenced-old-2', 'unreferenced-old-3', 'unreferenced-young']);
    const [referenced, old1, old2, old3, young] = hashes as [string, string, string, string, string];
    for (const sha of [referenced, old1, old2, old3]) age(store, sha, 2 * hour);
    // A half-written upload in tmp/ is never looked at.
    writeFileSync(join(tmp.dir, 'blobs', 'tmp', 'upload.part'), 'partial');
    age(store, young, hour / 2);

    const collector = new BlobCollector(store, () => new Set([referenced]), options, log);
    const outcome = await collector.collect();
    assert.equal(outcome.deleted, 3, 'three old unreferenced blobs, over two batches');
    assert.equal(outcome.bytesFreed, 'unreferenced-old-1'.length * 3);
    for (const sha of [old1, old2, old3]) assert.equal(await store.has(sha), false);
    for (const sha of [referenced, young]) assert.equal(await store.has(sha), true);
    assert.deepEqual(readdirSync(join(tmp.dir, 'blobs', 'tmp')), ['upload.part']);
  } finally {
    tmp.cleanup();
  }
});

test('a blob referenced or made young between the mark and the sweep is kept', async () => {
  const tmp = tempDir();
  try {
    const { store, hashes } = await storeWith(tmp.dir, ['applied-meanwhile', 'uploaded-again-meanwhile', 'gone']);
    const [applied, uploaded, gone] = hashes as [string, string, string];
    for (const sha of hashes) age(store, sha, 2 * hour);
    let marks = 0;
    // The first mark (before listing) sees nothing referenced; the entry naming `applied` is applied before the
    // sweep, and `uploaded` is de-duplicated by a new upload (which makes it young) while the files are listed.
    const referenced = () => (marks++ === 0 ? new Set<string>() : new Set([applied]));
    const files = store.files.bind(store);
    const listing = {
      async *files() {
        for await (const file of files()) {
          if (file.sha256 === uploaded) await store.write(Readable.from([Buffer.from('uploaded-again-meanwhile')]), { bytesMax: 1024 });
          yield file;
        }
      },
      deleteIfOlderThan: store.deleteIfOlderThan.bind(store),
    };
    const outcome = await new BlobCollector(listing, referenced, { ...options, batchMax: 100 }, log).collect();
    assert.equal(outcome.deleted, 1);
    assert.equal(await store.has(gone), false);
    assert.equal(await store.has(applied), true);
    assert.equal(await store.has(uploaded), true);
  } finally {
    tmp.cleanup();
  }
});

test('blobs named by journal entries not applied yet count as referenced', () => {
  const setBinary = (index: number, sha256: string): Entry => ({
    index,
    term: 1,
    payload: { kind: 'command', data: { type: 'setBinary', path: '/a', property: 'f', binary: { sha256, size: 1, contentType: 'x' }, time: 't', user: 'u' } },
  });
  const entries = [setBinary(1, 'applied'), { index: 2, term: 1, payload: { kind: 'noop' } } as Entry, setBinary(3, 'pending')];
  const journal = { lastIndex: () => 3, read: (from: number, countMax: number) => entries.filter((e) => e.index >= from).slice(0, countMax) };
  const referenced = referencedBlobs({ blobReferences: () => [{ sha256: 'in-content' }] }, journal, 2);
  assert.deepEqual([...referenced].sort(), ['in-content', 'pending']);
});

test('de-duplicating an upload against an old file makes it young again', async () => {
  const tmp = tempDir();
  try {
    const { store, hashes } = await storeWith(tmp.dir, ['same bytes']);
    age(store, hashes[0]!, 2 * hour);
    await store.write(Readable.from([Buffer.from('same bytes')]), { bytesMax: 1024 });
    assert.equal(store.deleteIfOlderThan(hashes[0]!, Date.now() - hour), null);
    age(store, hashes[0]!, 2 * hour);
    assert.equal(store.touch(hashes[0]!), true, 'a peer asking for it finds it');
    assert.equal(store.deleteIfOlderThan(hashes[0]!, Date.now() - hour), null, 'and keeps it young');
    assert.equal(existsSync(store.pathOf(hashes[0]!)), true);
    assert.equal(store.touch('0'.repeat(64)), false);
  } finally {
    tmp.cleanup();
  }
});

test('while a backup holds every blob (its state being copied), a run deletes nothing; released, the next run collects', async () => {
  const tmp = tempDir();
  try {
    const { store, hashes } = await storeWith(tmp.dir, ['dropped-during-capture']);
    const [dropped] = hashes as [string];
    age(store, dropped, 2 * hour);
    const pins = new BlobPins();
    const collector = new BlobCollector(store, () => pins.addTo(new Set()), { ...options, deferred: () => pins.holdingAll }, log);
    const release = pins.holdAll();
    assert.equal((await collector.collect()).deleted, 0);
    assert.equal(await store.has(dropped), true);
    release();
    assert.equal((await collector.collect()).deleted, 1);
    assert.equal(await store.has(dropped), false);
  } finally {
    tmp.cleanup();
  }
});
