import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Agent, request } from 'undici';

import { freePort, killAndWait, runConclave, spawnConclave, waitListening, type CliProcess } from '../helpers/cli.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

const password = 'process-test-password';
const jsonLogs = { CONCLAVE_LOG_FORMAT: 'json' };

/** GET with its own connection pool, closed afterwards, so no keep-alive connection outlives the call. */
async function get(url: string, authorization?: string): Promise<{ status: number; body: unknown }> {
  const agent = new Agent();
  try {
    const res = await request(url, { dispatcher: agent, headers: authorization === undefined ? {} : { authorization } });
    const text = await res.body.text();
    return { status: res.statusCode, body: text === '' ? undefined : (JSON.parse(text) as unknown) };
  } finally {
    await agent.close();
  }
}

function basic(user: string, pass: string): string {
  return `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
}

/** SIGTERM, then a bounded wait for the exit; returns the exit code. */
async function stop(proc: CliProcess): Promise<number | string> {
  proc.child.kill('SIGTERM');
  return waitFor('the node to exit after SIGTERM', () => proc.exitCode(), 15_000);
}

test('--help exits 0 and lists the start command', async () => {
  const { code, stdout } = await runConclave(['--help']);
  assert.equal(code, 0);
  assert.match(stdout, /^\s+start\b/m);
});

test('start --help exits 0 and documents --data and --http-port', async () => {
  const { code, stdout } = await runConclave(['start', '--help']);
  assert.equal(code, 0);
  assert.match(stdout, /--data\b/);
  assert.match(stdout, /--http-port\b/);
  assert.match(stdout, /--config\b/);
});

interface BadCase {
  readonly name: string;
  readonly env?: Record<string, string>;
  readonly yaml?: string;
  readonly args?: string[];
  /** Everything stderr must name: the setting and where it came from. "$FILE" stands for the config file's path. */
  readonly names: string[];
}

const badCases: BadCase[] = [
  { name: 'CONCLAVE_HTTP_PORT=notaport', env: { CONCLAVE_HTTP_PORT: 'notaport' }, names: ['http.port', 'environment variable CONCLAVE_HTTP_PORT'] },
  { name: 'CONCLAVE_HTTP_PORT=70000 (out of range)', env: { CONCLAVE_HTTP_PORT: '70000' }, names: ['http.port', 'CONCLAVE_HTTP_PORT'] },
  { name: 'an unknown CONCLAVE_FOO=1', env: { CONCLAVE_FOO: '1' }, names: ['CONCLAVE_FOO', 'environment variable'] },
  { name: 'a bad value in the config file', yaml: 'http:\n  port: notaport\n', names: ['http.port', '$FILE'] },
  { name: 'an unknown key in a section of the config file', yaml: 'http:\n  prot: 7400\n', names: ['prot', '$FILE'] },
  { name: 'an unknown section in the config file', yaml: 'htp:\n  port: 7400\n', names: ['htp', '$FILE'] },
  { name: '--http-port notaport on the command line', args: ['--http-port', 'notaport'], names: ['--http-port', 'notaport'] },
];

for (const bad of badCases) {
  test(`an invalid setting exits 2 and names the setting and its source: ${bad.name}`, async () => {
    const tmp = tempDir('conclave-cli-bad-');
    try {
      const file = join(tmp.dir, 'conclave.yaml');
      const dataDir = join(tmp.dir, 'data');
      const args = ['start', '--data', dataDir];
      if (bad.yaml !== undefined) {
        writeFileSync(file, bad.yaml);
        args.push('--config', file);
      }
      args.push(...(bad.args ?? []));
      const { code, stdout, stderr } = await runConclave(args, { CONCLAVE_ADMIN_PASSWORD: password, ...jsonLogs, ...bad.env });
      assert.equal(code, 2, `exit code; stderr:\n${stderr}`);
      for (const name of bad.names) {
        assert.ok(stderr.includes(name === '$FILE' ? file : name), `stderr names ${name === '$FILE' ? `the file ${file}` : name}:\n${stderr}`);
      }
      assert.doesNotMatch(stdout, /"msg":"listening"/);
      assert.equal(existsSync(dataDir), false, 'an invalid configuration touches no data directory');
    } finally {
      tmp.cleanup();
    }
  });
}

test('settings take precedence flag > environment > file', async () => {
  const tmp = tempDir('conclave-cli-prec-');
  const running: CliProcess[] = [];
  try {
    const [filePort, envPort, flagPort] = [await freePort(), await freePort(), await freePort()];
    assert.equal(new Set([filePort, envPort, flagPort]).size, 3, 'three distinct free ports');
    const file = join(tmp.dir, 'conclave.yaml');
    writeFileSync(file, `http:\n  port: ${filePort}\nlog:\n  format: json\n`);
    const dataDir = join(tmp.dir, 'data');
    const base = { CONCLAVE_ADMIN_PASSWORD: password };

    const startOn = async (args: string[], env: Record<string, string>) => {
      const proc = spawnConclave(['start', '--data', dataDir, ...args], { ...base, ...env });
      running.push(proc);
      const listening = await waitListening(proc);
      // The port in the log is the port really bound.
      assert.equal(new URL(listening.url).port, String(listening.port));
      const live = await get(`${listening.url}/health/live`);
      assert.equal(live.status, 200);
      assert.equal(await stop(proc), 0, `graceful exit\n${proc.stdout()}\n${proc.stderr()}`);
      return listening.port;
    };

    assert.equal(await startOn(['--config', file], {}), filePort, 'the file alone decides');
    assert.equal(await startOn([], { CONCLAVE_CONFIG: file }), filePort, 'CONCLAVE_CONFIG names the file as --config does');
    assert.equal(await startOn(['--config', file], { CONCLAVE_HTTP_PORT: String(envPort) }), envPort, 'the environment beats the file');
    assert.equal(
      await startOn(['--config', file, '--http-port', String(flagPort)], { CONCLAVE_HTTP_PORT: String(envPort) }),
      flagPort,
      'a flag beats the environment',
    );
    const picked = await startOn(['--config', file, '--http-port', '0'], { CONCLAVE_HTTP_PORT: String(envPort) });
    assert.ok(picked > 0 && picked !== envPort && picked !== filePort, `--http-port 0 (a free port) beats both, got ${picked}`);
  } finally {
    for (const proc of running) await killAndWait(proc);
    tmp.cleanup();
  }
});

test('the first start without CONCLAVE_ADMIN_PASSWORD prints a generated password once, and it logs in', async () => {
  const tmp = tempDir('conclave-cli-pw-');
  const running: CliProcess[] = [];
  try {
    const args = ['start', '--data', tmp.dir, '--http-port', '0'];
    const first = spawnConclave(args, jsonLogs);
    running.push(first);
    const { url } = await waitListening(first);
    const printed = [...first.stdout().matchAll(/password:\s+(\S+)/g)].map((m) => m[1]!);
    assert.equal(printed.length, 1, `the password is printed exactly once:\n${first.stdout()}`);
    const generated = printed[0]!;
    assert.ok(generated.length >= 8, 'the generated password is long enough');

    const whoami = await get(`${url}/api/v1/auth/whoami`, basic('admin', generated));
    assert.equal(whoami.status, 200, JSON.stringify(whoami.body));
    assert.deepEqual(whoami.body, { name: 'admin', roles: ['admin'] });
    const wrong = await get(`${url}/api/v1/auth/whoami`, basic('admin', `${generated}x`));
    assert.equal(wrong.status, 401, 'another password is refused');
    assert.equal(await stop(first), 0);
    assert.equal([...first.stdout().matchAll(/password:/g)].length, 1, 'printed once over the whole first run');

    const second = spawnConclave(args, jsonLogs);
    running.push(second);
    const again = await waitListening(second);
    const stillWorks = await get(`${again.url}/api/v1/auth/whoami`, basic('admin', generated));
    assert.equal(stillWorks.status, 200, 'the generated password still logs in after a restart');
    assert.equal(await stop(second), 0);
    const output = second.stdout() + second.stderr();
    assert.ok(!output.includes(generated), `the second start must not print the password again:\n${output}`);
    assert.doesNotMatch(output, /password:/);
  } finally {
    for (const proc of running) await killAndWait(proc);
    tmp.cleanup();
  }
});
