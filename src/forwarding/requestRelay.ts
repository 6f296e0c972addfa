/**
 * The request relay: the request coordinator's step for every HTTP request (run before the body is parsed), and
 * the relay of whole HTTP requests to the master. Any node takes any request, and one that is not the master hands
 * writes (or, in ALL mode, every API request) to the master; what to do is decision.ts's table.
 *
 * A write is forwarded in one of two ways:
 *
 *   command   the JSON writes of content and users (routes marked `forwardsCommand`) with a body of at most
 *             http.forwardCommandBodyBytesMax: this node authenticates, validates and builds the command, and only
 *             the command goes to the master, over the cluster transport (sent by writeRouter.ts through
 *             commandClient.ts); the master checks it again, proposes it and answers with the outcome, which the
 *             route renders here exactly as the master would have. Parsing, authentication and validation are paid
 *             by the node the client chose, not all by the master (the bench measured about 0.85 ms of CPU per
 *             write forwarded as a whole HTTP request).
 *   request   everything else (binary uploads, whose bytes must reach a quorum before the entry is proposed;
 *             larger JSON writes; voting exclusions; ALL mode's reads): the HTTP request is relayed, body streamed unread,
 *             and the master's answer streamed back. The client's credentials are not: this node authenticates the
 *             client itself and sends the identity (X-Conclave-Identity) in a request signed for the master
 *             (src/auth/internalAuth.ts), to the master's internal listener over TLS whenever the cluster uses TLS.
 *             A captured forward is worth nothing elsewhere, and no password or token leaves the node it was given to.
 */

import type { FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingHttpHeaders } from 'node:http';
import { Agent, type Dispatcher } from 'undici';

import type { Principal } from '../auth/authenticator.js';
import { encodeIdentity } from '../auth/forwardedIdentity.js';
import { identityHeader, internalAuthHeader, type SignedTarget } from '../auth/internalAuth.js';
import { header, requestHasBody } from '../auth/requestHeaders.js';
import type { Config } from '../config/settings.js';
import type { NodeDescriptor } from '../core/clusterState.js';
import { invariant } from '../errors/catalogue.js';
import { dialableAddress, internalHttpUrlOf, nodeTlsConnectOptions, type NodeTlsMaterial } from '../replication/internalHttp.js';
import { coordinationOf, directHeader, forwardedFromHeader, isWriteMethod, type CoordinatorMode } from './decision.js';
import { FormerMasters } from './formerMasters.js';
import {
  describeMaster,
  forwardFailure,
  MasterChangedWhileForwarding,
  tooManyForwards,
  unknownMasterAddress,
  writeRefusal,
  type MasterDescription,
} from './refusals.js';

/** What the coordinator needs of the cluster runtime. */
export interface MasterView {
  softState(): { readonly master: string | null };
  clusterState(): { readonly nodes: readonly NodeDescriptor[] };
  self(): Pick<NodeDescriptor, 'id' | 'name'>;
  readonly persistFailing: boolean;
  /** Called whenever the master this node knows may have changed; returns an unsubscribe function. */
  onChange?(listener: () => void): () => void;
}

export interface ForwardingOptions {
  readonly mode: CoordinatorMode;
  /** Connections kept to the master (per origin: a new master gets its own pool). */
  readonly connectionsMax: number;
  /** Forwarded requests in flight, waiting for a connection included; more are refused with OVERLOADED. */
  readonly requestsMax: number;
  readonly connectTimeoutMs: number;
  /** From the end of the request body to the master's response headers. */
  readonly responseTimeoutMs: number;
  /** Longest pause between chunks of the master's response body. */
  readonly bodyIdleTimeoutMs: number;
  /**
   * Largest declared body of a write sent to the master as a command; larger or chunked ones go as HTTP requests.
   * Commands share the transport connection with the coordination messages, one FIFO byte stream: a bulky one
   * delays the heartbeats and acknowledgements behind it (on a 512 kbit/s link 32 KiB commands made masters step
   * down in CRX scenario 9b), where a separate HTTP connection lets them interleave.
   */
  readonly commandBodyBytesMax: number;
}

/** The master as the relay sees it: named for refusals, and where to redirect or forward to. */
interface MasterRef extends MasterDescription {
  /** Where clients reach its HTTP API, or null while it is not known (or is a wildcard address nobody can dial). */
  readonly httpUrl: string | null;
  /** Where forwards go (its internal listener when it runs one), or null while not known. */
  readonly forwardUrl: string | null;
}

/**
 * The client-facing URL of a member (for redirects), or null when its address is unknown or a wildcard with no
 * dialable transport host. Every node of a cluster serves its API alike, so the scheme is this node's own.
 */
export function httpUrlOf(node: Pick<NodeDescriptor, 'address' | 'httpAddress'>, scheme: 'http' | 'https' = 'http'): string | null {
  if (node.httpAddress === undefined) return null;
  const address = dialableAddress(node.httpAddress, node.address);
  return address === null ? null : `${scheme}://${address}`;
}

/** How this node proves itself to the master and protects what it forwards. */
export interface ForwardTrust {
  /** Signs a request for the master (InternalAuth.sign). */
  sign(request: SignedTarget): string;
  /** The transport's TLS material: forwards go to the master's internal listener over HTTPS. Null: no TLS between nodes. */
  readonly tls: NodeTlsMaterial | null;
  /** The scheme of the API's own listener (http.tlsCertFile): used in redirects to the master. */
  readonly publicScheme: 'http' | 'https';
}

/**
 * Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus those undici sets itself (host) or
 * refuses (expect): never copied across a forward, in either direction.
 */
const hopByHopHeaders = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'expect',
  'http2-settings',
]);

function endToEndHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const dropped = new Set(hopByHopHeaders);
  // A Connection header may name further hop-by-hop headers.
  for (const name of (header(headers, 'connection') ?? '').split(',')) dropped.add(name.trim().toLowerCase());
  const copied: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !dropped.has(name)) copied[name] = value;
  }
  return copied;
}

/**
 * Headers of the client's request that never go on to the master: its credentials (the forward carries the
 * identity this node authenticated instead), and node-to-node headers a client could try to smuggle through.
 */
const clientOnlyHeaders = new Set(['authorization', 'cookie', identityHeader, internalAuthHeader]);

/** The body length a request declares: 0 without a body, Infinity when it is chunked (not known up front). */
function declaredBodyBytes(headers: IncomingHttpHeaders): number {
  if (headers['transfer-encoding'] !== undefined) return Infinity;
  const length = Number(headers['content-length'] ?? 0);
  return Number.isFinite(length) ? length : Infinity;
}

export class RequestRelay {
  private readonly agent: Agent;
  private inFlight = 0;
  /** Forwards waiting for the master's answer, by the master they went to: given up when another is master. */
  private readonly underway = new FormerMasters<AbortController>('everyReport', (controller) => controller.abort(new MasterChangedWhileForwarding()));
  private readonly unsubscribe: () => void;
  /**
   * Given the promise of every forward, settled once the master's answer is relayed, and the reply that carries it
   * (src/metrics/forwardMetrics.ts).
   */
  observe: ((forward: Promise<unknown>, reply: FastifyReply) => void) | null = null;

  constructor(
    private readonly view: MasterView,
    private readonly options: ForwardingOptions,
    private readonly trust: ForwardTrust,
  ) {
    this.agent = new Agent({
      connections: options.connectionsMax,
      connect: { timeout: options.connectTimeoutMs, ...(trust.tls === null ? {} : nodeTlsConnectOptions(trust.tls)) },
      headersTimeout: options.responseTimeoutMs,
      bodyTimeout: options.bodyIdleTimeoutMs,
    });
    // A master that was paused or cut off may never answer what it was sent (formerMasters.ts).
    this.unsubscribe = view.onChange?.(() => this.underway.masterReported(view.softState().master)) ?? (() => undefined);
  }

  static fromConfig(view: MasterView, config: Config, trust: ForwardTrust): RequestRelay {
    return new RequestRelay(view, {
      mode: config.cluster.coordinatorMode,
      connectionsMax: config.http.forwardConnectionsMax,
      requestsMax: config.http.forwardRequestsMax,
      connectTimeoutMs: config.http.forwardConnectTimeoutMs,
      // The master answers a write once it is applied, or after cluster.writeTimeoutMs with WRITE_OUTCOME_UNKNOWN:
      // wait for that answer, plus a margin for the trip.
      responseTimeoutMs: config.cluster.writeTimeoutMs + config.http.forwardResponseMarginMs,
      bodyIdleTimeoutMs: config.http.forwardBodyIdleTimeoutMs,
      commandBodyBytesMax: config.http.forwardCommandBodyBytesMax,
    }, trust);
  }

  /** Forwarded requests under way now (for tests and metrics). */
  get requestsInFlight(): number {
    return this.inFlight;
  }

  /**
   * The coordinator's step for one request, run before body parsing. Returns true when the request was answered
   * here (forwarded, redirected) and false when this node serves it; refusals are thrown. `identify` authenticates
   * the client (undefined: it sent no credentials); it is called only for a request forwarded as a whole.
   */
  async coordinate(request: FastifyRequest, reply: FastifyReply, identify: () => Promise<Principal | undefined>): Promise<boolean> {
    // Outside ALL mode a read is served here whoever the master is (coordinationOf): decided without looking it up.
    if (this.options.mode !== 'ALL' && !isWriteMethod(request.method)) return false;
    const master = this.master();
    const decision = coordinationOf({
      mode: this.options.mode,
      method: request.method,
      path: request.url.split('?', 1)[0]!,
      master: master === null ? 'none' : master.id === this.view.self().id ? 'self' : 'other',
      answerHere: answersHere(request),
      persistFailing: this.view.persistFailing,
      sendsCommand: request.routeOptions.config.forwardsCommand === true && declaredBodyBytes(request.headers) <= this.options.commandBodyBytesMax,
    });
    switch (decision) {
      case 'local':
        return false;
      case 'command':
        // Served here up to the proposal (writeRouter.ts sends the command). Every answer to it says it was
        // forwarded, refusals made here included, as every answer relayed from the master does.
        request.forwardsCommand = true;
        void reply.header(forwardedFromHeader, this.view.self().name);
        return false;
      case 'refuse':
        throw writeRefusal(master);
      case 'redirect': {
        invariant(master !== null, 'a redirect has a master');
        if (master.httpUrl === null) throw unknownMasterAddress(master, false);
        // 307 keeps the method and body: the client sends the same request to the master.
        void reply.redirect(`${master.httpUrl}${request.url}`, 307);
        return true;
      }
      case 'forward':
        await this.forwardToMaster(request, reply, identify);
        return true;
    }
  }

  /**
   * Sends the request to the master (path, query, end-to-end headers without the client's credentials, the
   * identity `identify` authenticated, body streamed), signed for the master, and answers with the master's
   * status, headers and body, streamed. Failures before any answer are
   * thrown as catalogue errors: MASTER_UNREACHABLE when nothing reached the master (or for a read);
   * WRITE_OUTCOME_UNKNOWN when a write was sent and the connection failed or the answer did not come in time.
   *
   * A request with a body must be forwarded before its body is parsed (from an onRequest hook). A request that
   * was itself forwarded is never forwarded again: it is refused as this node would refuse a write.
   */
  forwardToMaster(request: FastifyRequest, reply: FastifyReply, identify: () => Promise<Principal | undefined>): Promise<FastifyReply> {
    const forward = this.forward(request, reply, identify);
    this.observe?.(forward, reply);
    return forward;
  }

  private async forward(request: FastifyRequest, reply: FastifyReply, identify: () => Promise<Principal | undefined>): Promise<FastifyReply> {
    const master = this.master();
    if (master === null || header(request.headers, forwardedFromHeader) !== undefined) throw writeRefusal(master);
    if (master.forwardUrl === null) throw unknownMasterAddress(master, this.trust.tls !== null);
    const withBody = requestHasBody(request.headers);
    invariant(!withBody || !request.raw.readableDidRead, 'a request with a body is forwarded before its body is read');
    if (this.inFlight >= this.options.requestsMax) {
      throw tooManyForwards(this.inFlight, 'requests', { forwardRequestsMax: this.options.requestsMax });
    }
    // Before a forwarding slot is taken: wrong credentials are refused here, and never reach the master.
    const principal = await identify();
    this.inFlight++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.inFlight--;
    };
    // A client that goes away stops the forward: the connection to the master is freed for others.
    const abort = new AbortController();
    const onClientGone = () => {
      release();
      if (!reply.sent) abort.abort();
    };
    reply.raw.once('close', onClientGone);
    this.underway.add(master.id, abort);

    const self = this.view.self().name;
    const headers = endToEndHeaders(request.headers);
    for (const name of clientOnlyHeaders) delete headers[name];
    const identity = principal === undefined ? undefined : encodeIdentity(principal);
    if (identity !== undefined) headers[identityHeader] = identity;
    headers[forwardedFromHeader] = self;
    headers[internalAuthHeader] = this.trust.sign({
      target: master.id,
      method: request.method,
      path: request.url,
      body: withBody ? 'streamed' : 'empty',
      ...(identity !== undefined ? { identity } : {}),
    });
    let response;
    try {
      response = await this.agent.request({
        origin: master.forwardUrl,
        path: request.url,
        method: request.method as Dispatcher.HttpMethod,
        headers,
        body: withBody ? request.raw : null,
        signal: abort.signal,
      });
    } catch (err) {
      reply.raw.off('close', onClientGone);
      release();
      const reason = abort.signal.reason instanceof MasterChangedWhileForwarding ? abort.signal.reason : err;
      throw forwardFailure(reason, master, master.forwardUrl, request.method, this.options.responseTimeoutMs);
    } finally {
      this.underway.delete(master.id, abort);
    }
    void reply.status(response.statusCode);
    for (const [name, value] of Object.entries(endToEndHeaders(response.headers))) void reply.header(name, value);
    void reply.header(forwardedFromHeader, self);
    if (request.method === 'HEAD' || response.statusCode === 204 || response.statusCode === 304) {
      await response.body.dump();
      return reply.send();
    }
    return reply.send(response.body);
  }

  /** Ends the connections to the master; called once the HTTP server no longer has requests in flight. */
  async close(): Promise<void> {
    this.unsubscribe();
    await this.agent.destroy();
  }

  private master(): MasterRef | null {
    const id = this.view.softState().master;
    if (id === null) return null;
    const nodes = this.view.clusterState().nodes;
    const node = nodes.find((n) => n.id === id);
    return {
      ...describeMaster(id, nodes),
      httpUrl: node === undefined ? null : httpUrlOf(node, this.trust.publicScheme),
      forwardUrl: node === undefined ? null : internalHttpUrlOf(node, this.trust.tls !== null),
    };
  }
}

function answersHere(request: FastifyRequest): boolean {
  return header(request.headers, directHeader)?.trim().toLowerCase() === 'true' || header(request.headers, forwardedFromHeader) !== undefined;
}

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The coordinator chose to forward this write to the master as a command: the route serves it up to the
     * proposal, and writeRouter.ts sends the command (through the origin's `mayForward`, src/http/writeOrigin.ts).
     * The app decorates every request with false.
     */
    forwardsCommand: boolean;
  }
  interface FastifyContextConfig {
    /**
     * The route takes a JSON body (or none) and turns it into one content or user command: on a replica it is
     * served here up to the proposal and the command is forwarded to the master over the cluster transport.
     */
    forwardsCommand?: true;
  }
}
