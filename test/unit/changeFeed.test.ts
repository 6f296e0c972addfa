import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';

import { ChangeFeed, eventJson, filterKey, type FeedFilter } from '../../src/changes/changeFeed.js';
import { pruneChangesSinceVersion } from '../../src/changes/changePruner.js';
import { emptyClusterState, everyMemberAtLeast } from '../../src/core/clusterState.js';
import { applyCommand } from '../../src/content/apply.js';
import { formatFeedPosition, parseFeedPosition, positionOf, type ChangeEvent, type FeedPosition } from '../../src/content/changes.js';
import type { Command } from '../../src/content/commands.js';
import { ConclaveError } from '../../src/errors/catalogue.js';
import { ContentTables } from '../../src/storage/contentTables.js';
import { openDatabase, setMeta, type Db } from '../../src/storage/database.js';
import { tempDir } from '../helpers/tmp.js';

/** apply() against real SQLite tables, one entry per transaction with its index, as the runtime does it. */
class Repo {
  readonly db: Db;
  readonly tables: ContentTables;
  readonly feed: ChangeFeed;
  index = 0;
  private readonly cleanup: () => void;
  private ids = 0;
  private readonly listeners = new Set<() => void>();

  constructor(scanEventsMax = 10_000, recentEventsMax = 10_000) {
    const tmp = tempDir();
    this.cleanup = tmp.cleanup;
    this.db = openDatabase(tmp.dir);
    this.tables = new ContentTables(this.db);
    const source = {
      appliedIndex: 0,
      onChange: (listener: () => void) => {
        this.listeners.add(listener);
        return () => this.listeners.delete(listener);
      },
    };
    Object.defineProperty(source, 'appliedIndex', { get: () => this.index });
    this.feed = new ChangeFeed(this.tables.changes, source, { scanEventsMax, recentEventsMax, recentBytesMax: 1 << 30, fanOutIntervalMs: 0 });
    this.apply({ type: 'bootstrap', rootId: 'root', time: this.time(), tokenKeyId: 'k', adminPasswordHash: 'h' });
    // The feed keeps the newest events in memory from its first read on: read now, so what follows is read from
    // memory (positions from here on) as well as from the table (before).
    this.feed.page({ index: 0, ordinal: null }, {}, 1);
  }

  time(): string {
    return new Date(Date.UTC(2026, 0, 1) + this.index * 1000).toISOString();
  }

  /** Applies one entry at the next index; a refusal is its outcome (nothing stored), as on every node. */
  apply(command: Command): unknown {
    const index = ++this.index;
    try {
      return this.db.transaction(() => {
        this.tables.beginEntry(index);
        const result = this.db.transaction(() => applyCommand(this.tables, command))();
        setMeta(this.db, 'applied_index', index);
        return result;
      })();
    } catch (err) {
      if (!(err instanceof ConclaveError)) throw err;
      this.db.transaction(() => setMeta(this.db, 'applied_index', index))();
      return err;
    } finally {
      for (const listener of this.listeners) listener();
    }
  }

  put(path: string, properties = {}, nodeType = 'node'): unknown {
    return this.apply({ type: 'put', path, newId: `id-${++this.ids}`, nodeType, properties, time: this.time(), user: 'ed' });
  }

  /** Every event after `since`, read page by page `limit` at a time. */
  all(since: FeedPosition = { index: 0, ordinal: null }, filter: FeedFilter = {}, limit = 1000): ChangeEvent[] {
    const events: ChangeEvent[] = [];
    let position = since;
    for (;;) {
      const page = this.feed.page(position, filter, limit);
      events.push(...page.items.map((item) => item.event));
      position = page.next;
      if (!page.more) return events;
    }
  }

  close(): void {
    this.db.close();
    this.cleanup();
  }
}

const brief = (e: ChangeEvent) => `${formatFeedPosition(positionOf(e))} ${e.op} ${e.path}${e.from !== undefined ? ` from ${e.from}` : ''}`;

test('feed positions: N and N:k round-trip, and anything else is INVALID_REQUEST', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 10 ** 15 - 1 }), fc.option(fc.integer({ min: 0, max: 10 ** 15 - 1 })), (index, ordinal) => {
      const position = { index, ordinal: ordinal ?? null };
      assert.deepEqual(parseFeedPosition(formatFeedPosition(position), 'since'), position);
    }),
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 40 }), (text) => {
      try {
        const parsed = parseFeedPosition(text, 'since');
        // Accepted only in the documented form.
        assert.match(text.trim(), /^\d{1,15}(:\d{1,15})?$/);
        assert.equal(formatFeedPosition(parsed), text.trim().replace(/^0+(?=\d)/, '').replace(/:0+(?=\d)/, ':'));
      } catch (err) {
        assert.ok(err instanceof ConclaveError && err.code === 'INVALID_REQUEST', String(err));
      }
    }),
  );
  for (const bad of ['', '-1', '1:', ':1', '1:2:3', '1.5', 'x', '9'.repeat(16)]) {
    assert.throws(() => parseFeedPosition(bad, 'since'), (err: ConclaveError) => err.code === 'INVALID_REQUEST', bad);
  }
});

test('every content change records one event per node touched, in journal order; users and refusals record none', () => {
  const repo = new Repo();
  try {
    repo.put('/a', { v: 1 });
    repo.put('/a/b');
    repo.put('/a/b/c');
    repo.put('/a/d');
    repo.put('/a', { v: 2 });
    repo.apply({ type: 'patch', path: '/a', patch: { w: 1 }, time: repo.time(), user: 'ed' });
    repo.apply({ type: 'putUser', name: 'rita', passwordHash: 'h', roles: ['reader'], createOnly: true, time: repo.time() });
    assert.ok(repo.put('/missing/x') instanceof ConclaveError, 'refused: no parent');
    repo.apply({ type: 'setBinary', path: '/a/d', property: 'file', binary: { sha256: 'a'.repeat(64), size: 1, contentType: 'text/plain' }, time: repo.time(), user: 'ed' });
    repo.apply({ type: 'deleteBinary', path: '/a/d', property: 'file', time: repo.time(), user: 'ed' });
    repo.apply({ type: 'reorder', path: '/a', order: ['d', 'b'], time: repo.time(), user: 'ed' });
    repo.apply({ type: 'move', from: '/a', to: '/z', before: null, time: repo.time(), user: 'mo' });
    repo.apply({ type: 'delete', path: '/z', recursive: true, time: repo.time(), user: 'del' });
    assert.deepEqual(repo.all().map(brief), [
      '1 created /',
      '2 created /a',
      '3 created /a/b',
      '4 created /a/b/c',
      '5 created /a/d',
      '6 updated /a',
      '7 updated /a',
      '10 binary-set /a/d',
      '11 binary-removed /a/d',
      '12 updated /a',
      '13:0 moved /z from /a',
      '13:1 moved /z/b from /a/b',
      '13:2 moved /z/b/c from /a/b/c',
      '13 moved /z/d from /a/d',
      '14:0 deleted /z',
      '14:1 deleted /z/b',
      '14:2 deleted /z/b/c',
      '14 deleted /z/d',
    ]);
    const events = repo.all();
    const moved = events.find((e) => e.index === 13 && e.ordinal === 0)!;
    assert.equal(moved.version, 5, 'the moved node has a new version');
    assert.equal(moved.by, 'mo');
    const movedChild = events.find((e) => e.path === '/z/b/c' && e.op === 'moved')!;
    assert.equal(movedChild.version, 1, 'a descendant keeps its version');
    assert.equal(events.find((e) => e.op === 'binary-set')!.property, 'file');
    const deletedChild = events.find((e) => e.path === '/z/b/c' && e.op === 'deleted')!;
    assert.deepEqual({ by: deletedChild.by, at: deletedChild.at, type: deletedChild.type }, { by: 'del', at: events.at(-1)!.at, type: 'node' });
    // A move in place: the node's own path is its from.
    repo.put('/p');
    repo.put('/q');
    repo.apply({ type: 'move', from: '/q', to: '/q', before: 'p', time: repo.time(), user: 'ed' });
    assert.equal(brief(repo.all({ index: 16, ordinal: null })[0]!), '17 moved /q from /q');
  } finally {
    repo.close();
  }
});

for (const [recentEventsMax, where] of [[10_000, 'memory'], [0, 'the table']] as const) test(`a page ends anywhere, even inside one entry's events, and the next page resumes exactly after it (from ${where})`, () => {
  const repo = new Repo(10_000, recentEventsMax);
  try {
    repo.put('/t');
    for (let i = 0; i < 5; i++) repo.put(`/t/n${i}`);
    repo.apply({ type: 'delete', path: '/t', recursive: true, time: repo.time(), user: 'ed' });
    repo.put('/after');
    const whole = repo.all().map(brief);
    for (const limit of [1, 2, 3, 7]) assert.deepEqual(repo.all(undefined, {}, limit).map(brief), whole, `pages of ${limit}`);
    // Resuming from any event's own position gives exactly the events after it.
    const events = repo.all();
    events.forEach((event, i) => {
      assert.deepEqual(repo.all(positionOf(event)).map(brief), whole.slice(i + 1), `after ${brief(event)}`);
    });
    // since=N skips entry N whole; at the end, next is the applied index.
    const page = repo.feed.page({ index: 8, ordinal: null }, {}, 100);
    assert.deepEqual(page.items.map((item) => brief(item.event)), ['9 created /after']);
    assert.deepEqual(JSON.parse(page.items[0]!.json), { ...eventJson(page.items[0]!.event) });
    assert.deepEqual(page.next, { index: 9, ordinal: null });
    repo.apply({ type: 'putUser', name: 'u', passwordHash: 'h', roles: ['reader'], createOnly: true, time: repo.time() });
    assert.deepEqual(repo.feed.page(page.next, {}, 100), { items: [], next: { index: 10, ordinal: null }, more: false }, 'entries without events are passed over');
  } finally {
    repo.close();
  }
});

test('filters: under (path or old path), type and op; a narrow filter scans at most scanEventsMax per page', () => {
  const repo = new Repo(3);
  try {
    repo.put('/site');
    repo.put('/site/a', {}, 'article');
    repo.put('/other');
    repo.put('/other/x', {}, 'article');
    repo.put('/site/a', { v: 2 }, 'article');
    repo.apply({ type: 'move', from: '/site/a', to: '/other/a', before: null, time: repo.time(), user: 'ed' });
    repo.apply({ type: 'move', from: '/other/x', to: '/site/x', before: null, time: repo.time(), user: 'ed' });
    assert.deepEqual(repo.all(undefined, { under: '/site' }).map(brief), ['2 created /site', '3 created /site/a', '6 updated /site/a', '7 moved /other/a from /site/a', '8 moved /site/x from /other/x']);
    assert.deepEqual(repo.all(undefined, { types: new Set(['article']), ops: new Set(['created']) }).map(brief), ['3 created /site/a', '5 created /other/x']);
    // Three events read per page at most: a page may come back empty with `next` moved on.
    const first = repo.feed.page({ index: 0, ordinal: null }, { ops: new Set(['moved']) }, 10);
    assert.deepEqual(first.items, []);
    assert.equal(first.more, true);
    assert.deepEqual(first.next, { index: 3, ordinal: null });
  } finally {
    repo.close();
  }
});

test('pruning drops whole entries through an index on every node alike; a position before it answers CHANGES_COMPACTED naming the oldest', () => {
  const repo = new Repo();
  try {
    for (let i = 0; i < 10; i++) repo.put(`/n${i}`);
    repo.put('/t');
    repo.put('/t/c');
    repo.apply({ type: 'delete', path: '/t', recursive: true, time: repo.time(), user: 'ed' }); // index 14: two events
    const changes = repo.tables.changes;
    // Keep 3 events: 14 holds two, so the cut falls after 12, keeping 13:…14 — whole entries only.
    assert.deepEqual(changes.pruneCandidate(3, '2000-01-01T00:00:00.000Z', 1000), { through: 12, more: false });
    // By age: everything older than entry 6's time goes (entry N was written at N-1 seconds), whatever the count allows.
    for (let n = 2; n <= 14; n++) {
      const cutoff = new Date(Date.UTC(2026, 0, 1) + (n - 1) * 1000).toISOString();
      assert.deepEqual(changes.pruneCandidate(1000, cutoff, 1000), { through: n - 1, more: false }, `older than entry ${n}`);
    }
    // At most a batch at a time.
    assert.deepEqual(changes.pruneCandidate(0, '2000-01-01T00:00:00.000Z', 4), { through: 4, more: true });
    repo.apply({ type: 'pruneChanges', through: 12, time: repo.time() });
    assert.equal(repo.feed.oldestPosition, 12);
    assert.deepEqual(repo.all({ index: 12, ordinal: null }).map(brief), ['13 created /t/c', '14:0 deleted /t', '14 deleted /t/c']);
    for (const since of [{ index: 0, ordinal: null }, { index: 11, ordinal: 0 }]) {
      assert.throws(
        () => repo.feed.page(since, {}, 10),
        (err: ConclaveError) => err.code === 'CHANGES_COMPACTED' && err.status === 410 && (err.details as { oldest: number }).oldest === 12,
      );
    }
    // Pruning through an index already pruned changes nothing.
    repo.apply({ type: 'pruneChanges', through: 3, time: repo.time() });
    assert.equal(repo.feed.oldestPosition, 12);
    assert.deepEqual(changes.pruneCandidate(3, '2000-01-01T00:00:00.000Z', 1000), { through: 0, more: false }, 'within retention: nothing to prune');
  } finally {
    repo.close();
  }
});

test('chunk(): the frames of a page in one buffer, the same one for every reader at the same position with the same filter until an entry applies; retention still refuses', () => {
  const repo = new Repo();
  try {
    repo.put('/a');
    repo.put('/a/b');
    repo.put('/c');
    const since = { index: repo.index - 2, ordinal: null };
    const key = filterKey({});
    const first = repo.feed.chunk(since, {}, key, 1000, 1 << 20);
    assert.deepEqual(first.page.items.map((i) => brief(i.event)), repo.all(since).map(brief));
    assert.equal(first.frames.toString('utf8'), first.page.items.map((i) => i.frame.toString('utf8')).join(''));
    assert.match(first.frames.toString('utf8'), /^id: \d+\ndata: \{"position":/);
    assert.equal(repo.feed.chunk(since, {}, key, 1000, 1 << 20), first, 'the same bytes for the next reader');
    // Equal filters, equal keys, whatever the order they were given in; other filters and bounds are chunks of their own.
    assert.equal(filterKey({ types: new Set(['x', 'y']), under: '/a' }), filterKey({ under: '/a', types: new Set(['y', 'x']) }));
    const under = { under: '/a' };
    assert.deepEqual(repo.feed.chunk(since, under, filterKey(under), 1000, 1 << 20).page.items.map((i) => i.event.path), ['/a/b']);
    assert.equal(repo.feed.chunk(since, {}, key, 1000, 1).page.items.length, 1, 'a byte bound takes the first event only');
    repo.put('/d');
    const after = repo.feed.chunk(since, {}, key, 1000, 1 << 20);
    assert.notEqual(after, first, 'an applied entry makes a new chunk');
    assert.deepEqual(after.page.items.map((i) => i.event.path), ['/a/b', '/c', '/d']);
    assert.deepEqual(after.page.next, { index: repo.index, ordinal: null });
    // A reader far behind (before the events kept in memory) gets a chunk that nothing keeps.
    const behind = { index: 0, ordinal: null };
    assert.notEqual(repo.feed.chunk(behind, {}, key, 1000, 1 << 20), repo.feed.chunk(behind, {}, key, 1000, 1 << 20));
    // A position pruned since its chunk was made is refused, not answered from the chunk.
    const old = { index: 1, ordinal: null };
    repo.feed.chunk(old, {}, key, 1000, 1 << 20);
    repo.apply({ type: 'pruneChanges', through: 3, time: repo.time() });
    assert.throws(() => repo.feed.chunk(old, {}, key, 1000, 1 << 20), (err: ConclaveError) => err.code === 'CHANGES_COMPACTED');
  } finally {
    repo.close();
  }
});

test('a long-poll wait ends with the next applied entry, at its timeout, or when abandoned', async () => {
  const repo = new Repo();
  try {
    const applied = repo.index;
    assert.equal(await repo.feed.waitForEntryAfter(applied - 1, 10), true, 'an entry after is there already');
    const waiting = repo.feed.waitForEntryAfter(applied, 60_000);
    repo.put('/x');
    assert.equal(await waiting, true);
    assert.equal(await repo.feed.waitForEntryAfter(repo.index, 20), false, 'timed out');
    const abandon = new AbortController();
    const abandoned = repo.feed.waitForEntryAfter(repo.index, 60_000, abandon.signal);
    abandon.abort();
    assert.equal(await abandoned, false);
  } finally {
    repo.close();
  }
});

test('pruning entries wait for every member to run a release that applies them', () => {
  const member = (id: string, version: string) => ({ id, name: id, address: `${id}:1`, roles: { masterEligible: true, votingOnly: false }, version });
  const state = (...versions: string[]) => ({ ...emptyClusterState, nodes: versions.map((v, i) => member(`n${i}`, v)) });
  assert.equal(everyMemberAtLeast(state('0.2.0', '0.2.1', '1.0.0'), pruneChangesSinceVersion), true);
  assert.equal(everyMemberAtLeast(state('0.2.0', '0.1.9'), pruneChangesSinceVersion), false, 'an older member in a rolling upgrade');
  assert.equal(everyMemberAtLeast(state('0.2.0', 'garbage'), pruneChangesSinceVersion), false);
});
