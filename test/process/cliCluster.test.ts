import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { Agent, request } from 'undici';

import { freePort, killAndWait, runConclave, spawnConclave, type CliProcess } from '../helpers/cli.js';
import { ProcessCluster } from '../helpers/cluster.js';
import { alive, demoReady, freeBasePort } from '../helpers/demo.js';
import { waitFor } from '../helpers/tmp.js';

/**
 * `conclave status` against a real 3-process cluster (asked of the master and of a replica, which it follows to
 * the master), its errors, and `conclave demo` end to end: ready, credentials that write, Ctrl-C stops every node.
 */

const password = 'process-test-password';

/** One HTTP request on its own connection pool, closed afterwards, so no keep-alive outlives it. */
async function http(url: string, options: { method?: 'GET' | 'PUT'; authorization?: string; body?: unknown } = {}): Promise<{ status: number; body: unknown }> {
  const agent = new Agent();
  try {
    const res = await request(url, {
      dispatcher: agent,
      method: options.method ?? 'GET',
      headers: {
        ...(options.authorization === undefined ? {} : { authorization: options.authorization }),
        ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.body.text();
    return { status: res.statusCode, body: text === '' ? undefined : (JSON.parse(text) as unknown) };
  } finally {
    await agent.close();
  }
}

const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

/** The table rows (lines that start with a node's name) and how often MASTER appears. */
function rowsOf(stdout: string, names: readonly string[]): Map<string, string[]> {
  const rows = new Map<string, string[]>(names.map((n) => [n, []]));
  for (const line of stdout.split('\n')) {
    const first = line.split(/\s+/)[0]!;
    rows.get(first)?.push(line);
  }
  return rows;
}

function assertTable(stdout: string, names: readonly string[], master: string): void {
  const rows = rowsOf(stdout, names);
  for (const name of names) assert.equal(rows.get(name)!.length, 1, `one row for ${name}:\n${stdout}`);
  assert.equal(stdout.match(/\bMASTER\b/g)?.length, 1, `MASTER appears exactly once:\n${stdout}`);
  assert.match(rows.get(master)![0]!, /\bMASTER\b/, `the master's row says MASTER:\n${stdout}`);
  assert.match(stdout, /Answered by:\s+\S+ \(the master: authoritative\)/);
}

test('conclave status shows the master view of a 3-process cluster, from the master or a replica; --json; bad credentials; nobody there', async () => {
  const names = ['n1', 'n2', 'n3'];
  const cluster = await ProcessCluster.create(names, (_name, seeds) => [...seeds.flatMap((s) => ['--seed', s]), '--initial-master-nodes', names.join(',')]);
  try {
    await cluster.start(...names);
    const master = await cluster.write('/status-probe', { v: 1 });
    await waitFor('all three members known to the master', async () => ((await cluster.status(master)).nodes.length === 3 ? true : undefined), 15_000);
    const replica = names.find((n) => n !== master)!;
    // The replica must know the master and its HTTP address before it can point there.
    await waitFor('the replica to know the master', async () => {
      const s = await cluster.status(replica);
      return s.master?.name === master && s.nodes.length === 3 ? true : undefined;
    });

    const fromMaster = await runConclave(['status', '--url', cluster.url(master), '--password', password]);
    assert.equal(fromMaster.code, 0, fromMaster.stderr);
    assertTable(fromMaster.stdout, names, master);
    assert.equal(fromMaster.stderr, '', 'nothing to say when the master answers');

    // The password from CONCLAVE_PASSWORD, the URL without a scheme; the replica is followed to the master.
    const fromReplica = await runConclave(['status', '--url', cluster.url(replica).replace('http://', '')], { CONCLAVE_PASSWORD: password });
    assert.equal(fromReplica.code, 0, fromReplica.stderr);
    assertTable(fromReplica.stdout, names, master);
    assert.match(fromReplica.stderr, new RegExp(`${replica} at \\S+ is not the master, so its answer is not authoritative; asking the master ${master} at ${cluster.url(master)}`));

    const json = await runConclave(['status', '--url', cluster.url(replica), '--json'], { CONCLAVE_PASSWORD: password });
    assert.equal(json.code, 0, json.stderr);
    const body = JSON.parse(json.stdout) as { authoritative: boolean; master: { name: string }; nodes: { name: string }[] };
    assert.equal(body.authoritative, true, '--json follows to the master too');
    assert.equal(body.master.name, master);
    assert.deepEqual(body.nodes.map((n) => n.name).sort(), names);

    const wrong = await runConclave(['status', '--url', cluster.url(master), '--password', 'not-the-password']);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /wrong credentials; pass --user\/--password or CONCLAVE_PASSWORD/);
    assert.equal(wrong.stdout, '');
  } finally {
    await cluster.stopAll();
  }

  const unused = await freePort();
  const nobody = await runConclave(['status', '--url', `http://127.0.0.1:${unused}`, '--password', password]);
  assert.equal(nobody.code, 1);
  assert.ok(nobody.stderr.includes(`http://127.0.0.1:${unused}`), `names the URL:\n${nobody.stderr}`);
  assert.match(nobody.stderr, /is the node running\? pass --url/);
});



/** Whether something accepts TCP connections on the port. */
function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}


test('conclave demo --nodes 3 starts a cluster that takes writes with the printed credentials; SIGINT stops every node and exits 0', async () => {
  const base = await freeBasePort();
  const demo: CliProcess = spawnConclave(['demo', '--nodes', '3', '--base-port', String(base)]);
  let pids: number[] = [];
  try {
    const out = await demoReady(demo);
    const rows = [...out.matchAll(/^\s+(node-\d)\s+(http:\/\/127\.0\.0\.1:(\d+))\s+(master|replica)\s.*\(pid (\d+)\)$/gm)];
    assert.deepEqual(rows.map((r) => r[1]), ['node-1', 'node-2', 'node-3'], out);
    assert.deepEqual(rows.map((r) => Number(r[3])), [base + 1, base + 2, base + 3]);
    assert.equal(rows.filter((r) => r[4] === 'master').length, 1, 'one master');
    pids = rows.map((r) => Number(r[5]));
    const printed = /password:\s+(\S+)/.exec(out)?.[1];
    assert.ok(printed !== undefined && printed.length >= 12, `a generated password of 12+ characters:\n${out}`);
    const dir = /data and logs in (\S+?)[,)]/.exec(out)?.[1];
    assert.ok(dir !== undefined && existsSync(join(dir, 'node-1.log')), `each node logs to DIR/node-i.log:\n${out}`);
    assert.doesNotMatch(out, /"msg":/, 'no node output on the console');

    const auth = basic('admin', printed);
    const urls = rows.map((r) => r[2]!);
    const master = await waitFor('a master', async () => {
      for (const url of urls) if ((await http(`${url}/health/master`)).status === 200) return url;
      return undefined;
    });
    const written = await http(`${master}/api/v1/content/demo-test`, { method: 'PUT', authorization: auth, body: { properties: { v: 1 } } });
    assert.ok(written.status === 200 || written.status === 201, JSON.stringify(written));
    const replica = urls.find((u) => u !== master)!;
    await waitFor('the write to reach a replica', async () => ((await http(`${replica}/api/v1/content/demo-test`, { authorization: auth })).status === 200 ? true : undefined));

    demo.child.kill('SIGINT');
    const code = await waitFor('the demo to exit after SIGINT', () => demo.exitCode(), 30_000);
    assert.equal(code, 0, demo.stderr());
    assert.match(demo.stderr(), /every node stopped cleanly/, 'each node exited 0 after its SIGTERM');
    for (const pid of pids) assert.equal(alive(pid), false, `node process ${pid} is gone`);
    for (const port of [1, 2, 3, 101, 102, 103].map((d) => base + d)) assert.equal(await answers(port), false, `port ${port} no longer answers`);
    assert.equal(existsSync(dir), false, 'the temporary directory is removed');
  } finally {
    if (demo.exitCode() === undefined) await killAndWait(demo);
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
});
