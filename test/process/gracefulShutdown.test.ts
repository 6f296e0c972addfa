import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { Agent, request } from 'undici';

import { killAndWait } from '../helpers/cli.js';
import { processAuth, startNodeProcess, type NodeProcess } from '../helpers/process.js';
import { tempDir, waitFor } from '../helpers/tmp.js';

const chunkBytes = 64 * 1024;
const chunks = 32; // 2 MiB in all
const firstHalf = chunks / 2;
const graceMs = 60_000;
const exitBoundMs = 10_000;

/** Bytes the node has written so far into its blob staging directory (an upload in progress). */
function stagedBytes(dataDir: string): number {
  const tmp = join(dataDir, 'blobs', 'tmp');
  if (!existsSync(tmp)) return 0;
  return readdirSync(tmp)
    .filter((f) => f.endsWith('.part'))
    .reduce((sum, f) => sum + statSync(join(tmp, f)).size, 0);
}

function exitCodeOf(node: NodeProcess): () => number | string | undefined {
  let code: number | string | undefined;
  void node.exited.then((c) => (code = c));
  return () => code;
}

test('SIGTERM lets an in-flight upload finish, refuses new work, exits 0 and closes the database cleanly', { timeout: 60_000 }, async () => {
  const tmp = tempDir('conclave-term-');
  const agent = new Agent();
  const probe = new Agent();
  let node: NodeProcess | undefined;
  try {
    // A grace period far longer than the bound below: the node must stop when the in-flight request is done, not
    // when the grace period runs out.
    node = await startNodeProcess(tmp.dir, { env: { CONCLAVE_HTTP_SHUTDOWN_GRACE_MS: String(graceMs) } });
    const first = node;
    const exitCode = exitCodeOf(first);
    const created = await request(`${first.url}/api/v1/content/up`, {
      method: 'PUT',
      dispatcher: agent,
      headers: { authorization: processAuth, 'content-type': 'application/json' },
      body: JSON.stringify({ properties: { purpose: 'upload during shutdown' } }),
    });
    assert.equal(created.statusCode, 201, await created.body.text());
    await created.body.dump();

    const data = randomBytes(chunkBytes * chunks);
    const sha256 = createHash('sha256').update(data).digest('hex');
    const body = new PassThrough();
    const upload = request(`${first.url}/api/v1/binaries/up?property=file`, {
      method: 'PUT',
      dispatcher: agent,
      headers: {
        authorization: processAuth,
        'content-type': 'application/x-test',
        'content-length': String(data.length),
        'x-conclave-sha256': sha256,
      },
      body,
    });
    // Settle-tracking, so an early failure is reported instead of an unhandled rejection.
    let uploadError: unknown;
    upload.catch((err: unknown) => (uploadError = err));

    // Send half the body and wait until the node has demonstrably streamed it into its staging file.
    for (let i = 0; i < firstHalf; i++) body.write(data.subarray(i * chunkBytes, (i + 1) * chunkBytes));
    await waitFor(
      'the node to stage the first half of the upload',
      () => {
        if (uploadError !== undefined) throw new Error(`the upload failed early: ${String(uploadError)}`);
        return stagedBytes(tmp.dir) >= firstHalf * chunkBytes ? true : undefined;
      },
      15_000,
    );

    first.child.kill('SIGTERM');
    await waitFor('the node to start stopping', () => (first.output().includes('"msg":"stopping: finishing in-flight requests"') ? true : undefined), 10_000);

    // A new connection now is refused outright, or answered 503 SHUTTING_DOWN.
    let probeOutcome: string;
    try {
      const res = await request(`${first.url}/api/v1/content/up`, { dispatcher: probe, headers: { authorization: processAuth } });
      const text = await res.body.text();
      assert.equal(res.statusCode, 503, `a request after SIGTERM was answered ${res.statusCode}: ${text}`);
      assert.equal((JSON.parse(text) as { error: { code: string } }).error.code, 'SHUTTING_DOWN', text);
      probeOutcome = '503 SHUTTING_DOWN';
    } catch (err) {
      if (err instanceof assert.AssertionError) throw err;
      const code = (err as { code?: string; cause?: { code?: string } }).code ?? (err as { cause?: { code?: string } }).cause?.code;
      assert.equal(code, 'ECONNREFUSED', `a request after SIGTERM failed unexpectedly: ${String(err)}`);
      probeOutcome = 'connection refused';
    }
    console.log(`new request after SIGTERM: ${probeOutcome}`);
    await probe.close(); // no connection of ours but the upload's stays open
    assert.equal(exitCode(), undefined, 'the node waits for the in-flight upload instead of exiting');

    // Finish the upload: it must succeed.
    for (let i = firstHalf; i < chunks; i++) body.write(data.subarray(i * chunkBytes, (i + 1) * chunkBytes));
    body.end();
    const res = await upload;
    const text = await res.body.text();
    assert.ok(res.statusCode >= 200 && res.statusCode < 300, `the in-flight upload was answered ${res.statusCode}: ${text}`);
    const uploaded = JSON.parse(text) as { binaries: Record<string, { sha256: string; size: number; contentType: string }> };
    assert.deepEqual(uploaded.binaries['file'], { sha256, size: data.length, contentType: 'application/x-test' });

    const code = await waitFor(
      `the node to exit once its only in-flight request was answered (http.shutdownGraceMs is ${graceMs} ms; ` +
        'if it is still running, the connection that carried the upload, now idle and kept alive, holds the stop open)',
      exitCode,
      exitBoundMs,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n--- node output ---\n${first.output()}`);
    });
    assert.equal(code, 0, `exit code after SIGTERM\n${first.output()}`);
    assert.match(first.output(), /"msg":"stopped"/);
    assert.doesNotMatch(first.output(), /outlived the grace period/, 'the in-flight request finished; no connection had to be cut');

    // better-sqlite3 checkpoints the WAL when the database is closed: nothing may be left in it.
    const wal = join(tmp.dir, 'conclave.db-wal');
    assert.ok(!existsSync(wal) || statSync(wal).size === 0, `the WAL holds ${existsSync(wal) ? statSync(wal).size : 0} bytes after a clean stop`);

    // The binary survives a restart byte for byte.
    node = await startNodeProcess(tmp.dir);
    const got = await request(`${node.url}/api/v1/binaries/up?property=file`, { dispatcher: agent, headers: { authorization: processAuth } });
    const bytes = Buffer.from(await got.body.arrayBuffer());
    assert.equal(got.statusCode, 200);
    assert.equal(got.headers['content-type'], 'application/x-test');
    assert.equal(bytes.length, data.length);
    assert.ok(bytes.equals(data), 'the binary read after the restart equals the uploaded bytes');
  } finally {
    await agent.destroy().catch(() => undefined);
    await probe.destroy().catch(() => undefined);
    if (node !== undefined) await killAndWait(node);
    tmp.cleanup();
  }
});
