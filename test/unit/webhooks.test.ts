import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { pino } from 'pino';

import { applyCommand } from '../../src/content/apply.js';
import type { Command } from '../../src/content/commands.js';
import { applyClusterChange, emptyClusterState, restoredClusterState, type ClusterChange, type ClusterState } from '../../src/core/clusterState.js';
import { applyWebhookChange, webhookChangeProblem, webhooksLimit, type Webhook } from '../../src/core/clusterWebhooks.js';
import { errorCatalogue, isConclaveError } from '../../src/errors/catalogue.js';
import { ContentTables } from '../../src/storage/contentTables.js';
import { openDatabase, setMeta } from '../../src/storage/database.js';
import { isPrivateAddress } from '../../src/webhooks/webhookAddress.js';
import { retryDelayMs } from '../../src/webhooks/webhookDelivery.js';
import { postWebhook } from '../../src/webhooks/webhookPoster.js';
import { feedFilterOf, parseWebhookRequest, storedFilter } from '../../src/webhooks/webhookRegistration.js';
import { WebhookRetention } from '../../src/webhooks/webhookRetention.js';
import { generateWebhookSecret, sealWebhookSecret, signatureHeader, unsealWebhookSecret, verifySignature } from '../../src/webhooks/webhookSecret.js';
import { parseWebhookUrl } from '../../src/webhooks/webhookUrl.js';
import { tempDir } from '../helpers/tmp.js';

const clusterSecret = 'Zk3Rq0b9XvT2mYc8LpW1sN4dH7jF6aGe5uKiOoBtQrA';
const otherClusterSecret = 'Ab3Rq0b9XvT2mYc8LpW1sN4dH7jF6aGe5uKiOoBtQrZ';

function hook(extra: Partial<Webhook> = {}): Webhook {
  const id = extra.id ?? randomUUID();
  return {
    id,
    url: 'https://hooks.example.com/in',
    filter: {},
    sealedSecret: sealWebhookSecret('s'.repeat(20), clusterSecret, id),
    createdAt: '2026-01-01T00:00:00.000Z',
    createdBy: 'admin',
    mark: { index: 10, ordinal: null },
    state: 'active',
    failuresInARow: 0,
    ...extra,
  };
}

const apply = (state: ClusterState, ...changes: ClusterChange[]) => changes.reduce(applyClusterChange, state);

test('a signature verifies with the secret, and not with a changed body, another secret, an old time or a malformed header', () => {
  const body = JSON.stringify({ webhook: 'w', events: [{ position: '7' }] });
  const now = 1_800_000_000;
  const header = signatureHeader('secret-one-0123456789', now, body);
  assert.match(header, /^t=1800000000,v1=[0-9a-f]{64}$/);
  assert.equal(verifySignature(header, 'secret-one-0123456789', body, now + 10), true);
  assert.equal(verifySignature(header, 'secret-one-0123456789', `${body} `, now), false, 'a changed body');
  assert.equal(verifySignature(header, 'secret-two-0123456789', body, now), false, 'another secret');
  assert.equal(verifySignature(header, 'secret-one-0123456789', body, now + 301), false, 'older than the tolerance');
  assert.equal(verifySignature(header.replace('t=1800000000', 't=1800000001'), 'secret-one-0123456789', body, now), false, 'another time');
  // Whatever a header holds, the check answers false or true and never throws.
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), (text) => {
      assert.equal(typeof verifySignature(text, 'secret-one-0123456789', body, now), 'boolean');
    }),
  );
});

test('a sealed secret opens with its cluster secret and webhook id only, and does not hold the secret', () => {
  const id = randomUUID();
  const secret = generateWebhookSecret();
  assert.match(secret, /^whsec_[A-Za-z0-9_-]{43}$/);
  const sealed = sealWebhookSecret(secret, clusterSecret, id);
  assert.ok(sealed.startsWith('v1.'));
  assert.equal(sealed.includes(secret.slice(6, 20)), false);
  assert.notEqual(sealWebhookSecret(secret, clusterSecret, id), sealed, 'a fresh IV each time');
  assert.equal(unsealWebhookSecret(sealed, clusterSecret, id), secret);
  const refused = (fn: () => unknown) => assert.throws(fn, (err) => isConclaveError(err) && err.code === 'WEBHOOK_SECRET_UNREADABLE' && !err.message.includes(secret));
  refused(() => unsealWebhookSecret(sealed, otherClusterSecret, id));
  refused(() => unsealWebhookSecret(sealed, clusterSecret, randomUUID()));
  refused(() => unsealWebhookSecret(`${sealed.slice(0, -2)}AA`, clusterSecret, id));
  refused(() => unsealWebhookSecret('v1.', clusterSecret, id));
  refused(() => unsealWebhookSecret('garbage', clusterSecret, id));
});

test('webhook URLs: http and https only, no credentials, no fragment, bounded, and the allowed hosts', () => {
  assert.equal(parseWebhookUrl('https://Hooks.Example.com/a?b=1', []).href, 'https://hooks.example.com/a?b=1');
  assert.equal(parseWebhookUrl('http://127.0.0.1:8080/in', ['127.0.0.1']).host, '127.0.0.1:8080');
  assert.equal(parseWebhookUrl('http://[::1]:8080/in', ['::1']).hostname, '[::1]');
  assert.equal(parseWebhookUrl('http://HOOKS.example.com/', ['hooks.EXAMPLE.com']).hostname, 'hooks.example.com');
  const refused = (url: unknown, hosts: string[] = []) =>
    assert.throws(() => parseWebhookUrl(url, hosts), (err) => isConclaveError(err) && err.code === 'WEBHOOK_URL_REFUSED', String(url));
  refused('ftp://example.com/');
  refused('file:///etc/passwd');
  refused('javascript:alert(1)');
  refused('https://user:pass@example.com/');
  refused('https://user@example.com/');
  refused('https://example.com/#frag');
  refused('https://example.com/ a');
  refused('https://exämple.com/');
  refused(' https://example.com/');
  refused('/relative');
  refused(42);
  refused(`https://example.com/${'a'.repeat(2048)}`);
  refused('https://other.example.com/', ['hooks.example.com']);
  refused('https://hooks.example.com.evil.org/', ['hooks.example.com']);
  fc.assert(
    fc.property(fc.oneof(fc.string({ maxLength: 80 }), fc.webUrl({ withFragments: true, withQueryParameters: true }), fc.constantFrom('http://a@b/', 'https://[::1]/', 'http://x/')), fc.array(fc.domain(), { maxLength: 2 }), (text, hosts) => {
      let url: URL;
      try {
        url = parseWebhookUrl(text, hosts);
      } catch (err) {
        assert.ok(isConclaveError(err) && err.code === 'WEBHOOK_URL_REFUSED', String(err));
        return;
      }
      assert.ok(url.protocol === 'http:' || url.protocol === 'https:');
      assert.equal(url.username + url.password, '');
      assert.equal(url.hash, '');
      assert.ok(url.href.length <= 2048);
      if (hosts.length > 0) assert.ok(hosts.map((h) => h.toLowerCase()).includes(url.hostname));
    }),
  );
});

test('a registration request: fields, filters as the feed takes them, since; anything else refused with a catalogue code', () => {
  const asked = parseWebhookRequest({ url: 'https://h.example.com/x', under: '/a/b', type: 'page,article', op: ['updated', 'created'], since: '12:3', secret: 'abcdefghijklmnop' }, []);
  assert.deepEqual(asked, { url: 'https://h.example.com/x', secret: 'abcdefghijklmnop', filter: { under: '/a/b', types: ['article', 'page'], ops: ['created', 'updated'] }, since: { index: 12, ordinal: 3 } });
  assert.deepEqual(storedFilter(feedFilterOf(asked.filter)), asked.filter);
  assert.deepEqual(parseWebhookRequest({ url: 'http://h/', since: 7 }, []), { url: 'http://h/', secret: null, filter: {}, since: { index: 7, ordinal: null } });
  const code = (body: unknown) => {
    try {
      parseWebhookRequest(body, []);
      return null;
    } catch (err) {
      return isConclaveError(err) ? err.code : String(err);
    }
  };
  assert.equal(code({ url: 'http://h/', op: 'eaten' }), 'INVALID_REQUEST');
  assert.equal(code({ url: 'http://h/', under: 'relative' }), 'INVALID_PATH');
  assert.equal(code({ url: 'http://h/', under: ['/a'] }), 'INVALID_REQUEST');
  assert.equal(code({ url: 'http://h/', secret: 'short' }), 'INVALID_REQUEST');
  assert.equal(code({ url: 'http://h/', since: -1 }), 'INVALID_REQUEST');
  assert.equal(code({ url: 'http://h/', extra: 1 }), 'INVALID_REQUEST');
  assert.equal(code({ url: 'gopher://h/' }), 'WEBHOOK_URL_REFUSED');
  assert.equal(code([]), 'INVALID_REQUEST');
  const field = fc.oneof(fc.string({ maxLength: 30 }), fc.array(fc.string({ maxLength: 12 }), { maxLength: 4 }), fc.integer(), fc.constant(null), fc.constantFrom('/a', 'created,moved', 'page', '5', '5:1'));
  fc.assert(
    fc.property(
      fc.record({ url: fc.oneof(fc.constant('http://h.example/'), fc.string({ maxLength: 30 })), under: field, type: field, op: field, since: field, secret: field }, { requiredKeys: [] }),
      (body) => {
        const outcome = code(body);
        if (outcome === null) return;
        assert.ok(outcome in errorCatalogue, outcome);
      },
    ),
  );
});

test('cluster state: register, marks only forward, broken stops them, remove; bad changes change nothing', () => {
  const a = hook();
  const b = hook({ filter: { under: '/x', ops: ['created'] } });
  let state = apply(emptyClusterState, { type: 'webhookRegistered', webhook: a }, { type: 'webhookRegistered', webhook: b });
  assert.deepEqual(Object.keys(state.webhooks), [a.id, b.id].sort());
  assert.equal(apply(state, { type: 'webhookRegistered', webhook: { ...a, url: 'https://other/' } }), state, 'an id registered twice keeps the first');
  const failure = { message: 'the receiver answered 500', at: '2026-01-01T00:00:01.000Z', status: 500 };
  state = apply(state, { type: 'webhookMarks', marks: [{ id: a.id, mark: { index: 20, ordinal: 2 }, failuresInARow: 1, lastError: failure }, { id: randomUUID(), mark: { index: 1, ordinal: null }, failuresInARow: 0 }] });
  assert.deepEqual(state.webhooks[a.id]!.mark, { index: 20, ordinal: 2 });
  assert.deepEqual(state.webhooks[a.id]!.lastError, failure);
  // A deposed master's late mark, behind: the mark stays; the failures are the latest word.
  state = apply(state, { type: 'webhookMarks', marks: [{ id: a.id, mark: { index: 15, ordinal: null }, failuresInARow: 0 }] });
  assert.deepEqual(state.webhooks[a.id]!.mark, { index: 20, ordinal: 2 });
  assert.deepEqual(state.webhooks[a.id]!.lastError, failure, 'the last error is kept after a success');
  state = apply(state, { type: 'webhookMarks', marks: [{ id: a.id, mark: { index: 20, ordinal: null }, failuresInARow: 0 }] });
  assert.deepEqual(state.webhooks[a.id]!.mark, { index: 20, ordinal: null }, 'after entry 20 whole is after its event 2');
  state = apply(state, { type: 'webhookBroken', id: b.id, code: 'CHANGES_COMPACTED', message: 'too far behind', at: '2026-01-01T00:00:02.000Z' });
  assert.equal(state.webhooks[b.id]!.state, 'broken');
  const broken = apply(state, { type: 'webhookMarks', marks: [{ id: b.id, mark: { index: 99, ordinal: null }, failuresInARow: 0 }] });
  assert.equal(broken, state, 'a broken webhook takes no mark');
  state = apply(state, { type: 'webhookRemoved', id: b.id });
  assert.deepEqual(Object.keys(state.webhooks), [a.id]);
  assert.equal(state.version, 0, 'applyClusterChange leaves the version to applyClusterEntry');

  for (const bad of [
    { ...a, id: 'not-a-uuid' },
    { ...hook(), url: '' },
    { ...hook(), mark: { index: -1, ordinal: null } },
    { ...hook(), filter: { types: [] } },
    { ...hook(), filter: { extra: ['x'] } },
    { ...hook(), state: 'paused' },
  ] as unknown as Webhook[]) {
    assert.notEqual(webhookChangeProblem(state.webhooks, { type: 'webhookRegistered', webhook: bad }), null);
    assert.equal(apply(state, { type: 'webhookRegistered', webhook: bad }), state);
  }
  let full = emptyClusterState.webhooks;
  for (let i = 0; i < webhooksLimit; i++) full = applyWebhookChange(full, { type: 'webhookRegistered', webhook: hook() });
  assert.equal(Object.keys(full).length, webhooksLimit);
  assert.match(webhookChangeProblem(full, { type: 'webhookRegistered', webhook: hook() })!, /already holds/);
  assert.equal(applyWebhookChange(full, { type: 'webhookRegistered', webhook: hook() }), full);
});

test('a cluster state of a release before webhooks reads back with none', () => {
  const { webhooks: _, ...old } = emptyClusterState;
  assert.deepEqual(restoredClusterState(old as ClusterState).webhooks, {});
});

test('back-off doubles from webhooks.retryDelayMsMin up to webhooks.retryDelayMsMax', () => {
  const settings = { retryDelayMsMin: 100, retryDelayMsMax: 1000 };
  assert.deepEqual([1, 2, 3, 4, 5, 100].map((n) => retryDelayMs(n, settings)), [100, 200, 400, 800, 1000, 1000]);
});

test('retention stops at an active webhook\'s mark within webhooks.backlogEventsMax, and past it breaks the webhook', () => {
  const tmp = tempDir();
  const db = openDatabase(tmp.dir);
  try {
    const tables = new ContentTables(db);
    let index = 0;
    const run = (command: Command) => {
      const at = ++index;
      db.transaction(() => {
        tables.beginEntry(at);
        applyCommand(tables, command);
        setMeta(db, 'applied_index', at);
      })();
    };
    const time = '2026-01-01T00:00:00.000Z';
    run({ type: 'bootstrap', rootId: 'root', time, tokenKeyId: 'k', adminPasswordHash: 'h' });
    for (let i = 0; i < 20; i++) run({ type: 'put', path: `/n${i}`, newId: `id-${i}`, nodeType: 'node', properties: {}, time, user: 'ed' });
    // Entries 2..21 recorded one event each.
    let state: ClusterState = apply(emptyClusterState, { type: 'webhookRegistered', webhook: hook({ mark: { index: 6, ordinal: null } }) });
    const proposed: ClusterChange[] = [];
    const runtime = { clusterState: () => state, proposeClusterChange: (change: ClusterChange) => void proposed.push(change) };
    const log = pino({ level: 'silent' });
    const yearsS = 10 * 365 * 86_400;
    assert.equal(new WebhookRetention(tables.changes, runtime, { eventsMax: 15, secondsMax: yearsS }, log).limit(18), 6, 'held at the mark: 15 events after it');
    assert.equal(new WebhookRetention(tables.changes, runtime, { eventsMax: 15, secondsMax: yearsS }, log).limit(4), 4, 'before the mark: no hold');
    const id = Object.keys(state.webhooks)[0]!;
    state = apply(state, { type: 'webhookMarks', marks: [{ id, mark: { index: 6, ordinal: 0 }, failuresInARow: 0 }] });
    // An event's own id N:k would be "after event k of N": the rest of N must stay, so pruning stops before N.
    state = { ...state, webhooks: { [id]: { ...state.webhooks[id]!, mark: { index: 6, ordinal: 0 } } } };
    assert.equal(new WebhookRetention(tables.changes, runtime, { eventsMax: 15, secondsMax: yearsS }, log).limit(18), 5);
    assert.equal(proposed.length, 0);
    assert.equal(new WebhookRetention(tables.changes, runtime, { eventsMax: 14, secondsMax: yearsS }, log).limit(18), 18, 'past the bound: pruning goes on');
    assert.equal(proposed.length, 1);
    assert.equal(proposed[0]!.type, 'webhookBroken');
    assert.equal((proposed[0] as { code: string }).code, 'CHANGES_COMPACTED');
    state = apply(state, proposed[0]!);
    assert.equal(new WebhookRetention(tables.changes, runtime, { eventsMax: 0, secondsMax: yearsS }, log).limit(18), 18, 'a broken webhook holds nothing');
    assert.equal(proposed.length, 1);
    // Held too long, however few: a webhook whose oldest pending event is older than webhooks.backlogSecondsMax.
    state = apply(state, { type: 'webhookRegistered', webhook: hook({ mark: { index: 6, ordinal: null } }) });
    const twoHoursLater = () => Date.parse(time) + 2 * 3600_000;
    assert.equal(new WebhookRetention(tables.changes, runtime, { eventsMax: 15, secondsMax: 3 * 3600 }, log, twoHoursLater).limit(18), 6, 'within the age bound: held');
    assert.equal(new WebhookRetention(tables.changes, runtime, { eventsMax: 15, secondsMax: 3600 }, log, twoHoursLater).limit(18), 18, 'past it: pruning goes on');
    assert.equal(proposed.length, 2);
    assert.match((proposed[1] as { message: string }).message, /backlogSecondsMax/);
  } finally {
    db.close();
    tmp.cleanup();
  }
});

test('deliveries reach only public addresses unless webhooks.privateAddressesAllowed: literals, names and mapped forms', async () => {
  for (const address of ['127.0.0.1', '10.1.2.3', '172.20.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '224.0.0.1', '::1', '::', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '::ffff:169.254.169.254']) {
    assert.equal(isPrivateAddress(address), true, address);
  }
  for (const address of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '2606:4700::1111', '::ffff:8.8.8.8']) assert.equal(isPrivateAddress(address), false, address);
  const options = { timeoutMs: 2000, responseBytesMax: 1024, signal: new AbortController().signal, privateAddressesAllowed: false };
  // Refused before any connection: a literal, a bracketed IPv6 literal, and a name that resolves to loopback.
  for (const url of ['http://127.0.0.1:9/hook', 'http://[::1]:9/hook', 'http://localhost:9/hook']) {
    const outcome = await postWebhook(new URL(url), {}, '{}', options);
    assert.equal(outcome.ok, false, url);
    assert.match((outcome as { message: string }).message, /privateAddressesAllowed/, url);
  }
});

test('a webhook change with a malformed mark or id is refused as a problem, never thrown while applying', () => {
  const state = emptyClusterState.webhooks;
  const bad: unknown[] = [
    { type: 'webhookMarks', marks: [null] },
    { type: 'webhookMarks', marks: [{ id: 7, mark: { index: 1, ordinal: null }, failuresInARow: 0 }] },
    { type: 'webhookRemoved', id: undefined },
    { type: 'webhookBroken', id: '__proto__', code: 'X', message: 'm', at: 't' },
  ];
  for (const change of bad) {
    assert.notEqual(webhookChangeProblem(state, change as never), null, JSON.stringify(change));
    assert.equal(applyWebhookChange(state, change as never), state);
  }
});

test('a backlog is counted in two lookups however long, and stays exact across pruning and rolled-back entries', () => {
  const tmp = tempDir();
  const db = openDatabase(tmp.dir);
  try {
    const tables = new ContentTables(db);
    let index = 0;
    const apply = (command: Command) => {
      const at = ++index;
      try {
        db.transaction(() => {
          tables.beginEntry(at);
          applyCommand(tables, command);
        })();
      } catch {
        // A refusal: nothing of it stays, its sequence numbers included.
      }
    };
    const time = '2026-01-01T00:00:00.000Z';
    apply({ type: 'bootstrap', rootId: 'root', time, tokenKeyId: 'k', adminPasswordHash: 'h' });
    for (let i = 0; i < 50; i++) apply({ type: 'put', path: `/n${i}`, newId: `n${i}`, nodeType: 'node', properties: {}, time, user: 'u' });
    apply({ type: 'put', path: '/missing/child', newId: 'x', nodeType: 'node', properties: {}, time, user: 'u' });
    const counted = (index: number) => db.prepare('SELECT count(*) FROM changes WHERE idx > ?').pluck().get(index) as number;
    for (const at of [0, 1, 10, 49, 51, 60]) assert.equal(tables.changes.countAfter({ index: at, ordinal: null }), counted(at), `after ${at}`);
    apply({ type: 'pruneChanges', through: 20, time });
    for (let i = 0; i < 5; i++) apply({ type: 'put', path: `/m${i}`, newId: `m${i}`, nodeType: 'node', properties: {}, time, user: 'u' });
    for (const at of [20, 30, 55, 100]) assert.equal(tables.changes.countAfter({ index: at, ordinal: null }), counted(at), `after pruning, after ${at}`);
  } finally {
    db.close();
    tmp.cleanup();
  }
});
