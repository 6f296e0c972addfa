import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';

import { verifySignature } from '../../src/webhooks/webhookSecret.js';
import { ProcessCluster } from '../helpers/cluster.js';
import { processAuth } from '../helpers/process.js';
import { waitFor } from '../helpers/tmp.js';

/**
 * Webhooks on a 3-node cluster of processes, with a receiver on loopback: the matching events arrive in feed order,
 * signed; a receiver that answers 500 for a while gets the same events again until it takes them; after the master
 * is killed (kill -9) the new master resumes from the committed mark — no event missing, repeats only after the kill;
 * a webhook that falls further behind than webhooks.backlogEventsMax while retention wants its events is marked
 * broken with CHANGES_COMPACTED.
 */

const names = ['h1', 'h2', 'h3'];
const secret = 'receiver-secret-0123456789abcdef';

interface Delivery {
  readonly receivedAt: number;
  readonly positions: string[];
  readonly headerPosition: string;
  readonly signed: boolean;
}

let cluster: ProcessCluster;
let receiver: Server;
let receiverUrl: string;
const deliveries: Delivery[] = [];
/** The receiver answers 500 to this many more deliveries on /hook. */
let failNext = 0;
let failedAnswers = 0;

async function api(node: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${cluster.url(node)}${path}`, {
    method,
    headers: { authorization: processAuth, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(15_000),
  });
  return { status: res.status, body: (await res.json().catch(() => ({}))) as Record<string, unknown> };
}

/** Every matching event's position in the feed after `since`, read from `node`. */
async function feedPositions(node: string, since: string, under: string): Promise<string[]> {
  const positions: string[] = [];
  let next = since;
  for (;;) {
    const page = await api(node, 'GET', `/api/v1/changes?since=${next}&under=${encodeURIComponent(under)}&limit=1000`);
    assert.equal(page.status, 200, JSON.stringify(page.body));
    const events = page.body['events'] as { position: string }[];
    positions.push(...events.map((e) => e.position));
    if (events.length === 0) return positions;
    next = page.body['next'] as string;
  }
}

describe('webhooks on a cluster of processes', () => {
  before(async () => {
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        if (req.url === '/fail') {
          res.writeHead(500).end('always failing');
          return;
        }
        if (failNext > 0) {
          failNext--;
          failedAnswers++;
          res.writeHead(500).end('not now');
          return;
        }
        const signed = verifySignature(String(req.headers['x-conclave-signature'] ?? ''), secret, body, Math.floor(Date.now() / 1000));
        const parsed = JSON.parse(body) as { events: { position: string }[] };
        deliveries.push({ receivedAt: Date.now(), positions: parsed.events.map((e) => e.position), headerPosition: String(req.headers['x-conclave-event-position']), signed });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    cluster = await ProcessCluster.create(
      names,
      (_name, seeds) => [...seeds.flatMap((s) => ['--seed', s]), '--initial-master-nodes', names.join(',')],
      () => ({
        // The receiver is on loopback, an address webhooks may not reach by default.
        CONCLAVE_WEBHOOKS_PRIVATE_ADDRESSES_ALLOWED: 'true',
        CONCLAVE_JOBS_CHECK_INTERVAL_MS: '100',
        CONCLAVE_WEBHOOKS_MARK_COMMIT_INTERVAL_MS: '100',
        CONCLAVE_WEBHOOKS_RETRY_DELAY_MS_MIN: '50',
        CONCLAVE_WEBHOOKS_RETRY_DELAY_MS_MAX: '400',
        CONCLAVE_WEBHOOKS_BATCH_EVENTS_MAX: '4',
        // The first test stays under 100 events (nothing is pruned while it reads the feed from its start); the
        // second writes past both bounds.
        CONCLAVE_WEBHOOKS_BACKLOG_EVENTS_MAX: '40',
        CONCLAVE_CHANGES_RETAIN_EVENTS: '100',
        CONCLAVE_CHANGES_PRUNE_INTERVAL_MS: '200',
      }),
    );
    await cluster.start(...names);
    await cluster.write('/ready', {});
    await cluster.caughtUp();
  });

  after(async () => {
    await cluster?.stopAll();
    receiver?.closeAllConnections();
    await new Promise((resolve) => receiver?.close(resolve));
  });

  test('matching events in order, signed, retried after 500s, resumed after the master is killed with no gap', async () => {
    const master = await cluster.master();
    const replica = names.find((n) => n !== master)!;
    // Registered through a replica (forwarded to the master); the secret is given, so it is known to the receiver.
    const created = await api(replica, 'POST', '/api/v1/webhooks', { url: `${receiverUrl}/hook`, secret, under: '/w', op: ['created', 'updated'] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body['secret'], secret);
    const id = created.body['id'] as string;
    const since = created.body['mark'] as string;
    const listed = await api(replica, 'GET', '/api/v1/webhooks');
    assert.equal(JSON.stringify(listed.body).includes(secret), false, 'the list never shows the secret');
    assert.equal(JSON.stringify(listed.body).includes('sealed'), false, 'nor its sealed form');

    // The receiver refuses the first deliveries: they come again, the same events in the same order.
    failNext = 3;
    await cluster.write('/w', {});
    await cluster.write('/other', { n: 0 });
    for (let i = 0; i < 12; i++) await cluster.write(`/w/a${i}`, { i });
    await cluster.write('/w/a0', { i: 0, again: true });
    const expectedBefore = await feedPositions(master, since, '/w');
    assert.equal(expectedBefore.length, 14);
    await waitFor('the first events to be delivered', () => (deliveries.flatMap((d) => d.positions).length >= expectedBefore.length ? true : undefined), 20_000);
    assert.equal(failedAnswers, 3);
    assert.deepEqual(deliveries.flatMap((d) => d.positions), expectedBefore, 'exactly the matching events, in order, once each');
    assert.ok(deliveries.every((d) => d.signed && d.headerPosition === d.positions.at(-1)), 'every delivery signed, its header naming its last event');
    const shown = await waitFor('the committed mark to reach the last delivered event', async () => {
      const one = await api(replica, 'GET', `/api/v1/webhooks/${id}`);
      return one.body['mark'] === expectedBefore.at(-1) ? one.body : undefined;
    });
    assert.equal(shown['state'], 'active');
    assert.equal((shown['lastError'] as { status: number }).status, 500);
    assert.equal(shown['failuresInARow'], 0);
    assert.deepEqual(shown['backlog'], { events: 0, matching: 0, matchingExact: true });

    // Writes go on while the master is killed.
    const writes = (async () => {
      for (let i = 0; i < 40; i++) await cluster.write(`/w/b${i}`, { i }, 30_000);
    })();
    await waitFor('some of the writes to be delivered', () => (deliveries.flatMap((d) => d.positions).length >= expectedBefore.length + 8 ? true : undefined), 20_000);
    const killedAt = Date.now();
    await cluster.kill(master);
    await writes;
    const survivor = names.find((n) => n !== master)!;
    const expected = await feedPositions(survivor, since, '/w');
    // A write retried by the helper across the failover may have been applied twice (one more updated event).
    assert.ok(expected.length >= expectedBefore.length + 40);
    await waitFor('every event to be delivered after the failover', () => (new Set(deliveries.flatMap((d) => d.positions)).size >= expected.length ? true : undefined), 30_000);

    const received = deliveries.flatMap((d) => d.positions);
    const firstSeen = [...new Set(received)];
    assert.deepEqual(firstSeen, expected, 'every matching event, in feed order, none missing');
    // A position seen again (or out of order) only in deliveries after the kill: the new master resumed from the
    // committed mark, behind what the old one had delivered.
    const order = new Map(expected.map((p, i) => [p, i]));
    let highest = -1;
    for (const delivery of deliveries) {
      for (const position of delivery.positions) {
        const at = order.get(position)!;
        if (at <= highest) assert.ok(delivery.receivedAt >= killedAt, `${position} came again before the failover`);
        highest = Math.max(highest, at);
      }
    }
    assert.ok(deliveries.every((d) => d.signed));
    const hook = await waitFor('the new master to commit the last mark', async () => {
      const one = await api(survivor, 'GET', `/api/v1/webhooks/${id}`);
      return one.body['mark'] === expected.at(-1) ? one.body : undefined;
    });
    assert.equal(hook['state'], 'active');
  });

  test('a webhook further behind than webhooks.backlogEventsMax is marked broken with CHANGES_COMPACTED, and retention goes on', async () => {
    const node = (await cluster.caughtUp()).master;
    const created = await api(node, 'POST', '/api/v1/webhooks', { url: `${receiverUrl}/fail`, under: '/c' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.match(created.body['secret'] as string, /^whsec_[A-Za-z0-9_-]{43}$/, 'a generated secret, shown once');
    const id = created.body['id'] as string;
    await cluster.write('/c', {});
    for (let i = 0; i < 20; i++) await cluster.write(`/c/x${i}`, { i });
    const one = await waitFor('the failing deliveries to be committed', async () => {
      const body = (await api(node, 'GET', `/api/v1/webhooks/${id}`)).body;
      return body['lastError'] !== null ? body : undefined;
    });
    assert.equal(one['state'], 'active');
    assert.equal((one['lastError'] as { status: number }).status, 500);
    // Past 100 events retention wants the oldest; this webhook's 40 are exceeded: it is let go.
    for (let i = 20; i < 130; i++) await cluster.write(`/c/x${i}`, { i });
    const broken = await waitFor('the webhook to be marked broken', async () => {
      const again = await api(node, 'GET', `/api/v1/webhooks/${id}`);
      return again.body['state'] === 'broken' ? again.body : undefined;
    }, 20_000);
    assert.equal((broken['broken'] as { code: string }).code, 'CHANGES_COMPACTED');
    await waitFor('retention to prune past the broken webhook\'s mark', async () => {
      const page = await api(node, 'GET', `/api/v1/changes?since=${created.body['mark'] as string}&limit=1`);
      return page.status === 410 ? true : undefined;
    }, 20_000);
    const removed = await api(node, 'DELETE', `/api/v1/webhooks/${id}`);
    assert.equal(removed.status, 204);
    assert.equal((await api(node, 'GET', `/api/v1/webhooks/${id}`)).status, 404);
  });
});
