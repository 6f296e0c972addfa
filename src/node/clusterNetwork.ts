import type { Logger } from 'pino';

import type { Config } from '../config/settings.js';
import type { ClusterMessage } from '../core/clusterMessages.js';
import { createDnsResolver, SeedResolver } from '../discovery/resolver.js';
import { formatEndpoint, parseSeeds, type SeedSpec } from '../discovery/seeds.js';
import { ConclaveError, invariant } from '../errors/catalogue.js';
import { Transport, unmapIpv4 } from '../transport/transport.js';
import type { ClusterRuntime, Wire } from './clusterRuntime.js';
import { fromWire, toWire } from './appendWire.js';
import { messageProblem } from './messageShape.js';

/**
 * Nodes of another protocol major refuse each other at the handshake. 2.0: an append's payloads travel as `bin`
 * (appendWire.ts). 3.0: the handshake names nobody before the secret is proved (transport/handshake.ts).
 */
export const transportProtocolVersion = '3.0';

/** How often discovery resolves the seeds again and dials what it finds (cheap: DNS and idempotent connects). */
const discoveryRoundMs = 1000;
/** Most addresses one discovery round dials. */
const discoveryAddressesMax = 256;
/**
 * Rounds an address may be missing from discovery before its connection is dropped: one failed DNS lookup must
 * not cut a peer off (a node still bootstrapping is reachable only through its seed address).
 */
const missedRoundsMax = 5;

/**
 * Messages that travel on the transport beside the coordination messages and never reach the core: forwarded
 * commands and their outcomes (src/forwarding/commandChannel.ts). The network only routes them by type; what they
 * mean, and their shapes, are the channel's (the network does not depend on src/forwarding).
 */
export interface SideChannel {
  /** Whether a message of this `type` belongs to the channel. */
  carries(type: unknown): boolean;
  receive(from: string, message: Record<string, unknown>): void;
  /** The connection to `peerId` dropped: what was sent on it may or may not have arrived. */
  peerDown(peerId: string): void;
}

/**
 * The node's place in the network: the transport (one outgoing connection per peer, full mesh), discovery rounds
 * (seeds re-resolved every round, plus the addresses of the cluster's members), and the glue that hands messages
 * to the runtime and the runtime's messages to the transport.
 */
export class ClusterNetwork implements Wire {
  readonly transport: Transport;
  private readonly seeds: SeedSpec[];
  /** IPs of members and resolved seeds, from the last discovery round: their handshakes skip the strangers' bound. */
  private knownSources = new Set<string>();
  private readonly resolver: SeedResolver;
  private runtime: ClusterRuntime | null = null;
  /** Forwarded commands: a channel beside the coordination messages, never seen by the core. */
  private commands: SideChannel | null = null;
  private round: NodeJS.Timeout | null = null;
  private resolving = false;
  /** Addresses dialled that the last rounds did not find, with how many rounds in a row (bounded by the dialled set). */
  private readonly missedRounds = new Map<string, number>();
  private stopped = false;

  constructor(
    private readonly config: Config,
    private readonly self: { readonly id: string; readonly name: string },
    secret: string,
    private readonly log: Logger,
  ) {
    try {
      this.seeds = parseSeeds(config.cluster.seeds, { defaultPort: 7500 });
    } catch (err) {
      throw new ConclaveError('INVALID_REQUEST', `cluster.seeds: ${(err as Error).message}`);
    }
    const tls =
      config.transport.tlsCertFile !== ''
        ? { tls: { certFile: config.transport.tlsCertFile, keyFile: config.transport.tlsKeyFile, caFile: config.transport.tlsCaFile } }
        : {};
    const listenHost = config.transport.host === '' ? config.http.host : config.transport.host;
    this.transport = new Transport({
      host: listenHost,
      port: config.transport.port,
      ...(config.transport.publishHost !== '' ? { publishAddress: formatEndpoint(config.transport.publishHost, config.transport.port) } : {}),
      self,
      clusterName: config.cluster.name,
      clusterSecret: secret,
      protocolVersion: transportProtocolVersion,
      clusterUuid: () => this.runtime?.clusterState().clusterUuid ?? null,
      frameBytesMax: config.transport.frameBytesMax,
      sendQueueBytesMax: config.transport.sendQueueBytesMax,
      handshakeTimeoutMs: config.transport.handshakeTimeoutMs,
      handshakesMax: config.transport.handshakesMax,
      handshakesPerSourceMax: config.transport.handshakesPerSourceMax,
      helloTimeoutMs: config.transport.helloTimeoutMs,
      isKnownSource: (ip) => this.knownSources.has(ip),
      refusalLogLinesPerMinuteMax: config.transport.refusalLogLinesPerMinuteMax,
      logger: log,
      ...tls,
    });
    this.resolver = new SeedResolver({ resolver: createDnsResolver({ timeoutMs: 2000, tries: 2 }), logger: log, addressesMax: discoveryAddressesMax });
    this.transport.on('message', (from, message) => this.onMessage(from, message));
    this.transport.on('peerUp', () => this.peersChanged());
    this.transport.on('peerDown', (peer) => {
      this.commands?.peerDown(peer.id);
      this.peersChanged();
    });
  }

  /** Starts delivering forwarded commands and their outcomes; before attach(), which delivers anything at all. */
  attachCommands(channel: SideChannel): void {
    this.commands = channel;
  }

  /** Binds the transport port; the address peers must use is then known. */
  async listen(): Promise<string> {
    await this.transport.start();
    return this.transport.publishAddress;
  }

  /** Starts discovery and delivery for `runtime`. */
  attach(runtime: ClusterRuntime): void {
    // A forwarded command that arrived between the two would reach fromWire and be logged as malformed.
    invariant(this.commands !== null, 'the command channel is attached before the runtime');
    this.runtime = runtime;
    this.peersChanged();
    void this.discoveryRound();
    this.round = setInterval(() => void this.discoveryRound(), discoveryRoundMs);
  }

  send(message: ClusterMessage): boolean {
    return this.transport.send(message.to, toWire(message, this.runtime?.appliedIndex ?? 0));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.round !== null) clearInterval(this.round);
    this.resolver.cancel();
    await this.transport.stop();
  }

  private onMessage(from: string, message: unknown): void {
    const runtime = this.runtime;
    if (runtime === null) return; // not started yet: the protocol resends
    // Connections are one-way: a peer that dialled us (we had no address for it) must be dialled back, or we
    // could never answer it — a standalone node that others name as their seed learns of them this way.
    if (!this.transport.connectedPeers().some((p) => p.id === from)) this.dialBack(from);
    const type = (message as { type?: unknown } | null)?.type;
    if (this.commands?.carries(type) === true) {
      this.commands.receive(from, message as Record<string, unknown>);
      return;
    }
    const decoded = fromWire(message);
    const problem = 'problem' in decoded ? decoded.problem : messageProblem(decoded.message, from, this.self.id);
    if (problem !== null) {
      // An append whose entries this node cannot decode stalls the whole cluster: the runtime reports it (an error
      // at a bounded rate, and health) instead of a warning per resend.
      if ('problem' in decoded) runtime.refusedAppend(from, decoded.index, decoded.problem);
      else this.log.warn({ from, type: (message as { type?: unknown } | null)?.type, problem }, 'dropped a malformed cluster message');
      return;
    }
    runtime.receive((decoded as { message: unknown }).message as ClusterMessage);
  }

  private dialBack(id: string): void {
    const peer = this.transport.inboundPeers().find((p) => p.id === id);
    if (peer !== undefined && peer.address !== this.transport.publishAddress) this.transport.connect(peer.address);
  }

  private peersChanged(): void {
    this.runtime?.setDiscoveryPeers(this.transport.connectedPeers().map((p) => p.id));
  }

  /** Dials every seed address and every member's address; forgets addresses that are neither any more. */
  private async discoveryRound(): Promise<void> {
    if (this.resolving || this.stopped || this.runtime === null) return;
    this.resolving = true;
    try {
      const addresses = new Set(await this.resolver.resolveAll(this.seeds));
      const self = this.transport.publishAddress;
      for (const node of this.runtime.clusterState().nodes) addresses.add(node.address);
      // Peers that dialled us stay wanted while they are connected (see dialBack).
      for (const peer of this.transport.inboundPeers()) addresses.add(peer.address);
      addresses.delete(self);
      if (this.stopped) return;
      // Names that are not IPs (a member published by host name) are covered once a seed resolves to them.
      this.knownSources = new Set([...addresses].map((a) => unmapIpv4(hostOf(a))));
      for (const address of addresses) {
        this.missedRounds.delete(address);
        this.transport.connect(address);
      }
      for (const stats of this.transport.outgoingStats()) {
        if (addresses.has(stats.address)) continue;
        const missed = (this.missedRounds.get(stats.address) ?? 0) + 1;
        if (missed < missedRoundsMax) this.missedRounds.set(stats.address, missed);
        else {
          this.missedRounds.delete(stats.address);
          this.transport.disconnect(stats.address);
        }
      }
    } catch (err) {
      this.log.warn({ err }, 'a discovery round failed');
    } finally {
      this.resolving = false;
    }
  }
}

/** "10.0.0.1:7500" or "[fd00::1]:7500" to its host. */
function hostOf(address: string): string {
  const bracketed = /^\[([^\]]+)\]:\d+$/.exec(address);
  if (bracketed !== null) return bracketed[1]!;
  const colon = address.lastIndexOf(':');
  return colon < 0 ? address : address.slice(0, colon);
}
