import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { Counter, Registry } from 'prom-client';
import { Agent, request } from 'undici';

import { ConfigError, loadConfig } from '../../src/config/load.js';
import { unmatchedRoute } from '../../src/metrics/httpMetrics.js';
import { adminAuth, json, openTestNode, type TestNode } from '../helpers/app.js';
import { freePort } from '../helpers/ports.js';
import { tempDir, waitFor } from '../helpers/tmp.js';
import { generatePki } from '../transport/helpers.js';
import { parseExposition, sampleValue, type Family } from '../helpers/promText.js';

/**
 * GET /metrics on in-process nodes: who may read it (any role, never anonymous; open only on a listener of its own),
 * that the text is valid exposition format, and that labels stay bounded (route patterns, never paths).
 */

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const reader = basic('watcher', 'watcher-password');

let t: TestNode;
before(async () => {
  t = await openTestNode({ 'auth.anonymousRead': true });
  const created = await t.request({ method: 'PUT', url: '/api/v1/users/watcher', ...json({ password: 'watcher-password', roles: ['reader'] }) });
  assert.equal(created.statusCode, 201, created.body);
});
after(async () => {
  await t.close();
});

async function scrape(node: TestNode, auth: string = reader): Promise<Map<string, Family>> {
  const res = await node.request({ method: 'GET', url: '/metrics', auth });
  assert.equal(res.statusCode, 200, res.body);
  assert.equal(res.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  return parseExposition(res.body);
}

test('without credentials, with wrong ones, or anonymously where content is public: 401, and not a series in the answer', async () => {
  // The node publishes content to anonymous readers; the metrics stay closed to them.
  assert.equal((await t.request({ method: 'GET', url: '/api/v1/content/', auth: null })).statusCode, 200);
  for (const auth of [null, basic('watcher', 'wrong-password'), basic('nobody', 'whatever'), 'Bearer not-a-token']) {
    const res = await t.request({ method: 'GET', url: '/metrics', auth });
    assert.equal(res.statusCode, 401, `${auth}: ${res.body}`);
    assert.match(String(res.headers['www-authenticate']), /Basic/);
    assert.ok(!res.body.includes('conclave_'), res.body);
    assert.equal(res.json().error.code, auth === null ? 'AUTH_REQUIRED' : 'AUTH_INVALID');
  }
});

test('a reader, an admin and a bearer token read valid exposition text with the node\'s series', async () => {
  const login = await t.request({ method: 'POST', url: '/api/v1/auth/login', ...json({ username: 'watcher', password: 'watcher-password' }), auth: null });
  const token = `Bearer ${login.json().token}`;
  for (const auth of [reader, adminAuth, token]) await scrape(t, auth);
  const families = await scrape(t);
  const types: Record<string, string> = {
    conclave_http_requests_total: 'counter',
    conclave_http_request_duration_seconds: 'histogram',
    conclave_journal_last_index: 'gauge',
    conclave_journal_commit_index: 'gauge',
    conclave_journal_applied_index: 'gauge',
    conclave_ready_persist_duration_seconds: 'histogram',
    conclave_ready_entries: 'histogram',
    conclave_term: 'gauge',
    conclave_role: 'gauge',
    conclave_master_changes_total: 'counter',
    conclave_elections_total: 'counter',
    conclave_cluster_voters: 'gauge',
    conclave_cluster_in_sync_members: 'gauge',
    conclave_replication_lag_entries: 'gauge',
    conclave_forwarded_requests_total: 'counter',
    conclave_reads_total: 'counter',
    conclave_snapshot_transfers_total: 'counter',
    conclave_snapshot_transfer_bytes_total: 'counter',
    conclave_blob_store_bytes: 'gauge',
    conclave_blobs_missing: 'gauge',
    conclave_backups_total: 'counter',
    conclave_backup_last_success_timestamp_seconds: 'gauge',
    conclave_change_feed_subscribers: 'gauge',
    conclave_change_feed_events_sent_total: 'counter',
    conclave_webhook_deliveries_total: 'counter',
    conclave_webhook_delivery_failures_total: 'counter',
    conclave_webhook_backlog_events: 'gauge',
    conclave_event_loop_delay_seconds: 'histogram',
    process_resident_memory_bytes: 'gauge',
  };
  for (const [name, type] of Object.entries(types)) {
    assert.equal(families.get(name)?.type, type, `${name} is a ${type}`);
    assert.ok(families.get(name)!.help !== null && families.get(name)!.help !== '', `${name} has help`);
  }
  for (const name of families.keys()) {
    assert.ok(name.startsWith('conclave_') || name.startsWith('process_') || name.startsWith('nodejs_'), name);
  }
  // A node of one is its own master, has applied what it committed, and lags behind nobody.
  assert.equal(sampleValue(families, 'conclave_role', { role: 'master' }), 1);
  assert.equal(sampleValue(families, 'conclave_role', { role: 'follower' }), 0);
  const commit = sampleValue(families, 'conclave_journal_commit_index')!;
  assert.ok(commit > 0);
  assert.equal(sampleValue(families, 'conclave_journal_applied_index'), commit);
  assert.equal(sampleValue(families, 'conclave_cluster_voters'), 1);
  assert.equal(sampleValue(families, 'conclave_replication_lag_entries', { member: t.config.node.name }), 0);
  assert.ok(sampleValue(families, 'conclave_ready_persist_duration_seconds_count')! > 0);
  assert.ok(sampleValue(families, 'conclave_elections_total')! >= 1);
});

test('labels are route patterns, never paths; requests no route matched share one label', async () => {
  const secret = 'a-path-nobody-should-see';
  await t.request({ method: 'PUT', url: `/api/v1/content/${secret}`, ...json({ properties: { v: 1 } }) });
  await t.request({ method: 'GET', url: `/api/v1/content/${secret}`, auth: reader });
  await t.request({ method: 'GET', url: `/no/such/${secret}`, auth: reader });
  await t.request({ method: 'GET', url: `/api/v1/content/${secret}?consistency=stale`, auth: reader });
  const res = await t.request({ method: 'GET', url: '/metrics', auth: reader });
  assert.ok(!res.body.includes(secret), 'no path in any label');
  assert.ok(!res.body.includes('watcher'), 'no user name in any label');
  const families = parseExposition(res.body);
  const routes = new Set(families.get('conclave_http_requests_total')!.samples.map((s) => s.labels['route']!));
  assert.ok(routes.has('/api/v1/content/*'), [...routes].join(', '));
  assert.ok(routes.has(unmatchedRoute));
  const methods = ['GET', 'PUT', 'POST', 'DELETE', 'PATCH'] as const;
  for (const route of routes) assert.ok(route === unmatchedRoute || methods.some((method) => t.app.hasRoute({ method, url: route })), `${route} is a route pattern`);
  assert.ok(sampleValue(families, 'conclave_http_requests_total', { route: '/api/v1/content/*', method: 'PUT', status: '201' })! >= 1);
  assert.ok(sampleValue(families, 'conclave_http_requests_total', { route: unmatchedRoute, method: 'GET', status: '404' })! >= 1);
  assert.ok(sampleValue(families, 'conclave_reads_total', { via: 'lease' })! >= 1);
  assert.ok(sampleValue(families, 'conclave_reads_total', { via: 'stale' })! >= 1);
});

test('a completed backup is counted with its bytes and time', async () => {
  const before = await scrape(t);
  assert.equal(sampleValue(before, 'conclave_backups_total', { outcome: 'completed' }), 0);
  const backup = await t.request({ method: 'GET', url: '/api/v1/admin/backup' });
  assert.equal(backup.statusCode, 200);
  // Counted when the archive's stream closes, just after its last byte went out.
  const families = await waitFor('the backup to be counted', async () => {
    const now = await scrape(t);
    return sampleValue(now, 'conclave_backups_total', { outcome: 'completed' })! + sampleValue(now, 'conclave_backups_total', { outcome: 'failed' })! > 0 ? now : undefined;
  });
  assert.equal(sampleValue(families, 'conclave_backups_total', { outcome: 'completed' }), 1);
  assert.equal(sampleValue(families, 'conclave_backups_total', { outcome: 'failed' }), 0);
  assert.equal(sampleValue(families, 'conclave_backup_last_success_bytes'), backup.rawPayload.length);
  assert.ok(sampleValue(families, 'conclave_backup_last_success_timestamp_seconds')! > Date.now() / 1000 - 600);
});

test('metrics.port: a listener of its own serves /metrics only; "open" drops credentials there and nowhere else', async () => {
  const port = await freePort();
  const open = await openTestNode({ 'metrics.port': port, 'metrics.access': 'open' });
  try {
    const api = await open.node.listen();
    const metricsUrl = `http://127.0.0.1:${port}`;
    const res = await fetch(`${metricsUrl}/metrics`);
    assert.equal(res.status, 200);
    const families = parseExposition(await res.text());
    assert.equal(sampleValue(families, 'conclave_role', { role: 'master' }), 1);
    for (const [method, path] of [['GET', '/api/v1/content/'], ['GET', '/health/live'], ['POST', '/metrics'], ['GET', '/metrics/x']] as const) {
      const other = await fetch(`${metricsUrl}${path}`, { method, headers: { authorization: adminAuth } });
      assert.equal(other.status, 404, `${method} ${path}`);
      assert.equal(((await other.json()) as { error: { code: string } }).error.code, 'ROUTE_NOT_FOUND');
    }
    // The API's port still asks for credentials.
    assert.equal((await fetch(`${api}/metrics`)).status, 401);
    assert.equal((await fetch(`${api}/metrics`, { headers: { authorization: adminAuth } })).status, 200);
  } finally {
    await open.close();
  }
  const closedPort = await freePort();
  const closed = await openTestNode({ 'metrics.port': closedPort });
  try {
    await closed.node.listen();
    assert.equal((await fetch(`http://127.0.0.1:${closedPort}/metrics`)).status, 401);
    assert.equal((await fetch(`http://127.0.0.1:${closedPort}/metrics`, { headers: { authorization: adminAuth } })).status, 200);
  } finally {
    await closed.close();
  }
});

test('where the API speaks HTTPS, so does the listener of metrics.port: credentials never cross it in clear', async () => {
  const tmp = tempDir('conclave-metrics-tls-');
  const pki = generatePki(tmp.dir);
  const port = await freePort();
  const t2 = await openTestNode({ 'http.tlsCertFile': pki.certFile, 'http.tlsKeyFile': pki.keyFile, 'http.internalPort': 0, 'metrics.port': port });
  const agent = new Agent({ connect: { ca: readFileSync(pki.caFile) } });
  try {
    await t2.node.listen();
    const res = await request(`https://127.0.0.1:${port}/metrics`, { dispatcher: agent, headers: { authorization: adminAuth } });
    assert.equal(res.statusCode, 200);
    parseExposition(await res.body.text());
    await assert.rejects(request(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: adminAuth } }).then((r) => r.body.text()));
  } finally {
    await agent.close();
    await t2.close();
    tmp.cleanup();
  }
});

test('metrics.access "open" without metrics.port is refused at start: the API\'s port never serves metrics without credentials', () => {
  assert.throws(() => loadConfig({ env: {}, flags: { 'metrics.access': 'open' } }), (err) => err instanceof ConfigError && /metrics\.port/.test(err.message));
  assert.equal(loadConfig({ env: { CONCLAVE_METRICS_ACCESS: 'open', CONCLAVE_METRICS_PORT: '9464' }, flags: {} }).metrics.port, 9464);
});

test('property: any label value and sample value survive prom-client\'s text and the strict reader', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.tuple(fc.string({ unit: 'grapheme', maxLength: 20 }), fc.integer({ min: 0, max: 1e9 })), { minLength: 1, maxLength: 8 }), async (pairs) => {
      const registry = new Registry();
      const counter = new Counter({ name: 'test_things_total', help: 'Things.\nWith a "line" and a \\.', labelNames: ['what'], registers: [registry] });
      const expected = new Map<string, number>();
      for (const [what, n] of pairs) {
        counter.inc({ what }, n);
        expected.set(what, (expected.get(what) ?? 0) + n);
      }
      const family = parseExposition(await registry.metrics()).get('test_things_total')!;
      assert.equal(family.help, 'Things.\nWith a "line" and a \\.');
      assert.deepEqual(new Map(family.samples.map((s) => [s.labels['what']!, s.value])), expected);
    }),
    { numRuns: 200 },
  );
});
