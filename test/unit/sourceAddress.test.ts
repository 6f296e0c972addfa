import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sourceKey } from '../../src/auth/sourceAddress.js';

test('IPv4 addresses are their own key', () => {
  assert.equal(sourceKey('127.0.0.2'), '127.0.0.2');
  assert.notEqual(sourceKey('127.0.0.2'), sourceKey('127.0.0.3'));
});

test('IPv4-mapped IPv6 addresses count as the IPv4 address they map', () => {
  assert.equal(sourceKey('::ffff:127.0.0.2'), '127.0.0.2');
  assert.equal(sourceKey('::FFFF:7f00:2'), '127.0.0.2');
  assert.equal(sourceKey('0:0:0:0:0:ffff:10.1.2.3'), '10.1.2.3');
});

test('IPv6 addresses are grouped by their /64, however they are written', () => {
  const key = sourceKey('2001:db8:1:2::1');
  assert.equal(key, '2001:db8:1:2::/64');
  assert.equal(sourceKey('2001:0db8:0001:0002:ffff:ffff:ffff:ffff'), key);
  assert.equal(sourceKey('2001:db8:1:2:abcd::9%eth0'), key);
  assert.notEqual(sourceKey('2001:db8:1:3::1'), key);
  assert.equal(sourceKey('::1'), '0:0:0:0::/64');
});

test('text that is not an address is its own key', () => {
  assert.equal(sourceKey('unknown'), 'unknown');
});
