import type { FastifyRequest } from 'fastify';

import { ConclaveError } from '../errors/catalogue.js';
import type { ClusterRuntime } from '../node/clusterRuntime.js';
import type { MinIndexGate } from './minIndex.js';
import { header } from './representation.js';

/**
 * Read modes, chosen per request with `?consistency=` or `X-Conclave-Consistency`, else cluster.readConsistency:
 *
 * - `sequential` (default): served from this node's state while it holds a read lease — the lease guarantees it
 *   has applied every write acknowledged so far (src/core/lease.ts). Without a lease (not in sync, just elected,
 *   a pause) the read falls back to `linearizable`: slower, never wrong.
 * - `linearizable`: the master confirms a read index with a quorum round; this node serves once it has applied it.
 * - `stale`: whatever this node has, at once; X-Conclave-Index says how far that is.
 *
 * Without any master, reads follow cluster.noMasterBlock (app.ts): served and marked X-Conclave-Stale, except
 * `linearizable`, which cannot be confirmed and is refused.
 */
export type ReadConsistency = 'sequential' | 'linearizable' | 'stale';

const modes: readonly ReadConsistency[] = ['sequential', 'linearizable', 'stale'];

/**
 * How a read was admitted (counted by src/metrics/readMetrics.ts): `lease` served at once under this node's read
 * lease, `read_index` after the master confirmed a read index (a quorum round), `stale` as asked, `no_master` served
 * marked stale because no master is known.
 */
export type ReadAdmission = 'lease' | 'read_index' | 'stale' | 'no_master';

export class ReadConsistencyGate {
  constructor(
    private readonly runtime: ClusterRuntime,
    private readonly applied: MinIndexGate,
    private readonly defaultMode: ReadConsistency,
    private readonly observe: (via: ReadAdmission) => void = () => undefined,
  ) {}

  /** Which mode a request asks for; the query parameter is taken off so routes with strict parameters never see it. */
  modeOf(request: FastifyRequest): ReadConsistency {
    const query = request.query as Record<string, unknown> | undefined;
    const fromQuery = query?.['consistency'];
    if (query !== undefined) delete query['consistency'];
    const given = fromQuery ?? header(request.headers, 'x-conclave-consistency');
    if (given === undefined) return this.defaultMode;
    if (typeof given !== 'string' || !modes.includes(given as ReadConsistency)) {
      throw new ConclaveError('INVALID_REQUEST', `The read consistency must be one of ${modes.join(', ')}.`, { given: String(given) });
    }
    return given as ReadConsistency;
  }

  /** Waits until this node may serve a read in `mode`. */
  async admit(mode: ReadConsistency): Promise<void> {
    if (mode === 'stale') return this.observe('stale');
    if (this.runtime.softState().master === null) {
      if (mode === 'sequential') return this.observe('no_master'); // served, marked stale (cluster.noMasterBlock decides whether at all)
      throw new ConclaveError('CLUSTER_NO_MASTER', 'No master is elected, so a linearizable read cannot be confirmed. Retry shortly, or read with consistency=stale.');
    }
    if (mode === 'sequential' && this.runtime.hasReadLease()) return this.observe('lease');
    const index = await this.runtime.readIndex();
    await this.applied.waitFor(index);
    this.observe('read_index');
  }
}
