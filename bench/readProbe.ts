import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { Pool } from 'undici';

import { BenchCluster } from './benchCluster.js';
import { runLoad } from './load.js';
import { DocumentPaths, reader, requestOnce, writer, type ReadConsistency } from './operations.js';
import { withServerCpu } from './processCpu.js';

/**
 * Reads alone, as the bench's 3-node read scenarios send them (64 clients over every node, each mode), on one fresh
 * cluster, several rounds back to back: a quicker loop than the whole bench for work on the read path. It prints
 * reads/s and the servers' CPU per read; with --cpu-prof DIR every node writes a profile when the probe stops it.
 *
 *   node dist/bench/readProbe.js [--rounds N] [--duration-ms N] [--documents N] [--modes sequential,linearizable] [--cpu-prof DIR]
 */

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    'duration-ms': { type: 'string', default: '4000' },
    'warmup-ms': { type: 'string', default: '1000' },
    documents: { type: 'string', default: '2000' },
    clients: { type: 'string', default: '64' },
    modes: { type: 'string', default: 'sequential,linearizable' },
    'cpu-prof': { type: 'string' },
  },
});
const rounds = Number(values.rounds);
const timing = { durationMs: Number(values['duration-ms']), warmupMs: Number(values['warmup-ms']) };
const clients = Number(values.clients);
const modes = values.modes.split(',') as ReadConsistency[];
const parentPath = '/bench';

const root = mkdtempSync(join(tmpdir(), 'conclave-read-probe-'));
const cluster = await BenchCluster.start({ size: 3, root, cpuProfDir: values['cpu-prof'] ?? null });
try {
  const master = await cluster.master();
  const everyNode = [...cluster.names.filter((name) => name !== master), master];
  const everyUrl = everyNode.map((name) => cluster.url(name));
  await requestOnce(cluster.url(master), 'PUT', `/api/v1/content${parentPath}`, [201], { body: JSON.stringify({ properties: {} }), contentType: 'application/json' });
  for (const url of everyUrl) await requestOnce(url, 'GET', `/api/v1/content${parentPath}`, [200]);
  const paths = new DocumentPaths(parentPath);
  const write = writer(paths);
  const documents = Number(values.documents);
  const pool = new Pool(cluster.url(master), { connections: 32 });
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (paths.written.length < documents) await write(pool);
  }));
  await pool.close();
  process.stderr.write(`${paths.written.length} documents written\n`);
  const pids = cluster.names.map((name) => cluster.pid(name));
  for (let round = 1; round <= rounds; round++) {
    for (const mode of modes) {
      const { result, serverCpuCores } = await withServerCpu(pids, () => runLoad(mode, everyUrl, clients, timing, reader(paths, mode)));
      const cpuPerReadMs = serverCpuCores === null ? NaN : (serverCpuCores * 1000) / result.opsPerSec;
      process.stdout.write(
        `round ${round} ${mode.padEnd(12)} ${result.opsPerSec.toFixed(0).padStart(6)} reads/s  p50 ${result.p50Ms.toFixed(2)} ms  p99 ${result.p99Ms.toFixed(2)} ms  ` +
          `servers ${serverCpuCores?.toFixed(2)} cores, ${cpuPerReadMs.toFixed(3)} ms/read  client ${result.clientCpuCores.toFixed(2)} cores  errors ${result.errors}\n`,
      );
    }
  }
} finally {
  await cluster.stopAll();
  rmSync(root, { recursive: true, force: true });
}
