import type { FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingHttpHeaders } from 'node:http';
import { Agent, type Dispatcher } from 'undici';

import type { Principal } from '../auth/authenticator.js';
import type { Config } from '../config/settings.js';
import type { NodeDescriptor } from '../core/clusterState.js';
import { ConclaveError, invariant } from '../errors/catalogue.js';
import type { WriteAuthority } from '../node/forwardedCommands.js';
import type { WriteOrigin } from '../node/repository.js';
import { dialableAddress, internalHttpUrlOf, nodeTlsConnectOptions, type NodeTlsMaterial } from '../replication/internalHttp.js';
import { encodeIdentity } from './forwardedIdentity.js';
import { identityHeader, internalAuthHeader, requestHasBody, type SignedTarget } from './internalAuth.js';
import { header } from './representation.js';

/**
 * The request coordinator: any node takes any request, and one that is not the master hands writes (or, in ALL
 * mode, every API request) to the master.
 *
 *   CUD       writes are forwarded to the master; reads are served here
 *   ALL       every API request is forwarded to the master
 *   DISABLED  writes are answered 307 Temporary Redirect to the same path and query on the master
 *
 * A write is forwarded in one of two ways:
 *
 *   command   the JSON writes of content and users (routes marked `forwardsCommand`) with a body of at most
 *             http.forwardCommandBodyBytesMax: this node authenticates,
 *             validates and builds the command, and only the command goes to the master, over the cluster
 *             transport (src/node/commandForwarder.ts); the master checks it again, proposes it and answers with
 *             the outcome, which the route renders here exactly as the master would have. Parsing, authentication
 *             and validation are paid by the node the client chose, not all by the master (the bench measured about
 *             0.85 ms of CPU per write forwarded as a whole HTTP request).
 *   request   everything else (binary uploads, whose bytes must reach a quorum before the entry is proposed;
 *             larger JSON writes; voting exclusions; ALL mode's reads): the HTTP request is relayed, body streamed unread,
 *             and the master's answer streamed back. The client's credentials are not: this node authenticates the
 *             client itself and sends the identity (X-Conclave-Identity) in a request signed for the master
 *             (src/http/internalAuth.ts), to the master's internal listener over TLS whenever the cluster uses TLS.
 *             A captured forward is worth nothing elsewhere, and no password or token leaves the node it was given to.
 *
 * `X-Conclave-Direct: true` makes a node answer a request itself. A forwarded request carries
 * `X-Conclave-Forwarded-From: <name>`, and a node never forwards such a request again: if it is no longer the
 * master it refuses the write (NOT_MASTER naming the master it knows, or CLUSTER_NO_MASTER) and the refusal travels
 * back unchanged. The answer the client gets through a forward carries the same header with the forwarding node's
 * name.
 */
export type CoordinatorMode = Config['cluster']['coordinatorMode'];

export const forwardedFromHeader = 'x-conclave-forwarded-from';
export const directHeader = 'x-conclave-direct';

/**
 * What a node does with one request: serve it, forward it, serve it up to the proposal and forward the command,
 * redirect it, or refuse it (a write it cannot take).
 */
export type Coordination = 'local' | 'forward' | 'command' | 'redirect' | 'refuse';

export interface CoordinationInput {
  readonly mode: CoordinatorMode;
  readonly method: string;
  /** The URL's path, without the query. */
  readonly path: string;
  /** Where the master is, as this node sees it. */
  readonly master: 'self' | 'other' | 'none';
  /** The request asks to be answered here: X-Conclave-Direct, or it was forwarded already. */
  readonly answerHere: boolean;
  /** This node cannot write its journal (a full disk): its own refusal of a write says so, not "no master". */
  readonly persistFailing: boolean;
  /** The route turns the request into one command the master can take over the transport (`forwardsCommand`). */
  readonly sendsCommand?: boolean;
}

export function isWriteMethod(method: string): boolean {
  return method === 'POST' || method === 'PUT' || method === 'PATCH' || method === 'DELETE';
}

/**
 * Requests the coordinator may send to the master: the API under /api/v1, except the cluster views (status and
 * digest: they are how an operator sees what each node holds and thinks) and login (tokens are verified on every node with the replicated key).
 * Health and node-to-node endpoints always answer for the node they reach.
 */
function coordinated(method: string, path: string): boolean {
  if (path !== '/api/v1' && !path.startsWith('/api/v1/')) return false;
  if ((method === 'GET' || method === 'HEAD') && path.startsWith('/api/v1/cluster/')) return false;
  if (method === 'POST' && path === '/api/v1/auth/login') return false;
  // A backup comes from the node asked (the operator picks a replica to spare the master), never the master's.
  if (path === '/api/v1/admin/backup') return false;
  return true;
}

export function coordinationOf(input: CoordinationInput): Coordination {
  if (input.master === 'self' || !coordinated(input.method, input.path)) return 'local';
  if (!isWriteMethod(input.method)) {
    // Without a master a read is served here, marked stale (cluster.noMasterBlock decides whether at all).
    return input.mode === 'ALL' && input.master === 'other' && !input.answerHere ? 'forward' : 'local';
  }
  // Refused before the body is read: a replica must not take in a 1 GB upload only to say NOT_MASTER.
  if (input.master === 'none') return input.persistFailing ? 'local' : 'refuse';
  if (input.answerHere) return 'refuse';
  if (input.mode === 'DISABLED') return 'redirect';
  return input.sendsCommand === true ? 'command' : 'forward';
}

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

interface MasterRef {
  readonly id: string;
  readonly name: string;
  readonly httpAddress: string | undefined;
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

/** Failures in which no byte of the request can have reached the master: the connection was never made. */
const notConnectedCodes = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
]);

function errorCodeOf(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown }; errors?: { code?: unknown }[] } | null;
  for (const code of [e?.code, e?.cause?.code, e?.errors?.[0]?.code]) {
    if (typeof code === 'string') return code;
  }
  return 'unknown error';
}

export class RequestForwarder {
  private readonly agent: Agent;
  private inFlight = 0;
  /** Forwards under way, by the master they went to: given up when that node stops being the master. */
  private readonly underway = new Map<string, Set<AbortController>>();
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
    // A master that was paused or cut off may never answer what it was sent: once another is known, waiting the
    // whole response timeout for it only holds the client and a forwarding slot (found by the SIGSTOP failover
    // bench: every slot was held by the stopped master and nothing reached the new one).
    this.unsubscribe = view.onChange?.(() => this.abandonFormerMasters()) ?? (() => undefined);
  }

  private abandonFormerMasters(): void {
    const current = this.view.softState().master;
    // Losing sight of the master is not news that it failed (an election may confirm it again): only another
    // master says the forward will not be answered. Until then the response timeout bounds the wait.
    if (current === null) return;
    for (const [masterId, controllers] of this.underway) {
      if (masterId === current) continue;
      this.underway.delete(masterId);
      for (const controller of controllers) controller.abort(new MasterChangedWhileForwarding());
    }
  }

  static fromConfig(view: MasterView, config: Config, trust: ForwardTrust): RequestForwarder {
    return new RequestForwarder(view, {
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
        // Served here up to the proposal (Repository.propose sends the command). Every answer to it says it was
        // forwarded, refusals made here included, as every answer relayed from the master does.
        request.forwardsCommand = true;
        void reply.header(forwardedFromHeader, this.view.self().name);
        return false;
      case 'refuse':
        throw refusal(master);
      case 'redirect': {
        invariant(master !== null, 'a redirect has a master');
        if (master.httpUrl === null) throw unknownAddress(master, false);
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
    if (master === null || header(request.headers, forwardedFromHeader) !== undefined) throw refusal(master);
    if (master.forwardUrl === null) throw unknownAddress(master, this.trust.tls !== null);
    const withBody = requestHasBody(request.headers);
    invariant(!withBody || !request.raw.readableDidRead, 'a request with a body is forwarded before its body is read');
    if (this.inFlight >= this.options.requestsMax) {
      throw new ConclaveError('OVERLOADED', `${this.inFlight} requests are already being forwarded to the master; retry shortly.`, {
        forwardRequestsMax: this.options.requestsMax,
      });
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
    const underway = this.underway.get(master.id) ?? new Set<AbortController>();
    this.underway.set(master.id, underway);
    underway.add(abort);

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
      throw forwardFailure(abort.signal.reason instanceof MasterChangedWhileForwarding ? abort.signal.reason : err, master, request.method, this.options.responseTimeoutMs);
    } finally {
      underway.delete(abort);
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
    const node = this.view.clusterState().nodes.find((n) => n.id === id);
    return {
      id,
      name: node?.name ?? id,
      httpAddress: node?.httpAddress,
      httpUrl: node === undefined ? null : httpUrlOf(node, this.trust.publicScheme),
      forwardUrl: node === undefined ? null : internalHttpUrlOf(node, this.trust.tls !== null),
    };
  }
}

function answersHere(request: FastifyRequest): boolean {
  return header(request.headers, directHeader)?.trim().toLowerCase() === 'true' || header(request.headers, forwardedFromHeader) !== undefined;
}

function masterDetails(master: MasterRef): Record<string, unknown> {
  return { master: master.name, ...(master.httpAddress !== undefined ? { masterHttpAddress: master.httpAddress } : {}) };
}

/** The refusal of a write this node cannot take, in the same words as the cluster runtime's. */
function refusal(master: MasterRef | null): ConclaveError {
  if (master === null) {
    return new ConclaveError('CLUSTER_NO_MASTER', 'No master is elected at the moment; writes are refused until one is. Retry shortly.');
  }
  return new ConclaveError('NOT_MASTER', `This node is not the master; send writes to ${master.name}.`, masterDetails(master));
}

function unknownAddress(master: MasterRef, internal: boolean): ConclaveError {
  const what = internal ? 'an internal HTTPS address (TLS between nodes: http.internalPort)' : 'an HTTP address';
  return new ConclaveError(
    'MASTER_UNREACHABLE',
    `The master ${master.name} has not published ${what} this node can dial yet (set transport.publishHost when listening on 0.0.0.0); retry shortly.`,
    masterDetails(master),
  );
}

/** Why a forward was given up: the node it went to is no longer the master. */
class MasterChangedWhileForwarding extends Error {
  readonly code = 'MASTER_CHANGED_WHILE_FORWARDING';
}

function forwardFailure(err: unknown, master: MasterRef, method: string, responseTimeoutMs: number): ConclaveError {
  const code = errorCodeOf(err);
  const where = `the master ${master.name} at ${master.forwardUrl}`;
  if (notConnectedCodes.has(code)) {
    return new ConclaveError('MASTER_UNREACHABLE', `Could not connect to ${where} to forward the request (${code}); nothing was sent. Retry shortly.`, {
      ...masterDetails(master),
      cause: code,
    });
  }
  const what =
    code === 'UND_ERR_HEADERS_TIMEOUT'
      ? `did not answer within ${responseTimeoutMs} ms`
      : err instanceof MasterChangedWhileForwarding
        ? 'was given up: another node became master meanwhile'
        : `failed after the request was sent (${code})`;
  if (!isWriteMethod(method)) {
    return new ConclaveError('MASTER_UNREACHABLE', `The forward to ${where} ${what}. Retry shortly.`, { ...masterDetails(master), cause: code });
  }
  return new ConclaveError(
    'WRITE_OUTCOME_UNKNOWN',
    `The forward of this write to ${where} ${what}; the write may have been applied. Read before retrying.`,
    { ...masterDetails(master), cause: code },
  );
}

/** The origin of a write for Repository: who asks, under which permission, and whether it may be forwarded. */
export function writeOriginOf(request: FastifyRequest, needs: WriteAuthority['needs']): WriteOrigin {
  return { authority: { user: request.principal.name, needs }, mayForward: request.forwardsCommand };
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The request coordinator: `app.forwarder.forwardToMaster(request, reply)` sends a request on to the master. */
    forwarder: RequestForwarder;
  }
}
