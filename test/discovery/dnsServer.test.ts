import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { TestDnsServer } from './dnsServer.js';

// The test server is only worth its tests if its wire format is right; node's resolver exercises the happy path
// (resolver.test.ts), these the edges a resolver rarely sends.
let dns: TestDnsServer;
before(async () => {
  dns = await TestDnsServer.start();
  dns.zone.set('node.test', { a: ['10.0.0.1'] });
  dns.zone.set('big.test', { a: Array.from({ length: 40 }, (_, i) => `10.0.1.${i}`) });
});
after(() => dns.close());

function name(text: string): Buffer {
  return Buffer.concat([...text.split('.').map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label)])), Buffer.from([0])]);
}

function header(fields: { id?: number; flags?: number; qd?: number; ar?: number }): Buffer {
  const out = Buffer.alloc(12);
  out.writeUInt16BE(fields.id ?? 0x1234, 0);
  out.writeUInt16BE(fields.flags ?? 0x0100, 2); // RD, as stub resolvers send
  out.writeUInt16BE(fields.qd ?? 1, 4);
  out.writeUInt16BE(fields.ar ?? 0, 10);
  return out;
}

const typeClass = (type: number) => Buffer.from([0, type, 0, 1]);
const opt = (udpBytes: number) => Buffer.from([0, 0, 41, udpBytes >> 8, udpBytes & 0xff, 0, 0, 0, 0, 0, 0]);

function reply(query: Buffer) {
  const out = dns.answer(query);
  assert.ok(out !== undefined, 'a reply');
  const flags = out.readUInt16BE(2);
  return {
    out,
    id: out.readUInt16BE(0),
    qr: (flags & 0x8000) !== 0,
    aa: (flags & 0x0400) !== 0,
    tc: (flags & 0x0200) !== 0,
    rd: (flags & 0x0100) !== 0,
    rcode: flags & 0x0f,
    qd: out.readUInt16BE(4),
    an: out.readUInt16BE(6),
    ar: out.readUInt16BE(10),
  };
}

test('an A answer: header flags, the question echoed, the record with its full owner name', () => {
  const r = reply(Buffer.concat([header({}), name('Node.test'), typeClass(1)]));
  assert.deepEqual({ id: r.id, qr: r.qr, aa: r.aa, tc: r.tc, rd: r.rd, rcode: r.rcode, qd: r.qd, an: r.an, ar: r.ar },
    { id: 0x1234, qr: true, aa: true, tc: false, rd: true, rcode: 0, qd: 1, an: 1, ar: 0 });
  const question = Buffer.concat([name('Node.test'), typeClass(1)]);
  assert.deepEqual(r.out.subarray(12, 12 + question.length), question, 'the question in the client\'s spelling');
  const record = r.out.subarray(12 + question.length);
  assert.deepEqual(record, Buffer.concat([name('Node.test'), typeClass(1), Buffer.from([0, 0, 0, 0, 0, 4, 10, 0, 0, 1])]));
});

test('NXDOMAIN for an unknown name, NODATA for a known name without the type', () => {
  const unknown = reply(Buffer.concat([header({}), name('nobody.test'), typeClass(1)]));
  assert.deepEqual([unknown.rcode, unknown.qd, unknown.an], [3, 1, 0]);
  const nodata = reply(Buffer.concat([header({}), name('node.test'), typeClass(28)]));
  assert.deepEqual([nodata.rcode, nodata.qd, nodata.an], [0, 1, 0]);
});

test('a compressed question name is followed', () => {
  // The name at offset 12 is a pointer to labels placed after the question (offset 18).
  const query = Buffer.concat([header({}), Buffer.from([0xc0, 18]), typeClass(1), name('node.test')]);
  const r = reply(query);
  assert.deepEqual([r.rcode, r.an], [0, 1]);
});

test('malformed or unsupported queries: FORMERR, NOTIMP, or silence', () => {
  assert.equal(reply(Buffer.concat([header({ qd: 2 }), name('node.test'), typeClass(1), name('node.test'), typeClass(1)])).rcode, 1);
  assert.equal(reply(Buffer.concat([header({}), Buffer.from([0xc0, 12]), typeClass(1)])).rcode, 1, 'a pointer loop');
  assert.equal(reply(Buffer.concat([header({}), Buffer.from([5, 0x61])])).rcode, 1, 'a label past the end');
  assert.equal(reply(Buffer.concat([header({}), name('node.test'), Buffer.from([0, 1])])).rcode, 1, 'no class');
  assert.equal(reply(Buffer.concat([header({ flags: 2 << 11 }), name('node.test'), typeClass(1)])).rcode, 4, 'STATUS opcode');
  assert.equal(dns.answer(Buffer.from([1, 2, 3])), undefined, 'a runt has no id to answer to');
  assert.equal(dns.answer(Buffer.concat([header({ flags: 0x8000 }), name('node.test'), typeClass(1)])), undefined, 'a response');
});

test('EDNS: an OPT in the query gets one back and raises the UDP size; without it, a big answer is truncated', () => {
  const plain = reply(Buffer.concat([header({}), name('big.test'), typeClass(1)]));
  assert.deepEqual([plain.tc, plain.an, plain.ar], [true, 0, 0]);
  assert.ok(plain.out.length <= 512);

  const edns = reply(Buffer.concat([header({ ar: 1 }), name('big.test'), typeClass(1), opt(1232)]));
  assert.deepEqual([edns.tc, edns.an, edns.ar, edns.rcode], [false, 40, 1, 0]);
  assert.ok(edns.out.length > 512 && edns.out.length <= 1232);
  assert.deepEqual(edns.out.subarray(edns.out.length - 11), opt(4096), 'the OPT record closes the reply');
});
