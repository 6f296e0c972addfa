import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { tempDir } from '../helpers/tmp.js';

/**
 * Smoke test of `npm run bench`: the quick bench with the smallest sizes runs every part (real clusters of 1, 3 and
 * 5 processes, a real 3-member etcd cluster beside them, the catch-ups, one failover trial of each kind for each
 * system, the snapshot measurement or its skip, the backup and restore of a tiny repository on both systems) and
 * writes results of the expected shape: the JSON, the Markdown
 * table and the SVG chart, with a figure from both systems in every comparison row. It asserts nothing about speed
 * or the bench's error counts: those are figures for people to read. It needs /usr/bin/etcd and /usr/bin/etcdctl
 * (.ci/run installs them).
 */

const benchPath = fileURLToPath(new URL('../../bench/run.js', import.meta.url));
const benchTimeoutMs = 300_000;

interface Scenario {
  name: string;
  nodes: number;
  sentTo: string;
  consistency: string | null;
  clients: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  errors: number;
  warmupErrors: number;
  ops: number;
  opsByOrigin: number[];
  errorsByOrigin: number[];
  sentToNodes: string[];
  master: string;
}

interface CatchUp {
  name: string;
  kind: string;
  skipped: string | null;
  bytes: number;
  entries: number;
  contactMs: number;
  appliedMs: number;
  catchUpMs: number;
  mibPerSec: number;
  blobsPresentMs: number | null;
}

interface BackupResult {
  system: string;
  storedBytes: number;
  backup: { bytes: number; totalMs: number; mbPerSec: number };
  writes: { keptPercent: number; without: Array<{ opsPerSec: number }>; beside: { opsPerSec: number }; backups: unknown[] };
  restore: { mbPerSec: number; dataDirBytes: number } | null;
  restoreSkipped: string | null;
}

function run(args: string[], signal: AbortSignal): Promise<{ code: number | string; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // SIGTERM on abort: the bench stops its nodes and removes its directories on that signal.
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], signal, killSignal: 'SIGTERM' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code, sig) => resolve({ code: code ?? sig ?? -1, stdout, stderr }));
  });
}

const report0 = (dir: string): { comparison: unknown[] } => JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) as { comparison: unknown[] };

const isFiniteAtLeast0 = (value: unknown): boolean => typeof value === 'number' && Number.isFinite(value) && value >= 0;

test('the quick bench runs every part and writes well-formed results', { timeout: benchTimeoutMs + 10_000 }, async () => {
  const tmp = tempDir('conclave-bench-test-');
  try {
    const outDir = join(tmp.dir, 'results');
    const args = [
      // A window of 1 s: in 200 ms, 64 clients on a loaded machine may complete no write started in it, and the
      // figures per operation are then missing.
      benchPath, '--quick', '--duration-ms', '1000', '--warmup-ms', '100', '--catch-up-mib', '0.5', '--catch-up-binary-mib', '1', '--snapshot-mib', '0.1', '--backup-mix', '0.5+1.5', '--out-dir', outDir,
    ];
    const { code, stdout, stderr } = await run(args, AbortSignal.timeout(benchTimeoutMs));
    assert.equal(code, 0, stderr);
    assert.match(stdout, /^\| scenario \| figure \| Conclave \| etcd \| Conclave\/etcd \|/m);
    assert.match(stdout, /^\| scenario \| nodes \| sent to \| clients \| ops\/s \|/m);
    assert.match(stdout, /^\| etcd scenario \| members \| clients \| ops\/s \|/m);
    assert.match(stdout, /^\| catch-up of a 3-node cluster's replica \|/m);
    assert.match(stdout, /^\| catch-up of a 3-member etcd cluster's follower \|/m);
    assert.match(stdout, /^\| system \| backup \| archive MB \|/m);

    const markdown = readFileSync(join(outDir, 'results.md'), 'utf8');
    assert.match(markdown, /^\| scenario \| figure \| Conclave \| etcd \| Conclave\/etcd \|/m);
    const chart = readFileSync(join(outDir, 'chart.svg'), 'utf8');
    assert.match(chart, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"[^>]*>/);
    assert.match(chart, /<\/svg>\n$/);
    // One pair of bars per comparison row (a row's figures are checked in the JSON below).
    assert.equal((chart.match(/<text x="10" y="\d+" fill="#555">/g) ?? []).length, report0(outDir).comparison.length);

    const report = JSON.parse(readFileSync(join(outDir, 'results.json'), 'utf8')) as {
      etcd: { available: boolean; version?: string; reason?: string };
      comparison: Array<{ group: string; figure: string; conclave: number | null; etcd: number | null; ratio: number | null }>;
      etcdScenarios: Array<{ name: string; consistency: string | null; clients: number; opsPerSec: number; p50Ms: number; p99Ms: number; maxMs: number; ops: number; opsByOrigin: number[] }>;
      etcdCatchUp: { bytes: number; writes: number; catchUpMs: number; mibPerSec: number } | null;
      failover: Record<'conclave' | 'etcd', { kill: { trials: number }; stop: { trials: number }; trials: Array<{ kind: string; failoverMs: number | null }> } | null>;
      catchUpValueBytes: number;
      quick: boolean;
      node: string;
      cpus: number;
      floor: { fsync: Record<string, number>; sqlite: Record<string, number> };
      scenarios: Scenario[];
      catchUp: CatchUp[];
      backup: { mix: string; storedBytes: number; results: BackupResult[] };
      clusters: Array<{ label: string; nodes: number; stops: Record<string, unknown[]> }>;
      migrations: Array<{ nodes: number; batchNodesMax: number; batches: number; nodesPerSec: number; writesAcknowledgedPerSec: number; writeP99Ms: number }>;
      feed: {
        alone: { opsPerSec: number };
        withSubscribers: { opsPerSec: number };
        delays: Array<{ node: string; missing: number; p99Ms: number }>;
        webhook: { missing: number; p99Ms: number };
      };
    };
    assert.equal(report.quick, true);
    assert.equal(report.etcd.available, true, report.etcd.reason);

    // Every comparison row has both systems' figure (a failover that did not happen in time is a figure: null; a
    // restore on a build without `conclave restore` is skipped, and says so).
    assert.ok(report.comparison.length > 0);
    const restoreSkipped = report.backup.results.find((r) => r.system === 'conclave')?.restoreSkipped ?? null;
    for (const row of report.comparison) {
      const label = `${row.group}: ${row.figure}`;
      if (row.group.startsWith('failover') && (row.conclave === null || row.etcd === null)) continue;
      if (row.group.startsWith('restore') && restoreSkipped !== null && row.conclave === null) continue;
      assert.ok(isFiniteAtLeast0(row.conclave) && isFiniteAtLeast0(row.etcd), `${label}: ${row.conclave} / ${row.etcd}`);
      if (row.etcd !== 0) assert.ok(isFiniteAtLeast0(row.ratio), `${label}: ratio ${row.ratio}`);
    }
    assert.deepEqual(
      report.etcdScenarios.map((s) => `${s.name}|${s.consistency}|${s.clients}`),
      [1, 64].map((clients) => `durable write (put 1 KB)|null|${clients}`).concat(['serializable', 'linearizable'].map((mode) => `read (get 1 KB), ${mode}|${mode}|64`)),
    );
    for (const s of report.etcdScenarios) {
      for (const value of [s.opsPerSec, s.p50Ms, s.p99Ms, s.maxMs, s.ops]) assert.ok(isFiniteAtLeast0(value), `etcd ${s.name}: ${value}`);
      assert.ok(s.p50Ms <= s.p99Ms && s.p99Ms <= s.maxMs, `etcd ${s.name}: percentiles out of order`);
      assert.equal(s.opsByOrigin.reduce((sum, ops) => sum + ops, 0), s.ops);
    }
    assert.ok(report.etcdCatchUp !== null && report.etcdCatchUp.bytes > 0 && report.etcdCatchUp.writes > 0 && isFiniteAtLeast0(report.etcdCatchUp.mibPerSec));
    for (const system of ['conclave', 'etcd'] as const) {
      const failover = report.failover[system];
      assert.ok(failover !== null, system);
      assert.deepEqual(failover.trials.map((t) => t.kind), ['kill', 'stop'], system);
      assert.equal(failover.kill.trials + failover.stop.trials, 2, system);
    }
    assert.equal(report.node, process.version);
    assert.ok(report.cpus >= 1);
    for (const value of [...Object.values(report.floor.fsync), ...Object.values(report.floor.sqlite)]) assert.ok(isFiniteAtLeast0(value), `floor: ${value}`);

    const expected = [
      ...[1, 3, 5].flatMap((nodes) => [1, 64].map((clients) => `durable write (PUT 1 KB)|${nodes}|master|null|${clients}`)),
      ...[1, 64].map((clients) => `durable write (PUT 1 KB)|3|all nodes|null|${clients}`),
      ...[1, 64].map((clients) => `read (GET 1 KB)|1|master|null|${clients}`),
      ...['stale', 'sequential', 'linearizable'].map((mode) => `read (GET 1 KB), ${mode}|3|all nodes|${mode}|64`),
    ].sort();
    assert.deepEqual(report.scenarios.map((s) => `${s.name}|${s.nodes}|${s.sentTo}|${s.consistency}|${s.clients}`).sort(), expected);
    for (const s of report.scenarios) {
      const label = `${s.name} on ${s.nodes} to ${s.sentTo} x${s.clients}`;
      for (const value of [s.opsPerSec, s.p50Ms, s.p99Ms, s.maxMs, s.errors, s.warmupErrors, s.ops]) assert.ok(isFiniteAtLeast0(value), `${label}: ${value}`);
      assert.ok(s.p50Ms <= s.p99Ms && s.p99Ms <= s.maxMs, `${label}: percentiles out of order`);
      assert.equal(s.sentToNodes.length, s.sentTo === 'master' ? 1 : s.nodes, label);
      assert.ok(s.sentToNodes.includes(s.master), label);
      assert.equal(s.opsByOrigin.length, s.sentToNodes.length, label);
      assert.equal(s.errorsByOrigin.length, s.sentToNodes.length, label);
      assert.equal(s.opsByOrigin.reduce((sum, ops) => sum + ops, 0), s.ops, label);
      assert.equal(s.errorsByOrigin.reduce((sum, errors) => sum + errors, 0), s.errors + s.warmupErrors, label);
    }

    assert.deepEqual(report.catchUp.map((c) => c.kind), ['content', 'binaries', 'snapshot']);
    assert.ok(report.catchUpValueBytes > 16_000, 'the compared catch-up writes values of about 16 KiB');
    for (const c of report.catchUp) {
      if (c.skipped !== null) {
        // Only the snapshot measurement may skip, and it says why.
        assert.equal(c.kind, 'snapshot', c.skipped);
        assert.match(c.skipped, /storage\.compactionEntriesMin|snapshot/);
        continue;
      }
      assert.ok(c.bytes > 0 && c.entries > 0, c.name);
      for (const value of [c.contactMs, c.appliedMs, c.catchUpMs, c.mibPerSec]) assert.ok(isFiniteAtLeast0(value), `${c.name}: ${value}`);
      assert.ok(c.contactMs <= c.appliedMs && c.appliedMs <= c.catchUpMs, `${c.name}: milestones out of order`);
      if (c.kind === 'binaries') assert.ok(isFiniteAtLeast0(c.blobsPresentMs), c.name);
    }
    assert.equal(report.backup.mix, '0.5+1.5');
    assert.deepEqual(report.backup.results.map((r) => r.system), ['conclave', 'etcd']);
    for (const r of report.backup.results) {
      assert.ok(r.storedBytes > 2 * 1024 * 1024 && r.backup.bytes > 0, r.system);
      for (const value of [r.backup.totalMs, r.backup.mbPerSec, r.writes.keptPercent, ...r.writes.without.map((w) => w.opsPerSec), r.writes.beside.opsPerSec]) assert.ok(isFiniteAtLeast0(value), `${r.system}: ${value}`);
      assert.ok(r.writes.backups.length >= 1, `${r.system}: no backup ran beside the writes`);
      if (r.restore === null) {
        assert.equal(r.system, 'conclave');
        assert.match(r.restoreSkipped ?? '', /conclave restore/);
      } else {
        assert.ok(isFiniteAtLeast0(r.restore.mbPerSec) && r.restore.dataDirBytes > 0, `${r.system}: restore`);
      }
    }
    const snapshotMeasured = report.catchUp.some((c) => c.kind === 'snapshot' && c.skipped === null);
    assert.deepEqual(
      report.clusters.map((c) => `${c.label}:${c.nodes}`).filter((label) => snapshotMeasured || label !== 'snapshot:3'),
      ['cluster-of-3:3', 'catch-up:3', 'cluster-of-1:1', 'cluster-of-5:5', ...(snapshotMeasured ? ['snapshot:3'] : []), 'backup:3', 'feed:3', 'migration-100:3', 'migration-500:3'],
    );
    // The migration part: every node of the type migrated, at both batch sizes, with the fixed-rate writes going on.
    assert.match(stdout, /^\| nodes \| batch \| batches \| seconds \| nodes\/s \|/m);
    assert.deepEqual(report.migrations.map((m) => [m.nodes, m.batchNodesMax]), [[5_000, 100], [5_000, 500]]);
    for (const m of report.migrations) {
      assert.ok(isFiniteAtLeast0(m.nodesPerSec) && m.nodesPerSec > 0 && m.batches >= 5_000 / m.batchNodesMax, JSON.stringify(m));
      assert.ok(m.writesAcknowledgedPerSec > 0 && isFiniteAtLeast0(m.writeP99Ms), JSON.stringify(m));
    }
    // The change feed part: writes with and without subscribers, and every acknowledged write reached every
    // measuring subscriber and the webhook receiver.
    assert.match(stdout, /^\| node \| subscribers \| delay p50 ms \| delay p99 ms \|/m);
    const feed = report.feed;
    assert.ok(feed.alone.opsPerSec > 0 && feed.withSubscribers.opsPerSec > 0, JSON.stringify(feed));
    assert.equal(feed.delays.length, 3);
    for (const delay of feed.delays) {
      assert.equal(delay.missing, 0, `${delay.node} missed events`);
      assert.ok(isFiniteAtLeast0(delay.p99Ms), `${delay.node}: p99 ${delay.p99Ms}`);
    }
    assert.equal(feed.webhook.missing, 0, 'the webhook receiver missed events');
    assert.ok(isFiniteAtLeast0(feed.webhook.p99Ms));
  } finally {
    tmp.cleanup();
  }
});
