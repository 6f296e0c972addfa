import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import fc from 'fast-check';

import { RateLimitedLog } from '../../src/transport/rateLimitedLog.js';
import { sourceGroup, unmapIpv4 } from '../../src/transport/transport.js';
import { propertyParameters } from '../sim/testSeed.js';
import { RawPeer, captureLogger, isUp, startNode, stopAll, waitFor } from './helpers.js';

afterEach(stopAll);

/** Connections that never say a word, from `source` (a loopback address standing for another machine). */
async function squatters(address: string, source: string, count: number): Promise<RawPeer[]> {
  const peers: RawPeer[] = [];
  for (let i = 0; i < count; i++) peers.push(await RawPeer.connect(address, source));
  return peers;
}

describe('handshakes in progress are bounded, in all and per source address', () => {
  it('silent connections from one address cannot take the slots a node needs', async () => {
    // Before handshakes had their own bound, 4 silent sockets held every inbound slot and the node was refused.
    const b = await startNode('b', { connectionsMax: 4, handshakesPerSourceMax: 2, handshakesMax: 3, handshakeTimeoutMs: 5000, helloTimeoutMs: 60_000 });
    const held = await squatters(b.address, '127.0.0.2', 6);
    await waitFor('two held, the rest cut', () => held.filter((p) => p.closed).length === 4);
    assert.equal(b.transport.handshakesInProgress().bySource.get('127.0.0.2'), 2);
    assert.deepEqual(held.flatMap((p) => p.frames), [], 'a cut stranger is told nothing');
    const a = await startNode('a');
    a.transport.connect(b.address);
    await waitFor('a gets in beside the squatters', () => isUp(a, 'id-b'));
    // A finished handshake no longer counts.
    await waitFor('only the squatters handshake', () => b.transport.handshakesInProgress().total === 2);
    assert.ok(b.log.find('warn', 'TOO_MANY_HANDSHAKES'));
  });

  it('the total bound holds across addresses, and a slot frees when its handshake times out', async () => {
    const b = await startNode('b', { handshakesPerSourceMax: 5, handshakesMax: 2, handshakeTimeoutMs: 300 });
    const first = await squatters(b.address, '127.0.0.2', 1);
    const second = await squatters(b.address, '127.0.0.3', 1);
    const third = await squatters(b.address, '127.0.0.4', 1);
    await waitFor('the third is cut', () => third[0]!.closed);
    assert.equal(first[0]!.closed || second[0]!.closed, false);
    const a = await startNode('a', { handshakeTimeoutMs: 2000 });
    a.transport.connect(b.address);
    // The squatters are cut at handshakeTimeoutMs; a, retrying, gets in then.
    await waitFor('the squatters time out', () => first[0]!.closed && second[0]!.closed, 3000);
    await waitFor('a gets in', () => isUp(a, 'id-b'), 5000);
    assert.equal(b.transport.handshakesInProgress().total, 0);
  });

  it('refusal log lines are rate-limited: a flood of bad handshakes logs a few lines, then one that counts the rest', async () => {
    const b = await startNode('b', { refusalLogLinesPerMinuteMax: 3 });
    for (let i = 0; i < 20; i++) {
      const peer = await RawPeer.connect(b.address);
      peer.send({ type: 'hello', nodeId: 42 });
      await waitFor('refused', () => peer.closed);
    }
    const lines = b.log.lines.filter((l) => l.fields['code'] === 'HANDSHAKE_INVALID');
    assert.equal(lines.length, 3);
  });
});

describe('strangers cannot keep known peers out, and silence is cut early', () => {
  it('with every stranger slot held by silent connections from several addresses, a known peer still gets in', async () => {
    // Before known sources were exempt from handshakesMax, a was refused TOO_MANY_HANDSHAKES until a squatter left.
    const b = await startNode('b', {
      handshakesMax: 3,
      handshakesPerSourceMax: 2,
      handshakeTimeoutMs: 30_000,
      helloTimeoutMs: 30_000,
      isKnownSource: (ip) => ip === '127.0.0.1',
    });
    const held = [
      ...(await squatters(b.address, '127.0.0.2', 2)),
      ...(await squatters(b.address, '127.0.0.3', 2)),
      ...(await squatters(b.address, '127.0.0.4', 2)),
    ];
    await waitFor('three held, the rest cut', () => held.filter((p) => p.closed).length === 3);
    assert.equal(b.transport.handshakesInProgress().total, 3);
    const a = await startNode('a');
    a.transport.connect(b.address);
    await waitFor('a gets in beside the squatters', () => isUp(a, 'id-b'));
    assert.equal(a.transport.send('id-b', { type: 'ping', n: 1 }), true);
    await waitFor('b hears a', () => b.messages.some((m) => m.from === 'id-a'));
    assert.equal(held.filter((p) => p.closed).length, 3, 'the squatters still hold their slots');
    assert.deepEqual(a.refusals, []);
  });

  it('a connection that sends nothing is cut after helloTimeoutMs, long before handshakeTimeoutMs', async () => {
    const b = await startNode('b', { helloTimeoutMs: 200, handshakeTimeoutMs: 20_000 });
    const started = Date.now();
    const [silent] = await squatters(b.address, '127.0.0.2', 1);
    await waitFor('the silent connection is cut', () => silent!.closed, 3000);
    assert.ok(Date.now() - started >= 150, 'not before the hello timeout');
    assert.equal(b.transport.handshakesInProgress().total, 0);
    // One that has started its hello is left to handshakeTimeoutMs.
    const talking = await RawPeer.connect(b.address, '127.0.0.3');
    talking.socket.write(Buffer.from([0]));
    await new Promise((resolve) => setTimeout(resolve, 600));
    assert.equal(talking.closed, false);
  });

  it('source groups: IPv4-mapped is IPv4, IPv6 is grouped by /64', () => {
    assert.equal(unmapIpv4('::ffff:10.1.2.3'), '10.1.2.3');
    assert.equal(unmapIpv4('::FFFF:127.0.0.2'), '127.0.0.2');
    assert.equal(sourceGroup('10.1.2.3'), '10.1.2.3');
    assert.equal(sourceGroup('2001:db8:0:1::5'), '2001:db8:0:1::/64');
    assert.equal(sourceGroup('2001:db8:0:1:ffff:1:2:3'), '2001:db8:0:1::/64');
    assert.equal(sourceGroup('::1'), '0:0:0:0::/64');
    const hextet = fc.integer({ min: 0, max: 0xffff });
    fc.assert(
      fc.property(fc.array(hextet, { minLength: 8, maxLength: 8 }), fc.integer({ min: 0, max: 7 }), (h, cut) => {
        const full = h.map((x) => x.toString(16)).join(':');
        // The same address with a run of zero hextets written as "::" (when there is one) groups the same.
        const zeroed = h.map((x, i) => (i >= cut && i < cut + 2 ? 0 : x));
        const long = zeroed.map((x) => x.toString(16)).join(':');
        const short = `${zeroed.slice(0, cut).map((x) => x.toString(16)).join(':')}::${zeroed.slice(cut + 2).map((x) => x.toString(16)).join(':')}`;
        assert.equal(sourceGroup(long), sourceGroup(short));
        assert.equal(sourceGroup(full), `${h.slice(0, 4).map((x) => x.toString(16)).join(':')}::/64`);
      }),
      propertyParameters(200),
    );
  });
});

describe('RateLimitedLog', () => {
  it('logs linesPerWindowMax lines per key and window, then says how many it left out', () => {
    let nowMs = 0;
    const log = captureLogger('rl');
    const limited = new RateLimitedLog(log, { linesPerWindowMax: 2, windowMs: 1000, now: () => nowMs });
    for (let i = 0; i < 5; i++) limited.warn('A', { i }, 'a');
    limited.warn('B', {}, 'b');
    assert.deepEqual(log.lines.map((l) => l.message), ['a', 'a', 'b']);
    nowMs = 999;
    assert.equal(limited.warn('A', {}, 'a'), false);
    nowMs = 1000;
    assert.equal(limited.warn('A', {}, 'a'), true);
    assert.equal(log.lines.at(-1)!.fields['suppressed'], 4);
    assert.match(log.lines.at(-1)!.message, /4 more like it/);
    assert.equal(limited.warn('A', {}, 'a'), true);
    assert.equal(limited.warn('A', {}, 'a'), false);
  });

  it('remembers a bounded number of keys', () => {
    const log = captureLogger('rl');
    const limited = new RateLimitedLog(log, { linesPerWindowMax: 1, windowMs: 1000, keysMax: 2, now: () => 0 });
    for (const key of ['A', 'B', 'C', 'A']) limited.warn(key, {}, key);
    // A was forgotten when C came, so it logs again: memory stays bounded whatever the keys.
    assert.deepEqual(log.lines.map((l) => l.message), ['A', 'B', 'C', 'A']);
  });
});
