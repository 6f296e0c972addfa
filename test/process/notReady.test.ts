import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Agent, request } from 'undici';

import { errorCatalogue } from '../../src/errors/catalogue.js';
import { freePort } from '../helpers/ports.js';
import { killAndWait } from '../helpers/cli.js';
import { processAuth, startNodeProcess } from '../helpers/process.js';
import { tempDir } from '../helpers/tmp.js';

async function call(method: string, url: string, body?: unknown): Promise<{ status: number; body: { error?: { code: string; retryable: boolean; message: string } } }> {
  const agent = new Agent();
  try {
    const res = await request(url, {
      method: method as 'GET',
      dispatcher: agent,
      headers: { authorization: processAuth, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.statusCode, body: (await res.body.json()) as never };
  } finally {
    await agent.close();
  }
}

/**
 * A node that has not applied the repository's first entry has no users: it refused right credentials with 401
 * AUTH_INVALID ("the user name or password is wrong"), as a new user met right after /health/master turned 200 on
 * a fresh cluster. It must say it is not ready (503, retryable). A fresh node whose seed never answers stays in
 * that state for as long as the test needs it.
 */
test('a fresh node without its repository answers 503 NOT_READY (retryable), not 401, to right credentials', async () => {
  const tmp = tempDir();
  const silentSeed = await freePort();
  const node = await startNodeProcess(tmp.dir, { args: ['--seed', `127.0.0.1:${silentSeed}`] });
  try {
    const ready = await call('GET', `${node.url}/health/ready`);
    assert.equal(ready.status, 503, 'the node has joined nothing');
    // Reads and logins are authenticated here: NOT_READY. A write this node would forward finds no master first;
    // a master that has not applied the bootstrap entry yet (the window the new user met) answers NOT_READY too,
    // by the same check before authentication.
    for (const [method, path, body, codes] of [
      ['GET', '/api/v1/content', undefined, ['NOT_READY']],
      ['GET', '/api/v1/users/admin', undefined, ['NOT_READY']],
      ['POST', '/api/v1/auth/login', { username: 'admin', password: 'process-test-password' }, ['NOT_READY']],
      ['PUT', '/api/v1/content/early', { properties: {} }, ['NOT_READY', 'CLUSTER_NO_MASTER']],
      ['PUT', '/api/v1/users/someone', { password: 'a-long-password', roles: ['reader'] }, ['NOT_READY', 'CLUSTER_NO_MASTER']],
    ] as const) {
      const answer = await call(method, `${node.url}${path}`, body);
      assert.equal(answer.status, 503, `${method} ${path}: ${JSON.stringify(answer.body)}`);
      assert.ok((codes as readonly string[]).includes(answer.body.error?.code ?? ''), `${method} ${path}: ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body.error?.retryable, true);
    }
    assert.equal(errorCatalogue.NOT_READY.retryable, true);
  } finally {
    await killAndWait(node);
    tmp.cleanup();
  }
});
