import assert from 'node:assert/strict';
import { test } from 'node:test';

import { coordinationOf, type Coordination, type CoordinationInput } from '../../src/forwarding/decision.js';
import { httpUrlOf } from '../../src/forwarding/requestRelay.js';

const base: CoordinationInput = { mode: 'CUD', method: 'PUT', path: '/api/v1/content/a', master: 'other', answerHere: false, persistFailing: false };
const decide = (change: Partial<CoordinationInput>): Coordination => coordinationOf({ ...base, ...change });

test('CUD forwards writes under /api/v1 and serves reads here', () => {
  for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
    for (const path of ['/api/v1/content/a', '/api/v1/binaries/a', '/api/v1/users/bob', '/api/v1/cluster/voting-exclusions', '/api/v1/move']) {
      assert.equal(decide({ method, path }), 'forward', `${method} ${path}`);
    }
  }
  for (const method of ['GET', 'HEAD', 'OPTIONS']) assert.equal(decide({ method }), 'local', method);
});

test('ALL forwards reads as well; DISABLED redirects writes and serves reads here', () => {
  assert.equal(decide({ mode: 'ALL', method: 'GET' }), 'forward');
  assert.equal(decide({ mode: 'ALL', method: 'HEAD', path: '/api/v1/binaries/a' }), 'forward');
  assert.equal(decide({ mode: 'ALL', method: 'PUT' }), 'forward');
  assert.equal(decide({ mode: 'DISABLED', method: 'PUT' }), 'redirect');
  assert.equal(decide({ mode: 'DISABLED', method: 'DELETE' }), 'redirect');
  assert.equal(decide({ mode: 'DISABLED', method: 'GET' }), 'local');
});

test('health, cluster status, login, node-to-node endpoints and anything outside the API are never forwarded', () => {
  for (const mode of ['CUD', 'ALL', 'DISABLED'] as const) {
    assert.equal(decide({ mode, method: 'GET', path: '/health/ready' }), 'local');
    assert.equal(decide({ mode, method: 'GET', path: '/api/v1/cluster/status' }), 'local');
    assert.equal(decide({ mode, method: 'HEAD', path: '/api/v1/cluster/status' }), 'local');
    assert.equal(decide({ mode, method: 'POST', path: '/api/v1/auth/login' }), 'local');
    assert.equal(decide({ mode, method: 'PUT', path: '/internal/v1/blobs/abc' }), 'local');
    assert.equal(decide({ mode, method: 'POST', path: '/api/v10/content' }), 'local');
  }
  // Only the exact endpoints are exempt: a write next to them is still a write.
  assert.equal(decide({ method: 'POST', path: '/api/v1/cluster/voting-exclusions' }), 'forward');
  assert.equal(decide({ mode: 'ALL', method: 'GET', path: '/api/v1/auth/whoami' }), 'forward');
});

test('the master serves everything itself', () => {
  for (const mode of ['CUD', 'ALL', 'DISABLED'] as const) {
    for (const method of ['GET', 'PUT', 'DELETE']) assert.equal(decide({ mode, method, master: 'self' }), 'local');
  }
});

test('a direct or already forwarded request is answered here: a write is refused, a read served', () => {
  for (const mode of ['CUD', 'ALL', 'DISABLED'] as const) {
    assert.equal(decide({ mode, method: 'PUT', answerHere: true }), 'refuse', mode);
    assert.equal(decide({ mode, method: 'GET', answerHere: true }), 'local', mode);
    assert.equal(decide({ mode, method: 'PUT', answerHere: true, master: 'self' }), 'local', mode);
  }
});

test('without a master a write is refused before its body is read; a read is served here (marked stale)', () => {
  for (const mode of ['CUD', 'ALL', 'DISABLED'] as const) {
    assert.equal(decide({ mode, method: 'POST', master: 'none' }), 'refuse', mode);
    assert.equal(decide({ mode, method: 'GET', master: 'none' }), 'local', mode);
    // Unless the node cannot write its journal: its own refusal names that cause (DISK_FULL).
    assert.equal(decide({ mode, method: 'POST', master: 'none', persistFailing: true }), 'local', mode);
  }
});

test('httpUrlOf dials the published HTTP address, or the transport host when the HTTP address is a wildcard', () => {
  assert.equal(httpUrlOf({ address: '10.0.0.5:7500', httpAddress: '10.0.0.5:7400' }), 'http://10.0.0.5:7400');
  assert.equal(httpUrlOf({ address: '[fd00::5]:7500', httpAddress: '[fd00::5]:7400' }), 'http://[fd00::5]:7400');
  assert.equal(httpUrlOf({ address: '10.0.0.5:7500', httpAddress: '0.0.0.0:7400' }), 'http://10.0.0.5:7400');
  assert.equal(httpUrlOf({ address: '0.0.0.0:7500', httpAddress: '0.0.0.0:7400' }), null);
  assert.equal(httpUrlOf({ address: '[::]:7500', httpAddress: '[::]:7400' }), null);
  assert.equal(httpUrlOf({ address: '10.0.0.5:7500' }), null);
});

test('a write whose route builds one command is served here up to the proposal in CUD and ALL; the rest is unchanged', () => {
  for (const mode of ['CUD', 'ALL'] as const) {
    assert.equal(decide({ mode, sendsCommand: true }), 'command', mode);
    assert.equal(decide({ mode, sendsCommand: true, method: 'DELETE' }), 'command', mode);
    assert.equal(decide({ mode, sendsCommand: false }), 'forward', mode);
  }
  assert.equal(decide({ mode: 'DISABLED', sendsCommand: true }), 'redirect');
  assert.equal(decide({ sendsCommand: true, answerHere: true }), 'refuse');
  assert.equal(decide({ sendsCommand: true, master: 'none' }), 'refuse');
  assert.equal(decide({ sendsCommand: true, master: 'self' }), 'local');
  assert.equal(decide({ sendsCommand: true, method: 'GET' }), 'local');
});
