import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { Agent, request } from 'undici';

import { killAndWait, spawnConclave, type CliProcess } from '../helpers/cli.js';
import { alive, demoReady, freeBasePort } from '../helpers/demo.js';
import { WaitAborted, waitFor } from '../helpers/tmp.js';

async function http(url: string, options: { method?: 'GET' | 'PUT'; authorization?: string; body?: unknown } = {}): Promise<{ status: number }> {
  const agent = new Agent();
  try {
    const res = await request(url, {
      method: options.method ?? 'GET',
      dispatcher: agent,
      headers: { ...(options.authorization === undefined ? {} : { authorization: options.authorization }), ...(options.body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
      signal: AbortSignal.timeout(5_000),
    });
    await res.body.text();
    return { status: res.statusCode };
  } catch {
    return { status: 0 };
  } finally {
    await agent.close();
  }
}




/**
 * The README invites killing the master of `conclave demo` to see a failover; the demo then tore everything down
 * (and deleted the data). Now the others keep running, a new master takes writes, and the demo prints the command
 * that starts the killed node again, which rejoins.
 */
test('conclave demo: a killed node leaves the others running, and the printed command brings it back', async () => {
  const base = await freeBasePort();
  const demo: CliProcess = spawnConclave(['demo', '--nodes', '3', '--base-port', String(base)]);
  let pids: number[] = [];
  let restarted: ReturnType<typeof spawn> | null = null;
  try {
    const out = await demoReady(demo);
    const rows = [...out.matchAll(/^\s+(node-\d)\s+(http:\/\/127\.0\.0\.1:\d+)\s+(master|replica)\s.*\(pid (\d+)\)$/gm)];
    pids = rows.map((r) => Number(r[4]));
    const password = /password:\s+(\S+)/.exec(out)![1]!;
    const auth = `Basic ${Buffer.from(`admin:${password}`).toString('base64')}`;
    assert.match(out, new RegExp(`CONCLAVE_PASSWORD=${password} npx conclave status --url http://127\\.0\\.0\\.1:\\d+`), 'the banner prints a status command that works');

    const masterRow = rows.find((r) => r[3] === 'master') ?? rows[0]!;
    process.kill(Number(masterRow[4]), 'SIGKILL');
    const notice = await waitFor(
      'the demo to report the killed node',
      () => {
        if (demo.exitCode() !== undefined) throw new WaitAborted(`the demo stopped (${demo.exitCode()}) when one node was killed:\n${demo.stderr()}`);
        return /in another terminal:\n\s+(.+)$/m.exec(demo.stderr())?.[1];
      },
      15_000,
    );
    assert.match(demo.stderr(), new RegExp(`${masterRow[1]} exited \\(SIGKILL\\); node-\\d, node-\\d keep running`));
    const others = rows.filter((r) => r !== masterRow).map((r) => r[2]!);
    const newMaster = await waitFor('another master', async () => {
      for (const url of others) if ((await http(`${url}/health/master`)).status === 200) return url;
      return undefined;
    }, 20_000);
    const written = await http(`${newMaster}/api/v1/content/after-failover`, { method: 'PUT', authorization: auth, body: { properties: {} } });
    assert.equal(written.status, 201);
    assert.equal(demo.exitCode(), undefined, 'the demo still runs');

    // The printed command, as a user would paste it (without the shell's redirection).
    const words = notice.replace(/ >> .*$/, '').split(' ');
    restarted = spawn(words[0]!, words.slice(1), { stdio: 'ignore' });
    await waitFor('the killed node to rejoin', async () => ((await http(`${masterRow[2]}/health/ready`)).status === 200 ? true : undefined), 30_000);
    assert.equal((await http(`${masterRow[2]}/api/v1/content/after-failover`, { authorization: auth })).status, 200, 'it caught up');
    restarted.kill('SIGTERM');
    await waitFor('the restarted node to stop', () => (restarted!.exitCode !== null || restarted!.signalCode !== null ? true : undefined), 20_000);

    demo.child.kill('SIGINT');
    assert.equal(await waitFor('the demo to exit after SIGINT', () => demo.exitCode(), 30_000), 0, demo.stderr());
    for (const pid of pids) assert.equal(alive(pid), false, `node process ${pid} is gone`);
  } finally {
    if (demo.exitCode() === undefined) await killAndWait(demo);
    restarted?.kill('SIGKILL');
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
});
