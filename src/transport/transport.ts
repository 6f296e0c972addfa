import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import net, { type AddressInfo, type Server, type Socket } from 'node:net';
import tls from 'node:tls';

import { Connection, type ConnectionOptions, type ConnectionStats } from './connection.js';
import { TransportError, isTransportError, type TransportErrorCode, type TransportRefusalCode } from './errors.js';
import { frameBodyBytesLimit } from './frames.js';
import {
  clientHello,
  clientReceiveChallenge,
  clientReceiveWelcome,
  handshakeInvalid,
  handshakeTimeout,
  newNonce,
  protocolMajor,
  refusal,
  refusedMessage,
  serverReceiveHello,
  serverReceiveProof,
  tooManyConnections,
  type ChallengeMessage,
  type HandshakeIdentity,
  type HandshakeSide,
  type HelloMessage,
  type Refusal,
} from './handshake.js';
import { RateLimitedLog } from './rateLimitedLog.js';

/**
 * The cluster transport: a dedicated port, a full mesh of TCP (optionally TLS) connections carrying
 * length-prefixed MessagePack frames between nodes that proved they share the cluster secret.
 *
 * Connections are one-way, as in CrateDB: a node sends only on the connection it dialled to a peer, and receives
 * only on the connections peers dialled to it. So each side owns the lifecycle of what it sends — it alone decides
 * when to reconnect — and two nodes dialling each other at once never have to agree which connection survives.
 *
 * Delivery is best effort: a frame is dropped when a peer's send queue is full or its connection drops. The
 * coordination protocol above resends what matters; what it cannot survive is a transport that buffers without
 * bound and turns one slow peer into an out-of-memory node.
 */

export interface TransportTlsOptions {
  /** PEM certificate of this node, signed by the CA in caFile. */
  readonly certFile: string;
  readonly keyFile: string;
  /** PEM CA that signed every node's certificate; a peer must present a certificate it signed. */
  readonly caFile: string;
}

/** The pino methods the transport uses; a pino Logger fits. */
export interface TransportLogger {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
  debug(fields: object, message: string): void;
}

export interface TransportOptions {
  /** Listen address. */
  readonly host: string;
  /** Listen port; 0 picks a free one, which start() reports. */
  readonly port: number;
  /** host:port peers should use to reach this node, sent in the handshake. Default: host and the bound port. */
  readonly publishAddress?: string;
  readonly self: { readonly id: string; readonly name: string };
  readonly clusterName: string;
  /** Proven with HMAC at every handshake; never written to a socket. */
  readonly clusterSecret: string;
  /** `major.minor`: peers of another major are refused. */
  readonly protocolVersion: string;
  /** Read at each handshake, because the UUID becomes known only once the cluster forms. */
  readonly clusterUuid: () => string | null;
  /** When set, listening and dialling both use TLS and verify the peer's certificate against caFile. */
  readonly tls?: TransportTlsOptions;
  /** Largest frame body accepted from a peer (and sent, further limited by the peer's own). */
  readonly frameBytesMax?: number;
  readonly sendQueueFramesMax?: number;
  readonly sendQueueBytesMax?: number;
  /** From dialling (or accepting) to the end of the handshake. */
  readonly handshakeTimeoutMs?: number;
  readonly reconnectDelayMinMs?: number;
  readonly reconnectDelayMaxMs?: number;
  /** Inbound connections held at once, handshaking ones included; more are refused with TOO_MANY_CONNECTIONS. */
  readonly connectionsMax?: number;
  /**
   * Inbound connections accepted but not yet through the handshake (TLS included), in all and from one source
   * address; more are cut at once (TOO_MANY_HANDSHAKES, logged), so strangers cannot hold the slots of connectionsMax.
   */
  readonly handshakesMax?: number;
  readonly handshakesPerSourceMax?: number;
  /**
   * Whether an inbound connection's source IP (IPv4-mapped addresses already unwrapped) belongs to a cluster member
   * or a seed. Such connections do not count against handshakesMax, only against handshakesPerSourceMax: inbound
   * connections are the only way this node hears its peers, so strangers filling the shared bound must not keep a
   * real peer out. A stranger gains nothing by claiming a known address: it still has to pass the handshake.
   */
  readonly isKnownSource?: (ip: string) => boolean;
  /** From accept to the first byte received; a connection that says nothing by then is cut (squatters hold slots). */
  readonly helloTimeoutMs?: number;
  /** Refusals of inbound connections logged per minute and code; the rest are counted in the next line. */
  readonly refusalLogLinesPerMinuteMax?: number;
  /** TCP keep-alive's idle delay, so a dead peer's socket is found even when nothing is sent. */
  readonly keepAliveDelayMs?: number;
  readonly logger: TransportLogger;
  /** Jitter for reconnection delays, in [0, 1). Injected so tests can pin it. */
  readonly random?: () => number;
}

const KiB = 1024;
const MiB = 1024 * KiB;

export const transportDefaults = {
  frameBytesMax: 64 * MiB,
  sendQueueFramesMax: 4096,
  sendQueueBytesMax: 64 * MiB,
  handshakeTimeoutMs: 5000,
  reconnectDelayMinMs: 100,
  reconnectDelayMaxMs: 10_000,
  connectionsMax: 256,
  handshakesMax: 64,
  handshakesPerSourceMax: 8,
  helloTimeoutMs: 1000,
  refusalLogLinesPerMinuteMax: 10,
  keepAliveDelayMs: 5000,
} as const;

/** A node at the other end of a handshaken connection. `address` is the one dialled (outgoing) or announced (inbound). */
export interface PeerInfo {
  readonly id: string;
  readonly name: string;
  readonly address: string;
}

/** Listeners run inside socket callbacks and must not throw: an exception there is a bug and ends the process. */
export interface TransportEvents {
  /** A message from a peer, received on an inbound handshaken connection. */
  message: [fromNodeId: string, message: unknown];
  /** An outgoing connection finished its handshake: send(peer.id, …) works from now on. */
  peerUp: [peer: PeerInfo];
  /** An outgoing connection that was up is gone; the transport reconnects if the address is still wanted. */
  peerDown: [peer: PeerInfo];
  /** An outgoing handshake was refused (by either side); the transport keeps retrying with back-off. */
  refused: [address: string, code: TransportRefusalCode, message: string];
}

export interface OutgoingStats extends ConnectionStats {
  readonly address: string;
  readonly peerId: string | null;
  readonly phase: OutgoingPhase;
  /** Consecutive connection attempts that did not get through, since the last successful handshake. */
  readonly failedAttempts: number;
}

/**
 * The only frame a server sends on an established connection: why it is about to close it, so the side that
 * dialled can log the cause instead of a bare reset.
 */
export interface ClosingNotice {
  readonly type: 'closing';
  readonly code: TransportErrorCode;
  readonly message: string;
}

type OutgoingPhase = 'idle' | 'awaitChallenge' | 'awaitWelcome' | 'up';

interface Outgoing {
  readonly address: string;
  readonly host: string;
  readonly port: number;
  wanted: boolean;
  phase: OutgoingPhase;
  connection: Connection | null;
  side: HandshakeSide | null;
  /** The server's challenge, whose nonce its welcome proof covers. */
  challenge: ChallengeMessage | null;
  peer: PeerInfo | null;
  failedAttempts: number;
  retryTimer: NodeJS.Timeout | null;
  /** This attempt's failure has been reported as a refusal; its close need not be logged again. */
  refusalReported: boolean;
  /** A failure to connect was logged as a warning since the last successful handshake; the rest go to debug. */
  failureWarned: boolean;
}

interface Inbound {
  readonly connection: Connection;
  phase: 'awaitHello' | 'awaitProof' | 'up';
  readonly nonce: Uint8Array;
  side: HandshakeSide | null;
  hello: HelloMessage | null;
  /** Known once the peer has proved the secret. */
  peer: PeerInfo | null;
}

type TransportState = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer;
  /** Built once: parsing the PEM files on every reconnection would be waste. */
  readonly context: tls.SecureContext;
}

/** Full-jitter exponential back-off above a floor: in [min, min(max, min·2^attempt)]. `attempt` counts from 1. */
export function reconnectDelayMs(attempt: number, minMs: number, maxMs: number, random: () => number): number {
  const ceilingMs = Math.min(maxMs, minMs * 2 ** Math.min(Math.max(attempt, 1), 30));
  return Math.round(minMs + random() * (ceilingMs - minMs));
}

/** Splits host:port or [ipv6]:port. Throws ADDRESS_INVALID. */
export function parseAddress(address: string): { host: string; port: number } {
  const match = /^\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})$/.exec(address) ?? /^([^:[\]\s]+):([0-9]{1,5})$/.exec(address);
  const port = match === null ? NaN : Number(match[2]);
  if (match === null || !(port >= 1 && port <= 65535)) {
    throw new TransportError('ADDRESS_INVALID', `transport address ${JSON.stringify(address)} is not host:port or [ipv6]:port with a port in 1-65535`, { address });
  }
  return { host: match[1]!, port };
}

export function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

export class Transport extends EventEmitter<TransportEvents> {
  private state: TransportState = 'new';
  private server: Server | null = null;
  private boundPort = 0;
  private publishAddressValue = '';
  private tlsMaterial: TlsMaterial | null = null;
  private readonly outgoing = new Map<string, Outgoing>();
  /** Up outgoing connections by the node id their handshake revealed: where send() goes. */
  private readonly outgoingById = new Map<string, Outgoing>();
  private readonly inbound = new Set<Inbound>();
  private readonly inboundById = new Map<string, Inbound>();
  /** Every accepted socket, TLS handshakes in progress included, so stop() can cut them all. */
  private readonly acceptedSockets = new Set<Socket>();
  /** Accepted sockets whose handshake has not finished, by "address:port", with their source address. */
  private readonly handshaking = new Map<string, { source: string; stranger: boolean }>();
  /** Handshakes in `handshaking` from sources not known as members or seeds: these share handshakesMax. */
  private strangerHandshakes = 0;
  private readonly helloTimeoutMs: number;
  private readonly handshakingBySource = new Map<string, number>();
  private readonly handshakesMax: number;
  private readonly handshakesPerSourceMax: number;
  /** Inbound refusals are provoked by whoever reaches the port: their log lines are rate-limited. */
  private readonly refusalLog: RateLimitedLog;
  private readonly connectionOptions: ConnectionOptions;
  private readonly handshakeTimeoutMs: number;
  private readonly reconnectDelayMinMs: number;
  private readonly reconnectDelayMaxMs: number;
  private readonly connectionsMax: number;
  private readonly keepAliveDelayMs: number;
  private readonly frameBytesMax: number;
  private readonly random: () => number;
  private readonly log: TransportLogger;

  constructor(private readonly options: TransportOptions) {
    super();
    this.log = options.logger;
    this.random = options.random ?? Math.random;
    this.frameBytesMax = positive('frameBytesMax', options.frameBytesMax ?? transportDefaults.frameBytesMax);
    if (this.frameBytesMax > frameBodyBytesLimit) throw new TransportError('OPTIONS_INVALID', `frameBytesMax must be at most ${frameBodyBytesLimit}`);
    this.handshakeTimeoutMs = positive('handshakeTimeoutMs', options.handshakeTimeoutMs ?? transportDefaults.handshakeTimeoutMs);
    this.reconnectDelayMinMs = positive('reconnectDelayMinMs', options.reconnectDelayMinMs ?? transportDefaults.reconnectDelayMinMs);
    this.reconnectDelayMaxMs = positive('reconnectDelayMaxMs', options.reconnectDelayMaxMs ?? transportDefaults.reconnectDelayMaxMs);
    this.connectionsMax = positive('connectionsMax', options.connectionsMax ?? transportDefaults.connectionsMax);
    this.handshakesMax = positive('handshakesMax', options.handshakesMax ?? transportDefaults.handshakesMax);
    this.handshakesPerSourceMax = positive('handshakesPerSourceMax', options.handshakesPerSourceMax ?? transportDefaults.handshakesPerSourceMax);
    this.helloTimeoutMs = positive('helloTimeoutMs', options.helloTimeoutMs ?? transportDefaults.helloTimeoutMs);
    this.refusalLog = new RateLimitedLog(this.log, {
      linesPerWindowMax: positive('refusalLogLinesPerMinuteMax', options.refusalLogLinesPerMinuteMax ?? transportDefaults.refusalLogLinesPerMinuteMax),
      windowMs: 60_000,
    });
    this.keepAliveDelayMs = positive('keepAliveDelayMs', options.keepAliveDelayMs ?? transportDefaults.keepAliveDelayMs);
    this.connectionOptions = {
      frameBytesMax: this.frameBytesMax,
      sendQueueFramesMax: positive('sendQueueFramesMax', options.sendQueueFramesMax ?? transportDefaults.sendQueueFramesMax),
      sendQueueBytesMax: positive('sendQueueBytesMax', options.sendQueueBytesMax ?? transportDefaults.sendQueueBytesMax),
      handshakeTimeoutMs: this.handshakeTimeoutMs,
    };
    if (this.reconnectDelayMinMs > this.reconnectDelayMaxMs) {
      throw new TransportError('OPTIONS_INVALID', `reconnectDelayMinMs ${this.reconnectDelayMinMs} is above reconnectDelayMaxMs ${this.reconnectDelayMaxMs}`);
    }
    if (options.clusterSecret.length === 0) throw new TransportError('OPTIONS_INVALID', 'the cluster secret is empty: set cluster.secret (--cluster-secret) on every node');
    if (protocolMajor(options.protocolVersion) === null) throw new TransportError('OPTIONS_INVALID', `protocolVersion ${JSON.stringify(options.protocolVersion)} is not major.minor`);
    if (options.self.id.length === 0 || options.self.name.length === 0) throw new TransportError('OPTIONS_INVALID', 'self.id and self.name must not be empty');
    if (options.clusterName.length === 0) throw new TransportError('OPTIONS_INVALID', 'clusterName must not be empty');
    if (options.publishAddress !== undefined) parseAddress(options.publishAddress);
  }

  // ---------------------------------------------------------------------------------------------- lifecycle

  /** Listens; resolves with the bound port. Throws OPTIONS_INVALID for unreadable TLS files, or the listen error. */
  async start(): Promise<{ port: number }> {
    if (this.state !== 'new') throw new TransportError('NOT_RUNNING', `start() may be called once; the transport is ${this.state}`);
    this.state = 'starting';
    try {
      this.tlsMaterial = this.options.tls === undefined ? null : loadTls(this.options.tls);
      // Plain TCP: the bounds are checked before a Connection exists. TLS: on the raw socket, before TLS starts.
      const server = this.tlsMaterial === null
        ? net.createServer((socket) => {
          if (this.onConnection(socket)) this.onAccepted(socket);
        })
        : tls.createServer(
          // The client's certificate is checked in onAccepted rather than by rejectUnauthorized, which would drop
          // the socket without a word: the client is told why, over TLS, and nothing it sends is read.
          // handshakeTimeout: a stranger that opens TLS and stalls holds a handshake slot no longer than one of ours.
          { cert: this.tlsMaterial.cert, key: this.tlsMaterial.key, ca: this.tlsMaterial.ca, requestCert: true, rejectUnauthorized: false, handshakeTimeout: this.handshakeTimeoutMs },
          (socket) => this.onAccepted(socket),
        );
      if (server instanceof tls.Server) server.on('connection', (socket: Socket) => this.onConnection(socket));
      if (server instanceof tls.Server) {
        server.on('tlsClientError', (err, socket) => {
          // Once the peer has gone the socket no longer knows its address.
          const remote = socket.remoteAddress === undefined ? 'a peer' : formatAddress(socket.remoteAddress, socket.remotePort ?? 0);
          this.refusalLog.warn(
            'TLS_HANDSHAKE_FAILED',
            { code: 'TLS_HANDSHAKE_FAILED', remoteAddress: socket.remoteAddress === undefined ? null : remote, err: err.message },
            `TLS with ${remote} failed (${err.message}): the peer may not trust this node's certificate, or may not ` +
              'use TLS; every node needs TLS, a certificate signed by the CA in transport.tlsCaFile, and that CA file',
          );
        });
      }
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.options.port, this.options.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      server.on('error', (err) => this.log.error({ err: err.message }, `transport server error: ${err.message}`));
      this.server = server;
      this.boundPort = (server.address() as AddressInfo).port;
      this.publishAddressValue = this.options.publishAddress ?? formatAddress(this.options.host, this.boundPort);
      this.state = 'running';
      this.log.info({ port: this.boundPort, tls: this.tlsMaterial !== null, publishAddress: this.publishAddressValue }, 'transport listening');
      return { port: this.boundPort };
    } catch (err) {
      this.state = 'stopped';
      throw err;
    }
  }

  /** Closes every connection and the listener. Nothing reconnects afterwards; peerDown fires for every up peer. */
  async stop(): Promise<void> {
    if (this.state === 'stopping' || this.state === 'stopped') return;
    const server = this.server;
    this.state = 'stopping';
    for (const out of [...this.outgoing.values()]) this.forget(out);
    for (const inb of this.inbound) inb.connection.destroy();
    for (const socket of this.acceptedSockets) socket.destroy();
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
    this.state = 'stopped';
  }

  get port(): number {
    return this.boundPort;
  }

  get publishAddress(): string {
    return this.publishAddressValue;
  }

  // ---------------------------------------------------------------------------------------------- outgoing

  /** Keeps an outgoing connection to `address` (host:port), reconnecting with back-off until disconnect(). Idempotent. */
  connect(address: string): void {
    this.assertRunning();
    if (this.outgoing.has(address)) return;
    const { host, port } = parseAddress(address);
    const out: Outgoing = {
      address,
      host,
      port,
      wanted: true,
      phase: 'idle',
      connection: null,
      side: null,
      challenge: null,
      peer: null,
      failedAttempts: 0,
      retryTimer: null,
      refusalReported: false,
      failureWarned: false,
    };
    this.outgoing.set(address, out);
    this.dial(out);
  }

  /** Stops wanting `address`: closes its connection (peerDown now, if it was up) and stops reconnecting. */
  disconnect(address: string): void {
    const out = this.outgoing.get(address);
    if (out !== undefined) this.forget(out);
  }

  /**
   * Sends one message to a node over the outgoing connection whose handshake named it. False when there is none,
   * or its send queue is full (the message is dropped), or the message is larger than this node's or the peer's
   * frameBytesMax (dropped and logged: it could never be delivered, and cutting the link would not help).
   */
  send(nodeId: string, message: unknown): boolean {
    const out = this.outgoingById.get(nodeId);
    if (out === undefined || out.phase !== 'up' || out.connection === null) return false;
    try {
      return out.connection.send(message);
    } catch (err) {
      if (!isTransportError(err)) throw err;
      this.log.error(
        { code: err.code, peerId: nodeId, address: out.address, ...err.details },
        `message to node ${nodeId} dropped: ${err.message}` +
          (err.code === 'FRAME_TOO_LARGE' ? ': raise transport.frameBytesMax on every node, or send smaller messages' : ''),
      );
      return false;
    }
  }

  /** Peers reachable by send(): outgoing connections whose handshake finished. */
  connectedPeers(): PeerInfo[] {
    const peers: PeerInfo[] = [];
    for (const out of this.outgoing.values()) if (out.phase === 'up' && out.peer !== null) peers.push(out.peer);
    return peers;
  }

  /** Peers sending to this node: inbound connections whose handshake finished, one per node id. */
  inboundPeers(): PeerInfo[] {
    return [...this.inboundById.values()].flatMap((inb) => (inb.peer === null ? [] : [inb.peer]));
  }

  /** For metrics and tests: one line per wanted address. */
  outgoingStats(): OutgoingStats[] {
    return [...this.outgoing.values()].map((out) => ({
      address: out.address,
      peerId: out.peer?.id ?? null,
      phase: out.phase,
      failedAttempts: out.failedAttempts,
      ...(out.connection?.stats() ?? { queuedFrames: 0, queuedBytes: 0, droppedFrames: 0 }),
    }));
  }

  private dial(out: Outgoing): void {
    out.retryTimer = null;
    if (!out.wanted || this.state !== 'running') return;
    const socket = this.tlsMaterial === null
      ? net.connect({ host: out.host, port: out.port })
      : tls.connect({
        host: out.host,
        port: out.port,
        secureContext: this.tlsMaterial.context,
        rejectUnauthorized: true,
        // Peers are addressed by IP (or whatever seed hosts say), so the certificate's names cannot be checked
        // against the address; the CA is the trust anchor: any certificate it signed is a cluster node, and the
        // handshake's secret proof and node ids do the rest.
        checkServerIdentity: () => undefined,
      });
    socket.setNoDelay(true);
    socket.setKeepAlive(true, this.keepAliveDelayMs);
    const side: HandshakeSide = { local: this.identity(), clusterSecret: this.options.clusterSecret, nonce: newNonce() };
    const connection: Connection = new Connection(socket, this.connectionOptions, {
      onFrame: (value) => this.onOutgoingFrame(out, connection, value),
      onFrameError: (err) => {
        this.log.warn({ address: out.address, code: err.code }, `connection to ${out.address} broken: ${err.message}`);
        connection.destroy(err);
      },
      onHandshakeTimeout: () => {
        this.reportRefusal(out, handshakeTimeout(this.handshakeTimeoutMs, out.address));
        connection.destroy();
      },
      onClose: (err) => this.onOutgoingClose(out, connection, err),
    });
    out.connection = connection;
    out.side = side;
    out.phase = 'awaitChallenge';
    out.refusalReported = false;
    connection.send(clientHello(side));
  }

  private onOutgoingFrame(out: Outgoing, connection: Connection, value: unknown): void {
    if (out.connection !== connection) return;
    switch (out.phase) {
      case 'awaitChallenge': {
        const outcome = clientReceiveChallenge(out.side!, value, out.address);
        if (outcome.kind === 'proof') {
          out.challenge = outcome.challenge;
          out.phase = 'awaitWelcome';
          connection.send(outcome.reply);
          return;
        }
        this.reportRefusal(out, outcome.refusal);
        connection.close(outcome.kind === 'refuse' ? outcome.reply : undefined);
        return;
      }
      case 'awaitWelcome': {
        const outcome = clientReceiveWelcome(out.side!, out.challenge!, value, out.address);
        if (outcome.kind === 'welcome') {
          const peer: PeerInfo = { id: outcome.peer.nodeId, name: outcome.peer.nodeName, address: out.address };
          connection.established(outcome.peer.frameBytesMax);
          out.phase = 'up';
          out.peer = peer;
          out.failedAttempts = 0;
          out.failureWarned = false;
          this.outgoingById.set(peer.id, out);
          this.log.info({ address: out.address, peerId: peer.id, peerName: peer.name }, `connected to node "${peer.name}" at ${out.address}`);
          this.emit('peerUp', peer);
          return;
        }
        this.reportRefusal(out, outcome.refusal);
        connection.close();
        return;
      }
      case 'up': {
        if (isClosingNotice(value)) {
          this.log.warn(
            { address: out.address, peerId: out.peer?.id, code: value.code },
            `node "${out.peer?.name}" at ${out.address} closed the connection: ${value.message}`,
          );
          connection.close();
          return;
        }
        const err = new TransportError('PROTOCOL_VIOLATION', `node at ${out.address} sent a frame on a connection it accepted; only a closing notice may flow that way`);
        this.log.warn({ address: out.address, code: err.code }, err.message);
        connection.destroy(err);
        return;
      }
      case 'idle':
        return;
    }
  }

  private onOutgoingClose(out: Outgoing, connection: Connection, err: Error | null): void {
    if (out.connection !== connection) return;
    const wasUp = out.phase === 'up';
    out.connection = null;
    out.side = null;
    out.challenge = null;
    out.phase = 'idle';
    if (wasUp) {
      const peer = out.peer!;
      this.dropOutgoingPeer(out);
      this.log.warn(
        { address: out.address, peerId: peer.id, err: err?.message },
        `connection to node "${peer.name}" at ${out.address} lost${err === null ? '' : `: ${err.message}`}`,
      );
      this.emit('peerDown', peer);
    } else if (!out.refusalReported && out.wanted && this.state === 'running') {
      if (err !== null && this.tlsMaterial !== null && isTlsFailure(err)) {
        this.reportRefusal(out, refusal(
          'TLS_HANDSHAKE_FAILED',
          `TLS with ${out.address} failed (${err.message}): give every node a certificate and key signed by the CA in ` +
            'transport.tlsCaFile, the same CA file, and TLS on every node or on none',
        ));
      } else {
        // The first failure of a series is worth a warning; the retries that follow are expected until it is back.
        const fields = { address: out.address, attempt: out.failedAttempts + 1, err: err?.message };
        const message = err === null
          ? `${out.address} closed the connection during the handshake: check that it is a Conclave transport port and that TLS is configured alike on both nodes`
          : `cannot connect to ${out.address}: ${err.message}`;
        if (out.failureWarned) this.log.debug(fields, message);
        else this.log.warn(fields, message);
        out.failureWarned = true;
      }
    }
    out.failedAttempts = wasUp ? 1 : out.failedAttempts + 1;
    if (out.wanted && this.state === 'running') {
      const delayMs = reconnectDelayMs(out.failedAttempts, this.reconnectDelayMinMs, this.reconnectDelayMaxMs, this.random);
      out.retryTimer = setTimeout(() => this.dial(out), delayMs);
    }
  }

  /**
   * A peer we keep failing to reach just reached us: it is back, so dial it now rather than when the back-off
   * (up to reconnectDelayMaxMs) says — a restarted replica would otherwise wait seconds for its first append.
   */
  private dialBackNow(address: string): void {
    const out = this.outgoing.get(address);
    if (out === undefined || out.retryTimer === null || !out.wanted || this.state !== 'running') return;
    clearTimeout(out.retryTimer);
    out.failedAttempts = 0;
    this.dial(out);
  }

  private reportRefusal(out: Outgoing, r: Refusal): void {
    if (out.refusalReported) return;
    out.refusalReported = true;
    this.log.error({ address: out.address, code: r.code }, `connection to ${out.address} refused: ${r.code}: ${r.message}`);
    this.emit('refused', out.address, r.code, r.message);
  }

  /** No longer wanted: cut it, and say so at once rather than when the socket finally closes. */
  private forget(out: Outgoing): void {
    out.wanted = false;
    if (this.outgoing.get(out.address) === out) this.outgoing.delete(out.address);
    if (out.retryTimer !== null) clearTimeout(out.retryTimer);
    out.retryTimer = null;
    const connection = out.connection;
    const peer = out.phase === 'up' ? out.peer : null;
    out.connection = null;
    out.phase = 'idle';
    if (peer !== null) {
      this.dropOutgoingPeer(out);
      this.emit('peerDown', peer);
    }
    if (connection !== null) {
      if (this.state === 'stopping') connection.destroy();
      else connection.close();
    }
  }

  private dropOutgoingPeer(out: Outgoing): void {
    const peer = out.peer;
    out.peer = null;
    if (peer === null || this.outgoingById.get(peer.id) !== out) return;
    this.outgoingById.delete(peer.id);
    // Two wanted addresses may reach the same node; the other one carries on.
    for (const other of this.outgoing.values()) {
      if (other.phase === 'up' && other.peer?.id === peer.id) {
        this.outgoingById.set(peer.id, other);
        break;
      }
    }
  }

  // ---------------------------------------------------------------------------------------------- inbound

  /**
   * Every TCP connection, before TLS: counted as a handshake in progress until onInboundFrame welcomes it or it
   * closes. Beyond the bounds it is cut at once, unread: a stranger gets nothing to wait for, and a node that is
   * refused this way retries with its back-off.
   */
  private onConnection(socket: Socket): boolean {
    this.acceptedSockets.add(socket);
    const key = socketKey(socket);
    const ip = unmapIpv4(socket.remoteAddress ?? 'unknown');
    // One machine commonly holds a whole IPv6 /64: counting per address would give it 2^64 sources.
    const source = sourceGroup(ip);
    const stranger = !(this.options.isKnownSource?.(ip) ?? false);
    const fromSource = this.handshakingBySource.get(source) ?? 0;
    if ((stranger && this.strangerHandshakes >= this.handshakesMax) || fromSource >= this.handshakesPerSourceMax) {
      const perSource = fromSource >= this.handshakesPerSourceMax;
      this.refusalLog.warn(
        'TOO_MANY_HANDSHAKES',
        { code: 'TOO_MANY_HANDSHAKES', remoteAddress: ip, handshaking: this.handshaking.size, fromSource },
        `refused a transport connection from ${ip}: TOO_MANY_HANDSHAKES: ` +
          (perSource
            ? `${fromSource} handshakes from that address are already in progress (transport.handshakesPerSourceMax ${this.handshakesPerSourceMax})`
            : `${this.strangerHandshakes} handshakes from addresses that are not members or seeds are already in progress (transport.handshakesMax ${this.handshakesMax})`) +
          ': look for a client that opens connections without finishing them',
      );
      socket.destroy();
      this.acceptedSockets.delete(socket);
      return false;
    }
    this.handshaking.set(key, { source, stranger });
    if (stranger) this.strangerHandshakes++;
    this.handshakingBySource.set(source, fromSource + 1);
    // A squatter never sends a byte; a real peer sends its TLS ClientHello or hello at once. Cutting the silent
    // ones early keeps a slot's price at one reconnect per helloTimeoutMs instead of per handshakeTimeoutMs.
    // Judged after the event loop's next poll (setImmediate), not in the timer phase: a node whose loop was held up
    // runs its due timers before it reads its sockets, and would cut a real peer whose hello is already waiting.
    const silence = setTimeout(() => {
      setImmediate(() => {
        if (this.handshaking.has(key) && socket.bytesRead === 0) socket.destroy();
      });
    }, this.helloTimeoutMs);
    // The last word on a slow handshake: Connection's own timer (which tells the peer why) starts only once TLS is
    // through, and a stranger may never start TLS. The grace lets that timer's refusal go out first.
    const cutoff = setTimeout(() => {
      if (this.handshaking.has(key)) socket.destroy();
    }, this.handshakeTimeoutMs + handshakeCutoffGraceMs);
    socket.on('close', () => {
      clearTimeout(cutoff);
      clearTimeout(silence);
      this.acceptedSockets.delete(socket);
      this.handshakeDone(key);
    });
    return true;
  }

  /** Frees the handshake slot of the connection `key`; idempotent. */
  private handshakeDone(key: string): void {
    const entry = this.handshaking.get(key);
    if (entry === undefined) return;
    const source = entry.source;
    this.handshaking.delete(key);
    if (entry.stranger) this.strangerHandshakes--;
    const count = (this.handshakingBySource.get(source) ?? 1) - 1;
    if (count <= 0) this.handshakingBySource.delete(source);
    else this.handshakingBySource.set(source, count);
  }

  /** Handshakes in progress, in all and by source address: for tests and metrics. */
  handshakesInProgress(): { total: number; bySource: ReadonlyMap<string, number> } {
    return { total: this.handshaking.size, bySource: new Map(this.handshakingBySource) };
  }

  private onAccepted(socket: Socket): void {
    if (this.state !== 'running') {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    socket.setKeepAlive(true, this.keepAliveDelayMs);
    const unauthorized = socket instanceof tls.TLSSocket && !socket.authorized ? String(socket.authorizationError ?? 'no certificate') : null;
    // The handlers run only after the constructor has returned, by which time `inb` exists.
    const connection = new Connection(socket, this.connectionOptions, {
      onFrame: (value) => this.onInboundFrame(inb, value),
      onFrameError: (err) => this.onInboundFrameError(inb, err),
      onHandshakeTimeout: () => this.refuseInbound(inb, handshakeTimeout(this.handshakeTimeoutMs, connection.remoteAddress)),
      onClose: (err) => this.onInboundClose(inb, err),
    });
    const inb: Inbound = { connection, phase: 'awaitHello', nonce: newNonce(), side: null, hello: null, peer: null };
    if (unauthorized !== null) {
      this.refuseInbound(inb, refusal(
        'TLS_HANDSHAKE_FAILED',
        `node "${this.options.self.name}" (${this.publishAddressValue}) refused the TLS certificate of ` +
          `${connection.remoteAddress} (${unauthorized}): give every node a certificate signed by the CA in ` +
          'transport.tlsCaFile',
      ));
      return;
    }
    if (this.inbound.size >= this.connectionsMax) {
      this.refuseInbound(inb, tooManyConnections(this.identity(), this.connectionsMax));
      return;
    }
    this.inbound.add(inb);
  }

  private onInboundFrame(inb: Inbound, value: unknown): void {
    const connection = inb.connection;
    switch (inb.phase) {
      case 'awaitHello': {
        // The UUID is read now, not at accept time: the cluster may have formed meanwhile.
        const side: HandshakeSide = { local: this.identity(), clusterSecret: this.options.clusterSecret, nonce: inb.nonce };
        const outcome = serverReceiveHello(side, value);
        if (outcome.kind === 'refuse') {
          this.refuseInbound(inb, outcome.refusal);
          return;
        }
        inb.side = side;
        inb.hello = outcome.hello;
        inb.phase = 'awaitProof';
        connection.send(outcome.reply);
        return;
      }
      case 'awaitProof': {
        const outcome = serverReceiveProof(inb.side!, inb.hello!, value, connection.remoteAddress);
        if (outcome.kind === 'refuse') {
          this.refuseInbound(inb, outcome.refusal);
          return;
        }
        if (outcome.kind === 'refused') {
          this.refusalLog.warn(
            outcome.refusal.code,
            { code: outcome.refusal.code, remoteAddress: connection.remoteAddress },
            `the peer at ${connection.remoteAddress} refused this node: ${outcome.refusal.code}: ${outcome.refusal.message}`,
          );
          connection.close();
          return;
        }
        const hello = outcome.peer;
        connection.send(outcome.reply);
        connection.established(hello.frameBytesMax);
        this.handshakeDone(socketKey(connection.socket));
        inb.phase = 'up';
        inb.peer = { id: hello.nodeId, name: hello.nodeName, address: hello.address };
        const previous = this.inboundById.get(hello.nodeId);
        this.inboundById.set(hello.nodeId, inb);
        if (previous !== undefined && previous !== inb) {
          // The peer reconnected (its side found the old connection dead before ours did): the newest one is the
          // one it sends on, so the old one only holds a socket.
          this.log.info({ peerId: hello.nodeId, remoteAddress: connection.remoteAddress }, `node "${hello.nodeName}" reconnected; closing its previous inbound connection`);
          previous.connection.close();
        } else {
          this.log.info({ peerId: hello.nodeId, peerName: hello.nodeName, remoteAddress: connection.remoteAddress }, `node "${hello.nodeName}" (${hello.address}) connected`);
        }
        this.dialBackNow(hello.address);
        return;
      }
      case 'up':
        this.emit('message', inb.peer!.id, value);
        return;
    }
  }

  private onInboundFrameError(inb: Inbound, err: TransportError): void {
    if (inb.phase !== 'up') {
      this.refuseInbound(inb, handshakeInvalid(`${err.message}${strangerHint(err)}`));
      return;
    }
    const peer = inb.peer!;
    const message = err.code === 'FRAME_TOO_LARGE'
      ? `${err.message}: set the same transport.frameBytesMax on every node`
      : `${err.message}: the byte stream is out of step`;
    this.log.warn({ code: err.code, peerId: peer.id, remoteAddress: inb.connection.remoteAddress, ...err.details }, `closing the connection from node "${peer.name}": ${message}`);
    const notice: ClosingNotice = { type: 'closing', code: err.code, message };
    inb.connection.close(notice, err);
  }

  private refuseInbound(inb: Inbound, r: Refusal): void {
    this.refusalLog.warn(
      r.code,
      { code: r.code, remoteAddress: inb.connection.remoteAddress },
      `refused a transport connection from ${inb.connection.remoteAddress}: ${r.code}: ${r.message}`,
    );
    inb.connection.close(refusedMessage(r));
  }

  private onInboundClose(inb: Inbound, err: Error | null): void {
    this.inbound.delete(inb);
    const peer = inb.peer;
    if (peer === null) return;
    if (this.inboundById.get(peer.id) === inb) this.inboundById.delete(peer.id);
    this.log.debug({ peerId: peer.id, err: err?.message }, `inbound connection from node "${peer.name}" closed`);
  }

  // ---------------------------------------------------------------------------------------------- helpers

  private identity(): HandshakeIdentity {
    return {
      protocolVersion: this.options.protocolVersion,
      clusterName: this.options.clusterName,
      clusterUuid: this.options.clusterUuid(),
      nodeId: this.options.self.id,
      nodeName: this.options.self.name,
      address: this.publishAddressValue,
      frameBytesMax: this.frameBytesMax,
    };
  }

  private assertRunning(): void {
    if (this.state !== 'running') throw new TransportError('NOT_RUNNING', `the transport is ${this.state}: connect() needs start() first and nothing after stop()`);
  }
}

/** How long past handshakeTimeoutMs an accepted socket still in its handshake is destroyed without a word. */
const handshakeCutoffGraceMs = 1000;

/** A live TCP connection's key on this listener: its remote address and port. TLS sockets report their TCP socket's. */
function socketKey(socket: Socket): string {
  return `${socket.remoteAddress ?? 'unknown'}|${socket.remotePort ?? 0}`;
}

/** "::ffff:10.0.0.1" is the IPv4 peer 10.0.0.1 seen by a dual-stack listener. */
export function unmapIpv4(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m === null ? ip : m[1]!;
}

/** The per-source bound's key: an IPv4 address, or the /64 an IPv6 address lies in. */
export function sourceGroup(ip: string): string {
  if (!ip.includes(':')) return ip;
  const bare = ip.split('%')[0]!.toLowerCase();
  const [head = '', tail] = bare.split('::', 2) as [string, string | undefined];
  const headParts = head === '' ? [] : head.split(':');
  let parts = headParts;
  if (tail !== undefined) {
    const tailParts = tail === '' ? [] : tail.split(':');
    parts = [...headParts, ...Array<string>(Math.max(0, 8 - headParts.length - tailParts.length)).fill('0'), ...tailParts];
  }
  return `${parts.slice(0, 4).map((h) => (parseInt(h, 16) || 0).toString(16)).join(':')}::/64`;
}

function positive(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new TransportError('OPTIONS_INVALID', `${name} must be a positive integer, not ${value}`);
  return value;
}

function loadTls(options: TransportTlsOptions): TlsMaterial {
  const read = (what: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new TransportError('OPTIONS_INVALID', `cannot read the transport TLS ${what} ${file}: ${(err as Error).message}`, { file }, { cause: err });
    }
  };
  const material = { cert: read('certificate', options.certFile), key: read('key', options.keyFile), ca: read('CA', options.caFile) };
  try {
    // A bad key must fail start(), not a reconnection timer later.
    return { ...material, context: tls.createSecureContext(material) };
  } catch (err) {
    throw new TransportError(
      'OPTIONS_INVALID',
      `the transport TLS files ${options.certFile}, ${options.keyFile}, ${options.caFile} do not make a usable TLS setup: ${(err as Error).message}`,
      {},
      { cause: err },
    );
  }
}

/** A first "frame length" that is really the start of another protocol says which one, for the log. */
function strangerHint(err: TransportError): string {
  const frameBytes = err.details['frameBytes'];
  if (typeof frameBytes !== 'number') return '';
  const head = Buffer.alloc(4);
  head.writeUInt32BE(frameBytes, 0);
  // 0x16 0x03: a TLS handshake record.
  if (head[0] === 0x16 && head[1] === 0x03) return '; it looks like TLS: enable TLS on this node too, or disable it on the peer';
  if (/^(GET |POST|PUT |HEAD|DELE|OPTI|PATC)$/.test(head.toString('latin1'))) return '; it looks like HTTP: point HTTP clients at the HTTP port, not the transport port';
  return '';
}

function isClosingNotice(value: unknown): value is ClosingNotice {
  if (typeof value !== 'object' || value === null) return false;
  const record = value as Record<string, unknown>;
  return record['type'] === 'closing' && typeof record['code'] === 'string' && typeof record['message'] === 'string';
}

/** On a TLS connection, errors that mean TLS refused, not the network: certificates, alerts, a peer without TLS. */
function isTlsFailure(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  return code === 'EPROTO' || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || /CERT|UNABLE_TO_|SELF_SIGNED|DEPTH_ZERO/.test(code);
}
