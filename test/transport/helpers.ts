import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { generateClusterSecret } from '../../src/config/clusterSecret.js';
import { FrameDecoder, encodeFrame } from '../../src/transport/frames.js';
import {
  clientHello,
  clientReceiveChallenge,
  newNonce,
  serverReceiveHello,
  serverReceiveProof,
  type HandshakeIdentity,
  type HandshakeSide,
} from '../../src/transport/handshake.js';
import { Transport, formatAddress, type TransportLogger, type TransportOptions } from '../../src/transport/transport.js';

/** Generated as an operator would (`conclave secret generate`): weaker ones are refused by the configuration. */
export const secret = generateClusterSecret();
/** Another cluster's secret. */
export const otherSecret = generateClusterSecret();

/** Polls `check` until it returns something other than undefined/false, or fails after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const value = check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export interface LogLine {
  readonly level: 'debug' | 'info' | 'warn' | 'error';
  readonly fields: Record<string, unknown>;
  readonly message: string;
}

export interface CapturingLogger extends TransportLogger {
  readonly lines: LogLine[];
  find(level: LogLine['level'], code: string): LogLine | undefined;
}

/** Keeps every line, so a test can assert what an operator would read; CONCLAVE_TEST_LOG=1 prints them too. */
export function captureLogger(name: string): CapturingLogger {
  const lines: LogLine[] = [];
  const add = (level: LogLine['level']) => (fields: object, message: string) => {
    lines.push({ level, fields: fields as Record<string, unknown>, message });
    if (process.env['CONCLAVE_TEST_LOG'] === '1') console.log(`[${name}] ${level} ${message} ${JSON.stringify(fields)}`);
  };
  return {
    lines,
    debug: add('debug'),
    info: add('info'),
    warn: add('warn'),
    error: add('error'),
    find: (level, code) => lines.find((line) => line.level === level && line.fields['code'] === code),
  };
}

export interface TestNode {
  readonly transport: Transport;
  readonly log: CapturingLogger;
  readonly id: string;
  readonly name: string;
  readonly address: string;
  readonly messages: Array<{ from: string; message: unknown }>;
  readonly refusals: Array<{ address: string; code: string; message: string }>;
  readonly ups: string[];
  readonly downs: string[];
}

const running = new Set<Transport>();

export async function startNode(name: string, overrides: Partial<TransportOptions> = {}): Promise<TestNode> {
  const log = captureLogger(name);
  const id = overrides.self?.id ?? `id-${name}`;
  const transport = new Transport({
    host: '127.0.0.1',
    port: 0,
    self: { id, name },
    clusterName: 'test-cluster',
    clusterSecret: secret,
    protocolVersion: '1.0',
    clusterUuid: () => null,
    handshakeTimeoutMs: 2000,
    reconnectDelayMinMs: 10,
    reconnectDelayMaxMs: 100,
    logger: log,
    ...overrides,
  });
  const node: TestNode = { transport, log, id, name, address: '', messages: [], refusals: [], ups: [], downs: [] };
  transport.on('message', (from, message) => node.messages.push({ from, message }));
  transport.on('refused', (address, code, message) => node.refusals.push({ address, code, message }));
  transport.on('peerUp', (peer) => node.ups.push(peer.id));
  transport.on('peerDown', (peer) => node.downs.push(peer.id));
  const { port } = await transport.start();
  running.add(transport);
  return Object.assign(node, { address: formatAddress('127.0.0.1', port) });
}

export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((t) => t.stop()));
  running.clear();
}

export function isUp(node: TestNode, peerId: string): boolean {
  return node.transport.connectedPeers().some((peer) => peer.id === peerId);
}

export function identity(name: string, overrides: Partial<HandshakeIdentity> = {}): HandshakeIdentity {
  return {
    protocolVersion: '1.0',
    clusterName: 'test-cluster',
    clusterUuid: null,
    nodeId: `id-${name}`,
    nodeName: name,
    address: '127.0.0.1:1',
    frameBytesMax: 1024 * 1024,
    ...overrides,
  };
}

/** A socket speaking raw frames, for playing a misbehaving peer. */
export class RawPeer {
  readonly frames: unknown[] = [];
  readonly received: Buffer[] = [];
  closed = false;
  private readonly decoder = new FrameDecoder(64 * 1024 * 1024);

  constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received.push(chunk);
      for (const value of this.decoder.push(chunk)) this.frames.push(value);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
    });
  }

  /** `localAddress` (127.0.0.2, …) plays another source machine on loopback. */
  static async connect(address: string, localAddress?: string): Promise<RawPeer> {
    const [host, port] = address.split(':') as [string, string];
    const socket = net.connect({ host, port: Number(port), ...(localAddress === undefined ? {} : { localAddress }) });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', reject);
    });
    return new RawPeer(socket);
  }

  send(value: unknown): void {
    this.socket.write(encodeFrame(value, 64 * 1024 * 1024));
  }

  async nextFrame(what: string): Promise<unknown> {
    const seen = this.frames.length;
    return waitFor(what, () => (this.frames.length > seen ? this.frames[seen] : undefined));
  }

  /** Plays a client through the whole handshake with `server`; resolves once welcomed. */
  async handshakeAsClient(local: HandshakeIdentity, clusterSecret = secret): Promise<void> {
    const side: HandshakeSide = { local, clusterSecret, nonce: newNonce() };
    this.send(clientHello(side));
    const outcome = clientReceiveChallenge(side, await waitFor('a challenge', () => this.frames[0]));
    if (outcome.kind !== 'proof') throw new Error(`handshake refused: ${JSON.stringify(outcome)}`);
    this.send(outcome.reply);
    const welcome = await waitFor('a welcome', () => this.frames[1]);
    if ((welcome as { type?: string }).type !== 'welcome') throw new Error(`not welcomed: ${JSON.stringify(welcome)}`);
  }
}

/**
 * A listening raw server. `onSocket` may play the server side of the handshake with `handshakeAsServer`, then do
 * whatever the test needs (such as never reading again).
 */
export async function rawServer(onSocket: (peer: RawPeer) => void): Promise<{ address: string; server: net.Server; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    onSocket(new RawPeer(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    server,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Answers a client's hello and proof as a server would; resolves once it has sent the welcome. */
export async function handshakeAsServer(peer: RawPeer, local: HandshakeIdentity, clusterSecret = secret): Promise<void> {
  const side: HandshakeSide = { local, clusterSecret, nonce: newNonce() };
  const hello = serverReceiveHello(side, await waitFor('a hello', () => peer.frames[0]));
  if (hello.kind !== 'challenge') throw new Error(`hello refused: ${JSON.stringify(hello)}`);
  peer.send(hello.reply);
  const proof = serverReceiveProof(side, hello.hello, await waitFor('a proof', () => peer.frames[1]));
  if (proof.kind !== 'welcome') throw new Error(`proof refused: ${JSON.stringify(proof)}`);
  peer.send(proof.reply);
}

export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'conclave-transport-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface TestPki {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** A certificate and key signed by another CA, which nodes must refuse. */
  readonly rogueCertFile: string;
  readonly rogueKeyFile: string;
}

/** A CA, a node certificate it signed, and a certificate from a rogue CA; EC keys so that it takes milliseconds. */
export function generatePki(dir: string): TestPki {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ext = join(dir, 'node.ext');
  writeFileSync(ext, 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1\n');
  const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  for (const ca of ['ca', 'rogue-ca']) {
    openssl('req', '-x509', ...ecKey, '-keyout', `${ca}.key`, '-out', `${ca}.crt`, '-days', '2', '-subj', `/CN=${ca}`);
  }
  for (const [cert, ca] of [['node', 'ca'], ['rogue', 'rogue-ca']] as const) {
    openssl('req', ...ecKey, '-keyout', `${cert}.key`, '-out', `${cert}.csr`, '-subj', `/CN=${cert}`);
    openssl('x509', '-req', '-in', `${cert}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-set_serial', '1', '-days', '2', '-out', `${cert}.crt`, '-extfile', ext);
  }
  return {
    caFile: join(dir, 'ca.crt'),
    certFile: join(dir, 'node.crt'),
    keyFile: join(dir, 'node.key'),
    rogueCertFile: join(dir, 'rogue.crt'),
    rogueKeyFile: join(dir, 'rogue.key'),
  };
}
