import type { Readable } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import { Agent, request, type Dispatcher } from 'undici';

import type { NodeDescriptor } from '../core/clusterState.js';
import { internalAuthHeader, type InternalAuth } from '../auth/internalAuth.js';

/**
 * The client side of node-to-node HTTP (/internal/v1): every request signed for the peer it goes to
 * (internalAuth.ts), on a dedicated connection pool so that bulk transfers between nodes never queue behind, or
 * hold sockets from, anything else. Bodies stream both ways; nothing is buffered here.
 *
 * When the cluster transport uses TLS, so does every request here: to the peer's internal listener
 * (NodeDescriptor.internalHttpAddress), verified against the cluster's CA, with this node's transport certificate
 * as the client certificate. A peer that has published no internal address is not asked at all: never plain HTTP.
 */
export interface InternalHttpOptions {
  readonly auth: InternalAuth;
  /** The transport's TLS material (transport.tls*File), or null when the cluster runs without TLS. */
  readonly tls: NodeTlsMaterial | null;
  /** Sockets to one peer at once; further requests wait in undici's queue for one (callers bound how many). */
  readonly connectionsPerPeerMax: number;
  /** A peer silent this long while we wait for headers or for the next chunk of a body fails the request. */
  readonly idleTimeoutMs: number;
}

/** PEM bytes of the node's transport certificate, its key, and the cluster CA. */
export interface NodeTlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer;
}

export interface InternalRequest {
  readonly method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'DELETE';
  /** Path and query. */
  readonly path: string;
  readonly headers?: Record<string, string>;
  readonly body?: Readable;
  readonly signal?: AbortSignal;
  /** Overrides idleTimeoutMs for this request (snapshot downloads have a setting of their own). */
  readonly idleTimeoutMs?: number;
}

/**
 * How a node dials another's TLS listener for node-to-node traffic. Peers are addressed by IP (or whatever seed
 * hosts say), so the certificate's names cannot be checked against the address: the cluster CA is the trust anchor
 * (as on the transport), and the signature, bound to the target node's id, does the rest.
 */
export function nodeTlsConnectOptions(tls: NodeTlsMaterial): ConnectionOptions {
  return { cert: tls.cert, key: tls.key, ca: tls.ca, rejectUnauthorized: true, checkServerIdentity: () => undefined };
}

export class InternalHttpClient {
  private readonly agent: Agent;

  constructor(private readonly options: InternalHttpOptions) {
    this.agent = new Agent({
      connections: options.connectionsPerPeerMax,
      headersTimeout: options.idleTimeoutMs,
      bodyTimeout: options.idleTimeoutMs,
      connect: { timeout: Math.min(options.idleTimeoutMs, 10_000), ...(options.tls === null ? {} : nodeTlsConnectOptions(options.tls)) },
    });
  }

  /**
   * Sends a signed request to a member; the caller must consume or dump the response body. Throws PeerUnreachable
   * when the member has no (internal) HTTP address yet.
   */
  async send(peer: NodeDescriptor, req: InternalRequest): Promise<Dispatcher.ResponseData> {
    const base = internalHttpUrlOf(peer, this.options.tls !== null);
    if (base === null) throw new PeerUnreachable(`${peer.name} has not published an ${this.options.tls !== null ? 'internal HTTPS' : 'HTTP'} address yet`);
    const proof = this.options.auth.sign({ target: peer.id, method: req.method, path: req.path, body: req.body === undefined ? 'empty' : 'streamed' });
    return request(`${base}${req.path}`, {
      dispatcher: this.agent,
      method: req.method,
      headers: { ...req.headers, [internalAuthHeader]: proof },
      ...(req.body !== undefined ? { body: req.body } : {}),
      ...(req.signal !== undefined ? { signal: req.signal } : {}),
      ...(req.idleTimeoutMs !== undefined ? { headersTimeout: req.idleTimeoutMs, bodyTimeout: req.idleTimeoutMs } : {}),
    });
  }

  close(): Promise<void> {
    return this.agent.destroy();
  }
}

/** A member that cannot be asked now (no HTTP address known); the caller tries another or later. */
export class PeerUnreachable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PeerUnreachable';
  }
}

/**
 * Where node-to-node requests to a member go, or null when it is not known. With TLS between nodes: its internal
 * listener, over HTTPS (never its client-facing address, whose certificate may come from a public CA, and never
 * plain HTTP). Without: its internal listener when it runs one (a node whose API uses TLS while the transport does
 * not), else its HTTP API, both plain as the transport is.
 */
export function internalHttpUrlOf(node: Pick<NodeDescriptor, 'address' | 'httpAddress' | 'internalHttpAddress'>, tls: boolean): string | null {
  const address = node.internalHttpAddress ?? (tls ? undefined : node.httpAddress);
  if (address === undefined || address === '') return null;
  const host = dialableAddress(address, node.address);
  return host === null ? null : `${tls ? 'https' : 'http'}://${host}`;
}

/**
 * A listening address other nodes can dial, or null. A node listening on every interface without a publish host
 * announces a wildcard address nobody can dial; its transport address names a dialable host more often than not.
 */
export function dialableAddress(address: string, transportAddress: string): string | null {
  const wildcard = /^(0\.0\.0\.0|\[::\]):/;
  if (!wildcard.test(address)) return address;
  const port = address.slice(address.lastIndexOf(':') + 1);
  const host = transportAddress.slice(0, transportAddress.lastIndexOf(':'));
  return host === '' || wildcard.test(`${host}:`) ? null : `${host}:${port}`;
}

/** A short description of a refusal from a peer, read from its catalogue error body (bounded). */
export async function describeRefusal(response: Dispatcher.ResponseData): Promise<string> {
  let text = '';
  try {
    for await (const chunk of response.body) {
      text += (chunk as Buffer).toString('utf8');
      if (text.length > 4096) break;
    }
  } catch {
    // The body failed mid-way: the status says enough.
  }
  response.body.destroy();
  try {
    const error = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
    if (error?.code !== undefined) return `HTTP ${response.statusCode} ${error.code}: ${error.message ?? ''}`;
  } catch {
    // Not a catalogue error (a proxy's page?): fall through.
  }
  return `HTTP ${response.statusCode}`;
}
