import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { ProcessCluster } from '../helpers/cluster.js';
import { processAuth } from '../helpers/process.js';
import { PrometheusServer, type VectorSample } from '../helpers/prometheus.js';

/**
 * A real Prometheus (Debian's package) scrapes a real 3-node cluster every second, as a user with the reader role;
 * the test asks Prometheus's own HTTP API, never the nodes, what it found: one master across the cluster, applied
 * indexes equal on the three after the writes stop, requests counted by route pattern, histograms, forwards,
 * replication lag on the master. Every condition is waited for with a bound.
 */

const names = ['m1', 'm2', 'm3'];
const writesPerNode = 8;

test('Prometheus scrapes a 3-node cluster and finds one master, equal applied indexes, requests by route, histograms and forwards', async () => {
  const cluster = await ProcessCluster.create(
    names,
    (_name, seeds) => [...seeds.flatMap((s) => ['--seed', s]), '--initial-master-nodes', names.join(',')],
    // The blob store is walked every second here (5 minutes by default), so that the blob bytes show at once.
    () => ({ CONCLAVE_METRICS_BLOB_SCAN_INTERVAL_MS: '1000' }),
  );
  let prometheus: PrometheusServer | null = null;
  try {
    await cluster.start(...names);
    const { master } = await cluster.caughtUp();
    const scraper = await fetch(`${cluster.url(master)}/api/v1/users/prometheus`, {
      method: 'PUT',
      headers: { authorization: processAuth, 'content-type': 'application/json' },
      body: JSON.stringify({ password: 'scrape-password-of-the-test', roles: ['reader'] }),
    });
    assert.equal(scraper.status, 201, await scraper.text());
    prometheus = await PrometheusServer.start({
      targets: names.map((n) => `127.0.0.1:${cluster.node(n).httpPort}`),
      username: 'prometheus',
      password: 'scrape-password-of-the-test',
      scrapeIntervalSeconds: 1,
    });

    const p = prometheus;
    // The writes come after a first scrape of every node, so that the series see them happen (rates, below).
    await p.until('up{job="conclave"}', (s) => s.length === 3 && s.every((x) => x.value === 1));
    // Writes through every node: the two replicas forward theirs to the master as commands. In two halves with a
    // scrape between them, so that the counters rise while Prometheus watches (a series first seen at its final
    // value has no rate).
    const write = async (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        for (const name of names) {
          const res = await cluster.put(name, `/metrics-test-${name}-${i}`, { i });
          assert.equal(res.status, 201, JSON.stringify(res.body));
          assert.equal((await cluster.get(name, `/api/v1/content/metrics-test-${name}-${i}`)).status, 200);
        }
      }
    };
    const puts = 'sum(conclave_http_requests_total{route="/api/v1/content/*",method="PUT",status="201"})';
    await write(0, writesPerNode / 2);
    await p.until(puts, (s) => s[0]?.value === (writesPerNode / 2) * names.length);
    await write(writesPerNode / 2, writesPerNode);
    // A binary uploaded through a replica is forwarded as the whole HTTP request (its bytes must reach the master).
    const replica = names.find((n) => n !== master)!;
    const upload = await fetch(`${cluster.url(replica)}/api/v1/binaries/metrics-test-${replica}-0?property=file`, {
      method: 'PUT',
      headers: { authorization: processAuth, 'content-type': 'application/octet-stream' },
      body: 'x'.repeat(10_000),
    });
    assert.equal(upload.status, 200, await upload.text());
    const { status } = await cluster.caughtUp();
    const appliedIndex = status.nodes.find((n) => n.name === master)!.appliedIndex!;

    const byNode = await p.until('conclave_node_info', (s) => s.length === 3);
    const nodeOf = new Map(byNode.map((s) => [s.metric['instance']!, s.metric['node']!]));
    assert.deepEqual([...nodeOf.values()].sort(), names);

    // Exactly one master across the cluster, and it is the one the nodes name.
    await p.until('sum(conclave_role{role="master"})', (s) => s.length === 1 && s[0]!.value === 1);
    const masters = await p.query('conclave_role{role="master"} == 1');
    assert.deepEqual(masters.map((s) => nodeOf.get(s.metric['instance']!)), [master]);
    await p.until('count(conclave_role{role="follower"} == 1)', (s) => s.length === 1 && s[0]!.value === 2);

    // After the writes stop, every node's applied index is the same, at least the index the master had applied.
    const applied = await p.until('conclave_journal_applied_index', (s) => s.length === 3 && new Set(s.map((x) => x.value)).size === 1 && s[0]!.value >= appliedIndex);
    const commits = await p.until('conclave_journal_commit_index', (s) => s.length === 3 && s.every((x) => x.value === applied[0]!.value));
    assert.equal(commits.length, 3);
    await p.until('conclave_cluster_voters', (s) => s.length === 3 && s.every((x) => x.value === 3));
    await p.until('conclave_cluster_in_sync_members', (s) => s.length === 3 && s.every((x) => x.value === 3));
    // Lag per member exists on the master only, one series per member, and is 0 once they caught up.
    const lag = await p.until('conclave_replication_lag_entries', (s) => s.length === 3 && s.every((x) => x.value === 0));
    assert.deepEqual(new Set(lag.map((s) => nodeOf.get(s.metric['instance']!))), new Set([master]));
    assert.deepEqual(lag.map((s) => s.metric['member']).sort(), names);

    // Requests by route pattern: every PUT counted once, where it arrived.
    await p.until(puts, (s) => s[0]?.value === writesPerNode * names.length);
    const routes = await p.query('count by (route) (conclave_http_requests_total)');
    for (const s of routes) assert.ok(s.metric['route'] === 'unmatched' || s.metric['route']!.startsWith('/'), JSON.stringify(s.metric));
    assert.ok(!routes.some((s) => s.metric['route']!.includes('metrics-test')), 'no path in a route label');
    // A scrape is counted once it is answered: the next scrape shows it.
    await p.until('count(conclave_http_requests_total{route="/metrics",method="GET",status="200"} > 0)', (s) => s[0]?.value === 3);
    // What the dashboard shows as writes/s: a rate over the scrapes that saw the writes arrive.
    await p.until('sum(rate(conclave_http_requests_total{method="PUT",route="/api/v1/content/*"}[1m]))', (s) => s.length === 1 && s[0]!.value > 0);
    // The replicas forwarded their writes to the master as commands, and each one went through.
    await p.until('sum(conclave_forwarded_requests_total{via="command",outcome="ok"})', (s) => s[0]?.value === writesPerNode * (names.length - 1));
    await p.until('sum(conclave_forwarded_requests_total{via="http",outcome="ok"})', (s) => s[0]?.value === 1);
    await p.until('sum(conclave_forwarded_requests_total{outcome!="ok"})', (s) => s[0]?.value === 0);
    // The blob is on every node (the master pushed it, the others fetched or received it), and none is missing.
    await p.until('conclave_blob_store_bytes', (s) => s.length === 3 && s.every((x) => x.value === 10_000));
    await p.until('conclave_blobs_missing', (s) => s.length === 3 && s.every((x) => x.value === 0));

    // Histograms: buckets, counts and sums are there, and a quantile can be computed from them.
    const hasCount = (s: VectorSample[]) => s.length === 3 && s.every((x) => x.value > 0);
    await p.until('conclave_ready_persist_duration_seconds_count', hasCount);
    await p.until('sum by (instance) (conclave_http_request_duration_seconds_count)', hasCount);
    await p.until('conclave_event_loop_delay_seconds_count', hasCount);
    await p.until('sum by (instance) (conclave_ready_entries_count{kind="applied"})', hasCount);
    const p99 = await p.until(
      'histogram_quantile(0.99, sum by (le) (conclave_http_request_duration_seconds_bucket{route="/api/v1/content/*",method="PUT"}))',
      (s) => s.length === 1 && Number.isFinite(s[0]!.value) && s[0]!.value > 0,
    );
    assert.ok(p99[0]!.value < 30, `a PUT's p99 within the histogram's range: ${p99[0]!.value}`);
    // Every node saw a master come, and reads were served under leases or read indexes.
    await p.until('conclave_master_changes_total', (s) => s.length === 3 && s.every((x) => x.value >= 1));
    await p.until('sum(conclave_reads_total{via=~"lease|read_index"})', (s) => s[0] !== undefined && s[0].value >= writesPerNode * names.length);
    await p.until('conclave_term', (s) => s.length === 3 && new Set(s.map((x) => x.value)).size === 1);

    // Every query of the Grafana dashboard is valid PromQL that this Prometheus answers, with data where the
    // cluster has some (no backup was taken: that panel alone may be empty).
    const dashboard = JSON.parse(readFileSync(new URL('../../../deploy/grafana/conclave-dashboard.json', import.meta.url), 'utf8')) as {
      panels: Array<{ title: string; targets?: Array<{ expr: string }> }>;
    };
    for (const panel of dashboard.panels) {
      for (const { expr } of panel.targets ?? []) {
        const promql = expr.replaceAll('$job', '.*').replaceAll('$__rate_interval', '1m');
        const answer = await p.query(promql);
        if (panel.title !== 'Since the last backup') assert.ok(answer.length > 0, `${panel.title}: ${promql} answers data`);
      }
    }
  } finally {
    await prometheus?.stop();
    await cluster.stopAll();
  }
});
