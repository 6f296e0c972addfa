import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';

import { ProcessCluster } from '../helpers/cluster.js';
import { processAuth } from '../helpers/process.js';
import { SseClient } from '../helpers/sse.js';
import { waitFor } from '../helpers/tmp.js';

/**
 * The change feed across failover: a Server-Sent Events subscriber on each of three nodes follows the feed while
 * writes spread over all nodes and the master is killed (kill -9) and restarted twice. Each subscriber reconnects
 * to its own node with Last-Event-ID, as EventSource does, waiting while that node is down. Every subscriber ends
 * with exactly the feed every node serves at the end — no gap, no repeat, no reordering — and that feed holds every
 * acknowledged write. A webhook receiver gets every event in order too, repeats allowed only where a new master
 * resent from the last committed mark.
 */

const names = ['f1', 'f2', 'f3'];
const writesTotal = 2000;
const writersCount = 8;

interface Event {
  position: string;
  op: string;
  path: string;
}

/** An EventSource-like follower of one node: reconnects with Last-Event-ID whenever its stream ends. */
class Follower {
  readonly events: Event[] = [];
  reconnects = 0;
  private stream: SseClient | null = null;
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(
    private readonly url: () => string,
    private lastId: string,
  ) {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const stream = new SseClient(`${this.url()}/api/v1/changes`, { authorization: processAuth, 'last-event-id': this.lastId });
      this.stream = stream;
      let taken = 0;
      // Everything the stream brings is taken in order as it comes; the stream's own lastEventId moves past filtered ones.
      while (!stream.ended && !this.stopped) {
        const changes = stream.changes<Event>();
        for (; taken < changes.length; taken++) this.events.push(changes[taken]!);
        if (stream.lastEventId !== undefined) this.lastId = stream.lastEventId;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      const changes = stream.changes<Event>();
      for (; taken < changes.length; taken++) this.events.push(changes[taken]!);
      if (stream.lastEventId !== undefined) this.lastId = stream.lastEventId;
      if (this.stopped) break;
      this.reconnects++;
      // EventSource waits `retry` (1 s) before reconnecting; a shorter wait keeps the test short.
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stream?.close();
    await this.done;
  }
}

let cluster: ProcessCluster;

describe('the change feed across failovers', () => {
  before(async () => {
    // The webhook receiver is on loopback, an address webhooks may not reach by default.
    cluster = await ProcessCluster.create(names, (_name, seeds) => [...seeds.flatMap((s) => ['--seed', s]), '--initial-master-nodes', names.join(',')], () => ({
      CONCLAVE_WEBHOOKS_PRIVATE_ADDRESSES_ALLOWED: 'true',
    }));
    await cluster.start(...names);
    await cluster.write('/feed', {});
    await cluster.caughtUp();
  });

  after(async () => {
    await cluster?.stopAll();
  });

  test('a subscriber on each node sees exactly the feed of 2,000 writes over all nodes while the master is killed and restarted twice', { timeout: 240_000 }, async () => {
    const { master: firstMaster, status } = await cluster.caughtUp();
    const start = String(status.nodes.find((n) => n.name === firstMaster)!.appliedIndex);
    const followers = names.map((name) => new Follower(() => cluster.url(name), start));
    // A webhook receiver on loopback: every delivery's events, in the order they came.
    const received: string[] = [];
    const receiver = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (body += chunk));
      req.on('end', () => {
        received.push(...(JSON.parse(body) as { events: Event[] }).events.map((e) => e.position));
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    const registered = await request(`${cluster.url(firstMaster)}/api/v1/webhooks`, {
      method: 'POST',
      headers: { authorization: processAuth, 'content-type': 'application/json' },
      body: JSON.stringify({ url: hookUrl, under: '/feed', since: start }),
    });
    assert.equal(registered.statusCode, 201, await registered.body.text());
    const acknowledged: string[] = [];
    let next = 0;
    let stopping = false;
    const writer = async (w: number) => {
      for (let n = next++; n < writesTotal && !stopping; n = next++) {
        const path = `/feed/w${n}`;
        // Spread over every node; a write refused (its node down, no master yet) is sent again, to the next node.
        for (let attempt = 0; !stopping; attempt++) {
          const name = names[(n + attempt) % names.length]!;
          if (cluster.node(name).process === null) continue;
          try {
            const res = await request(`${cluster.url(name)}/api/v1/content${path}`, {
              method: 'PUT',
              headers: { authorization: processAuth, 'content-type': 'application/json' },
              body: JSON.stringify({ properties: { n, w } }),
              headersTimeout: 60_000,
            });
            await res.body.dump();
            // 200: an earlier attempt whose outcome was unknown had created it.
            if (res.statusCode === 201 || res.statusCode === 200) {
              acknowledged.push(path);
              break;
            }
          } catch {
            // The node went down under the request: the next attempt goes elsewhere.
          }
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
    };
    const writing = Promise.all(Array.from({ length: writersCount }, (_, w) => writer(w)));
    for (let round = 0; round < 2; round++) {
      await waitFor(`writes before kill ${round + 1}`, () => (acknowledged.length >= (round + 1) * (writesTotal / 3) ? true : undefined), 90_000);
      const master = await cluster.master();
      await cluster.kill(master);
      await waitFor('a new master', async () => {
        const next = await cluster.master(15_000).catch(() => undefined);
        return next !== undefined && next !== master ? next : undefined;
      }, 30_000);
      await cluster.start(master);
    }
    await writing;
    stopping = true;
    const { master } = await cluster.caughtUp(60_000);

    // The feed every node serves in the end, read page by page from the start position.
    const feedOf = async (name: string): Promise<Event[]> => {
      const events: Event[] = [];
      let since = start;
      for (;;) {
        const res = await request(`${cluster.url(name)}/api/v1/changes?since=${since}&limit=1000`, { headers: { authorization: processAuth } });
        const page = (await res.body.json()) as { events: Event[]; next: string };
        assert.equal(res.statusCode, 200, JSON.stringify(page));
        events.push(...page.events);
        if (page.next === since) return events;
        since = page.next;
      }
    };
    const feed = await feedOf(master);
    for (const name of names) assert.deepEqual(await feedOf(name), feed, `${name} serves the same feed`);
    const created = new Set(feed.filter((e) => e.op === 'created').map((e) => e.path));
    for (const path of acknowledged) assert.ok(created.has(path), `acknowledged ${path} is in the feed`);
    assert.equal(new Set(feed.map((e) => e.position)).size, feed.length, 'positions are unique');

    const brief = (e: Event) => `${e.position} ${e.op} ${e.path}`;
    const last = feed.at(-1)!.position;
    await waitFor('every follower at the end of the feed', () => (followers.every((f) => f.events.at(-1)?.position === last) ? true : undefined), 60_000);
    for (const [i, follower] of followers.entries()) {
      await follower.stop();
      assert.deepEqual(follower.events.map(brief), feed.map(brief), `the follower of ${names[i]} saw exactly the feed`);
    }
    assert.ok(followers.some((f) => f.reconnects > 0), 'a follower lost its node and resumed');

    // The webhook: every event of the feed in order; an event may come again only as part of a run resent from an
    // earlier mark (a new master resumes from the last committed one), never out of order, never missing.
    await waitFor('the webhook receiver at the end of the feed', () => (received.includes(last) ? true : undefined), 60_000);
    receiver.close();
    const positions = feed.map((e) => e.position);
    const order = new Map(positions.map((p, i) => [p, i]));
    let reached = 0;
    let repeats = 0;
    let previous = -1;
    for (const position of received) {
      const at = order.get(position);
      assert.ok(at !== undefined, `the webhook got ${position}, which is not in the feed`);
      if (at === reached) reached++;
      else {
        assert.ok(at < reached, `the webhook got ${position} before ${positions[reached]}: a gap`);
        repeats++;
      }
      // Within a delivery run positions only go up; going back starts a resent run from a committed mark.
      if (at <= previous) assert.ok(at < reached, 'a repeat only resends what was delivered');
      previous = at;
    }
    assert.equal(reached, positions.length, 'the webhook got every event');
    process.stdout.write(`webhook: ${received.length} events received, ${repeats} of them again after a failover\n`);
    assert.equal(acknowledged.length, writesTotal, 'every write was acknowledged in the end');
  });
});
