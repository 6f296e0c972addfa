import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { Agent, request } from 'undici';

import { freePort, killAndWait, runConclave, spawnConclave, waitListening, type CliProcess } from '../helpers/cli.js';
import { ProcessCluster } from '../helpers/cluster.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

const jsonLogs = { CONCLAVE_LOG_FORMAT: 'json' };

async function get(url: string, authorization: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const agent = new Agent();
  try {
    const res = await request(url, { dispatcher: agent, headers: { authorization } });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
  } finally {
    await agent.close();
  }
}

const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
const printedPasswords = (text: string) => [...text.matchAll(/password:\s+(\S+)/g)].map((m) => m[1]!);

async function stop(proc: CliProcess): Promise<number | string> {
  proc.child.kill('SIGTERM');
  return waitFor('the node to exit after SIGTERM', () => proc.exitCode(), 15_000);
}

test('a first start that fails after creating the repository (port in use) keeps the generated password for the next start', async () => {
  const tmp = tempDir('conclave-pw-port-');
  const running: CliProcess[] = [];
  const port = await freePort();
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve));
  try {
    const failed = spawnConclave(['start', '--data', tmp.dir, '--http-port', String(port)], jsonLogs);
    running.push(failed);
    assert.equal(await waitFor('the start to fail on the port in use', () => failed.exitCode(), 20_000), 1);
    const failedOutput = failed.stdout() + failed.stderr();
    assert.match(failedOutput, /EADDRINUSE/);
    assert.deepEqual(printedPasswords(failedOutput), [], `nothing printed that nobody will read:\n${failedOutput}`);
    await new Promise<void>((resolve) => blocker.close(() => resolve()));

    const second = spawnConclave(['start', '--data', tmp.dir, '--http-port', '0'], jsonLogs);
    running.push(second);
    const { url } = await waitListening(second);
    const printed = printedPasswords(second.stdout());
    assert.equal(printed.length, 1, `the kept password is printed once the node listens:\n${second.stdout()}`);
    assert.equal((await get(`${url}/api/v1/auth/whoami`, basic('admin', printed[0]!))).status, 200);
    assert.equal(await stop(second), 0);

    const third = spawnConclave(['start', '--data', tmp.dir, '--http-port', '0'], jsonLogs);
    running.push(third);
    await waitListening(third);
    assert.equal(await stop(third), 0);
    assert.deepEqual(printedPasswords(third.stdout() + third.stderr()), [], 'shown once only');
  } finally {
    blocker.close();
    for (const proc of running) await killAndWait(proc);
    tmp.cleanup();
  }
});

test('conclave node reset-admin-password on a stopped node: proposed through the journal at the next start, once', async () => {
  const tmp = tempDir('conclave-pw-reset-');
  const running: CliProcess[] = [];
  const start = async () => {
    const proc = spawnConclave(['start', '--data', tmp.dir, '--http-port', '0'], jsonLogs);
    running.push(proc);
    return { proc, url: (await waitListening(proc)).url };
  };
  try {
    const first = spawnConclave(['start', '--data', tmp.dir, '--http-port', '0'], { ...jsonLogs, CONCLAVE_ADMIN_PASSWORD: 'old-password-1' });
    running.push(first);
    const { url } = await waitListening(first);
    const before = await get(`${url}/api/v1/users/admin`, basic('admin', 'old-password-1'));
    assert.equal(before.status, 200);
    const refusedWhileRunning = await runConclave(['node', 'reset-admin-password', '--data', tmp.dir], { CONCLAVE_ADMIN_PASSWORD: 'new-password-2' });
    assert.equal(refusedWhileRunning.code, 1, 'a running node holds its database: the reset is refused');
    assert.equal(await stop(first), 0);

    // From the environment: never printed, never in argv.
    const fromEnv = await runConclave(['node', 'reset-admin-password', '--data', tmp.dir], { CONCLAVE_ADMIN_PASSWORD: 'new-password-2' });
    assert.equal(fromEnv.code, 0, fromEnv.stderr);
    assert.ok(!fromEnv.stdout.includes('new-password-2'), fromEnv.stdout);

    const second = await start();
    await waitFor('the reset to be applied', async () => ((await get(`${second.url}/api/v1/auth/whoami`, basic('admin', 'new-password-2'))).status === 200 ? true : undefined), 15_000);
    assert.equal((await get(`${second.url}/api/v1/auth/whoami`, basic('admin', 'old-password-1'))).status, 401);
    const after = await get(`${second.url}/api/v1/users/admin`, basic('admin', 'new-password-2'));
    assert.equal(after.body['version'], (before.body['version'] as number) + 1, 'one user change, through the journal');
    assert.equal(await stop(second.proc), 0);

    // Generated: printed once by the command.
    const generated = await runConclave(['node', 'reset-admin-password', '--data', tmp.dir]);
    assert.equal(generated.code, 0, generated.stderr);
    const printed = printedPasswords(generated.stdout);
    assert.equal(printed.length, 1, generated.stdout);
    const third = await start();
    await waitFor('the second reset to be applied', async () => ((await get(`${third.url}/api/v1/auth/whoami`, basic('admin', printed[0]!))).status === 200 ? true : undefined), 15_000);
    const version = (await get(`${third.url}/api/v1/users/admin`, basic('admin', printed[0]!))).body['version'];
    assert.equal(await stop(third.proc), 0);

    // Consumed: the next start proposes nothing again.
    const fourth = await start();
    assert.equal((await get(`${fourth.url}/api/v1/users/admin`, basic('admin', printed[0]!))).body['version'], version);
    assert.equal(await stop(fourth.proc), 0);
  } finally {
    for (const proc of running) await killAndWait(proc);
    tmp.cleanup();
  }
});

test('a reset recorded on a stopped replica reaches every node through the journal (forwarded to the master), even after admin was demoted', async () => {
  const names = ['p1', 'p2', 'p3'];
  const cluster = await ProcessCluster.create(names, (_name, seeds) => [...seeds.flatMap((s) => ['--seed', s]), '--initial-master-nodes', names.join(',')]);
  try {
    await cluster.start(...names);
    const { master } = await cluster.caughtUp();
    const replica = names.find((n) => n !== master)!;
    // Locked out the way a reset exists for: another admin took admin's role away. The master must take the reset
    // from the node that recorded it, not from a user who may write users (there is none left to vouch for it).
    const put = (name: string, body: Record<string, unknown>, auth: string) =>
      fetch(`${cluster.url(master)}/api/v1/users/${name}`, { method: 'PUT', headers: { authorization: auth, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal((await put('ops', { password: 'ops-password', roles: ['admin'] }, basic('admin', 'process-test-password'))).status, 201);
    assert.equal((await put('admin', { roles: ['reader'] }, basic('ops', 'ops-password'))).status, 200);
    await cluster.converged('/');
    await cluster.kill(replica);
    const recorded = await runConclave(['node', 'reset-admin-password', '--data', cluster.node(replica).dir], { CONCLAVE_ADMIN_PASSWORD: 'through-the-journal' });
    assert.equal(recorded.code, 0, recorded.stderr);
    await cluster.start(replica);
    for (const name of names) {
      await waitFor(
        `${name} to take the new password`,
        async () => ((await get(`${cluster.url(name)}/api/v1/auth/whoami`, basic('admin', 'through-the-journal'))).status === 200 ? true : undefined),
        20_000,
      );
      assert.equal((await get(`${cluster.url(name)}/api/v1/auth/whoami`, basic('admin', 'process-test-password'))).status, 401, `${name}: the old password is gone`);
      const who = await get(`${cluster.url(name)}/api/v1/auth/whoami`, basic('admin', 'through-the-journal'));
      assert.deepEqual(who.body['roles'], ['admin'], `${name}: admin is an admin again`);
    }
  } finally {
    await cluster.stopAll();
  }
});
