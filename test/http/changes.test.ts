import assert from 'node:assert/strict';
import { test } from 'node:test';

import { adminAuth, json, openTestNode, type TestNode } from '../helpers/app.js';
import { SseClient } from '../helpers/sse.js';
import { waitFor } from '../helpers/tmp.js';

interface Event {
  position: string;
  index: number;
  ordinal: number;
  op: string;
  path: string;
  from?: string;
  type: string;
  by: string;
  version: number;
}
interface Page {
  events: Event[];
  next: string;
  oldest: number;
}

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

async function page(t: TestNode, query: string, auth?: string | null): Promise<Page> {
  const res = await t.request({ method: 'GET', url: `/api/v1/changes${query}`, ...(auth !== undefined ? { auth } : {}) });
  assert.equal(res.statusCode, 200, res.body);
  return JSON.parse(res.body) as Page;
}

async function put(t: TestNode, path: string, properties: object = {}, type?: string): Promise<number> {
  const res = await t.request({ method: 'PUT', url: `/api/v1/content${path}`, ...json({ properties, ...(type !== undefined ? { type } : {}) }) });
  assert.ok(res.statusCode === 201 || res.statusCode === 200, res.body);
  return Number(res.headers['x-conclave-index']);
}

const brief = (e: Event) => `${e.position} ${e.op} ${e.path}${e.from !== undefined ? ` from ${e.from}` : ''}`;

test('GET /api/v1/changes: pages with next, filters, the users\' changes left out, readers only, bad parameters refused', async () => {
  const t = await openTestNode();
  try {
    const start = t.node.repository.appliedIndex;
    await put(t, '/site');
    await put(t, '/site/a', { v: 1 }, 'article');
    assert.equal((await t.request({ method: 'PUT', url: '/api/v1/users/rita', ...json({ password: 'rita-password', roles: ['reader'] }) })).statusCode, 201);
    await put(t, '/other');
    assert.equal((await t.request({ method: 'DELETE', url: '/api/v1/content/site?recursive=true' })).statusCode, 200);
    const all = await page(t, `?since=${start}`);
    assert.deepEqual(all.events.map(brief), [
      `${start + 1} created /site`,
      `${start + 2} created /site/a`,
      `${start + 4} created /other`,
      `${start + 5}:0 deleted /site`,
      `${start + 5} deleted /site/a`,
    ]);
    assert.equal(all.next, String(t.node.repository.appliedIndex));
    assert.equal(all.events[1]!.by, 'admin');
    assert.equal(all.events[1]!.type, 'article');
    // Page by page, one event at a time, through the middle of the delete.
    const seen: string[] = [];
    let since = String(start);
    for (let i = 0; i < 10; i++) {
      const p = await page(t, `?since=${since}&limit=1`);
      seen.push(...p.events.map(brief));
      if (p.next === since) break;
      since = p.next;
    }
    assert.deepEqual(seen, all.events.map(brief));
    // Filters, and a reader may follow; anonymous may not.
    const rita = basic('rita', 'rita-password');
    assert.deepEqual((await page(t, `?since=${start}&under=/site&op=deleted`, rita)).events.map(brief), [`${start + 5}:0 deleted /site`, `${start + 5} deleted /site/a`]);
    assert.deepEqual((await page(t, `?since=${start}&type=article,folder`)).events.map(brief), [`${start + 2} created /site/a`, `${start + 5} deleted /site/a`]);
    assert.equal((await t.request({ method: 'GET', url: '/api/v1/changes', auth: null })).statusCode, 401);
    // The default start is the oldest kept: everything since the bootstrap.
    assert.equal((await page(t, '')).events[0]!.path, '/');
    for (const bad of ['since=abc', 'since=1:2:3', 'since=-1', 'op=renamed', 'limit=0', 'limit=100000', 'wait=61', 'wait=1.5', 'under=relative', 'type=', 'since=1&since=2', 'bogus=1']) {
      const res = await t.request({ method: 'GET', url: `/api/v1/changes?${bad}` });
      assert.equal(res.statusCode, 400, `${bad}: ${res.body}`);
      assert.match((JSON.parse(res.body) as { error: { code: string } }).error.code, /^INVALID_(REQUEST|PATH)$/, bad);
    }
    const ahead = await t.request({ method: 'GET', url: `/api/v1/changes?since=${10 ** 12}` });
    assert.equal(ahead.statusCode, 400);
    assert.equal((JSON.parse(ahead.body) as { error: { code: string } }).error.code, 'MIN_INDEX_AHEAD');
  } finally {
    await t.close();
  }
});

test('a long-poll answers with the first matching event after its position, or empty at its wait', async () => {
  const t = await openTestNode();
  try {
    const now = t.node.repository.appliedIndex;
    const empty = await page(t, `?since=${now}&wait=1`);
    assert.deepEqual(empty.events, []);
    assert.equal(empty.next, String(now));
    // A filter passes over what does not match and goes on waiting.
    const polling = page(t, `?since=now&wait=30&under=/wanted`);
    await put(t, '/unwanted');
    await put(t, '/wanted');
    const got = await polling;
    assert.deepEqual(got.events.map((e) => e.path), ['/wanted']);
  } finally {
    await t.close();
  }
});

test('history past retention answers 410 CHANGES_COMPACTED naming the oldest position, the same through every node\'s journal', async () => {
  const t = await openTestNode({ 'changes.retainEvents': 3, 'changes.pruneIntervalMs': 100 });
  try {
    for (let i = 0; i < 8; i++) await put(t, `/n${i}`);
    const oldest = await waitFor('the master to prune the feed to its retention', async () => {
      const p = await page(t, '');
      return p.events.length <= 3 && p.oldest > 0 ? p.oldest : undefined;
    });
    const res = await t.request({ method: 'GET', url: '/api/v1/changes?since=1' });
    assert.equal(res.statusCode, 410, res.body);
    const error = (JSON.parse(res.body) as { error: { code: string; oldest: number } }).error;
    assert.equal(error.code, 'CHANGES_COMPACTED');
    assert.equal(error.oldest, oldest);
    assert.deepEqual((await page(t, `?since=${oldest}`)).events.map((e) => e.path), ['/n5', '/n6', '/n7']);
  } finally {
    await t.close();
  }
});

test('an event stream: live events with their positions as ids, heartbeats, Last-Event-ID resuming inside an entry, a slot limit, a final event at shutdown', async () => {
  const t = await openTestNode({ 'changes.heartbeatMs': 200, 'changes.subscribersMax': 2 });
  let closed = false;
  try {
    const base = await t.node.listen();
    const url = `${base}/api/v1/changes`;
    const stream = new SseClient(`${url}?since=now`, { authorization: adminAuth });
    await stream.opened();
    assert.equal(stream.status, 200);
    assert.match(String(stream.headers['content-type']), /^text\/event-stream/);
    await put(t, '/t');
    for (let i = 0; i < 3; i++) await put(t, `/t/c${i}`);
    assert.equal((await t.request({ method: 'DELETE', url: '/api/v1/content/t?recursive=true' })).statusCode, 200);
    await waitFor('the delete\'s four events on the stream', () => (stream.changes().length === 8 ? true : undefined));
    const events = stream.changes<Event>();
    assert.deepEqual(
      stream.events.filter((e) => e.data !== undefined && e.event === undefined).map((e) => e.id),
      events.map((e) => e.position),
      'each event\'s id is its position',
    );
    assert.deepEqual(events.slice(4).map((e) => e.position.split(':')[1]), ['0', '1', '2', undefined]);
    await waitFor('a heartbeat comment', () => (stream.comments.includes('heartbeat') ? true : undefined));

    // Resuming with the id of the delete's second event gives exactly the two after it.
    const resumed = new SseClient(url, { authorization: adminAuth, 'last-event-id': events[5]!.position });
    await waitFor('the rest of the delete', () => (resumed.changes().length === 2 ? true : undefined));
    assert.deepEqual(resumed.changes<Event>().map(brief), events.slice(6).map(brief));

    // Two streams are the limit here.
    const third = new SseClient(`${url}?since=now`, { authorization: adminAuth });
    await waitFor('the third stream refused', () => (third.ended ? true : undefined));
    assert.equal(third.status, 503);
    assert.equal((JSON.parse(third.body) as { error: { code: string } }).error.code, 'OVERLOADED');
    resumed.close();
    await waitFor('a slot freed by the closed stream', async () => {
      const fourth = new SseClient(`${url}?since=now`, { authorization: adminAuth });
      await fourth.opened();
      fourth.close();
      return fourth.status === 200 ? true : undefined;
    });

    // Refusals come as JSON before any stream starts.
    const anonymous = new SseClient(url, {});
    await waitFor('anonymous refused', () => (anonymous.ended ? true : undefined));
    assert.equal(anonymous.status, 401);
    const bad = new SseClient(`${url}?limit=5`, { authorization: adminAuth });
    await waitFor('limit refused on a stream', () => (bad.ended ? true : undefined));
    assert.equal(bad.status, 400);

    // A stopping node ends its streams with a final event naming where to resume.
    const last = events.at(-1)!.position;
    closed = true;
    await t.close();
    await waitFor('the stream to end', () => (stream.ended ? true : undefined));
    assert.equal(stream.cut()?.code, 'SHUTTING_DOWN');
    assert.equal(stream.cut()?.resume, last);
  } finally {
    if (!closed) await t.close();
  }
});

/**
 * Many bytes of events in few entries: a subtree of `children` nodes with long names, moved back and forth `moves`
 * times (each move is one event per node touched, naming both paths). Answers the last position written.
 */
async function manyEventBytes(t: TestNode, children: number, moves: number): Promise<void> {
  await put(t, '/big');
  const longName = (i: number) => `${String(i).padStart(4, '0')}-${'n'.repeat(200)}`;
  for (let i = 0; i < children; i++) await put(t, `/big/${longName(i)}`);
  for (let i = 0; i < moves; i++) {
    const [from, to] = i % 2 === 0 ? ['/big', '/moved'] : ['/moved', '/big'];
    const res = await t.request({ method: 'POST', url: '/api/v1/move', ...json({ from, to }) });
    assert.equal(res.statusCode, 200, res.body);
  }
}

/** Every event after `since` through the node's own pages (the reference a stream must match exactly). */
async function everyEventAfter(t: TestNode, since: string): Promise<string[]> {
  const all: string[] = [];
  let next = since;
  for (;;) {
    const p = await page(t, `?since=${next}&limit=1000`);
    all.push(...p.events.map((e) => e.position));
    if (p.events.length === 0) return all;
    next = p.next;
  }
}

test('a stream whose client stops reading waits at changes.subscriberBufferBytesMax and goes on exactly where it stopped once the client reads', async () => {
  const t = await openTestNode({ 'changes.subscriberBufferBytesMax': 4096, 'changes.subscriberStallMsMax': 120_000 });
  try {
    const base = await t.node.listen();
    const since = String(t.node.runtime.appliedIndex);
    const slow = new SseClient(`${base}/api/v1/changes?since=${since}`, { authorization: adminAuth });
    // A second stream with the same filter and position shares the same bytes while it can: it must not be held up.
    const fast = new SseClient(`${base}/api/v1/changes?since=${since}`, { authorization: adminAuth });
    await slow.opened();
    await fast.opened();
    slow.pause();
    // Some 12 MB of events: far more than the kernel's socket buffers hold, so the node's side fills and waits.
    await manyEventBytes(t, 300, 40);
    const expected = await everyEventAfter(t, since);
    assert.ok(expected.length > 12_000, `${expected.length} events`);
    await waitFor('every event at the stream that kept reading', () => (fast.changes().length === expected.length ? true : undefined), 60_000);
    const got = slow.changes().length;
    assert.ok(got < expected.length, `the stalled client had ${got} of ${expected.length} events before it read again`);
    slow.resume();
    await waitFor('every event at the stream that stalled', () => (slow.changes().length >= expected.length ? true : undefined), 60_000);
    for (const stream of [fast, slow]) {
      assert.deepEqual(stream.changes<Event>().map((e) => e.position), expected, 'each event once, in order');
      assert.equal(stream.cut(), undefined);
    }
    slow.close();
    fast.close();
  } finally {
    await t.close();
  }
});

test('a stream whose client reads nothing for changes.subscriberStallMsMax with its buffer full is cut with SUBSCRIBER_TOO_SLOW, naming the position that resumes it exactly; one that still reads nothing loses its connection', async () => {
  // The stall bound is also the time a cut client has to read the rest before its connection goes: long enough for
  // this test to resume one after seeing the cut.
  const t = await openTestNode({ 'changes.subscriberBufferBytesMax': 4096, 'changes.subscriberStallMsMax': 3000 });
  try {
    const base = await t.node.listen();
    const since = String(t.node.runtime.appliedIndex);
    const stalled = new SseClient(`${base}/api/v1/changes?since=${since}`, { authorization: adminAuth });
    const gone = new SseClient(`${base}/api/v1/changes?since=${since}`, { authorization: adminAuth });
    await stalled.opened();
    await gone.opened();
    stalled.pause();
    gone.pause();
    await manyEventBytes(t, 300, 40);
    const expected = await everyEventAfter(t, since);
    // The cut is written after what the socket held: the client sees it once it reads again.
    const metric = async (name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec((await t.request({ method: 'GET', url: '/metrics' })).body)?.[1]);
    await waitFor('the node to cut both streams', async () => ((await metric('conclave_change_feed_subscribers_cut_total')) === 2 ? true : undefined), 30_000);
    stalled.resume();
    await waitFor('the cut', () => (stalled.ended ? true : undefined), 30_000);
    const cut = stalled.cut();
    assert.equal(cut?.code, 'SUBSCRIBER_TOO_SLOW');
    const before = stalled.changes<Event>().map((e) => e.position);
    assert.ok(before.length < expected.length, `cut after ${before.length} of ${expected.length} events`);
    assert.deepEqual(before, expected.slice(0, before.length), 'what came before the cut is the feed from the start');
    assert.equal(cut?.resume, before.at(-1) ?? since, 'the cut names the last event sent');
    const resumed = new SseClient(`${base}/api/v1/changes`, { authorization: adminAuth, 'last-event-id': cut!.resume });
    await waitFor('the rest after resuming', () => (resumed.changes().length >= expected.length - before.length ? true : undefined), 60_000);
    assert.deepEqual(resumed.changes<Event>().map((e) => e.position), expected.slice(before.length));
    resumed.close();
    stalled.close();
    // The client that never reads again keeps neither its slot nor its connection (which it cannot see while it
    // reads nothing: the node's count of open connections shows it).
    const server = t.node.app.server;
    const connections = () => new Promise<number>((resolve, reject) => server.getConnections((err, count) => (err ? reject(err) : resolve(count))));
    await waitFor('the connection of the client that never read again closed', async () => ((await connections()) === 0 ? true : undefined), 30_000);
    assert.equal(await metric('conclave_change_feed_subscribers'), 0);
    gone.close();
  } finally {
    await t.close();
  }
});

test('stream slots: a user holds changes.subscribersPerUserMax of them, and a client gone before its stream began holds none', async () => {
  const t = await openTestNode({ 'changes.subscribersMax': 2, 'changes.subscribersPerUserMax': 1 });
  try {
    assert.equal((await t.request({ method: 'PUT', url: '/api/v1/users/rita', ...json({ password: 'rita-password', roles: ['reader'] }) })).statusCode, 201);
    const base = await t.node.listen();
    const url = `${base}/api/v1/changes?since=now`;
    const first = new SseClient(url, { authorization: adminAuth });
    await first.opened();
    assert.equal(first.status, 200);
    const second = new SseClient(url, { authorization: adminAuth });
    await waitFor('the admin\'s second stream refused', () => (second.ended ? true : undefined));
    assert.equal(second.status, 503);
    assert.match(second.body, /subscribersPerUserMax/);
    // Clients that go while their credentials are checked (a password check takes a while) leave no slot behind.
    for (let i = 0; i < 5; i++) {
      const gone = new SseClient(url, { authorization: basic('rita', 'rita-password') });
      gone.close();
    }
    const rita = await waitFor('rita\'s stream served', async () => {
      const stream = new SseClient(url, { authorization: basic('rita', 'rita-password') });
      await waitFor('an answer', () => (stream.status !== 0 || stream.ended ? true : undefined));
      if (stream.status === 200) return stream;
      stream.close();
      return undefined;
    });
    await put(t, '/seen');
    await waitFor('the event on both streams', () => (first.changes().length === 1 && rita.changes().length === 1 ? true : undefined));
    first.close();
    rita.close();
  } finally {
    await t.close();
  }
});
