import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';

import fc from 'fast-check';
import { pino } from 'pino';

import { createDnsResolver, SeedResolver, type DiscoveryLogger, type SeedResolverOptions } from '../../src/discovery/resolver.js';
import { canonicalAddress, parseSeeds } from '../../src/discovery/seeds.js';
import { propertyParameters } from '../sim/testSeed.js';
import { allTypes, TestDnsServer } from './dnsServer.js';

// The production logger must fit the interface; this line fails to compile if it stops fitting.
const _pinoFits: DiscoveryLogger = pino({ level: 'silent' });

interface LogEntry {
  readonly level: 'warn' | 'debug';
  readonly fields: Record<string, unknown>;
  readonly message: string;
}

function recordingLogger(): DiscoveryLogger & { entries: LogEntry[]; warnings(): Array<Record<string, unknown>> } {
  const entries: LogEntry[] = [];
  return {
    entries,
    warn: (fields, message) => entries.push({ level: 'warn', fields, message }),
    debug: (fields, message) => entries.push({ level: 'debug', fields, message }),
    warnings: () => entries.filter((entry) => entry.level === 'warn').map((entry) => entry.fields),
  };
}

let dns: TestDnsServer;
before(async () => {
  dns = await TestDnsServer.start();
});
after(() => dns.close());
beforeEach(() => {
  dns.zone.clear();
});

const transportPort = 7401;
// One try of 100 ms: a silent name costs a fraction of a second, not c-ares' default of many seconds.
function setup(options: Partial<Omit<SeedResolverOptions, 'logger' | 'resolver'>> & { timeoutMs?: number } = {}) {
  const logger = recordingLogger();
  const resolver = createDnsResolver({ timeoutMs: options.timeoutMs ?? 100, tries: 1, servers: [dns.address] });
  const seeds = new SeedResolver({ addressesMax: 100, ...options, resolver, logger });
  const round = (specs: readonly string[]) => seeds.resolveAll(parseSeeds(specs, { defaultPort: transportPort }));
  return { logger, seeds, round };
}

test('a host name and a dns: seed resolve every A and AAAA record', async () => {
  dns.zone.set('node-1.conclave.test', { a: ['10.0.0.1'], aaaa: ['fd00::1'] });
  dns.zone.set('peers.conclave.test', { a: ['10.0.1.2', '10.0.1.1'] });
  const { logger, round } = setup();

  assert.deepEqual(await round(['node-1.conclave.test:7500', 'dns:peers.conclave.test:7401']),
    ['10.0.0.1:7500', '10.0.1.1:7401', '10.0.1.2:7401', '[fd00::1]:7500']);
  // peers.conclave.test has no AAAA record (NODATA): that is an IPv4-only Service, not a failure.
  assert.deepEqual(logger.warnings(), []);
  assert.equal(dns.queriesFor('peers.conclave.test', 'AAAA'), 1);
});

test('an SRV seed yields each target at its record port, targets resolved with A and AAAA', async () => {
  dns.zone.set('_transport._tcp.conclave.test', {
    srv: [
      { priority: 10, weight: 50, port: 7402, target: 'node-b.conclave.test' },
      { priority: 0, weight: 10, port: 7401, target: 'node-a.conclave.test' },
      { priority: 20, weight: 0, port: 7403, target: 'node-b.conclave.test' },
      { priority: 0, weight: 0, port: 0, target: 'node-c.conclave.test' }, // port 0 cannot be dialled
    ],
  });
  dns.zone.set('node-a.conclave.test', { a: ['10.0.2.1'] });
  dns.zone.set('node-b.conclave.test', { a: ['10.0.2.2'], aaaa: ['fd00::2'] });
  const { logger, round } = setup();

  assert.deepEqual(await round(['srv:_transport._tcp.conclave.test', 'node-b.conclave.test']), [
    '10.0.2.1:7401', '10.0.2.2:7401', '10.0.2.2:7402', '10.0.2.2:7403', '[fd00::2]:7401', '[fd00::2]:7402', '[fd00::2]:7403',
  ]);
  assert.deepEqual(logger.warnings(), []);
  assert.equal(dns.queriesFor('node-c.conclave.test', 'A'), 0, 'a port-0 target is not resolved');
  // One lookup per name per round, however many records and seeds name it.
  assert.equal(dns.queriesFor('node-b.conclave.test', 'A'), 1);
  assert.equal(dns.queriesFor('node-b.conclave.test', 'AAAA'), 1);
});

test('an SRV target of "." means no service (RFC 2782) and yields nothing', async () => {
  dns.zone.set('_transport._tcp.none.test', { srv: [{ priority: 0, weight: 0, port: 7401, target: '.' }] });
  const { logger, round } = setup();
  assert.deepEqual(await round(['srv:_transport._tcp.none.test']), []);
  assert.deepEqual(logger.warnings(), []);
});

test('every round re-resolves: a headless Service whose pods change yields the new pods next round', async () => {
  const service = 'conclave-headless.ns.svc.cluster.local';
  const srvName = `_transport._tcp.${service}`;
  const pod = (ip: string) => `${ip.replaceAll('.', '-')}.${service}`;
  const deploy = (ips: readonly string[]) => {
    dns.zone.set(service, { a: ips });
    dns.zone.set(srvName, { srv: ips.map((ip) => ({ priority: 0, weight: 100, port: 7401, target: pod(ip) })) });
    for (const ip of ips) dns.zone.set(pod(ip), { a: [ip] });
  };
  const { round } = setup();
  const specs = [`dns:${service}:7401`, `srv:${srvName}`];

  deploy(['10.244.0.5', '10.244.1.7', '10.244.2.9']);
  assert.deepEqual(await round(specs), ['10.244.0.5:7401', '10.244.1.7:7401', '10.244.2.9:7401']);

  // A pod is rescheduled with a new IP, another is added: the same resolver sees it on the next round.
  dns.zone.clear();
  deploy(['10.244.0.5', '10.244.2.9', '10.244.3.2', '10.244.10.4']);
  assert.deepEqual(await round(specs), ['10.244.0.5:7401', '10.244.2.9:7401', '10.244.3.2:7401', '10.244.10.4:7401']);
  assert.equal(dns.queriesFor(service, 'A'), 2, 'the name was asked again, not served from a cache');
  assert.equal(dns.queriesFor(srvName, 'SRV'), 2);

  dns.zone.clear();
  assert.deepEqual(await round(specs), [], 'a Service scaled to nothing yields nothing, and does not fail the round');
});

test('a name that fails is logged with its code and skipped; the other seeds still resolve', async () => {
  dns.zone.set('node-1.conclave.test', { a: ['10.0.0.1'] });
  dns.zone.set('silent.conclave.test', { unanswered: allTypes });
  dns.zone.set('empty.conclave.test', {});
  const { logger, round } = setup();

  const addresses = await round([
    'gone.conclave.test:7401', 'dns:silent.conclave.test:7401', 'srv:_transport._tcp.gone.conclave.test', 'empty.conclave.test',
    'conclave-headless', 'node-1.conclave.test', '10.9.9.9:7401',
  ]);
  assert.deepEqual(addresses, ['10.0.0.1:7401', '10.9.9.9:7401']);

  const warnings = logger.warnings().map(({ name, rrtype, code }) => ({ name, rrtype, code }));
  assert.deepEqual(warnings.sort((a, b) => String(a.name).localeCompare(String(b.name))), [
    { name: '_transport._tcp.gone.conclave.test', rrtype: 'SRV', code: 'ENOTFOUND' },
    { name: 'conclave-headless', rrtype: 'A/AAAA', code: 'ENOTFOUND' },
    { name: 'empty.conclave.test', rrtype: 'A/AAAA', code: 'ENODATA' },
    { name: 'gone.conclave.test', rrtype: 'A/AAAA', code: 'ENOTFOUND' },
    { name: 'silent.conclave.test', rrtype: 'A/AAAA', code: 'ETIMEOUT' },
  ]);
  // A single-label name is the usual Kubernetes mistake: the Resolver applies no search domains.
  assert.match(String(logger.warnings().find((w) => w['name'] === 'conclave-headless')?.['hint']), /fully qualified/);
});

test('one address family failing while the other answers is no warning: probe what answered', async () => {
  dns.zone.set('half.conclave.test', { a: ['10.0.0.1'], unanswered: ['AAAA'] });
  const { logger, round } = setup();
  assert.deepEqual(await round(['half.conclave.test']), ['10.0.0.1:7401']);
  assert.deepEqual(logger.warnings(), []);
  assert.ok(logger.entries.some((entry) => entry.level === 'debug' && entry.fields['rrtype'] === 'AAAA' && entry.fields['code'] === 'ETIMEOUT'));
});

test('literal IPv4 and IPv6 pass through without DNS, canonical and deduplicated', async () => {
  const { round } = setup();
  const queriesBefore = dns.queriesSeen.length;
  assert.deepEqual(await round(['10.0.0.2', '10.0.0.10:7401', '[2001:DB8:0::1]', '[2001:db8::1]:7401', '[fe80::1%lo]:7401', '10.0.0.2:7400']),
    ['10.0.0.2:7400', '10.0.0.2:7401', '10.0.0.10:7401', '[2001:db8::1]:7401', '[fe80::1%lo]:7401']);
  assert.equal(dns.queriesSeen.length, queriesBefore, 'no DNS query for literals');
});

test('localhost is loopback without asking DNS (RFC 6761)', async () => {
  const { round } = setup();
  const queriesBefore = dns.queriesSeen.length;
  assert.deepEqual(await round(['localhost', 'node.localhost:7402']), ['127.0.0.1:7401', '127.0.0.1:7402', '[::1]:7401', '[::1]:7402']);
  assert.equal(dns.queriesSeen.length, queriesBefore);
});

test('addresses sort IPv4 before IPv6, numerically, then by port; addressesMax keeps the first and warns once', async () => {
  dns.zone.set('many.conclave.test', { a: ['10.0.0.10', '10.0.0.9', '9.0.0.1', '10.0.0.100'], aaaa: ['fd00::a', 'fd00::9'] });
  const { logger, round } = setup({ addressesMax: 3 });
  const specs = ['dns:many.conclave.test:7401', '[::1]:7401', '10.0.0.9:7400'];

  assert.deepEqual(await round(specs), ['9.0.0.1:7401', '10.0.0.9:7400', '10.0.0.9:7401']);
  assert.deepEqual(logger.warnings(), [{ addressesFound: 8, addressesMax: 3, firstDropped: '10.0.0.10:7401' }]);
  assert.deepEqual(await round(specs), ['9.0.0.1:7401', '10.0.0.9:7400', '10.0.0.9:7401'], 'the same answers keep the same peers');
  assert.equal(logger.warnings().length, 1, 'warned once, not every round');

  const { round: roundAll } = setup({ addressesMax: 100 });
  assert.deepEqual(await roundAll(specs), [
    '9.0.0.1:7401', '10.0.0.9:7400', '10.0.0.9:7401', '10.0.0.10:7401', '10.0.0.100:7401', '[::1]:7401', '[fd00::9]:7401', '[fd00::a]:7401',
  ]);
});

test('srvTargetsMax bounds the targets resolved from one SRV answer', async () => {
  const targets = ['node-c', 'node-a', 'node-b'].map((name) => `${name}.conclave.test`);
  dns.zone.set('_transport._tcp.conclave.test', { srv: targets.map((target) => ({ priority: 0, weight: 0, port: 7401, target })) });
  targets.forEach((target, i) => dns.zone.set(target, { a: [`10.0.3.${i + 1}`] }));
  const { logger, round } = setup({ srvTargetsMax: 2 });

  assert.deepEqual(await round(['srv:_transport._tcp.conclave.test']), ['10.0.3.2:7401', '10.0.3.3:7401']);
  assert.deepEqual(logger.warnings(), [{ name: '_transport._tcp.conclave.test', srvRecords: 3, srvTargetsMax: 2 }]);
});

test('queriesInFlightMax of 1 still resolves every name, one query at a time', async () => {
  const names = Array.from({ length: 8 }, (_, i) => `node-${i}.conclave.test`);
  names.forEach((name, i) => dns.zone.set(name, { a: [`10.0.4.${i}`] }));
  const { round } = setup({ queriesInFlightMax: 1 });
  assert.deepEqual(await round(names), names.map((_, i) => `10.0.4.${i}:7401`));
});

test('cancel() ends the queries in flight, so shutdown does not wait out a DNS timeout', async () => {
  dns.zone.set('silent.conclave.test', { unanswered: allTypes });
  const { logger, seeds } = setup({ timeoutMs: 30_000 });
  const specs = parseSeeds(['silent.conclave.test', '10.0.0.1'], { defaultPort: transportPort });
  const asked = dns.nextQuery('silent.conclave.test');
  const pending = seeds.resolveAll(specs);
  await asked;
  seeds.cancel();
  assert.deepEqual(await pending, ['10.0.0.1:7401']);
  assert.deepEqual(logger.warnings(), [], 'a cancelled query is not a warning');
  assert.ok(logger.entries.some((entry) => entry.fields['code'] === 'ECANCELLED'));
});

/** The address as a number, the order a person expects: IPv4 below IPv6, then numeric. */
function numericKey(address: string): bigint {
  if (!address.includes(':')) return address.split('.').reduce((n, octet) => (n << 8n) | BigInt(octet), 0n);
  const [bare] = address.split('%') as [string];
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(bare);
  const hex = dotted === null ? bare : bare.slice(0, -dotted[1]!.length) + (() => {
    const [a, b, c, d] = dotted[1]!.split('.').map(Number) as [number, number, number, number];
    return `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  })();
  const [head = '', tail] = hex.split('::');
  const groups = (part: string) => (part === '' ? [] : part.split(':'));
  const all = tail === undefined ? groups(head) : [...groups(head), ...new Array<string>(8 - groups(head).length - groups(tail).length).fill('0'), ...groups(tail)];
  assert.equal(all.length, 8, address);
  return (1n << 128n) + all.reduce((n, group) => (n << 16n) | BigInt(parseInt(group, 16)), 0n);
}

test('property: literals come out deduplicated and in numeric order, bounded by addressesMax', async () => {
  const { seeds } = setup({ addressesMax: 1000 });
  const endpoint = fc.tuple(fc.oneof(fc.ipV4(), fc.ipV6()), fc.integer({ min: 1, max: 65535 }));
  await fc.assert(fc.asyncProperty(fc.array(endpoint, { maxLength: 30 }), async (endpoints) => {
    const specs = endpoints.map(([text, port]) => {
      const address = canonicalAddress(text)!;
      return { kind: 'address' as const, source: text, address, family: address.includes(':') ? 6 as const : 4 as const, port };
    });
    const out = await seeds.resolveAll(specs);
    assert.equal(new Set(out).size, out.length, 'no duplicates');
    assert.equal(out.length, new Set(specs.map((spec) => `${spec.address} ${spec.port}`)).size, 'every distinct endpoint kept');
    const parsed = out.map((text) => {
      const match = /^\[?(.*?)\]?:(\d+)$/.exec(text)!;
      return { key: numericKey(match[1]!), port: Number(match[2]) };
    });
    for (let i = 1; i < parsed.length; i++) {
      const [a, b] = [parsed[i - 1]!, parsed[i]!];
      assert.ok(a.key < b.key || (a.key === b.key && a.port < b.port), `${out[i - 1]} sorts before ${out[i]}`);
    }
  }), propertyParameters(300));
});
