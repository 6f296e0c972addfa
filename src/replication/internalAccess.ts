import type { FastifyRequest } from 'fastify';

import type { ClusterState } from '../core/clusterState.js';
import { ConclaveError } from '../errors/catalogue.js';
import { internalAuthHeader, type InternalAuth } from '../auth/internalAuth.js';
import { header, requestHasBody } from '../auth/requestHeaders.js';

export interface InternalAccessSource {
  readonly internalAuth: InternalAuth;
  readonly runtime: { clusterState(): ClusterState };
}

/**
 * The server side of node-to-node HTTP: the caller must prove the cluster secret for this node, method and exact
 * request target with a nonce not seen before (internalAuth.ts), and be a member of the cluster state this node
 * has applied. A node that is joining is not a member until its join is applied here: it retries. Returns the
 * caller's id.
 */
export function verifyInternalCaller(source: InternalAccessSource, request: FastifyRequest, identity?: string): string {
  const caller = source.internalAuth.verify(header(request.headers, internalAuthHeader), {
    method: request.method,
    path: request.url,
    hasBody: requestHasBody(request.headers),
    identity,
  });
  if (!source.runtime.clusterState().nodes.some((node) => node.id === caller)) {
    throw new ConclaveError('INTERNAL_AUTH_FAILED', `A node-to-node request was refused: node ${caller} is not a member of this node's cluster state (yet).`, {
      node: caller,
    });
  }
  return caller;
}

/** verifyInternalCaller as an onRequest hook for every plugin under /internal/v1. */
export function internalAccessHook(source: InternalAccessSource): (request: FastifyRequest) => Promise<void> {
  return async (request) => {
    verifyInternalCaller(source, request);
  };
}
