import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { ProcessCluster } from '../helpers/cluster.js';
import { processAuth } from '../helpers/process.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

/**
 * Full-text search on a cluster of real processes: a search on every node, immediately after a write acknowledged
 * through another node, finds it (the default, sequential read); a node that joins through a snapshot (the journal
 * compacted) builds its index from the installed state and answers every search exactly as the master does.
 */

interface SearchAnswer {
  items: Array<{ id: string; path: string; score: number; snippet: Array<{ text: string; match: boolean }> }>;
  total: number;
  nextCursor: string | null;
}

async function search(cluster: ProcessCluster, name: string, q: string): Promise<SearchAnswer> {
  const res = await cluster.get(name, `/api/v1/search?q=${encodeURIComponent(q)}&limit=100`);
  assert.equal(res.status, 200, `${name} searching ${q}: ${JSON.stringify(res.body)}`);
  return res.body as SearchAnswer;
}

const words = ['saffron', 'juniper', 'cardamom', 'sumac', 'fenugreek', 'galangal', 'tamarind', 'nigella'];

test('a search on each node finds every write acknowledged through another; a node joined by snapshot answers as the master; access entries set through a replica hold everywhere', async () => {
  const tmp = tempDir('conclave-search-config-');
  const config = join(tmp.dir, 'small.yaml');
  writeFileSync(config, 'storage:\n  compactionEntriesMin: 20\n  journalRetainEntries: 5\n');
  const names = ['s1', 's2', 's3', 's4'];
  const cluster = await ProcessCluster.create(names, (name, seeds) => [
    '--config', config,
    ...seeds.flatMap((s) => ['--seed', s]),
    ...(name === 's4' ? [] : ['--initial-master-nodes', 's1,s2,s3']),
  ]);
  try {
    await cluster.start('s1', 's2', 's3');
    await cluster.write('/spices', {});
    await cluster.caughtUp();
    const three = ['s1', 's2', 's3'];
    for (let i = 0; i < 24; i++) {
      const via = three[i % 3]!;
      const word = `${words[i % words.length]}${i}`;
      const res = await cluster.put(via, `/spices/s${i}`, { body: `A pinch of ${word} and ${words[(i + 3) % words.length]}.` });
      assert.ok(res.status === 201 || res.status === 200, JSON.stringify(res.body));
      // Acknowledged: every node's sequential search sees it, with no wait.
      for (const name of three) {
        const found = await search(cluster, name, word);
        assert.deepEqual(found.items.map((h) => h.path), [`/spices/s${i}`], `${name} after a write through ${via}`);
      }
    }
    // An edit and a delete reach every node's index too.
    assert.ok((await cluster.put('s2', '/spices/s0', { body: 'Replaced by mace.' })).status === 200);
    for (const name of three) assert.deepEqual((await search(cluster, name, 'saffron0')).items, [], name);
    for (const name of three) assert.deepEqual((await search(cluster, name, 'mace')).items.map((h) => h.path), ['/spices/s0'], name);

    const master = await cluster.master();
    await waitFor('the master to compact its journal', async () => {
      const status = (await cluster.status(master)) as unknown as { snapshot: { index: number } };
      return status.snapshot.index > 20 ? true : undefined;
    });
    // A new, empty node joins through a snapshot: its index is built from the installed state.
    await cluster.start('s4');
    await waitFor('s4 to install a snapshot', async () => (cluster.output('s4').includes('"msg":"installed a snapshot"') ? true : undefined), 30_000);
    await cluster.caughtUp();
    for (const word of [...words, 'mace', 'pinch', 'sa*', 'juniper OR sumac', 'pinch -tamarind']) {
      const expected = await search(cluster, master, word);
      assert.ok(expected.items.length > 0 || word === 'saffron0', word);
      for (const name of names) assert.deepEqual(await search(cluster, name, word), expected, `${name} answers "${word}" as the master`);
    }
    // Access entries set through a replica (forwarded to the master as a command) hold on every node at once.
    const replica = names.find((n) => n !== master)!;
    const call = async (name: string, method: string, path: string, body?: unknown, authorization = processAuth) => {
      const res = await fetch(`${cluster.url(name)}${path}`, {
        method,
        headers: { authorization, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    assert.equal((await call(replica, 'PUT', '/api/v1/users/cook', { password: 'cook-password-1', roles: ['editor'] })).status, 201);
    const set = await call(replica, 'PUT', '/api/v1/access/spices/s1', { entries: [{ principal: 'user:cook', effect: 'deny', permissions: ['read'] }] });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    const cook = `Basic ${Buffer.from('cook:cook-password-1').toString('base64')}`;
    for (const name of names) {
      assert.equal((await call(name, 'GET', '/api/v1/content/spices/s1', undefined, cook)).status, 404, `${name} hides s1 from cook`);
      const found = (await call(name, 'GET', `/api/v1/search?q=${words[1]}1`, undefined, cook)).body as unknown as SearchAnswer;
      assert.deepEqual(found.items, [], `${name}: cook's search finds nothing of s1`);
      assert.equal((await call(name, 'GET', `/api/v1/search?q=${words[1]}1`)).status, 200);
    }
    // A write to a node cook may not read answers as one to a missing node, decided by the master's apply.
    const hidden = await call(replica, 'PATCH', '/api/v1/content/spices/s1', { body: 'x' }, cook);
    assert.equal((hidden.body['error'] as { code: string }).code, 'NODE_NOT_FOUND', JSON.stringify(hidden.body));
    assert.equal((await call(replica, 'PUT', '/api/v1/access/spices/s1', { entries: [{ principal: 'user:cook', effect: 'deny', permissions: ['write'] }] })).status, 200);
    assert.equal((await call(replica, 'GET', '/api/v1/content/spices/s1', undefined, cook)).status, 200, 'read is no longer denied');
    const forbidden = await call(replica, 'PATCH', '/api/v1/content/spices/s1', { body: 'y' }, cook);
    assert.equal((forbidden.body['error'] as { code: string }).code, 'FORBIDDEN', 'refused by the master\'s apply, through the replica');

    for (const digest of await cluster.settledDigests()) {
      const check = (digest as unknown as { searchIndex: { mismatchCount: number; integrity: string; indexed: number; nodes: number } }).searchIndex;
      assert.deepEqual([check.mismatchCount, check.integrity, check.indexed], [0, 'ok', check.nodes], JSON.stringify(digest));
    }
  } finally {
    await cluster.stopAll();
    tmp.cleanup();
  }
});
