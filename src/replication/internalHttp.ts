import type { Readable } from 'node:stream';
import { Agent, request, type Dispatcher } from 'undici';

import type { NodeDescriptor } from '../core/clusterState.js';
import { internalAuthHeader, signInternalRequest } from '../http/internalAuth.js';

/**
 * The client side of node-to-node HTTP (/internal/v1): every request signed with the cluster secret
 * (internalAuth.ts), on a dedicated connection pool so that bulk transfers between nodes never queue behind, or
 * hold sockets from, anything else. Bodies stream both ways; nothing is buffered here.
 */
export interface InternalHttpOptions {
  readonly secret: string;
  readonly selfId: string;
  /** Sockets to one peer at once; further requests wait in undici's queue for one (callers bound how many). */
  readonly connectionsPerPeerMax: number;
  /** A peer silent this long while we wait for headers or for the next chunk of a body fails the request. */
  readonly idleTimeoutMs: number;
}

export interface InternalRequest {
  readonly method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'DELETE';
  readonly path: string;
  readonly headers?: Record<string, string>;
  readonly body?: Readable;
  readonly signal?: AbortSignal;
}

export class InternalHttpClient {
  private readonly agent: Agent;

  constructor(private readonly options: InternalHttpOptions) {
    this.agent = new Agent({
      connections: options.connectionsPerPeerMax,
      headersTimeout: options.idleTimeoutMs,
      bodyTimeout: options.idleTimeoutMs,
      connectTimeout: Math.min(options.idleTimeoutMs, 10_000),
    });
  }

  /**
   * Sends a signed request to a member; the caller must consume or dump the response body. Throws PeerUnreachable
   * when the member has no HTTP address yet.
   */
  async send(peer: NodeDescriptor, req: InternalRequest): Promise<Dispatcher.ResponseData> {
    const base = peerHttpUrl(peer);
    if (base === null) throw new PeerUnreachable(`${peer.name} has not published an HTTP address yet`);
    const proof = signInternalRequest(this.options.secret, this.options.selfId, req.method, req.path, Date.now());
    return request(`${base}${req.path}`, {
      dispatcher: this.agent,
      method: req.method,
      headers: { ...req.headers, [internalAuthHeader]: proof },
      ...(req.body !== undefined ? { body: req.body } : {}),
      ...(req.signal !== undefined ? { signal: req.signal } : {}),
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
 * The base URL of a member's HTTP API, or null when it is not known. A node listening on every interface without
 * a publish host announces a wildcard address nobody can dial; its transport address names a dialable host more
 * often than not.
 */
export function peerHttpUrl(node: NodeDescriptor): string | null {
  const address = node.httpAddress;
  if (address === undefined || address === '') return null;
  const wildcard = /^(0\.0\.0\.0|\[::\]):/;
  if (!wildcard.test(address)) return `http://${address}`;
  const port = address.slice(address.lastIndexOf(':') + 1);
  const host = node.address.slice(0, node.address.lastIndexOf(':'));
  return host === '' || wildcard.test(`${host}:`) ? null : `http://${host}:${port}`;
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
