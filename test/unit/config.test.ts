import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { ConfigError, loadConfig } from '../../src/config/load.js';
import { envNameOf } from '../../src/config/settings.js';
import { tempDir } from '../helpers/tmp.js';

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.message;
  }
  assert.fail('expected a ConfigError');
}

test('defaults: ./data and 127.0.0.1:7400', () => {
  const config = loadConfig({ env: {}, flags: {} });
  assert.equal(config.data.dir, './data');
  assert.equal(config.http.host, '127.0.0.1');
  assert.equal(config.http.port, 7400);
  assert.equal(config.auth.anonymousRead, false);
});

test('flags win over environment over file over defaults', () => {
  const tmp = tempDir();
  try {
    const file = join(tmp.dir, 'conclave.yaml');
    writeFileSync(file, 'http:\n  port: 7001\n  host: 0.0.0.0\nnode:\n  name: from-file\nauth:\n  anonymousRead: true\n');
    const fileOnly = loadConfig({ file, env: {}, flags: {} });
    assert.equal(fileOnly.http.port, 7001);
    assert.equal(fileOnly.auth.anonymousRead, true);
    const withEnv = loadConfig({ file, env: { CONCLAVE_HTTP_PORT: '7002', CONCLAVE_NODE_NAME: 'from-env' }, flags: {} });
    assert.equal(withEnv.http.port, 7002);
    assert.equal(withEnv.node.name, 'from-env');
    assert.equal(withEnv.http.host, '0.0.0.0');
    const withFlag = loadConfig({ file, env: { CONCLAVE_HTTP_PORT: '7002' }, flags: { 'http.port': '7003' } });
    assert.equal(withFlag.http.port, 7003);
  } finally {
    tmp.cleanup();
  }
});

test('environment names derive from keys', () => {
  assert.equal(envNameOf('http.bodyBytesMax'), 'CONCLAVE_HTTP_BODY_BYTES_MAX');
  assert.equal(envNameOf('storage.groupCommitEntriesMax'), 'CONCLAVE_STORAGE_GROUP_COMMIT_ENTRIES_MAX');
  assert.equal(loadConfig({ env: { CONCLAVE_HTTP_BODY_BYTES_MAX: '4096' }, flags: {} }).http.bodyBytesMax, 4096);
});

test('invalid and unknown settings name the setting, the source and the fix', () => {
  assert.match(configError(() => loadConfig({ env: { CONCLAVE_HTTP_PORT: 'eighty' }, flags: {} })), /http\.port.*environment variable CONCLAVE_HTTP_PORT/);
  assert.match(configError(() => loadConfig({ env: { CONCLAVE_HTTP_PORT: '70000' }, flags: {} })), /http\.port/);
  assert.match(configError(() => loadConfig({ env: { CONCLAVE_HTTP_PROT: '1' }, flags: {} })), /Unknown environment variable CONCLAVE_HTTP_PROT/);
  assert.match(configError(() => loadConfig({ env: { CONCLAVE_AUTH_ANONYMOUS_READ: 'yes' }, flags: {} })), /auth\.anonymousRead/);
  assert.match(configError(() => loadConfig({ env: {}, flags: { 'http.port': '-1' } })), /http\.port.*the command line, value -1\)/);
  // A pace of a few bytes a second would hold a backup's every 1 MiB chunk for days: 0 (off) or at least 1 MiB.
  assert.match(configError(() => loadConfig({ env: { CONCLAVE_BACKUP_BUSY_BYTES_PER_SECOND_MAX: '1000' }, flags: {} })), /backup\.busyBytesPerSecondMax/);
  assert.equal(loadConfig({ env: { CONCLAVE_BACKUP_BUSY_BYTES_PER_SECOND_MAX: '0' }, flags: {} }).backup.busyBytesPerSecondMax, 0);
  const tmp = tempDir();
  try {
    const file = join(tmp.dir, 'bad.yaml');
    writeFileSync(file, 'http:\n  prot: 1\n');
    assert.match(configError(() => loadConfig({ file, env: {}, flags: {} })), /Unknown setting in section "http" of file .*bad\.yaml: prot/);
    writeFileSync(file, 'htp:\n  port: 1\n');
    assert.match(configError(() => loadConfig({ file, env: {}, flags: {} })), /Unknown setting.*htp/);
    writeFileSync(file, 'http: [1, 2\n');
    assert.match(configError(() => loadConfig({ file, env: {}, flags: {} })), /Cannot read the configuration file/);
    assert.match(configError(() => loadConfig({ file: join(tmp.dir, 'missing.yaml'), env: {}, flags: {} })), /Cannot read/);
  } finally {
    tmp.cleanup();
  }
  assert.match(
    configError(() => loadConfig({ env: { CONCLAVE_CONTENT_PAGE_SIZE_DEFAULT: '500', CONCLAVE_CONTENT_PAGE_SIZE_MAX: '100' }, flags: {} })),
    /pageSizeDefault/,
  );
});

test('non-setting CONCLAVE_ variables are allowed', () => {
  assert.doesNotThrow(() => loadConfig({ env: { CONCLAVE_ADMIN_PASSWORD: 'x', CONCLAVE_CONFIG: 'y' }, flags: {} }));
});

test('timeouts shorter than an election are refused at start, not raised in silence', () => {
  // 10 ticks of 50 ms: an election times out after 500 ms.
  for (const [name, key] of [
    ['CONCLAVE_REPLICATION_IN_SYNC_TIMEOUT_MS', 'replication.inSyncTimeoutMs'],
    ['CONCLAVE_CLUSTER_NODE_FAILURE_TIMEOUT_MS', 'cluster.nodeFailureTimeoutMs'],
  ]) {
    const message = configError(() => loadConfig({ env: { [name]: '400' }, flags: {} }));
    assert.match(message, new RegExp(`${key.replace('.', '\\.')} \\(400 ms\\) is below the election timeout .*= 500 ms`));
    assert.doesNotThrow(() => loadConfig({ env: { [name]: '500' }, flags: {} }));
  }
  // Longer ticks lengthen the election timeout with them.
  assert.match(configError(() => loadConfig({ env: { CONCLAVE_CLUSTER_TICK_MS: '200' }, flags: {} })), /replication\.inSyncTimeoutMs \(1500 ms\) is below the election timeout .*= 2000 ms/);
});

test('an append bound above half a transport frame is refused at start, not lowered in silence', () => {
  const env = { CONCLAVE_TRANSPORT_FRAME_BYTES_MAX: String(8 * 1024 * 1024) };
  assert.match(
    configError(() => loadConfig({ env: { ...env, CONCLAVE_REPLICATION_APPEND_BYTES_MAX: String(4 * 1024 * 1024 + 1) }, flags: {} })),
    /replication\.appendBytesMax \(4194305\) is above half of transport\.frameBytesMax \(8388608\)/,
  );
  assert.doesNotThrow(() => loadConfig({ env: { ...env, CONCLAVE_REPLICATION_APPEND_BYTES_MAX: String(4 * 1024 * 1024) }, flags: {} }));
});
