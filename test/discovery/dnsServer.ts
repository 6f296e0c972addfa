import assert from 'node:assert/strict';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv4, isIPv6 } from 'node:net';

/**
 * A tiny authoritative DNS server for tests: UDP on 127.0.0.1, answering A, AAAA and SRV from an in-memory zone
 * that a test may change between discovery rounds (a headless Service whose pods move). Unknown names get
 * NXDOMAIN; known names without records of the asked type get an empty NOERROR answer (NODATA), as real servers do.
 *
 * Wire format by hand: RFC 1035 §4.1 (header, question, resource records) and RFC 2782 (SRV RDATA). Answers use
 * full names, never compression pointers; the question name is parsed with pointers allowed.
 */

export type RecordType = 'A' | 'AAAA' | 'SRV';
export const allTypes: readonly RecordType[] = ['A', 'AAAA', 'SRV'];

export interface SrvTarget {
  readonly priority: number;
  readonly weight: number;
  readonly port: number;
  readonly target: string;
}

export interface ZoneEntry {
  readonly a?: readonly string[];
  readonly aaaa?: readonly string[];
  readonly srv?: readonly SrvTarget[];
  /** Query types dropped without reply for this name, so the client times out on them. */
  readonly unanswered?: readonly RecordType[];
}

export interface QuerySeen {
  readonly name: string;
  readonly type: string;
}

const typeA = 1;
const typeAAAA = 28;
const typeSRV = 33;
const classIN = 1;
const typeNames: Readonly<Record<number, RecordType>> = { [typeA]: 'A', [typeAAAA]: 'AAAA', [typeSRV]: 'SRV' };

const rcodeFormErr = 1;
const rcodeNxDomain = 3;
const rcodeNotImp = 4;

const typeOPT = 41;

const headerBytes = 12;
// A UDP answer fits in 512 bytes (RFC 1035 §4.2.1), or in the payload size the client advertises in an EDNS OPT
// record (RFC 6891 §6.2.5; c-ares sends 1232), up to a ceiling of our own.
const udpBytesPlain = 512;
const udpBytesEdnsMax = 4096;
const queriesSeenMax = 1000;
const pointerJumpsMax = 16;

class FormatError extends Error {}

/** Reads a possibly compressed name: as spelled by the sender, without the root dot, and the offset after it. */
function readName(message: Buffer, start: number): { spelled: string; end: number } {
  const labels: string[] = [];
  let offset = start;
  let end: number | undefined;
  let jumps = 0;
  let nameBytes = 0;
  while (true) {
    if (offset >= message.length) throw new FormatError('name runs past the message');
    const length = message[offset]!;
    if ((length & 0xc0) === 0xc0) {
      if (offset + 1 >= message.length) throw new FormatError('truncated pointer');
      if (++jumps > pointerJumpsMax) throw new FormatError('pointer loop');
      end ??= offset + 2;
      offset = ((length & 0x3f) << 8) | message[offset + 1]!;
      continue;
    }
    if ((length & 0xc0) !== 0) throw new FormatError('reserved label type');
    if (length === 0) {
      end ??= offset + 1;
      break;
    }
    if (offset + 1 + length > message.length) throw new FormatError('label runs past the message');
    nameBytes += length + 1;
    if (nameBytes > 255) throw new FormatError('name longer than 255 bytes');
    labels.push(message.toString('latin1', offset + 1, offset + 1 + length));
    offset += 1 + length;
  }
  return { spelled: labels.join('.'), end };
}

interface ParsedQuery {
  readonly spelled: string;
  readonly type: number;
  readonly klass: number;
  /** The client's EDNS UDP payload size, or undefined when it sent no OPT record (and expects none back). */
  readonly udpBytesMax: number | undefined;
}

function parseQuery(message: Buffer): ParsedQuery {
  if (message.readUInt16BE(4) !== 1) throw new FormatError('exactly one question is expected');
  const { spelled, end } = readName(message, headerBytes);
  if (end + 4 > message.length) throw new FormatError('question runs past the message');
  const type = message.readUInt16BE(end);
  const klass = message.readUInt16BE(end + 2);
  // Walk the answer, authority and additional sections (a query normally carries only an OPT in the last).
  const recordCount = message.readUInt16BE(6) + message.readUInt16BE(8) + message.readUInt16BE(10);
  let offset = end + 4;
  let udpBytesMax: number | undefined;
  for (let i = 0; i < recordCount; i++) {
    offset = readName(message, offset).end;
    if (offset + 10 > message.length) throw new FormatError('record runs past the message');
    const recordType = message.readUInt16BE(offset);
    const dataBytes = message.readUInt16BE(offset + 8);
    if (recordType === typeOPT) udpBytesMax = message.readUInt16BE(offset + 2); // OPT's CLASS is the payload size
    offset += 10 + dataBytes;
    if (offset > message.length) throw new FormatError('record data runs past the message');
  }
  return { spelled, type, klass, udpBytesMax };
}

/** EDNS version 0, no flags, no options, our own payload size: the reply to a query that carried an OPT. */
function optRecord(): Buffer {
  const record = Buffer.alloc(11);
  // record[0] = 0: the root name.
  record.writeUInt16BE(typeOPT, 1);
  record.writeUInt16BE(udpBytesEdnsMax, 3);
  return record; // TTL (extended RCODE, version, flags) and RDLENGTH all 0
}

function encodeName(name: string): Buffer {
  const labels = name.replace(/\.$/, '').split('.').filter((label) => label !== '');
  const parts: Buffer[] = [];
  for (const label of labels) {
    const bytes = Buffer.from(label, 'latin1'); // the inverse of readName, so any label read can be echoed
    assert.ok(bytes.length >= 1 && bytes.length <= 63, `label ${JSON.stringify(label)} must be 1 to 63 bytes`);
    parts.push(Buffer.from([bytes.length]), bytes);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

function ipv4Bytes(address: string): Buffer {
  assert.ok(isIPv4(address), `zone A record ${address} is not IPv4`);
  return Buffer.from(address.split('.').map(Number));
}

function ipv6Bytes(address: string): Buffer {
  assert.ok(isIPv6(address) && !address.includes('.') && !address.includes('%'), `zone AAAA record ${address} must be plain IPv6 hex`);
  const gap = address.indexOf('::');
  const groups = (part: string) => (part === '' ? [] : part.split(':'));
  const head = groups(gap < 0 ? address : address.slice(0, gap));
  const tail = gap < 0 ? [] : groups(address.slice(gap + 2));
  const all = [...head, ...new Array<string>(8 - head.length - tail.length).fill('0'), ...tail];
  const bytes = Buffer.alloc(16);
  all.forEach((group, i) => bytes.writeUInt16BE(parseInt(group, 16), i * 2));
  return bytes;
}

function resourceRecord(owner: string, type: number, ttlSeconds: number, rdata: Buffer): Buffer {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(type, 0);
  fixed.writeUInt16BE(classIN, 2);
  fixed.writeUInt32BE(ttlSeconds, 4);
  fixed.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([encodeName(owner), fixed, rdata]);
}

function srvData(record: SrvTarget): Buffer {
  const fixed = Buffer.alloc(6);
  fixed.writeUInt16BE(record.priority, 0);
  fixed.writeUInt16BE(record.weight, 2);
  fixed.writeUInt16BE(record.port, 4);
  // RFC 2782: the target is not compressed, which full names satisfy anyway.
  return Buffer.concat([fixed, encodeName(record.target)]);
}

export class TestDnsServer {
  /** Keys are lower case without a trailing dot. Change it between rounds; every query reads it afresh. */
  readonly zone = new Map<string, ZoneEntry>();
  /** Questions answered or dropped, oldest first, at most queriesSeenMax of them. */
  readonly queriesSeen: QuerySeen[] = [];
  /** 0 so that no resolver cache can hide a zone change between rounds. */
  ttlSeconds = 0;
  private waiters: Array<{ readonly name: string; readonly arrived: () => void }> = [];

  private constructor(private readonly socket: Socket, readonly port: number) {}

  static async start(): Promise<TestDnsServer> {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, '127.0.0.1', () => {
        socket.off('error', reject);
        resolve();
      });
    });
    const server = new TestDnsServer(socket, socket.address().port);
    socket.on('message', (message, remote) => server.onMessage(message, remote));
    return server;
  }

  /** What Resolver.setServers takes. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Resolves when the next query for name arrives: a test's proof that a query is in flight, without sleeping. */
  nextQuery(name: string): Promise<void> {
    return new Promise((arrived) => this.waiters.push({ name, arrived }));
  }

  queriesFor(name: string, type: string): number {
    return this.queriesSeen.filter((query) => query.name === name && query.type === type).length;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }

  private onMessage(message: Buffer, remote: RemoteInfo): void {
    const reply = this.answer(message);
    if (reply !== undefined) this.socket.send(reply, remote.port, remote.address);
  }

  /** The reply to one query, or undefined to stay silent (a runt packet, a response, or an unanswered name). */
  answer(message: Buffer): Buffer | undefined {
    if (message.length < headerBytes) return undefined; // not even an id to answer to
    const id = message.readUInt16BE(0);
    const flags = message.readUInt16BE(2);
    if ((flags & 0x8000) !== 0) return undefined;
    const opcode = (flags >> 11) & 0x0f;
    const reply = (rcode: number, question: Buffer | undefined, answers: readonly Buffer[], udpBytesMax: number | undefined): Buffer => {
      const opt = udpBytesMax === undefined ? [] : [optRecord()];
      const sizeMax = Math.min(Math.max(udpBytesMax ?? udpBytesPlain, udpBytesPlain), udpBytesEdnsMax);
      const body = [...(question === undefined ? [] : [question]), ...answers, ...opt];
      let length = headerBytes + body.reduce((sum, part) => sum + part.length, 0);
      // Too big for UDP: TC with no answers tells the client to ask again over TCP (RFC 1035 §4.2.1), which this
      // server does not serve; the test then sees an error instead of a silently partial answer.
      const truncated = length > sizeMax;
      if (truncated) length -= answers.reduce((sum, part) => sum + part.length, 0);
      const header = Buffer.alloc(headerBytes);
      header.writeUInt16BE(id, 0);
      // QR, the query's opcode and RD, AA since this server owns every name it knows; RA clear: no recursion.
      header.writeUInt16BE(0x8000 | (opcode << 11) | 0x0400 | (truncated ? 0x0200 : 0) | (flags & 0x0100) | rcode, 2);
      header.writeUInt16BE(question === undefined ? 0 : 1, 4);
      header.writeUInt16BE(truncated ? 0 : answers.length, 6);
      header.writeUInt16BE(opt.length, 10);
      const parts = truncated ? [header, ...(question === undefined ? [] : [question]), ...opt] : [header, ...body];
      const out = Buffer.concat(parts);
      assert.equal(out.length, length);
      return out;
    };
    if (opcode !== 0) return reply(rcodeNotImp, undefined, [], undefined);

    let query: ParsedQuery;
    try {
      query = parseQuery(message);
    } catch (err) {
      if (err instanceof FormatError) return reply(rcodeFormErr, undefined, [], undefined);
      throw err;
    }
    // The question goes back, and answers carry the name, in the client's spelling: resolvers match both against
    // what they asked, case and all when they randomise it (DNS 0x20). Re-encoded rather than copied, because a
    // compression pointer in the query would point at the wrong bytes of the reply.
    const typeClass = Buffer.alloc(4);
    typeClass.writeUInt16BE(query.type, 0);
    typeClass.writeUInt16BE(query.klass, 2);
    const question = Buffer.concat([encodeName(query.spelled), typeClass]);
    const name = query.spelled.toLowerCase();
    const owner = query.spelled;

    if (this.queriesSeen.length >= queriesSeenMax) this.queriesSeen.shift();
    this.queriesSeen.push({ name, type: typeNames[query.type] ?? String(query.type) });
    for (const waiter of this.waiters.filter((w) => w.name === name)) waiter.arrived();
    this.waiters = this.waiters.filter((w) => w.name !== name);

    if (query.klass !== classIN) return reply(rcodeNotImp, question, [], query.udpBytesMax);
    const entry = this.zone.get(name);
    if (entry?.unanswered?.some((dropped) => dropped === typeNames[query.type]) === true) return undefined;
    if (entry === undefined) return reply(rcodeNxDomain, question, [], query.udpBytesMax);

    const answers: Buffer[] = [];
    const ttl = this.ttlSeconds;
    if (query.type === typeA) for (const address of entry.a ?? []) answers.push(resourceRecord(owner, typeA, ttl, ipv4Bytes(address)));
    if (query.type === typeAAAA) for (const address of entry.aaaa ?? []) answers.push(resourceRecord(owner, typeAAAA, ttl, ipv6Bytes(address)));
    if (query.type === typeSRV) for (const record of entry.srv ?? []) answers.push(resourceRecord(owner, typeSRV, ttl, srvData(record)));
    return reply(0, question, answers, query.udpBytesMax);
  }
}
