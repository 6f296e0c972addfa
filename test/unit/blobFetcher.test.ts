import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';

import type { ClusterState, NodeDescriptor } from '../../src/core/clusterState.js';
import type { Entry, SoftState } from '../../src/core/types.js';
import { BlobFetcher, type BlobSource, type FetcherRuntime, type FetcherStore } from '../../src/replication/blobFetcher.js';
import { waitFor } from '../helpers/tmp.js';

/**
 * The fetcher's queue against fake peers: the master is asked first, blobs are fetched once however often they
 * are asked for, failed rounds are retried, the queue is bounded and what it left out is found again by a scan.
 */

const log = pino({ level: 'silent' });
const h = (c: string) => c.repeat(64);
const descriptor = (id: string): NodeDescriptor => ({ id, name: id, address: `${id}:1`, httpAddress: `${id}:2`, roles: { masterEligible: true, votingOnly: false }, version: '0.1.0' });

const runtime: FetcherRuntime = {
  softState: () => ({ role: 'follower', master: 'm', term: 1, commitIndex: 1, lastIndex: 1, configuration: { current: new Set(['m', 'a', 'self']) } }) as SoftState,
  clusterState: () => ({ nodes: ['a', 'm', 'self', 'b'].map(descriptor) }) as unknown as ClusterState,
  self: () => descriptor('self'),
};

/** A store of hashes in memory; `referenced` is what the content names. */
function store(referenced: Map<string, number>): FetcherStore & { held: Set<string> } {
  const held = new Set<string>();
  return {
    held,
    has: async (sha) => held.has(sha),
    arriving: async () => undefined,
    blobReferences: () => [...referenced].map(([sha256, size]) => ({ sha256, size })),
    isBlobReferenced: (sha) => referenced.has(sha),
  };
}

/** Peers that hold what `holds` says (it may change), recording every request. */
function peers(target: { held: Set<string> }, holds: Map<string, Set<string>>, hang = false): BlobSource & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    async fetch(peer, sha256, _size, signal) {
      asked.push(`${peer.id}:${sha256[0]}`);
      if (hang) await new Promise((_resolve, reject) => signal?.addEventListener('abort', () => reject(new Error('aborted'))));
      if (!holds.get(peer.id)?.has(sha256)) return false;
      target.held.add(sha256);
      return true;
    },
  };
}

const setBinary = (index: number, sha256: string): Entry => ({
  index,
  term: 1,
  payload: { kind: 'command', data: { type: 'setBinary', path: '/x', property: 'f', binary: { sha256, size: 5, contentType: 'x' }, time: 't', user: 'u' } },
});

test('an applied entry whose blob is missing is fetched once, from the master first', async () => {
  const s = store(new Map([[h('1'), 5], [h('2'), 5]]));
  s.held.add(h('2'));
  const p = peers(s, new Map([['m', new Set([h('1')])]]));
  const fetcher = new BlobFetcher(runtime, s, p, { queueMax: 10, concurrency: 2 }, log);
  try {
    fetcher.onApplied([setBinary(1, h('1')), setBinary(2, h('1')), setBinary(3, h('2'))]);
    fetcher.onApplied([setBinary(4, h('1'))]);
    await waitFor('the blob to arrive', () => (s.held.has(h('1')) ? true : undefined));
    await waitFor('the queue to empty', () => (fetcher.queued === 0 ? true : undefined));
    assert.deepEqual(p.asked, ['m:1'], 'one request, to the master; the blob already here is not asked for');
  } finally {
    fetcher.close();
  }
});

test('a blob no peer holds yet is retried until one does; a read waits for it', async () => {
  const s = store(new Map([[h('3'), 5]]));
  const holds = new Map<string, Set<string>>();
  const p = peers(s, holds);
  const fetcher = new BlobFetcher(runtime, s, p, { queueMax: 10, concurrency: 1 }, log);
  try {
    const read = fetcher.awaitBlob(h('3'), 5, 20_000);
    await waitFor('a first round over every peer', () => (p.asked.length >= 3 ? true : undefined));
    assert.deepEqual(p.asked.slice(0, 3)[0], 'm:3', 'the master first');
    assert.deepEqual([...p.asked.slice(0, 3)].sort(), ['a:3', 'b:3', 'm:3'], 'then every other member, never itself');
    holds.set('b', new Set([h('3')]));
    assert.equal(await read, true);
    assert.ok(s.held.has(h('3')));
  } finally {
    fetcher.close();
  }
});

test('a read gives up at its deadline; the fetch goes on; close ends it', async () => {
  const s = store(new Map([[h('4'), 5]]));
  const p = peers(s, new Map(), true);
  const fetcher = new BlobFetcher(runtime, s, p, { queueMax: 10, concurrency: 1 }, log);
  assert.equal(await fetcher.awaitBlob(h('4'), 5, 50), false);
  assert.equal(fetcher.queued, 1);
  fetcher.close();
  assert.equal(fetcher.queued, 0);
});

test('a blob the content no longer references is dropped after a failed round', async () => {
  const referenced = new Map([[h('5'), 5]]);
  const s = store(referenced);
  const p = peers(s, new Map());
  const fetcher = new BlobFetcher(runtime, s, p, { queueMax: 10, concurrency: 1 }, log);
  try {
    referenced.clear();
    assert.equal(await fetcher.awaitBlob(h('5'), 5, 20_000), false);
    assert.equal(fetcher.queued, 0);
  } finally {
    fetcher.close();
  }
});

test('the queue is bounded; what it left out is found by a scan once there is room', async () => {
  const referenced = new Map([h('a'), h('b'), h('c'), h('d')].map((sha) => [sha, 5] as [string, number]));
  const s = store(referenced);
  const holds = new Map<string, Set<string>>();
  const p = peers(s, holds);
  const fetcher = new BlobFetcher(runtime, s, p, { queueMax: 2, concurrency: 1 }, log);
  try {
    assert.equal(await fetcher.queueMissing(), 2, 'two fit');
    assert.equal(await fetcher.awaitBlob(h('d'), 5, 1000), false, 'a read of a blob that does not fit is not kept waiting');
    holds.set('a', new Set(referenced.keys()));
    await waitFor('every referenced blob to arrive', () => (s.held.size === 4 ? true : undefined), 20_000);
  } finally {
    fetcher.close();
  }
});
