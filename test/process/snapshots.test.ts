import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { ProcessCluster, type ClusterStatusBody } from '../helpers/cluster.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

/**
 * Journal compaction and snapshots on real processes, with a small compaction threshold: a replica that was down
 * while the master compacted past its journal comes back through a snapshot; a new, empty node joins a compacted
 * cluster through one; a master restarted after compaction restores from its snapshot; a download killed mid-way
 * resumes from the bytes on disk with a Range request; a corrupt download is refused and fetched again.
 */

interface SnapshotView {
  index: number;
  download: { index: number; bytes: number; totalBytes: number; state: string; percent: number } | null;
}
type StatusWithSnapshot = ClusterStatusBody & { snapshot: SnapshotView; commitIndex: number };

function configFile(dir: string, name: string, yaml: string): string {
  const path = join(dir, `${name}.yaml`);
  writeFileSync(path, yaml);
  return path;
}

async function status(cluster: ProcessCluster, name: string): Promise<StatusWithSnapshot> {
  return (await cluster.status(name)) as StatusWithSnapshot;
}

/** Waits until `name` has applied everything the master committed, and returns its status. */
async function caughtUp(cluster: ProcessCluster, master: string, name: string, timeoutMs = 30_000): Promise<StatusWithSnapshot> {
  return waitFor(
    `${name} to catch up with ${master}`,
    async () => {
      const [m, s] = [await status(cluster, master), await status(cluster, name)];
      const self = s.nodes.find((n) => n.name === name);
      return self?.appliedIndex !== null && self !== undefined && self.appliedIndex! >= m.commitIndex && s.master?.name === master ? s : undefined;
    },
    timeoutMs,
  );
}

async function readsBack(cluster: ProcessCluster, name: string, paths: Map<string, number>): Promise<void> {
  for (const [path, value] of paths) {
    const res = await cluster.get(name, `/api/v1/content${path}`);
    assert.equal(res.status, 200, `${name} reads ${path}`);
    assert.equal((res.body as { properties: { i: number } }).properties.i, value, `${name} reads ${path}`);
  }
}

/** JSON log lines of a node with the given message. */
function logLines(cluster: ProcessCluster, name: string, msg: string): Array<Record<string, unknown>> {
  return cluster
    .output(name)
    .split('\n')
    .filter((line) => line.includes(`"msg":"${msg}"`))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

test('a replica behind the compacted journal and a new empty node come up to date through snapshots; a restarted master restores from its snapshot', async () => {
  const tmp = tempDir('conclave-snapshot-config-');
  const config = configFile(tmp.dir, 'small', 'storage:\n  compactionEntriesMin: 20\n  journalRetainEntries: 5\n');
  const names = ['n1', 'n2', 'n3', 'n4'];
  const cluster = await ProcessCluster.create(names, (name, seeds) => [
    '--config', config,
    ...seeds.flatMap((s) => ['--seed', s]),
    ...(name === 'n4' ? [] : ['--initial-master-nodes', 'n1,n2,n3']),
  ]);
  try {
    await cluster.start('n1', 'n2', 'n3');
    const written = new Map<string, number>();
    const write = async (i: number) => {
      await cluster.write(`/p${i}`, { i, text: 'x'.repeat(200) });
      written.set(`/p${i}`, i);
    };
    await write(0);
    const master = await cluster.master();
    await waitFor('all three in sync', async () => ((await status(cluster, master)).nodes.filter((n) => n.inSync).length === 3 ? true : undefined));
    const replica = ['n1', 'n2', 'n3'].find((n) => n !== master)!;
    const replicaIndex = (await status(cluster, master)).nodes.find((n) => n.name === replica)!.appliedIndex!;
    await cluster.kill(replica);

    for (let i = 1; i <= 60; i++) await write(i);
    const compacted = await waitFor('the master to compact past the stopped replica', async () => {
      const s = await status(cluster, master);
      return s.snapshot.index > replicaIndex ? s : undefined;
    });
    assert.ok(compacted.snapshot.index > replicaIndex);
    assert.equal(compacted.snapshot.download, null);

    // The replica returns: the entries it lacks are gone from the master's journal, so it installs a snapshot.
    await cluster.start(replica);
    const back = await caughtUp(cluster, master, replica);
    assert.ok(back.snapshot.index >= compacted.snapshot.index, 'it holds the snapshot it installed');
    assert.equal(logLines(cluster, replica, 'installed a snapshot').length, 1);
    assert.ok(logLines(cluster, master, 'serving a snapshot').length >= 1);
    await readsBack(cluster, replica, written);

    // A new, empty node joins the compacted cluster: it gets everything through a snapshot.
    await cluster.start('n4');
    await caughtUp(cluster, master, 'n4');
    assert.equal(logLines(cluster, 'n4', 'installed a snapshot').length, 1);
    await readsBack(cluster, 'n4', written);

    // The master restarts after compacting: it restores its snapshot and the journal after it, and goes on.
    await cluster.kill(master);
    for (let i = 61; i <= 70; i++) await write(i);
    await cluster.start(master);
    const newMaster = await cluster.master();
    await caughtUp(cluster, newMaster, master);
    const restarted = await status(cluster, master);
    assert.ok(restarted.snapshot.index >= compacted.snapshot.index, 'the snapshot survived the restart');
    await readsBack(cluster, master, written);
    for (let i = 71; i <= 75; i++) await write(i);
    await cluster.converged('/p75');
    for (const name of names) await readsBack(cluster, name, new Map([['/p75', 75], ['/p1', 1]]));
  } finally {
    await cluster.stopAll();
    tmp.cleanup();
  }
});

test('a snapshot download killed mid-way resumes from its partial file with a Range request; a corrupt one is refused and fetched again', async () => {
  const tmp = tempDir('conclave-snapshot-config-');
  // Paced transfers (about 3 s for this snapshot) leave time to kill the receiver in the middle; no retained
  // entries, so the master compacts once and the snapshot stays the same while the replica comes and goes.
  const config = configFile(
    tmp.dir,
    'paced',
    'storage:\n  compactionEntriesMin: 40\n  journalRetainEntries: 0\nreplication:\n  snapshotBytesPerSecondMax: 400000\n',
  );
  const names = ['n1', 'n2', 'n3'];
  const cluster = await ProcessCluster.create(names, (_name, seeds) => ['--config', config, ...seeds.flatMap((s) => ['--seed', s]), '--initial-master-nodes', names.join(',')]);
  try {
    await cluster.start(...names);
    const written = new Map<string, number>();
    await cluster.write('/p0', { i: 0 });
    written.set('/p0', 0);
    const master = await cluster.master();
    await waitFor('all three in sync', async () => ((await status(cluster, master)).nodes.filter((n) => n.inSync).length === 3 ? true : undefined));
    const replica = names.find((n) => n !== master)!;
    const replicaId = (await status(cluster, master)).nodes.find((n) => n.name === replica)!.id;
    const replicaIndex = (await status(cluster, master)).nodes.find((n) => n.name === replica)!.appliedIndex!;
    await cluster.kill(replica);
    for (let i = 1; i <= 50; i++) {
      await cluster.write(`/p${i}`, { i, text: 'y'.repeat(20_000) });
      written.set(`/p${i}`, i);
    }
    const snapshotIndex = await waitFor('the master to compact past the stopped replica', async () => {
      const s = await status(cluster, master);
      return s.snapshot.index > replicaIndex ? s.snapshot.index : undefined;
    });

    // The replica starts downloading; it is killed part of the way through.
    await cluster.start(replica);
    const partial = await waitFor('a download under way', async () => {
      const download = (await status(cluster, replica)).snapshot.download;
      return download !== null && download.state === 'downloading' && download.bytes > 0 && download.bytes < download.totalBytes / 2 ? download : undefined;
    });
    assert.equal(partial.index, snapshotIndex);
    await cluster.kill(replica);
    const incoming = join(cluster.node(replica).dir, 'snapshots', 'incoming');
    const parts = readdirSync(incoming).filter((name) => name.endsWith('.part'));
    assert.equal(parts.length, 1, `one partial file: ${readdirSync(incoming).join(', ')}`);
    assert.ok(parts[0]!.startsWith(`${snapshotIndex}-`));
    const partPath = join(incoming, parts[0]!);
    const kept = statSync(partPath).size;
    assert.ok(kept > 0 && kept < partial.totalBytes, `${kept} bytes kept of ${partial.totalBytes}`);
    // And a byte of what it kept goes bad on disk: the resumed download will not match its checksum.
    const bytes = readFileSync(partPath);
    bytes[Math.floor(kept / 2)] = bytes[Math.floor(kept / 2)]! ^ 0xff;
    writeFileSync(partPath, bytes);

    await cluster.start(replica);
    await caughtUp(cluster, master, replica, 60_000);
    // The master served: the first request from 0, the resumed one from exactly the bytes kept, and after the
    // checksum failure the whole file again from 0.
    const served = logLines(cluster, master, 'serving a snapshot').filter((l) => l['node'] === replicaId && l['index'] === snapshotIndex);
    const starts = served.map((l) => l['rangeStart']);
    assert.equal(starts[0], 0);
    assert.ok(starts.includes(kept), `a request resumed at byte ${kept}: ${JSON.stringify(starts)}`);
    assert.equal(starts[starts.length - 1], 0, `fetched again from the start after the checksum failure: ${JSON.stringify(starts)}`);
    const resumed = logLines(cluster, replica, 'resuming a snapshot download');
    assert.ok(resumed.some((l) => l['fromByte'] === kept));
    assert.equal(logLines(cluster, replica, 'the downloaded snapshot does not match its checksum; it was deleted and is fetched again').length, 1);
    assert.equal(logLines(cluster, replica, 'installed a snapshot').length, 1);
    assert.deepEqual(readdirSync(incoming), [], 'nothing left in incoming/');
    await readsBack(cluster, replica, written);
  } finally {
    await cluster.stopAll();
    tmp.cleanup();
  }
});
