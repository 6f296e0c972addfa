import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { ProcessCluster } from '../helpers/cluster.js';
import { freePort } from '../helpers/ports.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

/**
 * A master restarted at another HTTP address (restored elsewhere from a copy of its data, as CRX scenario 10
 * does) still serves its snapshots to a node that joins it: the snapshot's own cluster state names the address the
 * master had when the snapshot was taken, so the joiner must be told where the master is now. Before the fix the
 * joiner asked the old address for ever and never caught up.
 */
test('a node joining a master that moved to another HTTP port installs its snapshot from the new address', async () => {
  const tmp = tempDir('conclave-moved-config-');
  const config = join(tmp.dir, 'small.yaml');
  // Everything applied is compacted into the snapshot (no retained entries): a joiner can only come in by it.
  writeFileSync(config, 'storage:\n  compactionEntriesMin: 10\n  journalRetainEntries: 0\n');
  const cluster = await ProcessCluster.create(['n1', 'n2'], (name, seeds) => [
    '--config', config,
    ...(name === 'n1' ? ['--initial-master-nodes', 'n1'] : ['--seed', seeds[0]!]),
  ]);
  try {
    await cluster.start('n1');
    for (let i = 0; i < 25; i++) await cluster.write(`/p${i}`, { i });
    await waitFor('a snapshot on n1', async () => {
      const status = (await cluster.status('n1')) as unknown as { snapshot: { index: number } | null };
      return status.snapshot !== null && status.snapshot.index > 0 ? true : undefined;
    });
    await cluster.kill('n1');

    const oldPort = cluster.node('n1').httpPort;
    cluster.node('n1').httpPort = await freePort();
    assert.notEqual(cluster.node('n1').httpPort, oldPort);
    await cluster.start('n1');
    await cluster.master();
    await cluster.start('n2');
    await cluster.converged('/p24', 30_000);
    const res = await cluster.get('n2', '/api/v1/content/p0');
    assert.equal(res.status, 200, 'n2 holds what only the snapshot carried');
    const members = (await cluster.status('n1')).nodes as unknown as Array<{ name: string; httpAddress: string | null }>;
    assert.equal(members.find((n) => n.name === 'n1')?.httpAddress, `127.0.0.1:${cluster.node('n1').httpPort}`, 'the cluster state names the master where it is now');
  } finally {
    await cluster.stopAll();
    tmp.cleanup();
  }
});
