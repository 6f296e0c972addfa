import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';

import type { ClusterState, NodeDescriptor } from '../../src/core/clusterState.js';
import type { SoftState } from '../../src/core/types.js';
import { isConclaveError } from '../../src/errors/catalogue.js';
import { BlobPusher, type BlobPeers, type PusherRuntime } from '../../src/replication/blobPusher.js';
import { waitFor } from '../helpers/tmp.js';

/**
 * The master's quorum rule for uploads, against peers that hold, take, fail or hang: the write may go ahead only
 * once a quorum of the voting configuration (of both, in a joint one) holds the blob, counting the master.
 */

const sha = 'a'.repeat(64);
const descriptor = (id: string): NodeDescriptor => ({
  id,
  name: id,
  address: `${id}:7500`,
  httpAddress: `${id}:7400`,
  roles: { masterEligible: true, votingOnly: false },
  version: '0.1.0',
});

function runtimeOf(members: string[], current: string[], next?: string[]): PusherRuntime {
  const soft: SoftState = {
    role: 'master',
    master: 'm',
    term: 1,
    commitIndex: 1,
    lastIndex: 1,
    configuration: { current: new Set(current), ...(next ? { next: new Set(next) } : {}) },
  };
  const state = { nodes: members.map(descriptor) } as unknown as ClusterState;
  return { softState: () => soft, clusterState: () => state, self: () => descriptor('m') };
}

type Behaviour = 'takes' | 'holds' | 'fails' | 'hangs';

/** Peers that behave as told; records who was asked and who was sent the bytes. */
function peers(behaviour: Record<string, Behaviour>): BlobPeers & { pushed: string[]; asked: string[] } {
  const pushed: string[] = [];
  const asked: string[] = [];
  const hang = (signal?: AbortSignal) =>
    new Promise<never>((_resolve, reject) => signal?.addEventListener('abort', () => reject(new Error('aborted')), { once: true }));
  return {
    pushed,
    asked,
    async has(peer, _sha256, signal) {
      asked.push(peer.id);
      const b = behaviour[peer.id];
      if (b === 'hangs') return hang(signal);
      if (b === 'fails') throw new Error('connection refused');
      return b === 'holds';
    },
    async push(peer, _sha256, _size, signal) {
      const b = behaviour[peer.id];
      if (b === 'hangs') return hang(signal);
      if (b === 'fails') throw new Error('connection refused');
      pushed.push(peer.id);
    },
  };
}

const log = pino({ level: 'silent' });
const options = { pushTimeoutMs: 300, pushesInFlightMax: 16 };

async function refusedCode(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    assert.ok(isConclaveError(err), String(err));
    return err.code;
  }
  assert.fail('the upload was let through');
}

test('a cluster of one pushes nothing', async () => {
  const p = peers({});
  await new BlobPusher(runtimeOf(['m'], ['m']), p, options, log).replicate(sha, 10);
  assert.deepEqual(p.asked, []);
});

test('three voters: one other holder is a quorum; the last member still gets its copy in the background', async () => {
  const p = peers({ a: 'takes', b: 'hangs' });
  const pusher = new BlobPusher(runtimeOf(['m', 'a', 'b'], ['m', 'a', 'b']), p, options, log);
  await pusher.replicate(sha, 10);
  assert.deepEqual(p.pushed, ['a']);
  assert.equal(pusher.pushesInFlight, 1, 'the copy to b goes on after the write was let through');
  pusher.close();
  await waitFor('the background copy to stop at close', () => (pusher.pushesInFlight === 0 ? true : undefined));
});

test('a peer that already holds the blob counts without a copy', async () => {
  const p = peers({ a: 'holds', b: 'fails' });
  const pusher = new BlobPusher(runtimeOf(['m', 'a', 'b'], ['m', 'a', 'b']), p, options, log);
  await pusher.replicate(sha, 10);
  assert.deepEqual(p.pushed, []);
  pusher.close();
});

test('no quorum in time: BLOB_NOT_REPLICATED, and every copy is abandoned', async () => {
  const p = peers({ a: 'hangs', b: 'fails' });
  const pusher = new BlobPusher(runtimeOf(['m', 'a', 'b'], ['m', 'a', 'b']), p, options, log);
  assert.equal(await refusedCode(pusher.replicate(sha, 10)), 'BLOB_NOT_REPLICATED');
  await waitFor('the copies to stop', () => (pusher.pushesInFlight === 0 ? true : undefined));
  assert.ok(p.asked.filter((id) => id === 'b').length >= 2, 'a failing voter is retried while the deadline allows');
});

test('non-voters never make the quorum', async () => {
  const p = peers({ a: 'fails', r1: 'takes', r2: 'takes' });
  const pusher = new BlobPusher(runtimeOf(['m', 'a', 'r1', 'r2'], ['m', 'a']), p, options, log);
  assert.equal(await refusedCode(pusher.replicate(sha, 10)), 'BLOB_NOT_REPLICATED');
  pusher.close();
});

test('a joint configuration needs a quorum of both', async () => {
  // current {m, a, b}: m + a suffice. next {m, c, d}: needs c or d too.
  const runtime = runtimeOf(['m', 'a', 'b', 'c', 'd'], ['m', 'a', 'b'], ['m', 'c', 'd']);
  const onlyOld = new BlobPusher(runtime, peers({ a: 'takes', b: 'takes', c: 'fails', d: 'hangs' }), options, log);
  assert.equal(await refusedCode(onlyOld.replicate(sha, 10)), 'BLOB_NOT_REPLICATED');
  onlyOld.close();
  const both = new BlobPusher(runtime, peers({ a: 'takes', b: 'fails', c: 'hangs', d: 'takes' }), options, log);
  await both.replicate(sha, 10);
  both.close();
});

test('an empty binary and a node that is not the master push nothing', async () => {
  const p = peers({ a: 'fails', b: 'fails' });
  await new BlobPusher(runtimeOf(['m', 'a', 'b'], ['m', 'a', 'b']), p, options, log).replicate(sha, 0);
  const follower = runtimeOf(['m', 'a', 'b'], ['m', 'a', 'b']);
  const soft = { ...follower.softState(), role: 'follower' as const };
  await new BlobPusher({ ...follower, softState: () => soft }, p, options, log).replicate(sha, 10);
  assert.deepEqual(p.asked, []);
});

test('too many copies in flight: OVERLOADED before any is started', async () => {
  const p = peers({ a: 'hangs', b: 'hangs' });
  const pusher = new BlobPusher(runtimeOf(['m', 'a', 'b'], ['m', 'a', 'b']), p, { pushTimeoutMs: 10_000, pushesInFlightMax: 3 }, log);
  const first = pusher.replicate(sha, 10);
  assert.equal(await refusedCode(pusher.replicate('b'.repeat(64), 10)), 'OVERLOADED');
  pusher.close();
  assert.equal(await refusedCode(first), 'SHUTTING_DOWN');
});
