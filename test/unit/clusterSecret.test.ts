import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import fc from 'fast-check';

import { clusterSecretWeakness, generateClusterSecret, readClusterSecretFile } from '../../src/config/clusterSecret.js';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import { runConclave } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { propertyParameters } from '../sim/testSeed.js';

function configError(run: () => unknown): string {
  try {
    run();
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.message;
  }
  assert.fail('expected a ConfigError');
}

describe('cluster secret strength', () => {
  it('generated secrets pass: 43 base64url characters, 256 bits, never twice the same', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const secret = generateClusterSecret();
      assert.match(secret, /^[A-Za-z0-9_-]{43}$/);
      assert.equal(clusterSecretWeakness(secret), null);
      seen.add(secret);
    }
    assert.equal(seen.size, 200);
  });

  it('random secrets at the stated minimum pass: 32 hex or 22 base64url characters', () => {
    for (let i = 0; i < 2000; i++) {
      const hex = randomBytes(16).toString('hex');
      assert.equal(clusterSecretWeakness(hex), null, hex);
      const b64 = randomBytes(17).toString('base64url').slice(0, 22);
      assert.equal(clusterSecretWeakness(b64), null, b64);
    }
  });

  it('for any text: what passes holds 22 characters or more, and a refusal never quotes the text', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 64 }), fc.stringMatching(/^[A-Za-z0-9_-]{4,40}$/), fc.stringMatching(/^[0-9a-f]{4,40}$/)), (text) => {
        const weakness = clusterSecretWeakness(text);
        if (weakness === null) assert.ok(text.length >= 22, text);
        else if (text.length >= 4) assert.equal(weakness.includes(text), false, text);
      }),
      propertyParameters(2000),
    );
  });

  it('refuses the short, the narrow, the repetitive and the passphrase, without quoting them', () => {
    const weak = [
      'a-long-shared-secret', // the README's old example
      'correct horse battery staple, 32+', // words
      'process-test-cluster-secret',
      '0123456789abcdef0123456789abcde', // 31 hex characters: 124 bits
      'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
      'abcdefgh'.repeat(8),
      'Zx9-Zx9-Zx9-Zx9-Zx9-Zx9-Zx9-Zx9-',
      'AbCdEfGhIjKlMnOpQrStU', // 21 base64url characters
    ];
    for (const secret of weak) {
      const weakness = clusterSecretWeakness(secret);
      assert.ok(weakness !== null, secret);
      assert.equal(weakness.includes(secret), false, `${secret} is quoted`);
      assert.match(weakness, /conclave secret generate/);
    }
  });

  it('a weak secret from the environment is refused by the configuration, and never quoted', () => {
    const message = configError(() => loadConfig({ env: { CONCLAVE_CLUSTER_SECRET: 'a-long-shared-secret' }, flags: {} }));
    assert.match(message, /cluster\.secret.*CONCLAVE_CLUSTER_SECRET.*bits/s);
    assert.equal(message.includes('a-long-shared-secret'), false, message);
    const strong = generateClusterSecret();
    assert.equal(loadConfig({ env: { CONCLAVE_CLUSTER_SECRET: strong }, flags: {} }).cluster.secret, strong);
  });

  it('cluster.secretFile: read less its line break; refused when others may read it, when weak, or beside cluster.secret', () => {
    const tmp = tempDir();
    try {
      const strong = generateClusterSecret();
      const file = join(tmp.dir, 'secret');
      writeFileSync(file, `${strong}\n`, { mode: 0o600 });
      assert.equal(loadConfig({ env: {}, flags: { 'cluster.secretFile': file } }).cluster.secret, strong);
      chmodSync(file, 0o640);
      assert.equal(loadConfig({ env: { CONCLAVE_CLUSTER_SECRET_FILE: file }, flags: {} }).cluster.secret, strong, 'group may read');
      chmodSync(file, 0o644);
      const open = configError(() => loadConfig({ env: {}, flags: { 'cluster.secretFile': file } }));
      assert.match(open, new RegExp(`chmod o-rwx ${file}`));
      assert.equal(open.includes(strong), false);
      chmodSync(file, 0o600);
      assert.match(configError(() => loadConfig({ env: { CONCLAVE_CLUSTER_SECRET: strong }, flags: { 'cluster.secretFile': file } })), /both set/);
      const weakFile = join(tmp.dir, 'weak');
      writeFileSync(weakFile, 'short-secret-1\n', { mode: 0o600 });
      const weak = configError(() => loadConfig({ env: {}, flags: { 'cluster.secretFile': weakFile } }));
      assert.match(weak, /bits/);
      assert.equal(weak.includes('short-secret-1'), false, weak);
      assert.ok('problem' in readClusterSecretFile(join(tmp.dir, 'absent')));
    } finally {
      tmp.cleanup();
    }
  });
});

describe('the conclave command and secrets', () => {
  it('`conclave secret generate` prints a secret a node accepts', async () => {
    const { code, stdout } = await runConclave(['secret', 'generate']);
    assert.equal(code, 0);
    assert.equal(clusterSecretWeakness(stdout.trim()), null);
  });

  it('--cluster-secret is refused (it would show in ps) without repeating the value', async () => {
    const tmp = tempDir();
    try {
      const secret = generateClusterSecret();
      const { code, stderr } = await runConclave(['start', '--data', tmp.dir, '--cluster-secret', secret]);
      assert.equal(code, 2);
      assert.match(stderr, /CONCLAVE_CLUSTER_SECRET.*--cluster-secret-file/s);
      assert.equal(stderr.includes(secret), false);
    } finally {
      tmp.cleanup();
    }
  });

  it('a too-short secret in the environment stops the node (exit 2) and is not echoed', async () => {
    const tmp = tempDir();
    try {
      const { code, stderr } = await runConclave(['start', '--data', tmp.dir], { CONCLAVE_CLUSTER_SECRET: 'sixteen-chars-xx' });
      assert.equal(code, 2);
      assert.match(stderr, /cluster\.secret.*bits/s);
      assert.equal(stderr.includes('sixteen-chars-xx'), false, stderr);
    } finally {
      tmp.cleanup();
    }
  });
});
