import assert from 'node:assert/strict';
import { test } from 'node:test';

import fc from 'fast-check';

import { json, openTestNode, type TestNode } from '../helpers/app.js';

/**
 * Access control against a model: random trees, users, roles and entries; then every kind of read — by path, by
 * id, child listings page by page, queries, search (results and totals), the change feed — and a write to every
 * node, as every user, each answer checked against an evaluator written here from the rules in docs/http-api.md
 * (not src/content/access.ts): nothing a user may not read shows in a path, a count, a cursor's page, a snippet or
 * an event, and a hidden node answers exactly as a missing one.
 */

type Role = 'reader' | 'editor';
type Permission = 'read' | 'write' | 'manage-access';
interface Entry {
  principal: string;
  effect: 'allow' | 'deny';
  permissions: Permission[];
}
interface Scenario {
  /** Parent index (into the nodes before it; -1: the root) and name of each node. */
  nodes: Array<{ parent: number; name: string }>;
  roles: Record<string, Role>;
  /** Entries by node index (-1: the root). */
  entries: Array<{ node: number; entries: Entry[] }>;
}

const users = ['u1', 'u2', 'u3'];
const principals = ['user:u1', 'user:u2', 'user:u3', 'role:reader', 'role:editor', 'everyone'];
const permissionsArb = fc.subarray<Permission>(['read', 'write', 'manage-access'], { minLength: 1 });
const entryArb: fc.Arbitrary<Entry> = fc.record({ principal: fc.constantFrom(...principals), effect: fc.constantFrom<'allow' | 'deny'>('allow', 'deny'), permissions: permissionsArb });

const scenarioArb: fc.Arbitrary<Scenario> = fc
  .integer({ min: 3, max: 10 })
  .chain((count) =>
    fc.record({
      nodes: fc.tuple(...Array.from({ length: count }, (_, i) => fc.record({ parent: fc.integer({ min: -1, max: i - 1 }), name: fc.constantFrom('a', 'b', 'c', 'd', 'e') }))),
      roles: fc.record({ u1: fc.constantFrom<Role>('reader', 'editor'), u2: fc.constantFrom<Role>('reader', 'editor'), u3: fc.constantFrom<Role>('reader', 'editor') }),
      entries: fc.array(fc.record({ node: fc.integer({ min: -1, max: count - 1 }), entries: fc.array(entryArb, { minLength: 1, maxLength: 3 }) }), { maxLength: 5 }),
    }),
  );

/** The paths of a scenario's nodes (a name taken under the same parent gets a suffix, as it must be unique). */
function pathsOf(scenario: Scenario): string[] {
  const paths: string[] = [];
  for (const [i, node] of scenario.nodes.entries()) {
    const parent = node.parent === -1 ? '' : paths[node.parent]!;
    let path = `${parent}/${node.name}`;
    while (paths.includes(path)) path += 'x';
    paths[i] = path;
  }
  return paths;
}

/** The model: the rules as docs/http-api.md states them. */
function allowed(entriesAt: Map<string, Entry[]>, path: string, user: string, role: Role, permission: Permission): boolean {
  const ceiling = permission === 'read' ? true : role === 'editor';
  if (!ceiling) return false;
  const chain: string[] = [];
  for (let p = path; ; p = p.slice(0, p.lastIndexOf('/')) || '/') {
    chain.push(p);
    if (p === '/') break;
  }
  for (const at of chain) {
    const matching = (entriesAt.get(at) ?? []).filter((e) => e.permissions.includes(permission) && (e.principal === 'everyone' || e.principal === `user:${user}` || e.principal === `role:${role}`));
    if (matching.some((e) => e.effect === 'deny')) return false;
    if (matching.length > 0) return true;
  }
  return permission !== 'manage-access';
}

const auth = (user: string) => `Basic ${Buffer.from(`${user}:${user}-password-1`).toString('base64')}`;

async function check(t: TestNode, scenario: Scenario): Promise<void> {
  const paths = pathsOf(scenario);
  const ids = new Map<string, string>();
  for (const path of paths) {
    const res = await t.request({ method: 'PUT', url: `/api/v1/content${path}`, ...json({ properties: { text: `common word ${path}` } }) });
    assert.equal(res.statusCode, 201, res.body);
    ids.set(path, res.json().id);
  }
  for (const user of users) {
    const res = await t.request({ method: 'PUT', url: `/api/v1/users/${user}`, ...json({ password: `${user}-password-1`, roles: [scenario.roles[user as 'u1']] }) });
    assert.ok(res.statusCode < 300, res.body);
  }
  const entriesAt = new Map<string, Entry[]>();
  for (const { node, entries } of scenario.entries) {
    const path = node === -1 ? '/' : paths[node]!;
    const res = await t.request({ method: 'PUT', url: `/api/v1/access${path === '/' ? '' : path}`, ...json({ entries }) });
    assert.equal(res.statusCode, 200, res.body);
    entriesAt.set(path, entries);
  }
  const childrenOf = (parent: string) => paths.filter((p) => (p.slice(0, p.lastIndexOf('/')) || '/') === parent);

  for (const user of users) {
    const role = scenario.roles[user as 'u1'];
    const readable = (path: string) => allowed(entriesAt, path, user, role, 'read');
    const get = (url: string) => t.request({ method: 'GET', url, auth: auth(user) });
    const label = `${user} (${role})`;
    for (const path of ['/', ...paths]) {
      const url = `/api/v1/content${path === '/' ? '' : path}`;
      const res = await get(url);
      if (readable(path)) assert.equal(res.statusCode, 200, `${label} reads ${path}`);
      else assert.deepEqual(res.json().error, { code: 'NODE_NOT_FOUND', message: `No node exists at ${path}.`, retryable: false, path }, `${label} reads ${path}`);
      if (path !== '/') {
        const byId = await get(`/api/v1/nodes/${ids.get(path)}`);
        assert.equal(byId.statusCode, readable(path) ? 200 : 404, `${label} reads ${path} by id`);
      }
      if (!readable(path)) continue;
      // Its children, two at a time: exactly the readable ones, in order, and no cursor past the last of them.
      const listed: string[] = [];
      let cursor: string | null = null;
      do {
        const page: { items: Array<{ path: string }>; nextCursor: string | null } = (await get(`${url}?children=true&limit=2${cursor === null ? '' : `&cursor=${cursor}`}`)).json().children;
        assert.ok(page.items.length > 0 || listed.length === 0, `${label}: a page after a cursor holds something`);
        listed.push(...page.items.map((c: { path: string }) => c.path));
        cursor = page.nextCursor;
      } while (cursor !== null);
      assert.deepEqual(listed, childrenOf(path).filter(readable), `${label} lists the children of ${path}`);
    }
    const queried: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { items: Array<{ path: string }>; nextCursor: string | null } = (await get(`/api/v1/query?under=/&limit=3${cursor === null ? '' : `&cursor=${cursor}`}`)).json();
      queried.push(...page.items.map((c: { path: string }) => c.path));
      cursor = page.nextCursor;
    } while (cursor !== null);
    assert.deepEqual(queried.sort(), paths.filter(readable).sort(), `${label} queries`);
    const found = (await get('/api/v1/search?q=common&limit=100')).json();
    assert.deepEqual(found.items.map((h: { path: string }) => h.path).sort(), paths.filter(readable).sort(), `${label} searches`);
    assert.equal(found.total, paths.filter(readable).length, `${label}'s search total`);
    for (const item of found.items) assert.ok(item.snippet.map((r: { text: string }) => r.text).join('').includes(item.path), 'a snippet is of its own node');
    const events = (await get('/api/v1/changes?since=0&limit=1000')).json().events as Array<{ path: string }>;
    assert.ok(events.every((e) => e.path === '/' ? readable('/') : readable(e.path)), `${label}'s feed: ${JSON.stringify(events.map((e) => e.path))}`);
    assert.deepEqual([...new Set(events.map((e) => e.path))].filter((p) => p !== '/').sort(), paths.filter(readable).sort(), `${label}'s feed holds every readable node's events`);
    // A write to every node: allowed exactly where the model says so, and refused naming nothing.
    for (const path of paths) {
      const res = await t.request({ method: 'PATCH', url: `/api/v1/content${path}`, ...json({ by: user }), auth: auth(user) });
      const writable = allowed(entriesAt, path, user, role, 'write');
      if (role === 'reader') assert.equal(res.statusCode, 403, `${label} patches ${path}`);
      else if (!readable(path)) assert.deepEqual(res.json().error, { code: 'NODE_NOT_FOUND', message: `No node exists at ${path}.`, retryable: false, path }, `${label} patches ${path}, which it may not read`);
      else if (writable) assert.equal(res.statusCode, 200, `${label} patches ${path}: ${res.body}`);
      else assert.deepEqual(res.json().error, { code: 'FORBIDDEN', message: 'You may not write there.', retryable: false, needs: 'write' }, `${label} patches ${path}`);
    }
  }
}

test('every read and write of every user agrees with the model of access control', async () => {
  await fc.assert(
    fc.asyncProperty(scenarioArb, async (scenario) => {
      const t = await openTestNode({ 'content.pageSizeMax': 50 });
      try {
        await check(t, scenario);
      } finally {
        await t.close();
      }
    }),
    { numRuns: 25 },
  );
});
