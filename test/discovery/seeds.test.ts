import assert from 'node:assert/strict';
import { test } from 'node:test';

import fc from 'fast-check';

import { canonicalAddress, DiscoveryError, formatEndpoint, isDiscoveryError, parseSeed, parseSeeds, seedFormsAccepted, type SeedSpec } from '../../src/discovery/seeds.js';
import { propertyParameters } from '../sim/testSeed.js';

const transportPort = 7401;
const parse = (spec: string): SeedSpec => parseSeed(spec, transportPort);

test('host:port and host alone: IPv4 literals become addresses, names become hosts', () => {
  assert.deepEqual(parse('10.0.0.5:7500'), { kind: 'address', source: '10.0.0.5:7500', address: '10.0.0.5', family: 4, port: 7500 });
  assert.deepEqual(parse('10.0.0.5'), { kind: 'address', source: '10.0.0.5', address: '10.0.0.5', family: 4, port: transportPort });
  assert.deepEqual(parse('node-1.example.com:7500'), { kind: 'host', source: 'node-1.example.com:7500', name: 'node-1.example.com', port: 7500 });
  assert.deepEqual(parse('node-1'), { kind: 'host', source: 'node-1', name: 'node-1', port: transportPort });
  // Case and the root dot do not make another name; the source keeps what the operator wrote, for messages.
  assert.deepEqual(parse(' Node-1.Example.COM.:7500 '), { kind: 'host', source: ' Node-1.Example.COM.:7500 ', name: 'node-1.example.com', port: 7500 });
  assert.deepEqual(parse('compose_node_1:7500'), { kind: 'host', source: 'compose_node_1:7500', name: 'compose_node_1', port: 7500 });
  assert.deepEqual(parse('localhost:7402'), { kind: 'host', source: 'localhost:7402', name: 'localhost', port: 7402 });
});

test('[ipv6]:port and [ipv6]: brackets required, the address canonical, a zone index kept', () => {
  assert.deepEqual(parse('[2001:DB8:0::1]:7500'), { kind: 'address', source: '[2001:DB8:0::1]:7500', address: '2001:db8::1', family: 6, port: 7500 });
  assert.deepEqual(parse('[::1]'), { kind: 'address', source: '[::1]', address: '::1', family: 6, port: transportPort });
  assert.deepEqual(parse('[fe80::1%eth0]:7500'), { kind: 'address', source: '[fe80::1%eth0]:7500', address: 'fe80::1%eth0', family: 6, port: 7500 });
  assert.deepEqual(parse('[::ffff:10.0.0.1]:7500'), { kind: 'address', source: '[::ffff:10.0.0.1]:7500', address: '::ffff:10.0.0.1', family: 6, port: 7500 });
});

test('dns:name:port and srv:_service._proto.name', () => {
  assert.deepEqual(parse('dns:conclave-headless.ns.svc.cluster.local:7401'),
    { kind: 'dns', source: 'dns:conclave-headless.ns.svc.cluster.local:7401', name: 'conclave-headless.ns.svc.cluster.local', port: 7401 });
  assert.deepEqual(parse('DNS:Peers.Example:7500'), { kind: 'dns', source: 'DNS:Peers.Example:7500', name: 'peers.example', port: 7500 });
  assert.deepEqual(parse('srv:_transport._tcp.conclave.example.'),
    { kind: 'srv', source: 'srv:_transport._tcp.conclave.example.', name: '_transport._tcp.conclave.example' });
  // A host named "dns" or "srv" is still reachable: a prefix needs a name after it, not a bare port.
  assert.deepEqual(parse('dns:7500'), { kind: 'host', source: 'dns:7500', name: 'dns', port: 7500 });
  assert.deepEqual(parse('srv'), { kind: 'host', source: 'srv', name: 'srv', port: transportPort });
});

function refusal(spec: string): DiscoveryError {
  try {
    parse(spec);
  } catch (err) {
    assert.ok(isDiscoveryError(err), `expected a DiscoveryError, got ${String(err)}`);
    assert.equal(err.code, 'INVALID_SEED');
    assert.equal(err.spec, spec);
    assert.equal(err.retryable, false);
    return err;
  }
  assert.fail(`expected ${JSON.stringify(spec)} to be refused`);
}

test('malformed seeds are INVALID_SEED, naming the spec, the reason and the accepted forms', () => {
  const cases: ReadonlyArray<readonly [string, RegExp]> = [
    ['', /empty/],
    ['   ', /empty/],
    ['node-1:', /port "" is not/],
    ['node-1:0', /port "0" is not/],
    ['node-1:65536', /port "65536"/],
    ['node-1:http', /port "http"/],
    ['node-1:0x1f', /port "0x1f"/],
    ['node-1: 7400', /port " 7400"/],
    ['2001:db8::1', /IPv6 address goes in brackets: \[2001:db8::1\]/],
    ['::1', /in brackets/],
    ['[2001:db8::1', /no "\]" closes it/],
    ['[10.0.0.1]:7400', /not an IPv6 address/],
    ['[::1]7400', /only ":port" may follow/],
    ['[::1]:x', /port "x"/],
    ['[fe80::1%bad zone]:7400', /not an IPv6 address/],
    ['a:b:c', /too many ":"/],
    ['tcp://node-1:7400', /not a URL/],
    ['999.1.1.1:7400', /"999.1.1.1" is neither an IPv4 address nor a valid host name/],
    ['10.0.0:7400', /neither/],
    ['-node:7400', /neither/],
    ['node..example:7400', /neither/],
    ['node example:7400', /neither/],
    [`${'a'.repeat(64)}.example:7400`, /neither/],
    ['dns:peers.example', /needs a port/],
    ['dns:10.0.0.1:7400', /takes a name to resolve/],
    ['dns:[::1]:7400', /takes a name to resolve/],
    ['dns:bad_name!:7400', /not a valid DNS name/],
    ['dns:peers.example:0', /port "0"/],
    ['srv:conclave.example', /_service._proto.name/],
    ['srv:_transport.conclave.example', /_service._proto.name/],
    ['srv:_transport._tcp', /_service._proto.name/],
    ['srv:_transport._tcp.conclave.example:7400', /takes no port/],
    [`node-${'x'.repeat(300)}`, /longer than 300/],
  ];
  for (const [spec, reason] of cases) {
    const err = refusal(spec);
    assert.match(err.message, reason, `reason for ${JSON.stringify(spec)}`);
    assert.ok(err.message.includes(seedFormsAccepted), `accepted forms in the message for ${JSON.stringify(spec)}`);
    if (spec.length <= 80) assert.ok(err.message.includes(JSON.stringify(spec)), `the spec in the message: ${err.message}`);
  }
});

test('parseSeeds keeps order, drops duplicates and bounds the list', () => {
  const seeds = parseSeeds(['node-1', 'NODE-1.:7401', '10.0.0.1:7401', '10.0.0.1', 'dns:peers.example:7401', 'node-1:7402'], { defaultPort: 7401 });
  assert.deepEqual(seeds.map((seed) => seed.source), ['node-1', '10.0.0.1:7401', 'dns:peers.example:7401', 'node-1:7402']);
  assert.deepEqual(parseSeeds([], { defaultPort: 7401 }), []);

  assert.throws(() => parseSeeds(['a', 'b', 'c'], { defaultPort: 7401, seedsMax: 2 }),
    (err: unknown) => isDiscoveryError(err) && err.code === 'TOO_MANY_SEEDS' && /3 seeds given, at most 2/.test(err.message));
  assert.throws(() => parseSeeds(['good', 'bad:port'], { defaultPort: 7401 }),
    (err: unknown) => isDiscoveryError(err) && err.code === 'INVALID_SEED' && err.spec === 'bad:port');
});

test('a bad default port is a programming error, not a seed error', () => {
  assert.throws(() => parseSeed('node-1', 0), (err: unknown) => !isDiscoveryError(err) && err instanceof Error);
});

test('property: any input parses or is refused with INVALID_SEED, never another error', () => {
  const seedLike = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ unit: fc.constantFrom(...'ab1.:-_[]%/ dnsrv'.split('')), maxLength: 30 }),
    fc.tuple(fc.constantFrom('dns:', 'srv:', '[', 'srv:_a._tcp.', ''), fc.string({ maxLength: 20 })).map(([prefix, rest]) => prefix + rest),
  );
  fc.assert(fc.property(seedLike, (spec) => {
    try {
      const seed = parseSeed(spec, transportPort);
      assert.equal(seed.source, spec);
      if (seed.kind !== 'srv') assert.ok(seed.port >= 1 && seed.port <= 65535);
    } catch (err) {
      assert.ok(isDiscoveryError(err) && err.code === 'INVALID_SEED', `unexpected ${String(err)}`);
    }
  }), propertyParameters(2000));
});

test('property: a formatted literal endpoint parses back to the same canonical address and port', () => {
  const address = fc.oneof(fc.ipV4(), fc.ipV6());
  fc.assert(fc.property(address, fc.integer({ min: 1, max: 65535 }), (text, port) => {
    const canonical = canonicalAddress(text);
    assert.ok(canonical !== undefined, text);
    const seed = parseSeed(formatEndpoint(canonical, port), transportPort);
    assert.equal(seed.kind, 'address');
    assert.ok(seed.kind === 'address' && seed.address === canonical && seed.port === port);
    assert.equal(canonicalAddress(canonical), canonical, 'canonical is a fixed point');
  }), propertyParameters(1000));
});
