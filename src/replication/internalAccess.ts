import type { FastifyRequest } from 'fastify';

import type { ClusterState } from '../core/clusterState.js';
import { ConclaveError } from '../errors/catalogue.js';
import { internalAuthHeader, verifyInternalRequest } from '../http/internalAuth.js';

export interface InternalAccessSource {
  readonly clusterSecret: string;
  readonly runtime: { clusterState(): ClusterState };
}

/**
 * The server side of node-to-node HTTP: an onRequest hook for every plugin under /internal/v1. The caller must
 * prove the cluster secret for this method and exact request target (internalAuth.ts) and be a member of the
 * cluster state this node has applied. A node that is joining is not a member until its join is applied here: it
 * retries. Sets nothing on the request; the caller's id is not needed by content-addressed endpoints.
 */
export function internalAccessHook(source: InternalAccessSource): (request: FastifyRequest) => Promise<void> {
  return async (request) => {
    const raw = request.headers[internalAuthHeader];
    const caller = verifyInternalRequest(source.clusterSecret, Array.isArray(raw) ? raw[0] : raw, request.method, request.url, Date.now());
    if (!source.runtime.clusterState().nodes.some((node) => node.id === caller)) {
      throw new ConclaveError('INTERNAL_AUTH_FAILED', `A node-to-node request was refused: node ${caller} is not a member of this node's cluster state (yet).`, {
        node: caller,
      });
    }
  };
}
