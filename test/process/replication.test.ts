import assert from 'node:assert/strict';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { copyFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { Agent, request } from 'undici';

import type { Command } from '../../src/content/commands.js';
import { decodePayload } from '../../src/storage/journal.js';
import { runConclave } from '../helpers/cli.js';
import { ProcessCluster, type DigestAnswer } from '../helpers/cluster.js';
import { processAuth } from '../helpers/process.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

/**
 * Content replication on one cluster of three real processes, shared by the cases in order (each starts by
 * bringing every node back and waiting until all are in sync and caught up, so none depends on another's end):
 *
 * 1. every acknowledged write, through any node, is visible at once to a sequential (and a linearizable) read on
 *    every node, byte for byte, and the digests agree;
 * 2. a replica killed during 10,000 writes catches up by itself to a byte-identical digest;
 * 3. kill -9 of the master under write load loses no acknowledged write;
 * 4. a former master's unacknowledged tail is discarded when it rejoins.
 *
 * Random choices come from one seed, printed; REPLICATION_TEST_SEED replays it.
 */

const names = ['r1', 'r2', 'r3'];
const seed = Number(process.env['REPLICATION_TEST_SEED'] ?? randomInt(2 ** 31));
// A dead in-sync node holds acknowledgements back until it is taken out of the in-sync set: keep that short
// (it may not be shorter than an election timeout, 10 ticks of 50 ms).
const inSyncTimeoutMs = 1000;
// Writes a master can never commit are answered WRITE_OUTCOME_UNKNOWN after this (case 4 waits for that answer).
const writeTimeoutMs = 5000;

let cluster: ProcessCluster;
/**
 * A bearer token (POST /api/v1/auth/login): many concurrent requests with Basic credentials on a node whose
 * credential cache is cold (just restarted) each hash the password, and beyond auth.passwordChecksInFlightMax they
 * are refused with OVERLOADED — as designed, and not what these cases are about.
 */
let authorization = processAuth;
const agent = new Agent({ keepAliveTimeout: 30_000, connections: 64 });

interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly bytes: Buffer;
  readonly text: string;
  /** The body parsed as JSON, or null. */
  readonly json: Record<string, unknown> | null;
  readonly code: string | undefined;
}

async function send(
  node: string,
  method: 'GET' | 'PUT' | 'PATCH' | 'DELETE',
  path: string,
  options: { json?: unknown; bytes?: Buffer; contentType?: string; headers?: Record<string, string> } = {},
): Promise<Reply> {
  const contentType = options.json !== undefined ? (method === 'PATCH' ? 'application/merge-patch+json' : 'application/json') : options.contentType;
  const res = await request(`${cluster.url(node)}${path}`, {
    method,
    dispatcher: agent,
    headers: { authorization, ...(contentType !== undefined ? { 'content-type': contentType } : {}), ...options.headers },
    body: options.json !== undefined ? JSON.stringify(options.json) : (options.bytes ?? null),
    headersTimeout: 30_000,
    bodyTimeout: 30_000,
  });
  const bytes = Buffer.from(await res.body.arrayBuffer());
  const text = bytes.toString('utf8');
  let json: Record<string, unknown> | null = null;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = null;
  }
  const code = (json?.['error'] as { code?: string } | undefined)?.code;
  return { status: res.statusCode, headers: res.headers, bytes, text, json, code };
}

const indexOf = (reply: Reply) => Number(reply.headers['x-conclave-index']);
const isAcknowledged = (status: number) => status === 200 || status === 201;

/** Deterministic randomness from `seed` (mulberry32): a failure replays with REPLICATION_TEST_SEED. */
function rng(from: number): { int(bound: number): number; pick<T>(items: readonly T[]): T } {
  let state = from >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { int: (bound) => Math.floor(next() * bound), pick: (items) => items[Math.floor(next() * items.length)]! };
}

/** Runs `body`; on failure appends the seed and the tail of every node's log to the error. */
async function withLogs(body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    const logs = names.map((name) => `--- ${name} (last 40 lines) ---\n${cluster.output(name).trimEnd().split('\n').slice(-40).join('\n')}`).join('\n');
    (err as Error).message += `\n(REPLICATION_TEST_SEED=${seed})\n${logs}`;
    throw err;
  }
}

/** Every node running (a paused one resumed, a dead one started), in sync and caught up; returns the master. */
async function everyoneBack(): Promise<string> {
  for (const name of names) {
    if (cluster.node(name).process === null) await cluster.start(name);
  }
  // SIGCONT is harmless to a running process.
  await cluster.resume(...names);
  return (await cluster.caughtUp(60_000)).master;
}

/** Runs `task` for every item, at most `concurrency` at once. */
async function eachConcurrently<T>(items: readonly T[], concurrency: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await task(items[next++]!);
    }),
  );
}

/** Reads every digest at one applied index and asserts they are byte-identical. */
async function assertDigestsEqual(which: readonly string[], what: string): Promise<DigestAnswer[]> {
  const digests = await cluster.settledDigests(which, 60_000);
  for (const answer of digests) {
    assert.equal(answer.digest, digests[0]!.digest, `${what}: the digest of ${answer.node} equals ${digests[0]!.node}'s at index ${answer.appliedIndex}\n${JSON.stringify(digests, null, 1)}`);
    assert.deepEqual(answer.counts, digests[0]!.counts);
  }
  return digests;
}

/** The content paths a node's journal holds (from a copy of its database: the node must be stopped), and its commit index. */
function journalOnDisk(dataDir: string): { paths: Map<string, { index: number; term: number }>; commitIndex: number } {
  const copy = tempDir('conclave-journal-copy-');
  try {
    for (const file of ['conclave.db', 'conclave.db-wal']) {
      if (existsSync(join(dataDir, file))) copyFileSync(join(dataDir, file), join(copy.dir, file));
    }
    const db = new Database(join(copy.dir, 'conclave.db'));
    try {
      const paths = new Map<string, { index: number; term: number }>();
      for (const row of db.prepare('SELECT idx, term, payload FROM journal ORDER BY idx').all() as Array<{ idx: number; term: number; payload: Buffer }>) {
        const payload = decodePayload(row.payload);
        if (payload.kind !== 'command') continue;
        const command = payload.data as Command;
        if ('path' in command && typeof command.path === 'string') paths.set(command.path, { index: row.idx, term: row.term });
      }
      const hard = db.prepare(`SELECT value FROM meta WHERE key = 'hard_state'`).pluck().get() as string | undefined;
      return { paths, commitIndex: hard === undefined ? 0 : (JSON.parse(hard) as { commitIndex: number }).commitIndex };
    } finally {
      db.close();
    }
  } finally {
    copy.cleanup();
  }
}

describe('content replication on 3 processes', () => {
  before(async () => {
    console.log(`REPLICATION_TEST_SEED=${seed}`);
    cluster = await ProcessCluster.create(
      names,
      (_name, seeds) => [...seeds.flatMap((s) => ['--seed', s]), '--initial-master-nodes', names.join(',')],
      () => ({ CONCLAVE_REPLICATION_IN_SYNC_TIMEOUT_MS: String(inSyncTimeoutMs), CONCLAVE_CLUSTER_WRITE_TIMEOUT_MS: String(writeTimeoutMs) }),
    );
    await cluster.start(...names);
    const master = await cluster.write('/ready', {});
    await cluster.caughtUp(60_000);
    const res = await request(`${cluster.url(master)}/api/v1/auth/login`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: 'process-test-password' }),
    });
    const login = (await res.body.json()) as { token: string };
    assert.equal(res.statusCode, 200, JSON.stringify(login));
    authorization = `Bearer ${login.token}`;
  });

  after(async () => {
    await agent.close().catch(() => undefined);
    await cluster?.stopAll();
  });

  test('every write acknowledged through any node is read back at once, byte for byte, on every node; digests agree', { timeout: 120_000 }, () =>
    withLogs(async () => {
      const master = await everyoneBack();
      const random = rng(seed);
      interface Expected {
        properties: Record<string, unknown>;
        binaries: Map<string, { bytes: Buffer; contentType: string }>;
      }
      const model = new Map<string, Expected>();
      const childNames = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
      const randomValue = (depth: number): unknown => {
        switch (random.int(depth > 1 ? 4 : 5)) {
          case 0:
            return random.int(1_000_000) - 500_000;
          case 1:
            return `s${random.int(1e9)} ünï ${'x'.repeat(random.int(40))}`;
          case 2:
            return random.int(2) === 0;
          case 3:
            return [random.int(10), `e${random.int(10)}`];
          default: {
            const object: Record<string, unknown> = {};
            for (let i = random.int(3); i >= 0; i--) object[`k${random.int(6)}`] = randomValue(depth + 1);
            return object;
          }
        }
      };
      const randomProperties = (): Record<string, unknown> => {
        const properties: Record<string, unknown> = {};
        for (let i = random.int(4); i >= 0; i--) properties[`p${random.int(8)}`] = randomValue(0);
        return properties;
      };
      /** RFC 7396, written out here rather than borrowed from src/. */
      const mergePatch = (target: unknown, patch: unknown): unknown => {
        if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
        const result: Record<string, unknown> = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
        for (const [key, value] of Object.entries(patch)) {
          if (value === null) delete result[key];
          else result[key] = mergePatch(result[key], value);
        }
        return result;
      };

      /** Reads `path` on every node in both modes right after the write at `index` was acknowledged. */
      const checkEverywhere = async (path: string, index: number, what: string) => {
        const expected = model.get(path);
        let first: string | undefined;
        for (const node of names) {
          for (const consistency of ['sequential', 'linearizable']) {
            const read = await send(node, 'GET', `/api/v1/content${path}?consistency=${consistency}`);
            const where = `${what}: ${consistency} read of ${path} on ${node}`;
            assert.ok(indexOf(read) >= index, `${where} reflects index ${indexOf(read)}, before the acknowledged ${index}`);
            if (expected === undefined) {
              assert.equal(read.status, 404, `${where}: deleted, but ${read.status} ${read.text}`);
              continue;
            }
            assert.equal(read.status, 200, `${where}: ${read.text}`);
            assert.deepEqual(read.json?.['properties'], expected.properties, where);
            const binaries = read.json?.['binaries'] as Record<string, { sha256: string; size: number; contentType: string }>;
            assert.deepEqual(
              binaries,
              Object.fromEntries(
                [...expected.binaries].map(([name, b]) => [name, { sha256: createHash('sha256').update(b.bytes).digest('hex'), size: b.bytes.length, contentType: b.contentType }]),
              ),
              `${where}: binaries`,
            );
            // Ids, versions, times and authors come from the journal: the whole answer is the same everywhere.
            first ??= read.text;
            assert.equal(read.text, first, `${where}: the same bytes as on ${names[0]}`);
          }
          for (const [property, binary] of expected?.binaries ?? []) {
            const read = await send(node, 'GET', `/api/v1/binaries${path}?property=${property}&consistency=sequential`);
            assert.equal(read.status, 200, `${what}: binary ${path}#${property} on ${node}: ${read.text}`);
            assert.equal(read.headers['content-type'], binary.contentType);
            assert.ok(read.bytes.equals(binary.bytes), `${what}: binary ${path}#${property} on ${node} is byte-identical (${read.bytes.length} vs ${binary.bytes.length} bytes)`);
          }
        }
      };

      const created = await send(master, 'PUT', '/api/v1/content/rand', { json: { properties: {} } });
      assert.ok(isAcknowledged(created.status), created.text);
      const writes = 60;
      const forwardedBy = new Set<string>();
      for (let i = 0; i < writes; i++) {
        const via = random.pick(names);
        const existing = [...model.keys()];
        const kind = existing.length === 0 ? 0 : random.int(10);
        let reply: Reply;
        let path: string;
        let what: string;
        if (kind < 4) {
          path = `/rand/${random.pick(childNames)}`;
          const properties = randomProperties();
          what = `write ${i}: PUT ${path} via ${via}`;
          reply = await send(via, 'PUT', `/api/v1/content${path}`, { json: { properties } });
          assert.equal(reply.status, model.has(path) ? 200 : 201, `${what}: ${reply.text}`);
          model.set(path, { properties, binaries: model.get(path)?.binaries ?? new Map() });
        } else if (kind < 6) {
          path = random.pick(existing);
          const patch: Record<string, unknown> = randomProperties();
          const current = Object.keys(model.get(path)!.properties);
          if (current.length > 0) patch[random.pick(current)] = null;
          what = `write ${i}: PATCH ${path} via ${via}`;
          reply = await send(via, 'PATCH', `/api/v1/content${path}`, { json: patch });
          assert.equal(reply.status, 200, `${what}: ${reply.text}`);
          model.get(path)!.properties = mergePatch(model.get(path)!.properties, patch) as Record<string, unknown>;
        } else if (kind < 7) {
          path = random.pick(existing);
          what = `write ${i}: DELETE ${path} via ${via}`;
          reply = await send(via, 'DELETE', `/api/v1/content${path}`);
          assert.equal(reply.status, 200, `${what}: ${reply.text}`);
          model.delete(path);
        } else {
          path = random.pick(existing);
          const property = random.pick(['file', 'thumb']);
          const contentType = random.pick(['application/octet-stream', 'image/png', 'text/plain; charset=utf-8']);
          const bytes = randomBytes(1 + random.int(4096));
          what = `write ${i}: PUT binary ${path}#${property} (${bytes.length} bytes) via ${via}`;
          reply = await send(via, 'PUT', `/api/v1/binaries${path}?property=${property}`, { bytes, contentType });
          assert.equal(reply.status, 200, `${what}: ${reply.text}`);
          model.get(path)!.binaries.set(property, { bytes, contentType });
        }
        // Forwarding says so on the answer; the master answers itself.
        assert.equal(reply.headers['x-conclave-forwarded-from'], via === master ? undefined : via, `${what}: X-Conclave-Forwarded-From`);
        if (via !== master) forwardedBy.add(via);
        await checkEverywhere(path, indexOf(reply), what);
      }
      assert.equal(forwardedBy.size, 2, 'writes went through both replicas');

      // Once more, everything, everywhere.
      const lastIndex = (await cluster.settledDigests()).at(0)!.appliedIndex;
      for (const path of childNames.map((n) => `/rand/${n}`)) await checkEverywhere(path, 0, `at the end (index ${lastIndex})`);
      await assertDigestsEqual(names, 'after the random writes');

      // And the operator's view of the same: conclave digest --all agrees (exit 0).
      const cli = await runConclave(['digest', '--all', '--url', cluster.url(master)], { CONCLAVE_PASSWORD: 'process-test-password' }, 30_000);
      assert.equal(cli.code, 0, `conclave digest --all\n${cli.stdout}\n${cli.stderr}`);
    }),
  );

  test('a replica killed during 10,000 writes catches up by itself to a byte-identical digest', { timeout: 300_000 }, () =>
    withLogs(async () => {
      const master = await everyoneBack();
      const victim = names.find((n) => n !== master)!;
      const through = names.filter((n) => n !== victim);
      const parent = await send(master, 'PUT', '/api/v1/content/bulk', { json: { properties: {} } });
      assert.ok(isAcknowledged(parent.status), parent.text);
      await cluster.kill(victim);

      const total = 10_000;
      const clients = 32;
      const failures: string[] = [];
      const started = performance.now();
      await eachConcurrently(
        Array.from({ length: total }, (_, i) => i),
        clients,
        async (i) => {
          const via = through[i % through.length]!;
          const reply = await send(via, 'PUT', `/api/v1/content/bulk/k${i}`, { json: { properties: { i, via } } });
          if (reply.status !== 201) failures.push(`k${i} via ${via}: ${reply.status} ${reply.text}`);
        },
      );
      const seconds = (performance.now() - started) / 1000;
      console.log(`${total} writes with ${clients} clients through ${through.join(' and ')} while ${victim} was down: ${seconds.toFixed(1)} s, ${(total / seconds).toFixed(0)} writes/s`);
      assert.deepEqual(failures.slice(0, 5), [], `${failures.length} of ${total} writes were not acknowledged while ${victim} was down`);
      const during = await cluster.status(master);
      assert.equal(during.nodes.find((n) => n.name === victim)?.inSync, false, `${victim} is out of the in-sync set while down`);

      await cluster.start(victim);
      // Back in the in-sync set, at the master's applied index (whoever is master by now).
      await cluster.caughtUp(120_000);
      // A sample read on the node that was down, sequential.
      const random = rng(seed + 2);
      const sample = Array.from({ length: 300 }, () => random.int(total));
      await eachConcurrently(sample, 16, async (i) => {
        const read = await send(victim, 'GET', `/api/v1/content/bulk/k${i}?consistency=sequential`);
        assert.equal(read.status, 200, `k${i} on ${victim}: ${read.text}`);
        assert.deepEqual(read.json?.['properties'], { i, via: through[i % through.length] });
      });
      const digests = await assertDigestsEqual(names, `after ${victim} caught up`);
      const digest = digests.find((d) => d.node === victim)!;
      assert.ok(digest.counts.nodes >= total + 2, `${victim} holds the ${total} nodes (${digest.counts.nodes} in all)`);
    }),
  );

  test('kill -9 of the master under write load loses no acknowledged write', { timeout: 180_000 }, () =>
    withLogs(async () => {
      const oldMaster = await everyoneBack();
      const parent = await send(oldMaster, 'PUT', '/api/v1/content/failover', { json: { properties: {} } });
      assert.ok(isAcknowledged(parent.status), parent.text);

      const acknowledged = new Map<string, { w: number; n: number; via: string }>();
      // Outcomes that promise nothing: the write may or may not be there.
      const uncertain = new Map<string, string>();
      // Refusals that promise the write was not applied (nothing was sent, or it was never committed).
      const refused = new Map<string, string>();
      const notApplied = new Set(['CLUSTER_NO_MASTER', 'MASTER_UNREACHABLE', 'MASTER_CHANGED', 'NOT_MASTER', 'OVERLOADED']);
      const unexpected: string[] = [];
      let stop = false;
      let killed = false;
      let acknowledgedAfterKill = 0;
      const random = rng(seed + 3);
      const workers = Array.from({ length: 12 }, async (_, w) => {
        for (let n = 0; !stop; n++) {
          const live = names.filter((name) => cluster.node(name).process !== null);
          const via = random.pick(live);
          const path = `/failover/w${w}-${n}`;
          const properties = { w, n, via };
          const sentAfterKill = killed;
          try {
            const reply = await send(via, 'PUT', `/api/v1/content${path}`, { json: { properties } });
            if (reply.status === 201) {
              acknowledged.set(path, properties);
              if (sentAfterKill) acknowledgedAfterKill++;
            } else if (reply.code === 'WRITE_OUTCOME_UNKNOWN') uncertain.set(path, reply.code);
            else if (reply.code !== undefined && notApplied.has(reply.code)) refused.set(path, reply.code);
            else unexpected.push(`${path} via ${via}: ${reply.status} ${reply.text}`);
          } catch (err) {
            uncertain.set(path, (err as { code?: string }).code ?? String(err));
          }
          // Without a master every answer is immediate: back off a little rather than spin.
          if (!acknowledged.has(path)) await new Promise((resolve) => setTimeout(resolve, 20));
        }
      });
      try {
        await waitFor('200 acknowledged writes before the kill', () => (acknowledged.size >= 200 ? true : undefined), 60_000);
        const beforeKill = acknowledged.size;
        killed = true;
        await cluster.kill(oldMaster);
        await waitFor('200 writes acknowledged after the kill (a new master)', () => (acknowledgedAfterKill >= 200 ? true : undefined), 60_000);
        console.log(`acknowledged before the kill: ${beforeKill}; after: ${acknowledgedAfterKill}`);
      } finally {
        stop = true;
        await Promise.all(workers);
      }
      assert.deepEqual(unexpected, [], 'every failed write names an outcome from the catalogue');

      await cluster.start(oldMaster);
      const { master: newMaster } = await cluster.caughtUp(60_000);
      assert.notEqual(newMaster, oldMaster, 'another node was elected');

      const missing: string[] = [];
      await eachConcurrently([...acknowledged], 16, async ([path, properties]) => {
        for (const node of names) {
          const read = await send(node, 'GET', `/api/v1/content${path}?consistency=sequential`);
          if (read.status !== 200) missing.push(`${path} on ${node}: ${read.status} ${read.text}`);
          else assert.deepEqual(read.json?.['properties'], properties, `${path} on ${node}`);
        }
      });
      assert.deepEqual(missing.slice(0, 10), [], `${missing.length} reads of acknowledged writes failed (of ${acknowledged.size} writes on ${names.length} nodes)`);

      const present = (path: string) => send(newMaster, 'GET', `/api/v1/content${path}?consistency=linearizable`).then((r) => r.status === 200);
      let uncertainPresent = 0;
      for (const path of uncertain.keys()) if (await present(path)) uncertainPresent++;
      const refusedButPresent: string[] = [];
      for (const [path, code] of refused) if (await present(path)) refusedButPresent.push(`${path} (${code})`);
      const codes = [...new Set([...uncertain.values(), ...refused.values()])].join(', ');
      console.log(`acknowledged ${acknowledged.size}; uncertain ${uncertain.size} (present afterwards: ${uncertainPresent}); refused ${refused.size}; failures: ${codes}`);
      assert.deepEqual(refusedButPresent, [], 'a write refused with a "not applied" code is not there');
      await assertDigestsEqual(names, 'after the failover');
    }),
  );

  test("a former master's unacknowledged tail is discarded when it rejoins", { timeout: 180_000 }, () =>
    withLogs(async () => {
      const oldMaster = await everyoneBack();
      const others = names.filter((n) => n !== oldMaster);
      const parent = await send(oldMaster, 'PUT', '/api/v1/content/tail', { json: { properties: {} } });
      assert.ok(isAcknowledged(parent.status), parent.text);
      for (let i = 0; i < 5; i++) {
        const reply = await send(others[i % 2]!, 'PUT', `/api/v1/content/tail/before-${i}`, { json: { properties: { i } } });
        assert.equal(reply.status, 201, reply.text);
      }

      // Isolate the master: with both others frozen it can append but never commit. Writes sent to it now go into
      // its journal and are answered WRITE_OUTCOME_UNKNOWN after cluster.writeTimeoutMs (or CLUSTER_NO_MASTER once it
      // stepped down for want of a quorum).
      await cluster.pause(...others);
      const lostPaths = Array.from({ length: 10 }, (_, i) => `/tail/lost-${i}`);
      const answers = await Promise.all(
        lostPaths.map((path) =>
          send(oldMaster, 'PUT', `/api/v1/content${path}`, { json: { properties: { lost: true } } }).then(
            (reply) => ({ path, status: reply.status, code: reply.code ?? reply.text, index: (reply.json?.['error'] as { index?: number } | undefined)?.index }),
            (err: Error) => ({ path, status: 0, code: String(err), index: undefined }),
          ),
        ),
      );
      assert.deepEqual(answers.filter((a) => isAcknowledged(a.status)), [], 'nothing is acknowledged without a quorum');
      const proposed = answers.filter((a) => a.code === 'WRITE_OUTCOME_UNKNOWN');
      console.log(`answers of the isolated master: ${answers.map((a) => `${a.path} ${a.status} ${a.code}${a.index !== undefined ? `@${a.index}` : ''}`).join('; ')}`);

      // The frozen nodes are killed, not resumed: what the master sent them waits in their sockets' receive buffers,
      // and once resumed they would read and append the tail, and the next master would rightly commit it.
      await cluster.kill(oldMaster, ...others);
      const onDisk = journalOnDisk(cluster.node(oldMaster).dir);
      const tail = lostPaths.filter((p) => onDisk.paths.has(p));
      assert.ok(
        tail.length > 0,
        `the isolated master appended some of the writes to its journal (answers: ${JSON.stringify(answers)}); none are there, so there is no tail to discard`,
      );
      for (const path of tail) assert.ok(onDisk.paths.get(path)!.index > onDisk.commitIndex, `${path} is past the old master's commit index ${onDisk.commitIndex}`);
      for (const answer of proposed) assert.ok(tail.includes(answer.path), `${answer.path} was answered WRITE_OUTCOME_UNKNOWN, so it was appended`);

      // The other two elect a master without the old one and take writes.
      await cluster.start(...others);
      const newMaster = await cluster.write('/tail/after-0', { i: 0 }, 60_000);
      assert.ok(others.includes(newMaster), `${newMaster} is one of ${others.join(', ')}`);
      for (let i = 1; i < 5; i++) {
        const reply = await send(others[i % 2]!, 'PUT', `/api/v1/content/tail/after-${i}`, { json: { properties: { i } } });
        assert.equal(reply.status, 201, reply.text);
      }

      await cluster.start(oldMaster);
      const { master, status } = await cluster.caughtUp(60_000);
      assert.equal(master, newMaster, 'the new master stays master');
      assert.equal(status.nodes.find((n) => n.name === oldMaster)?.role, 'REPLICA', `${oldMaster} rejoined as a replica`);

      for (const node of names) {
        for (const path of lostPaths) {
          for (const consistency of ['sequential', 'linearizable']) {
            const read = await send(node, 'GET', `/api/v1/content${path}?consistency=${consistency}`);
            assert.equal(read.status, 404, `the unacknowledged ${path} is not visible on ${node} (${consistency}): ${read.text}`);
          }
        }
        for (const path of [...Array.from({ length: 5 }, (_, i) => `/tail/before-${i}`), ...Array.from({ length: 5 }, (_, i) => `/tail/after-${i}`)]) {
          const read = await send(node, 'GET', `/api/v1/content${path}?consistency=sequential`);
          assert.equal(read.status, 200, `${path} on ${node}: ${read.text}`);
        }
      }

      // Last, as it holds each node's event loop for a moment.
      await assertDigestsEqual([newMaster, oldMaster, ...others.filter((n) => n !== newMaster)], 'after the old master rejoined');

      // It says what it threw away: the entries past the new master's, which no client was told succeeded.
      const discardLine = cluster.output(oldMaster).split('\n').find((line) => /discarding \d+ journal entr/.test(line));
      assert.ok(discardLine !== undefined, `${oldMaster} logs that it discarded its unacknowledged entries`);
      assert.match(discardLine, /put \/tail\/lost-/, `the log line names the discarded writes: ${discardLine}`);

      // And the journal itself no longer holds them.
      await cluster.kill(oldMaster);
      const rejoined = journalOnDisk(cluster.node(oldMaster).dir);
      assert.deepEqual(lostPaths.filter((p) => rejoined.paths.has(p)), [], `${oldMaster}'s journal no longer holds the discarded entries`);
    }),
  );
});
